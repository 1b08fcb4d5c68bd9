import { describe, expect, test } from "bun:test";
import { FakeRunner, LineFeed, ManualScheduler } from "./fake-runner.ts";
import { ChildError, runToCompletion, SpawnError, terminate } from "./runner.ts";

async function all(it: AsyncIterable<string>): Promise<string[]> {
  const out: string[] = [];
  for await (const l of it) out.push(l);
  return out;
}

describe("FakeRunner scripts", () => {
  test("scripted lines and exit code", async () => {
    const r = new FakeRunner().on("postgres --sync-safekeepers", {
      stdout: ["0/16B5BA8"],
      stderr: ["syncing"],
      exit: 0,
    });
    const res = await runToCompletion(r, { cmd: ["postgres", "--sync-safekeepers"] });
    expect(res).toEqual({
      status: { code: 0, signal: null },
      stdout: ["0/16B5BA8"],
      stderr: ["syncing"],
    });
    expect(r.spawned).toHaveLength(1);
  });

  test("a failing script gives ChildError with the stderr tail", async () => {
    const r = new FakeRunner().on(/^pg_ctl /, { stderr: ["a", "b"], exit: 3 });
    const err = await runToCompletion(r, { cmd: ["pg_ctl", "stop"] }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ChildError);
    expect((err as ChildError).stderrTail).toEqual(["a", "b"]);
    expect((err as ChildError).status).toEqual({ code: 3, signal: null });
  });

  test("an unknown command fails to spawn with ENOENT", () => {
    const r = new FakeRunner().on("postgres", { exit: 0 });
    // A prefix matches only up to a space: "postgresx" is another program.
    expect(() => r.spawn({ cmd: ["postgresx"] })).toThrow(SpawnError);
    try {
      r.spawn({ cmd: ["initdb"] });
    } catch (e) {
      expect((e as SpawnError).code).toBe("ENOENT");
    }
  });

  test("a never-exiting script dies from the signal by default", async () => {
    const r = new FakeRunner().on("postgres", { exit: "never" });
    const c = r.spawn({ cmd: ["postgres", "-D", "/pgdata"] });
    expect(c.kill("SIGINT")).toBe(true);
    expect(await c.exited).toEqual({ code: null, signal: "SIGINT" });
    expect(c.kill("SIGINT")).toBe(false);
    expect(c.signals).toEqual(["SIGINT"]);
  });

  test("onSignal lets a fake postmaster shut down cleanly on SIGINT", async () => {
    const r = new FakeRunner().on("postgres", {
      exit: "never",
      onSignal: (child, sig) => {
        if (sig === "SIGINT") child.exit(0);
      },
    });
    const c = r.spawn({ cmd: ["postgres"] });
    c.kill("SIGHUP");
    expect(c.status).toBeNull();
    expect(await terminate(c, { signal: "SIGINT", graceMs: 10 })).toEqual({
      code: 0,
      signal: null,
    });
    expect(c.signals).toEqual(["SIGHUP", "SIGINT"]);
  });

  test("SIGKILL always kills, even with onSignal", async () => {
    const r = new FakeRunner().on("x", { exit: "never", onSignal: () => {} });
    const c = r.spawn({ cmd: ["x"] });
    c.kill("SIGTERM");
    c.kill(9);
    expect(await c.exited).toEqual({ code: null, signal: "SIGKILL" });
  });
});

describe("FakeRunner behaviours", () => {
  test("a test drives the child; exit with streams held open", async () => {
    const r = new FakeRunner({ firstPid: 500 }).on("postgres", (c) => c.writeStderr("starting"));
    const c = r.spawn({ cmd: ["postgres"], stderr: "lines" });
    expect(c.pid).toBe(500);
    const it = c.stderrLines()[Symbol.asyncIterator]();
    expect(await it.next()).toEqual({ value: "starting", done: false });
    c.exit(0, { keepStreamsOpen: true });
    expect(await c.exited).toEqual({ code: 0, signal: null });
    c.writeStderr("backend still writing");
    expect(await it.next()).toEqual({ value: "backend still writing", done: false });
    c.closeStreams();
    expect((await it.next()).done).toBe(true);
    expect(c.stderrTail()).toEqual(["starting", "backend still writing"]);
    expect(r.last("postgres")).toBe(c);
  });

  test("stdin is recorded", async () => {
    const r = new FakeRunner().on("psql", () => {});
    const c = r.spawn({ cmd: ["psql"], stdin: "pipe" });
    await c.stdin?.write("SELECT 1;");
    await c.stdin?.write(new TextEncoder().encode("\n"));
    await c.stdin?.end();
    expect(c.stdinData).toEqual(["SELECT 1;", "\n"]);
    expect(c.stdinEnded).toBe(true);
  });

  test("spawned pids are announced until exit", async () => {
    const live = new Set<number>();
    const r = new FakeRunner({ spawnedPids: live }).on("x", { exit: 0 });
    const c = r.spawn({ cmd: ["x"] });
    expect(live.has(c.pid)).toBe(true);
    await c.exited;
    expect(live.size).toBe(0);
  });

  test("streams not spawned with lines cannot be read", () => {
    const r = new FakeRunner().on("x", { exit: "never" });
    const c = r.spawn({ cmd: ["x"], stdout: "inherit" });
    expect(() => c.stdoutLines()).toThrow(/not spawned with "lines"/);
  });
});

describe("LineFeed", () => {
  test("queued and awaited lines in order, then EOF", async () => {
    const f = new LineFeed();
    f.push("a");
    const got = all(f);
    f.push("b", "c");
    f.end();
    f.push("ignored");
    expect(await got).toEqual(["a", "b", "c"]);
  });

  test("single consumer", () => {
    const f = new LineFeed();
    f[Symbol.asyncIterator]();
    expect(() => f[Symbol.asyncIterator]()).toThrow(/single consumer/);
  });
});

describe("ManualScheduler", () => {
  test("runs due timers in time order and honours clearTimeout", () => {
    const s = new ManualScheduler();
    const ran: string[] = [];
    s.setTimeout(() => ran.push("b"), 20);
    s.setTimeout(() => ran.push("a"), 10);
    const h = s.setTimeout(() => ran.push("never"), 15);
    s.clearTimeout(h);
    s.advance(15);
    expect(ran).toEqual(["a"]);
    // A timer set by a timer runs when it falls due within the same advance:
    // c at 16 comes before b at 20.
    s.setTimeout(() => s.setTimeout(() => ran.push("c"), 1), 0);
    s.advance(10);
    expect(ran).toEqual(["a", "c", "b"]);
    expect(s.pending).toBe(0);
  });
});
