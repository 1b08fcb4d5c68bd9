// POST /terminate on a real compute, with neon_local's admin token.
import { afterAll, expect, setDefaultTimeout, test } from "bun:test";
import { bearer } from "../src/testing/jwt.ts";
import { postgresPids, startCompute, workDir } from "./helpers/compute.ts";

// Process-level: real postgres and the built binary; each wait has its own deadline.
setDefaultTimeout(60_000);

const root = workDir("compute-ctl-terminate-");
afterAll(() => root.cleanup());

test("primary: /terminate?mode=immediate stops postgres, answers the shutdown LSN, exits 0", async () => {
  const c = await startCompute(root.dir, "term");
  try {
    await c.waitForStatus(["running"]);
    const admin = bearer(await c.keys.sign({ scope: "compute_ctl:admin", aud: ["compute"] }));
    const res = await c.request("POST", "/terminate?mode=immediate", admin);
    expect(res.status).toBe(200);
    // The fake sync-safekeepers answers the template's LSN at shutdown.
    expect(await res.json()).toEqual({ lsn: c.env.template.checkpointLsn });
    expect(postgresPids(c.pgdata)).toEqual([]);
    // immediate: 300 ms later the process ends with postgres' exit code.
    expect(await c.child.proc.exited).toBe(0);
    expect(c.child.stderr()).toContain(
      "Changing compute status from running to termination-pending-immediate",
    );
  } finally {
    await c.stop();
  }
});

test("fast mode keeps answering for 30 s: a repeated /terminate gets 201 with the same LSN", async () => {
  const c = await startCompute(root.dir, "term-fast", { spec: { mode: "Replica" } });
  try {
    await c.waitForStatus(["running"]);
    const first = await c.request("POST", "/terminate");
    expect(first.status).toBe(200);
    expect(await first.json()).toEqual({ lsn: null });
    const again = await c.request("POST", "/terminate");
    expect(again.status).toBe(201);
    expect((await c.status()).status).toBe("terminated");
    expect(c.child.proc.exitCode).toBeNull();
  } finally {
    expect(await c.stop()).toBe(1);
  }
});

test("a token for another compute is refused with 403 and nothing happens", async () => {
  const c = await startCompute(root.dir, "term-403");
  try {
    await c.waitForStatus(["running"]);
    const other = bearer(await c.keys.sign({ compute_id: "someone-else" }));
    const res = await c.request("POST", "/terminate", other);
    expect(res.status).toBe(403);
    expect((await c.status()).status).toBe("running");
  } finally {
    await c.stop();
  }
});
