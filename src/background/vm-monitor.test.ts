import { describe, expect, test } from "bun:test";
import { memoryLogger } from "../log.ts";
import { type FakeChild, FakeRunner } from "../process/fake-runner.ts";
import type { ExitStatus } from "../process/runner.ts";
import { until } from "../testing/until.ts";
import {
  findVmMonitor,
  parseVmMonitorLine,
  startVmMonitor,
  type VmMonitorConfig,
  vmMonitorArgs,
} from "./vm-monitor.ts";

const CONNSTR =
  "host=localhost port=5432 dbname=postgres user=cloud_admin sslmode=disable application_name=vm-monitor";
const CONFIG: VmMonitorConfig = {
  cgroup: "neon-postgres",
  pgconnstr: CONNSTR,
  addr: "0.0.0.0:10301",
};
const BIN = "/usr/local/bin/vm-monitor";

/** A log line's level and text, without the timestamp. */
function logged(lines: string[], level: string, text: string): boolean {
  return lines.some((l) => l.replace(/^\S+\s+/, "") === `${level} ${text}`);
}

/** A tracing JSON line as the vm-monitor prints it. */
function tracing(level: string, fields: Record<string, unknown>): string {
  return JSON.stringify({
    timestamp: "2024-01-01T12:00:00.000000Z",
    level,
    fields,
    target: "vm_monitor::runner",
    filename: "libs/vm_monitor/src/runner.rs",
    line_number: 42,
    spans: [{ name: "run" }],
  });
}

describe("vmMonitorArgs", () => {
  test("with a file cache connection string", () => {
    expect(vmMonitorArgs(CONFIG)).toEqual([
      "--cgroup",
      "neon-postgres",
      "--pgconnstr",
      CONNSTR,
      "--addr",
      "0.0.0.0:10301",
    ]);
  });

  test("without one (disable_lfc_resizing): no --pgconnstr at all", () => {
    expect(vmMonitorArgs({ cgroup: "other", pgconnstr: null, addr: "127.0.0.1:1" })).toEqual([
      "--cgroup",
      "other",
      "--addr",
      "127.0.0.1:1",
    ]);
  });
});

describe("findVmMonitor", () => {
  const EXEC = "/usr/local/bin/compute_ctl";

  test("COMPUTE_CTL_VM_MONITOR wins, even over a binary beside compute_ctl", () => {
    expect(findVmMonitor({ COMPUTE_CTL_VM_MONITOR: "/opt/vm-monitor" }, EXEC, () => true)).toBe(
      "/opt/vm-monitor",
    );
  });

  test("the binary beside compute_ctl when it exists", () => {
    const checked: string[] = [];
    const path = findVmMonitor({}, EXEC, (p) => {
      checked.push(p);
      return true;
    });
    expect(path).toBe("/usr/local/bin/vm-monitor");
    expect(checked).toEqual(["/usr/local/bin/vm-monitor"]);
  });

  test("else a bare vm-monitor, looked up in PATH", () => {
    expect(findVmMonitor({}, EXEC, () => false)).toBe("vm-monitor");
  });

  test("an empty override counts as unset", () => {
    expect(findVmMonitor({ COMPUTE_CTL_VM_MONITOR: "" }, EXEC, () => false)).toBe("vm-monitor");
  });
});

describe("parseVmMonitorLine", () => {
  test.each<[string, string, ReturnType<typeof parseVmMonitorLine>]>([
    ["INFO", tracing("INFO", { message: "starting up" }), ["info", "starting up"]],
    ["WARN", tracing("WARN", { message: "low memory" }), ["warn", "low memory"]],
    ["ERROR", tracing("ERROR", { message: "failed" }), ["error", "failed"]],
    ["DEBUG", tracing("DEBUG", { message: "tick" }), ["debug", "tick"]],
    ["TRACE is shown at debug", tracing("TRACE", { message: "t" }), ["debug", "t"]],
    ["lowercase level", tracing("warn", { message: "w" }), ["warn", "w"]],
    [
      "extra fields follow the message as key=value",
      tracing("ERROR", { message: "upscale failed", error: "timed out", attempt: 3, ok: false }),
      ["error", "upscale failed error=timed out attempt=3 ok=false"],
    ],
    [
      "structured field values as JSON",
      tracing("INFO", { message: "mem", usage: { bytes: 10 }, list: [1, 2] }),
      ["info", 'mem usage={"bytes":10} list=[1,2]'],
    ],
    ["no level: info", JSON.stringify({ fields: { message: "m" } }), ["info", "m"]],
  ])("%s", (_, line, want) => {
    expect(parseVmMonitorLine(line)).toEqual(want);
  });

  // Anything that is not a tracing event with a string message is relayed as is, at info.
  test.each<[string, string]>([
    ["plain text", "thread 'main' panicked at libs/vm_monitor/src/lib.rs:1:1"],
    ["empty", ""],
    ["broken JSON", '{"level":"ERROR","fields":{"message":"x"'],
    ["JSON without fields", JSON.stringify({ level: "ERROR", message: "top-level" })],
    ["fields without message", tracing("ERROR", { error: "boom" })],
    ["non-string message", tracing("ERROR", { message: 42 })],
    ["JSON null", "null"],
    ["JSON number", "42"],
    ["JSON array", "[1,2]"],
  ])("%s: relayed as is at info", (_, line) => {
    expect(parseVmMonitorLine(line)).toEqual(["info", line]);
  });
});

