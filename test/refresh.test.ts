// POST /refresh_configuration on the internal port: compute_ctl re-reads its
// `-c` file and applies a spec whose pageserver moved; a file without a spec
// means the compute was detached, and compute_ctl exits 1 with postgres gone.
import { afterAll, expect, setDefaultTimeout, test } from "bun:test";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { waitUntil } from "./helpers/binary.ts";
import { startCompute, workDir } from "./helpers/compute.ts";

// Process-level: real postgres and the built binary; each wait has its own deadline.
setDefaultTimeout(60_000);

const root = workDir("compute-ctl-refresh-");
afterAll(() => root.cleanup());

const refresh = (int: number) =>
  fetch(`http://127.0.0.1:${int}/refresh_configuration`, {
    method: "POST",
    signal: AbortSignal.timeout(5000),
  });

test("a moved pageserver in the re-read config is applied; the report is counted", async () => {
  const c = await startCompute(root.dir, "moved");
  try {
    await c.waitForStatus(["running"]);
    const config = JSON.parse(readFileSync(c.configPath, "utf8")) as {
      spec: Record<string, unknown>;
    };
    // Same stand-in, another spelling: a different pageserver as far as the spec goes.
    const info = config.spec.pageserver_connection_info as {
      shards: Record<string, { pageservers: { libpq_url: string }[] }>;
    };
    const shard = info.shards["0000"]?.pageservers[0];
    if (shard === undefined) throw new Error("the test spec has no shard 0000");
    const moved = shard.libpq_url.replace("127.0.0.1", "localhost");
    expect(moved).not.toBe(shard.libpq_url);
    shard.libpq_url = moved;
    writeFileSync(c.configPath, JSON.stringify(config));
    const res = await refresh(c.int);
    expect(res.status).toBe(200);
    expect(await res.text()).toBe("");
    await waitUntil(
      "postgresql.conf with the new pageserver",
      () =>
        readFileSync(join(c.pgdata, "postgresql.conf"), "utf8").includes(
          `neon.pageserver_connstring='${moved}'`,
        ),
      20_000,
    );
    await c.waitForStatus(["running"]);
    const log = c.child.stderr();
    expect(log).toContain("Changing compute status from running to refresh-configuration-pending");
    expect(log).toContain("compute node configuration refreshed");
    const metrics = await fetch(`http://127.0.0.1:${c.ext}/metrics`).then((r) => r.text());
    expect(metrics).toContain("pg_cctl_pagestream_request_errors_total 1");
    expect((await c.psql("select 1")).out).toBe("1");
  } finally {
    await c.stop();
  }
});

test("a config without a spec: detached, compute_ctl exits 1 and postgres is gone", async () => {
  const c = await startCompute(root.dir, "detached");
  try {
    await c.waitForStatus(["running"]);
    const config = JSON.parse(readFileSync(c.configPath, "utf8")) as Record<string, unknown>;
    writeFileSync(c.configPath, JSON.stringify({ ...config, spec: null }));
    expect((await refresh(c.int)).status).toBe(200);
    const code = await Promise.race([
      c.child.proc.exited,
      Bun.sleep(20_000).then(() => "still running"),
    ]);
    expect(code).toBe(1);
    expect(c.child.stderr()).toContain("the compute was detached");
  } finally {
    await c.stop();
  }
});

test("refused in a state it does not apply to, with upstream's message", async () => {
  const c = await startCompute(root.dir, "pooled", { empty: true });
  try {
    await c.waitForStatus(["empty"]);
    const res = await refresh(c.int);
    expect(res.status).toBe(500);
    expect(await res.json()).toEqual({
      error: "Cannot refresh compute configuration in state Empty",
    });
  } finally {
    await c.stop();
  }
});
