import { afterEach, describe, expect, test } from "bun:test";
import { EventEmitter } from "node:events";
import { join } from "node:path";
import { BunRunner } from "./bun-runner.ts";
import type { ChildProcess } from "./runner.ts";
import { onTerminationSignals, type SignalSource, type TerminationSignal } from "./signals.ts";

describe("onTerminationSignals with an injected source", () => {
  test("each termination signal calls the handler with its name; uninstall removes them", () => {
    const src = new EventEmitter();
    const got: TerminationSignal[] = [];
    const off = onTerminationSignals((s) => got.push(s), { source: src as SignalSource });
    for (const s of ["SIGINT", "SIGTERM", "SIGQUIT", "SIGHUP"]) src.emit(s, s);
    expect(got).toEqual(["SIGINT", "SIGTERM", "SIGQUIT"]);
    off();
    off();
    src.emit("SIGTERM", "SIGTERM");
    expect(got).toHaveLength(3);
    for (const s of ["SIGINT", "SIGTERM", "SIGQUIT"]) expect(src.listenerCount(s)).toBe(0);
  });

  test("a subset of signals", () => {
    const src = new EventEmitter();
    const got: string[] = [];
    onTerminationSignals((s) => got.push(s), { source: src as SignalSource, signals: ["SIGTERM"] });
    src.emit("SIGINT", "SIGINT");
    src.emit("SIGTERM", "SIGTERM");
    expect(got).toEqual(["SIGTERM"]);
  });
});

describe("onTerminationSignals in a real process", () => {
  let child: ChildProcess | undefined;
  afterEach(async () => {
    child?.kill("SIGKILL");
    await child?.exited;
  });

  test("SIGTERM reaches the handler; after uninstall it kills again", async () => {
    child = new BunRunner().spawn({
      cmd: [process.execPath, join(import.meta.dir, "testdata", "signals-child.ts")],
      stdout: "lines",
    });
    const it = child.stdoutLines()[Symbol.asyncIterator]();
    const next = async () => (await it.next()).value;
    expect(await next()).toBe("ready");
    child.kill("SIGTERM");
    expect(await next()).toBe("got SIGTERM");
    expect(await next()).toBe("uninstalled");
    child.kill("SIGTERM");
    expect(await child.exited).toEqual({ code: null, signal: "SIGTERM" });
  });
});