describe("startVmMonitor", () => {
  function start(runner: FakeRunner, config: VmMonitorConfig = CONFIG) {
    const { log, lines } = memoryLogger();
    const exits: ExitStatus[] = [];
    const handle = startVmMonitor({
      runner,
      log,
      path: BIN,
      config,
      onExit: (s) => exits.push(s),
    });
    return { handle, lines, exits };
  }

  test("spawns the binary with its flags and logs the start", () => {
    const runner = new FakeRunner({ firstPid: 4242 }).on(BIN, { exit: "never" });
    const { handle, lines } = start(runner);
    expect(handle).not.toBeNull();
    expect(runner.spawned.map((c) => c.command)).toEqual([
      [BIN, "--cgroup", "neon-postgres", "--pgconnstr", CONNSTR, "--addr", "0.0.0.0:10301"],
    ]);
    expect(lines.some((l) => l.includes("started vm-monitor (pid 4242)"))).toBe(true);
  });

  test("without pgconnstr the flag is left out", () => {
    const runner = new FakeRunner().on(BIN, { exit: "never" });
    start(runner, { ...CONFIG, pgconnstr: null });
    expect(runner.spawned[0]?.command).toEqual([
      BIN,
      "--cgroup",
      "neon-postgres",
      "--addr",
      "0.0.0.0:10301",
    ]);
  });

  test("stdout and stderr lines are relayed with the vm-monitor prefix at their level", async () => {
    let child: FakeChild | undefined;
    const runner = new FakeRunner().on(BIN, (c) => {
      child = c;
    });
    const { lines } = start(runner);
    child?.writeStdout(
      tracing("INFO", { message: "listening", addr: "0.0.0.0:10301" }),
      tracing("WARN", { message: "memory high" }),
      tracing("DEBUG", { message: "tick" }),
    );
    child?.writeStderr(tracing("ERROR", { message: "cgroup gone" }), "plain stderr text");
    const want: [string, string][] = [
      ["INFO", "vm-monitor: listening addr=0.0.0.0:10301"],
      ["WARN", "vm-monitor: memory high"],
      ["DEBUG", "vm-monitor: tick"],
      ["ERROR", "vm-monitor: cgroup gone"],
      ["INFO", "vm-monitor: plain stderr text"],
    ];
    await until("relayed lines", () => want.every(([lvl, t]) => logged(lines, lvl, t)), 1000);
    // Still running: nothing about an exit.
    expect(lines.some((l) => l.includes("exited") || l.includes("stopped"))).toBe(false);
  });

  test("an unexpected exit is an error, reported through onExit, and never restarted", async () => {
    const runner = new FakeRunner().on(BIN, { stderr: ["bind: address in use"], exit: 1 });
    const { handle, lines, exits } = start(runner);
    expect(await handle?.exited).toEqual({ code: 1, signal: null });
    expect(exits).toEqual([{ code: 1, signal: null }]);
    expect(logged(lines, "ERROR", "vm-monitor exited with exit code 1; it is not restarted")).toBe(
      true,
    );
    await until("relayed stderr", () => logged(lines, "INFO", "vm-monitor: bind: address in use"));
    expect(runner.spawned).toHaveLength(1);
  });

  test("death by a signal names the signal", async () => {
    const runner = new FakeRunner().on(BIN, { exit: { code: null, signal: "SIGKILL" } });
    const { handle, lines, exits } = start(runner);
    await handle?.exited;
    expect(exits).toEqual([{ code: null, signal: "SIGKILL" }]);
    expect(
      logged(lines, "ERROR", "vm-monitor exited with signal SIGKILL; it is not restarted"),
    ).toBe(true);
    expect(runner.spawned).toHaveLength(1);
  });

  test("stop() sends SIGTERM and logs 'stopped', not an error", async () => {
    const runner = new FakeRunner().on(BIN, { exit: "never" });
    const { handle, lines, exits } = start(runner);
    await handle?.stop();
    const child = runner.spawned[0];
    expect(child?.signals).toEqual(["SIGTERM"]);
    expect(exits).toEqual([{ code: null, signal: "SIGTERM" }]);
    expect(logged(lines, "INFO", "vm-monitor stopped (signal SIGTERM)")).toBe(true);
    expect(lines.some((l) => l.includes("not restarted"))).toBe(false);
  });

  test("stop() of a vm-monitor that exits cleanly on SIGTERM", async () => {
    const runner = new FakeRunner().on(BIN, {
      exit: "never",
      onSignal: (c, sig) => {
        if (sig === "SIGTERM") c.exit(0);
      },
    });
    const { handle, lines } = start(runner);
    await handle?.stop();
    expect(await handle?.exited).toEqual({ code: 0, signal: null });
    expect(logged(lines, "INFO", "vm-monitor stopped (exit code 0)")).toBe(true);
  });

  test("stop() after it already exited sends nothing and does not hang", async () => {
    const runner = new FakeRunner().on(BIN, { exit: 2 });
    const { handle, lines, exits } = start(runner);
    await handle?.exited;
    await handle?.stop();
    expect(runner.spawned[0]?.signals).toEqual([]);
    expect(exits).toHaveLength(1);
    expect(lines.some((l) => l.includes("vm-monitor stopped"))).toBe(false);
  });

  test("a spawn failure is logged as an error and gives null", () => {
    const runner = new FakeRunner(); // no rule: ENOENT
    const { handle, lines, exits } = start(runner);
    expect(handle).toBeNull();
    expect(exits).toEqual([]);
    const line = lines.find((l) => l.includes("could not start vm-monitor"));
    expect(line).toContain("ERROR");
    expect(line).toContain(BIN);
    expect(line).toContain("ENOENT");
  });
});
