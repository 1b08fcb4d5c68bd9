import { afterEach, describe, expect, test } from "bun:test";
import { BunRunner, splitLines } from "./bun-runner.ts";
import {
  ChildError,
  type ChildProcess,
  runToCompletion,
  SpawnError,
  type SpawnSpec,
  shellExitCode,
  terminate,
} from "./runner.ts";
import { isDead, until, within } from "./testing.ts";
import { resolveRunAs } from "./user.ts";

const runner = new BunRunner();
const started: ChildProcess[] = [];
const strays: number[] = [];

function spawn(spec: SpawnSpec): ChildProcess {
  const c = runner.spawn(spec);
  started.push(c);
  return c;
}

afterEach(async () => {
  for (const pid of strays.splice(0)) {
    try {
      process.kill(pid, "SIGKILL");
    } catch {
      // already gone
    }
  }
  for (const c of started.splice(0)) {
    c.kill("SIGKILL");
    await c.exited;
  }
});

async function first<T>(it: AsyncIterator<T>): Promise<T> {
  const r = await it.next();
  if (r.done) throw new Error("iterator ended early");
  return r.value;
}

describe("BunRunner exit status", () => {
  test("exit codes are reported as code, no signal", async () => {
    const c = spawn({ cmd: ["sh", "-c", "exit 3"] });
    expect(await c.exited).toEqual({ code: 3, signal: null });
    expect(shellExitCode(await c.exited)).toBe(3);
  });

  test("death by signal is the signal name and 128+n for the shell", async () => {
    const c = spawn({ cmd: ["sh", "-c", "echo ready; exec sleep 30"], stdout: "lines" });
    expect(await first(c.stdoutLines()[Symbol.asyncIterator]())).toBe("ready");
    expect(c.kill("SIGTERM")).toBe(true);
    const st = await c.exited;
    expect(st).toEqual({ code: null, signal: "SIGTERM" });
    expect(shellExitCode(st)).toBe(143);
    // After exit, kill refuses rather than signalling a possibly reused pid.
    expect(c.kill("SIGKILL")).toBe(false);
  });

  test("self-kill with SIGKILL gives 137", async () => {
    const c = spawn({ cmd: ["sh", "-c", "kill -KILL $$"] });
    expect(shellExitCode(await c.exited)).toBe(137);
  });
});

describe("BunRunner lines", () => {
  test("the first stdout line arrives while the child still runs", async () => {
    // The child prints, then blocks on stdin: a runner that only delivered at
    // EOF would never yield the first line, and the test would time out.
    const c = spawn({
      cmd: ["sh", "-c", "echo first; read x; echo second $x; printf partial"],
      stdin: "pipe",
      stdout: "lines",
    });
    let exited = false;
    void c.exited.then(() => {
      exited = true;
    });
    const it = c.stdoutLines()[Symbol.asyncIterator]();
    expect(await first(it)).toBe("first");
    expect(exited).toBe(false);
    await c.stdin?.write("go\n");
    expect(await first(it)).toBe("second go");
    expect(await first(it)).toBe("partial");
    expect((await it.next()).done).toBe(true);
    expect(await c.exited).toEqual({ code: 0, signal: null });
  });

  test("stderr lines arrive between pauses and fill the tail", async () => {
    const c = spawn({
      cmd: ["sh", "-c", "echo one >&2; sleep 0.2; echo two >&2; sleep 0.2; echo three >&2; exit 4"],
      stderr: "lines",
    });
    let exited = false;
    void c.exited.then(() => {
      exited = true;
    });
    const seen: string[] = [];
    for await (const l of c.stderrLines()) {
      if (seen.length === 0) expect(exited).toBe(false);
      seen.push(l);
    }
    expect(seen).toEqual(["one", "two", "three"]);
    expect(c.stderrTail()).toEqual(["one", "two", "three"]);
    expect(await c.exited).toEqual({ code: 4, signal: null });
  });

  test("a grandchild holding stderr open does not delay exited", async () => {
    const c = spawn({
      cmd: ["sh", "-c", "sleep 30 & echo $!; exit 3"],
      stdout: "lines",
      stderr: "lines",
    });
    let stderrEof = false;
    const drained = (async () => {
      for await (const _ of c.stderrLines()) {
        // nothing is printed
      }
      stderrEof = true;
    })();
    const grandchild = Number(await first(c.stdoutLines()[Symbol.asyncIterator]()));
    strays.push(grandchild);
    expect(await within(c.exited, 5000, "exited blocked")).toEqual({ code: 3, signal: null });
    // The grandchild (sleep 30) still holds the pipe: no EOF yet.
    expect(stderrEof).toBe(false);
    process.kill(grandchild, "SIGKILL");
    await within(drained, 5000, undefined);
    expect(stderrEof).toBe(true);
  });

  test("lines() of a stream not spawned with lines is a programming error", () => {
    const c = spawn({ cmd: ["true"], stdout: "ignore" });
    expect(() => c.stdoutLines()).toThrow(/not spawned with "lines"/);
  });

  test("lines can be taken once", () => {
    const c = spawn({ cmd: ["true"], stdout: "lines" });
    c.stdoutLines();
    expect(() => c.stdoutLines()).toThrow(/already taken/);
  });
});

