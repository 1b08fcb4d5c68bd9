// AUTOSCALING on a real compute, with stand-ins that record how they were
// called: postgres and the shutdown sync-safekeepers run through
// `cgexec -g memory:neon-postgres`, and the vm-monitor is started after the
// start with compute_ctl's flags, its JSON log relayed, and SIGTERM'd once
// postgres has exited.
import { afterAll, expect, setDefaultTimeout, test } from "bun:test";
import { chmodSync, existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { waitUntil } from "./helpers/binary.ts";
import { startCompute, workDir } from "./helpers/compute.ts";

// Process-level: real postgres and the built binary; each wait has its own deadline.
setDefaultTimeout(60_000);

const root = workDir("compute-ctl-autoscaling-");
afterAll(() => root.cleanup());

/** An executable script the postgres user can run, and a log it may append to. */
function standIn(dir: string, name: string, body: string): { path: string; log: string } {
  const log = join(dir, `${name}.log`);
  writeFileSync(log, "");
  chmodSync(log, 0o666);
  const path = join(dir, name);
  writeFileSync(path, `#!/bin/sh\n${body.replaceAll("$LOG", log)}\n`);
  chmodSync(path, 0o755);
  return { path, log };
}

test("postgres and sync-safekeepers run in the cgroup; the vm-monitor runs beside postgres and is stopped after it", async () => {
  const bin = join(root.dir, "bin");
  mkdirSync(bin, { mode: 0o755 });
  chmodSync(bin, 0o755);
  const cgexec = standIn(
    bin,
    "cgexec",
    // Records its argv, then runs the command after `-g <controller:path>`.
    `echo "$*" >> $LOG\nshift 2\nexec "$@"`,
  );
  const vmMonitor = standIn(
    bin,
    "vm-monitor",
    `echo "$*" >> $LOG
trap 'echo SIGTERM >> $LOG; exit 0' TERM
echo '{"timestamp":"2026-01-01T00:00:00Z","level":"INFO","fields":{"message":"starting up","cgroup":"neon-postgres"},"target":"vm_monitor"}'
while :; do sleep 0.1; done`,
  );
  const c = await startCompute(root.dir, "vm", {
    binEnv: {
      AUTOSCALING: "true",
      PATH: `${bin}:${process.env.PATH ?? "/usr/bin:/bin"}`,
      COMPUTE_CTL_VM_MONITOR: vmMonitor.path,
    },
  });
  let stopped = false;
  try {
    await c.waitForStatus(["running"]);
    expect(readFileSync(cgexec.log, "utf8")).toContain(`-g memory:neon-postgres `);
    expect(readFileSync(cgexec.log, "utf8")).toContain(` -D ${c.pgdata}`);
    await waitUntil("the vm-monitor to start", () =>
      readFileSync(vmMonitor.log, "utf8").includes("--cgroup") ? true : undefined,
    );
    expect(readFileSync(vmMonitor.log, "utf8").split("\n")[0]).toBe(
      "--cgroup neon-postgres --pgconnstr host=localhost port=5432 dbname=postgres user=cloud_admin sslmode=disable application_name=vm-monitor --addr 0.0.0.0:10301",
    );
    await waitUntil("its log relayed", () =>
      c.child.stderr().includes("vm-monitor: starting up cgroup=neon-postgres") ? true : undefined,
    );

    // Postgres stops (fast shutdown from outside): vm-monitor gets SIGTERM, the
    // primary's shutdown sync-safekeepers goes through cgexec too.
    const pid = Number(readFileSync(join(c.pgdata, "postmaster.pid"), "utf8").split("\n")[0]);
    process.kill(pid, "SIGINT");
    const code = await c.child.stop("SIGCONT");
    stopped = true;
    expect(code).toBe(0);
    expect(readFileSync(vmMonitor.log, "utf8")).toContain("SIGTERM");
    expect(c.child.stderr()).toContain("vm-monitor stopped");
    expect(readFileSync(cgexec.log, "utf8")).toContain("--sync-safekeepers");
  } finally {
    if (!stopped) await c.stop();
    else await c.env.close();
  }
  expect(existsSync(join(c.pgdata, "postmaster.pid"))).toBe(false);
});
