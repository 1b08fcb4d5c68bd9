import { afterAll, describe, expect, test } from "bun:test";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { BunRunner } from "./bun-runner.ts";
import { decodeWaitStatus, parseProcStat, Reaper } from "./reaper.ts";
import { type ExitStatus, runToCompletion } from "./runner.ts";
import { procState } from "./testing.ts";
import { resolveRunAs } from "./user.ts";

const testdata = join(import.meta.dir, "testdata");
const runner = new BunRunner();
const root = process.getuid?.() === 0;

describe("parseProcStat", () => {
  test.each([
    ["123 (sh) S 1 123 123 0 -1", { pid: 123, comm: "sh", state: "S", ppid: 1 }],
    ["7 (a) b) Z 1 7", { pid: 7, comm: "a) b", state: "Z", ppid: 1 }],
    ["8 (with space) R 42 8", { pid: 8, comm: "with space", state: "R", ppid: 42 }],
  ])("%j", (text, want) => {
    expect(parseProcStat(text)).toEqual(want);
  });

  test.each(["", "garbage", "x (sh) S y"])("%j is rejected", (text) => {
    expect(parseProcStat(text)).toBeNull();
  });
});

describe("decodeWaitStatus", () => {
  test.each([
    [0, { code: 0, signal: null }],
    [7 << 8, { code: 7, signal: null }],
    [9, { code: null, signal: "SIGKILL" }],
    [15 | 0x80, { code: null, signal: "SIGTERM" }], // core dumped bit
  ])("%d", (status, want) => {
    expect(decodeWaitStatus(status)).toEqual(want as ExitStatus);
  });
});

describe("Reaper on a fake /proc", () => {
  const dir = mkdtempSync(join(tmpdir(), "process-reaper-"));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));
  const ME = 4242;

  function fakeProc(name: string, withChildrenFiles: boolean) {
    const proc = join(dir, name);
    const stat = (pid: number, comm: string, state: string, ppid: number) => {
      mkdirSync(join(proc, String(pid)), { recursive: true });
      writeFileSync(join(proc, String(pid), "stat"), `${pid} (${comm}) ${state} ${ppid} 1 1 0`);
    };
    stat(ME, "compute_ctl", "S", 0);
    stat(100, "sleep", "Z", ME); // orphan zombie
    stat(101, "postgres", "Z", ME); // ours, tracked
    stat(102, "sleep", "S", ME); // running
    stat(103, "sleep", "Z", 7); // someone else's
    stat(104, "x (y) Z", "Z", ME); // tricky comm
    for (const tid of [ME, ME + 1]) {
      mkdirSync(join(proc, String(ME), "task", String(tid)), { recursive: true });
      if (withChildrenFiles) {
        const kids = tid === ME ? "100 101 102 " : "104 ";
        writeFileSync(join(proc, String(ME), "task", String(tid), "children"), kids);
      }
    }
    return proc;
  }

  for (const withChildrenFiles of [true, false]) {
    test(`finds untracked zombie children (${withChildrenFiles ? "children files" : "full scan"})`, () => {
      const waited: number[] = [];
      const r = new Reaper({
        force: true,
        pid: ME,
        procRoot: fakeProc(`p${withChildrenFiles}`, withChildrenFiles),
        graceScans: 1,
        waitpid: (pid) => {
          waited.push(pid);
          return { code: 0, signal: null };
        },
      });
      r.add(101);
      const sorted = (a: number[]) => a.toSorted((x, y) => x - y);
      expect(sorted(r.zombieOrphans().map((z) => z.pid))).toEqual([100, 104]);
      // Grace: the first sighting only marks them.
      expect(r.reapNow()).toEqual([]);
      expect(waited).toEqual([]);
      expect(sorted(r.reapNow())).toEqual([100, 104]);
      expect(sorted(waited)).toEqual([100, 104]);
    });
  }

  test("a pid tracked between scans is never waited for", () => {
    const waited: number[] = [];
    const r = new Reaper({
      force: true,
      pid: ME,
      procRoot: fakeProc("track", true),
      waitpid: (pid) => {
        waited.push(pid);
        return null;
      },
    });
    r.add(101);
    r.reapNow();
    r.add(100);
    r.add(104);
    r.reapNow();
    expect(waited).toEqual([]);
  });

  test("inactive unless PID 1 or forced", () => {
    const r = new Reaper({ pid: ME, procRoot: fakeProc("inactive", true), waitpid: () => null });
    expect(r.active).toBe(process.pid === 1);
    expect(r.reapNow()).toEqual([]);
    expect(r.start()).toEqual({ ok: true });
    r.stop();
  });

  test("scan errors go to onError and do not throw", () => {
    const errors: unknown[] = [];
    const r = new Reaper({
      force: true,
      pid: ME,
      procRoot: join(dir, "missing"),
      onError: (e) => errors.push(e),
    });
    expect(r.reapNow()).toEqual([]);
    expect(errors).toHaveLength(1);
  });
});

