// vm-monitor supervision (lifecycle §10.1). Upstream runs the vm-monitor as a
// task inside compute_ctl; we run its standalone binary (same code, same
// flags) as a child: started with AUTOSCALING after a successful start, its
// JSON log relayed, never restarted, SIGTERM'd once postgres has exited.

import { existsSync } from "node:fs";
import { dirname, join } from "node:path";
import { errorMessage } from "../errors.ts";
import type { Logger } from "../log.ts";
import {
  type ChildProcess,
  type ExitStatus,
  type ProcessRunner,
  terminate,
} from "../process/runner.ts";

export interface VmMonitorConfig {
  cgroup: string;
  /** null when the spec sets disable_lfc_resizing. */
  pgconnstr: string | null;
  addr: string;
}

/** The standalone binary's flags (libs/vm_monitor/src/bin/monitor.rs). */
export function vmMonitorArgs(c: VmMonitorConfig): string[] {
  return [
    "--cgroup",
    c.cgroup,
    ...(c.pgconnstr !== null ? ["--pgconnstr", c.pgconnstr] : []),
    "--addr",
    c.addr,
  ];
}

/**
 * Where the binary is: `COMPUTE_CTL_VM_MONITOR` if set, else `vm-monitor`
 * next to compute_ctl, else `vm-monitor` on PATH.
 */
export function findVmMonitor(
  env: Record<string, string | undefined>,
  execPath: string,
  exists: (p: string) => boolean = existsSync,
): string {
  const override = env.COMPUTE_CTL_VM_MONITOR;
  if (override) return override;
  const beside = join(dirname(execPath), "vm-monitor");
  return exists(beside) ? beside : "vm-monitor";
}

type Level = "error" | "warn" | "info" | "debug";

/**
 * One line of its tracing JSON log as `[level, text]`; other lines are
 * relayed as they are, at info.
 */
export function parseVmMonitorLine(line: string): [Level, string] {
  try {
    const o = JSON.parse(line) as { level?: unknown; fields?: { message?: unknown } };
    const message = o.fields?.message;
    if (typeof message === "string") {
      const level = String(o.level ?? "INFO").toUpperCase();
      const mapped: Level =
        level === "ERROR"
          ? "error"
          : level === "WARN"
            ? "warn"
            : level === "INFO"
              ? "info"
              : "debug";
      const extra = Object.entries(o.fields ?? {})
        .filter(([k]) => k !== "message")
        .map(([k, v]) => `${k}=${typeof v === "string" ? v : JSON.stringify(v)}`);
      return [mapped, [message, ...extra].join(" ")];
    }
  } catch {
    // Not JSON: relayed as is.
  }
  return ["info", line];
}

export interface VmMonitorHandle {
  child: ChildProcess;
  /** Resolves when it exited (by itself or after stop()). */
  exited: Promise<ExitStatus>;
  /** SIGTERM, then SIGKILL after a grace period. */
  stop(): Promise<void>;
}

export function startVmMonitor(o: {
  runner: ProcessRunner;
  log: Logger;
  path: string;
  config: VmMonitorConfig;
  onExit?: (status: ExitStatus) => void;
}): VmMonitorHandle | null {
  const cmd = [o.path, ...vmMonitorArgs(o.config)];
  let child: ChildProcess;
  try {
    child = o.runner.spawn({ cmd, stdout: "lines", stderr: "lines" });
  } catch (e) {
    // As upstream: a vm-monitor that cannot run is logged, not fatal.
    o.log.error(`could not start vm-monitor: ${errorMessage(e)}`);
    return null;
  }
  o.log.info(`started vm-monitor (pid ${child.pid}): ${cmd.join(" ")}`);
  const relay = async (lines: AsyncIterable<string>) => {
    for await (const line of lines) {
      const [level, text] = parseVmMonitorLine(line);
      o.log[level](`vm-monitor: ${text}`);
    }
  };
  void relay(child.stdoutLines()).catch(() => {});
  void relay(child.stderrLines()).catch(() => {});
  let stopping = false;
  const exited = child.exited.then((status) => {
    const how = status.code !== null ? `exit code ${status.code}` : `signal ${status.signal}`;
    if (stopping) o.log.info(`vm-monitor stopped (${how})`);
    else o.log.error(`vm-monitor exited with ${how}; it is not restarted`);
    o.onExit?.(status);
    return status;
  });
  return {
    child,
    exited,
    async stop() {
      stopping = true;
      await terminate(child, { signal: "SIGTERM", graceMs: 5_000 });
      await exited;
    },
  };
}
