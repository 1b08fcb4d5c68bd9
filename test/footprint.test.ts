// The idle trim on a real compute (src/background/footprint-trim.ts): once
// running and quiet, the built binary pages out what start-up left resident
// (checked in /proc, not only in its own log line), does a second pass, does
// it again after a /configure, and keeps answering throughout.
import { afterAll, expect, setDefaultTimeout, test } from "bun:test";
import { residentMemory } from "../src/process/footprint.ts";
import { bearer } from "../src/testing/jwt.ts";
import { waitUntil } from "./helpers/binary.ts";
import { startCompute, workDir } from "./helpers/compute.ts";

// Process-level: real postgres and the built binary; each wait has its own deadline.
setDefaultTimeout(90_000);

const root = workDir("compute-ctl-footprint-");
afterAll(() => root.cleanup());

const MiB = 1024 * 1024;
const TRIMMED = /released memory \((settled|second pass|grown)\): RSS ([\d.]+) → ([\d.]+) MiB/g;

function trims(stderr: string): { reason: string; before: number; after: number }[] {
  return [...stderr.matchAll(TRIMMED)].map((m) => ({
    reason: m[1] as string,
    before: Number(m[2]),
    after: Number(m[3]),
  }));
}

test("a running primary pages out its start-up residue when idle, twice, again after /configure, and keeps working", async () => {
  // Checks every 500 ms (3 s between trims) instead of every 10 s.
  const c = await startCompute(root.dir, "trim", {
    binEnv: { COMPUTE_CTL_TRIM_INTERVAL_MS: "500" },
  });
  try {
    await c.waitForStatus(["running"]);
    const pid = c.child.proc.pid;
    const before = residentMemory(pid);
    const settled = await waitUntil("the first trim", () => trims(c.child.stderr())[0], 20_000);
    const after = residentMemory(pid);
    console.error(
      `file-backed ${(before.file / MiB).toFixed(1)} → ${(after.file / MiB).toFixed(1)} MiB; log: ${JSON.stringify(settled)}`,
    );
    expect(settled.reason).toBe("settled");
    expect(settled.after).toBeLessThan(settled.before);
    // Start-up leaves ~45 MiB of the executable resident; the trim takes most of it
    // (what the idle compute touches comes back, 64 KiB per fault, within seconds).
    expect(after.file).toBeLessThan(before.file * 0.6);

    const second = await waitUntil("the second pass", () => trims(c.child.stderr())[1], 20_000);
    expect(second.reason).toBe("second pass");

    // Everything still works after its code was paged out: the API, the JWT
    // check, postgres through compute_ctl's own connection (the monitor), a /configure.
    for (let i = 0; i < 20; i++) expect((await c.status()).status).toBe("running");
    expect((await c.psql("select 1")).out).toBe("1");
    const token = await c.keys.sign({ compute_id: "trim" });
    const cluster = { ...(c.spec.cluster as Record<string, unknown>) };
    cluster.settings = [{ name: "work_mem", value: "9MB", vartype: "string" }];
    const res = await fetch(`http://127.0.0.1:${c.ext}/configure`, {
      method: "POST",
      headers: { "content-type": "application/json", ...bearer(token) },
      body: JSON.stringify({
        spec: { ...c.spec, cluster },
        compute_ctl_config: { jwks: { keys: [] } },
      }),
    });
    expect(res.status).toBe(200);
    expect((await c.psql("show work_mem")).out).toBe("9MB");
    const count = trims(c.child.stderr()).length;
    // The status changed: the next quiet interval trims again as a fresh start.
    const again = await waitUntil(
      "a trim after /configure",
      () => trims(c.child.stderr())[count],
      20_000,
    );
    expect(again.reason).toBe("settled");
    expect((await c.status()).status).toBe("running");
    console.error(`VmRSS at the end: ${(residentMemory(pid).rss / MiB).toFixed(1)} MiB`);
  } finally {
    await c.stop();
  }
});