describe("Reaper with real processes", () => {
  test("a zombie spawned by our runner is left to Bun, which still reports 7", async () => {
    const reaper = new Reaper({ force: true, graceScans: 0 });
    const r = new BunRunner({ spawnedPids: reaper });
    const c = r.spawn({ cmd: ["sh", "-c", "exit 7"] });
    // Block the event loop so Bun cannot reap it: it stays a zombie meanwhile.
    const deadline = performance.now() + 5000;
    while (procState(c.pid) !== "Z" && performance.now() < deadline) Bun.sleepSync(2);
    expect(procState(c.pid)).toBe("Z");
    // An untracking reaper would take it (so this test can fail) ...
    const blind = new Reaper({ force: true, graceScans: 0 });
    expect(blind.zombieOrphans().map((z) => z.pid)).toContain(c.pid);
    // ... ours leaves it alone.
    expect(reaper.zombieOrphans().map((z) => z.pid)).not.toContain(c.pid);
    expect(reaper.reapNow()).not.toContain(c.pid);
    expect(await c.exited).toEqual({ code: 7, signal: null });
    expect(reaper.trackedPids.has(c.pid)).toBe(false);
  });

  test("setCoreRlimitUnlimited raises soft and hard core limits", async () => {
    const res = await runToCompletion(runner, {
      cmd: [process.execPath, join(testdata, "rlimit.ts")],
    });
    const out = JSON.parse(res.stdout.join(""));
    if (root) {
      expect(out).toEqual({ result: { ok: true }, limits: ["unlimited", "unlimited"] });
    } else {
      // Unprivileged: it works only when the hard limit already is unlimited.
      expect(out.result.ok).toBe(out.limits[1] === "unlimited");
    }
  });

  const pg = root ? resolveRunAs("postgres") : null;
  test.skipIf(pg === null || !Bun.which("prlimit"))(
    "without privilege and a finite hard limit it returns EPERM instead of throwing",
    async () => {
      const res = await runToCompletion(runner, {
        cmd: ["prlimit", "--core=0:0", process.execPath, join(testdata, "rlimit.ts")],
        user: pg,
        cwd: "/",
      });
      const out = JSON.parse(res.stdout.join(""));
      expect(out.result).toMatchObject({ ok: false, errno: 1, code: "EPERM" });
      expect(out.result.message).toBe("setrlimit(RLIMIT_CORE, unlimited) failed: EPERM");
      expect(out.limits).toEqual(["0", "0"]);
    },
  );
});

// PID 1 needs a new pid namespace: unshare from util-linux, as root.
const canUnshare = root && Bun.which("unshare") !== null;

describe.skipIf(!canUnshare)("as PID 1 in a pid namespace", () => {
  async function runPid1(mode: string[]) {
    const res = await runToCompletion(runner, {
      cmd: [
        "unshare",
        "--pid",
        "--fork",
        "--mount-proc",
        process.execPath,
        join(testdata, "pid1.ts"),
        ...mode,
      ],
    });
    return JSON.parse(res.stdout.join(""));
  }

  test("control: without the reaper the orphaned sleeps stay zombies", async () => {
    const out = await runPid1(["no-reaper"]);
    expect(out.pid).toBe(1);
    expect(out.reachedGoal).toBe(true);
    expect(out.zombies.map((z: { comm: string }) => z.comm)).toEqual(["sleep", "sleep"]);
  });

  test("the reaper collects orphans and our own child still reports 7", async () => {
    const out = await runPid1([]);
    expect(out.pid).toBe(1);
    expect(out.active).toBe(true);
    expect(out.orphanStatus).toEqual({ code: 0, signal: null });
    expect(out.ownWasZombie).toBe(true);
    expect(out.ownStatus).toEqual({ code: 7, signal: null });
    expect(out.reachedGoal).toBe(true);
    expect(out.reaped).toEqual(["sleep", "sleep"]);
    expect(out.zombies).toEqual([]);
    expect(out.tracked).toEqual([]);
  });
});

test("no process of ours is left behind", () => {
  const kids = readFileSync(`/proc/${process.pid}/task/${process.pid}/children`, "utf8").trim();
  expect(kids).toBe("");
});
