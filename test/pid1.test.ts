// compute_ctl as PID 1 of its own PID namespace, as in a container: it
// answers SIGTERM, reaps orphans re-parented to it, and still sees its own
// children's exit codes.
import { afterAll, expect, setDefaultTimeout, test } from "bun:test";
import { readdirSync, readFileSync } from "node:fs";
import { waitUntil } from "./helpers/binary.ts";
import { postgresPids, startCompute, workDir } from "./helpers/compute.ts";

// Process-level: real postgres and the built binary; each wait has its own deadline.
setDefaultTimeout(60_000);

const root = workDir("compute-ctl-pid1-");
afterAll(() => root.cleanup());

const UNSHARE = ["unshare", "--pid", "--fork", "--mount-proc", "--kill-child"];
// A new PID namespace needs root (CAP_SYS_ADMIN); where it is refused, say so and skip.
const canUnshare = Bun.spawnSync([...UNSHARE, "true"], { stderr: "pipe" }).exitCode === 0;
if (!canUnshare) console.error("pid1.test.ts: skipped, `unshare --pid` is not permitted here");

function childrenOf(pid: number): number[] {
  const out: number[] = [];
  for (const t of readdirSync(`/proc/${pid}/task`)) {
    const text = readFileSync(`/proc/${pid}/task/${t}/children`, "utf8").trim();
    if (text) out.push(...text.split(/\s+/).map(Number));
  }
  return out;
}

function zombieChildren(pid: number): number[] {
  return childrenOf(pid).filter((c) => {
    try {
      const stat = readFileSync(`/proc/${c}/stat`, "utf8");
      return stat.slice(stat.lastIndexOf(")") + 2).startsWith("Z");
    } catch {
      return false;
    }
  });
}

function nsPid(hostPid: number): string | undefined {
  const status = readFileSync(`/proc/${hostPid}/status`, "utf8");
  return /^NSpid:\s+(.*)$/m.exec(status)?.[1];
}

test.skipIf(!canUnshare)(
  "as PID 1: orphans are reaped, postgres' exit code is kept, SIGTERM is honoured",
  async () => {
    const c = await startCompute(root.dir, "pid1", { prefix: UNSHARE });
    try {
      await c.waitForStatus(["running"], 60_000);
      const [computeCtl] = childrenOf(c.child.proc.pid);
      expect(computeCtl).toBeDefined();
      const pid = computeCtl as number;
      // In its namespace it is PID 1 (NSpid: <host pid> 1).
      expect(nsPid(pid)?.split(/\s+/).at(-1)).toBe("1");

      // Orphans inside the namespace are re-parented to compute_ctl.
      const ns = Bun.spawnSync(
        [
          "nsenter",
          "--target",
          String(pid),
          "--pid",
          "--mount",
          "--",
          "sh",
          "-c",
          "(sleep 1 &); (sleep 1 &); (true &); exit 0",
        ],
        { stderr: "pipe" },
      );
      expect(ns.exitCode).toBe(0);
      // The sleeps outlived their parents: now they are compute_ctl's.
      expect(childrenOf(pid).filter(isSleep).length).toBe(2);
      await waitUntil(
        "orphans re-parented and reaped",
        () =>
          zombieChildren(pid).length === 0 && childrenOf(pid).every((p) => !isSleep(p))
            ? true
            : undefined,
        10_000,
      );

      // Its own child keeps its exit status: a fast shutdown of postgres → exit 0.
      const [pg] = postgresPids(c.pgdata);
      expect(pg).toBeDefined();
      process.kill(pg as number, "SIGINT");
      expect(await c.child.proc.exited).toBe(0);
    } finally {
      await c.stop();
    }
  },
);

test.skipIf(!canUnshare)(
  "as PID 1: SIGTERM ends compute_ctl with status 1 and stops postgres",
  async () => {
    const c = await startCompute(root.dir, "pid1-term", { prefix: UNSHARE });
    try {
      await c.waitForStatus(["running"], 60_000);
      const [pid] = childrenOf(c.child.proc.pid);
      process.kill(pid as number, "SIGTERM");
      expect(await c.child.proc.exited).toBe(1);
    } finally {
      await c.stop();
    }
    expect(postgresPids(c.pgdata)).toEqual([]);
  },
);

function isSleep(pid: number): boolean {
  try {
    return readFileSync(`/proc/${pid}/comm`, "utf8").trim() === "sleep";
  } catch {
    return false;
  }
}
