// Run as PID 1 (unshare --pid --fork --mount-proc bun pid1.ts [no-reaper]) by
// reaper.test.ts; prints one JSON line. With the reaper, waits until the
// orphaned `sleep`s are gone; without it, until they are zombies (proving
// the test environment does create them).
import { readdirSync, readFileSync } from "node:fs";
import { BunRunner } from "../bun-runner.ts";
import { parseProcStat, Reaper } from "../reaper.ts";

const withReaper = process.argv[2] !== "no-reaper";
const reaped: string[] = [];
const reaper = new Reaper({ onReap: (_pid, comm) => reaped.push(comm) });
if (withReaper) {
  const r = reaper.start();
  if (!r.ok) throw new Error(r.message);
}
const runner = new BunRunner({ spawnedPids: reaper });

function procs() {
  const out: { pid: number; comm: string; state: string; ppid: number }[] = [];
  for (const n of readdirSync("/proc")) {
    if (!/^\d+$/.test(n)) continue;
    try {
      const st = parseProcStat(readFileSync(`/proc/${n}/stat`, "utf8"));
      if (st) out.push(st);
    } catch {
      // exited meanwhile
    }
  }
  return out;
}

async function until(check: () => boolean, ms: number): Promise<boolean> {
  const deadline = performance.now() + ms;
  while (!check()) {
    if (performance.now() > deadline) return false;
    await Bun.sleep(20);
  }
  return true;
}

const orphanMaker = runner.spawn({ cmd: ["sh", "-c", "(sleep 0.2 &); (sleep 0.2 &); exit 0"] });
const own = runner.spawn({ cmd: ["sh", "-c", "exit 7"] });
// Hold the event loop until our own child is a zombie Bun has not reaped yet,
// then scan twice (past the grace scan): a reaper that stole its status would
// make Bun's `exited` fail.
const ownState = () => procs().find((p) => p.pid === own.pid)?.state;
const holdUntil = performance.now() + 5000;
while (ownState() !== "Z" && performance.now() < holdUntil) Bun.sleepSync(2);
const ownWasZombie = ownState() === "Z";
if (withReaper) {
  reaper.reapNow();
  reaper.reapNow();
}
const [orphanStatus, ownStatus] = await Promise.all([orphanMaker.exited, own.exited]);

const sleeps = () => procs().filter((p) => p.comm === "sleep");
const reachedGoal = withReaper
  ? await until(() => sleeps().length === 0, 5000)
  : await until(() => sleeps().filter((p) => p.state === "Z").length === 2, 5000);

process.stdout.write(
  `${JSON.stringify({
    pid: process.pid,
    active: reaper.active,
    orphanStatus,
    ownStatus,
    ownWasZombie,
    reachedGoal,
    reaped,
    zombies: procs().filter((p) => p.state === "Z"),
    tracked: [...reaper.trackedPids],
  })}\n`,
);
process.exit(0);