describe("splitLines", () => {
  async function* chunks(...parts: (string | number[])[]) {
    for (const p of parts)
      yield typeof p === "string" ? new TextEncoder().encode(p) : new Uint8Array(p);
  }
  async function all(it: AsyncIterable<string>) {
    const out: string[] = [];
    for await (const l of it) out.push(l);
    return out;
  }

  test.each([
    [["a\nb\n"], ["a", "b"]],
    [
      ["a", "b\nc"],
      ["ab", "c"],
    ],
    [["a\r\n\nb"], ["a", "", "b"]],
    [[""], []],
    [["\n"], [""]],
  ])("%j -> %j", async (parts, want) => {
    expect(await all(splitLines(chunks(...parts)))).toEqual(want);
  });

  test("UTF-8 split across chunks", async () => {
    // "é" is C3 A9.
    expect(await all(splitLines(chunks([0x61, 0xc3], [0xa9, 0x0a])))).toEqual(["aé"]);
  });
});

describe("BunRunner spawn failures", () => {
  test("a missing program is a SpawnError carrying the command", () => {
    let err: unknown;
    try {
      runner.spawn({ cmd: ["/nonexistent/bin/postgres", "-D", "/x"] });
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(SpawnError);
    const se = err as SpawnError;
    expect(se.command).toEqual(["/nonexistent/bin/postgres", "-D", "/x"]);
    expect(se.code).toBe("ENOENT");
    expect(se.message).toContain("/nonexistent/bin/postgres");
  });

  test("a missing cwd is named as such", () => {
    expect(() => runner.spawn({ cmd: ["true"], cwd: "/nonexistent/dir" })).toThrow(
      /working directory \/nonexistent\/dir does not exist/,
    );
  });

  test("an empty command is a SpawnError", () => {
    expect(() => runner.spawn({ cmd: [] })).toThrow(SpawnError);
  });
});

describe("BunRunner environment and identity", () => {
  test("env is added to the inherited environment", async () => {
    const r = await runToCompletion(runner, {
      cmd: ["sh", "-c", 'echo "$FOO/$PATH"'],
      env: { FOO: "bar" },
    });
    expect(r.stdout).toEqual([`bar/${process.env.PATH}`]);
  });

  const pg = process.getuid?.() === 0 ? resolveRunAs("postgres") : null;
  test.skipIf(pg === null)("runs as postgres with HOME, USER and LOGNAME set", async () => {
    if (!pg) return;
    const r = await runToCompletion(runner, {
      cmd: ["sh", "-c", 'id -u; id -g; id -G; echo "$HOME $USER $LOGNAME"'],
      user: pg,
      cwd: "/",
    });
    expect(r.stdout).toEqual([
      String(pg.uid),
      String(pg.gid),
      // Bun clears supplementary groups.
      String(pg.gid),
      `${pg.home} postgres postgres`,
    ]);
  });
});

describe("runToCompletion and terminate on real processes", () => {
  test("a failing command becomes a ChildError with the stderr tail", async () => {
    let err: unknown;
    try {
      await runToCompletion(runner, { cmd: ["sh", "-c", "echo oops >&2; exit 2"] });
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(ChildError);
    const ce = err as ChildError;
    expect(ce.childCode).toBe(2);
    expect(ce.stderrTail).toEqual(["oops"]);
    expect(ce.message).toBe(
      "sh -c 'echo oops >&2; exit 2' exited with non-zero status: exit status: 2",
    );
  });

  test("terminate escalates to SIGKILL when SIGTERM is ignored", async () => {
    // An ignored signal stays ignored across exec, so `sleep` ignores TERM.
    const c = spawn({
      cmd: ["sh", "-c", 'trap "" TERM; echo ready; exec sleep 30'],
      stdout: "lines",
    });
    expect(await first(c.stdoutLines()[Symbol.asyncIterator]())).toBe("ready");
    expect(await terminate(c, { graceMs: 200 })).toEqual({ code: null, signal: "SIGKILL" });
  });

  test("terminate returns early when the child obeys", async () => {
    const c = spawn({ cmd: ["sh", "-c", "echo ready; exec sleep 30"], stdout: "lines" });
    expect(await first(c.stdoutLines()[Symbol.asyncIterator]())).toBe("ready");
    expect(await terminate(c, { signal: "SIGINT", graceMs: 60_000 })).toEqual({
      code: null,
      signal: "SIGINT",
    });
  });

  test("detached children get their own group, signalled as a whole", async () => {
    const c = spawn({
      cmd: ["sh", "-c", "sleep 30 & echo $!; wait"],
      stdout: "lines",
      detached: true,
    });
    const grandchild = Number(await first(c.stdoutLines()[Symbol.asyncIterator]()));
    strays.push(grandchild);
    expect(c.kill("SIGTERM", { group: true })).toBe(true);
    expect((await c.exited).signal).toBe("SIGTERM");
    await until("grandchild to die with its group", () => isDead(grandchild));
  });

  test("the spawned-pid registry sees a child from spawn until Bun reaped it", async () => {
    const live = new Set<number>();
    const r = new BunRunner({ spawnedPids: live });
    const c = r.spawn({ cmd: ["sh", "-c", "exit 0"] });
    expect(live.has(c.pid)).toBe(true);
    await c.exited;
    expect(live.has(c.pid)).toBe(false);
  });
});
