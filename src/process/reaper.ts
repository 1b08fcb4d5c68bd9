// PID 1 duties Bun does not do (docs/bun-notes.md §2 "Bun as PID 1"):
// orphaned descendants (postgres' double-forked helpers, `sh -c "x &"`) are
// re-parented to us and stay zombies unless we wait for them. We must never
// call waitpid(-1): it would steal the exit status of a Bun.spawn child and
// its `exited` would never report it. So we wait for zombies one pid at a
// time, and skip every pid the runner told us it spawned.

import { ptr } from "bun:ffi";
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { type FfiResult, failure, lastErrno, libc, tryLibc } from "./libc.ts";
import { type ExitStatus, type SpawnedPids, signalName } from "./runner.ts";

export type { FfiResult } from "./libc.ts";

const WNOHANG = 1;
/** Linux x86_64 and aarch64 both use 4. */
const RLIMIT_CORE = 4;
const RLIM_INFINITY = 0xffff_ffff_ffff_ffffn;

/**
 * setrlimit(RLIMIT_CORE, unlimited/unlimited), so postgres (which inherits it)
 * leaves core files in PGDATA. Returns an error value instead of throwing:
 * upstream exits 1 when this fails; the caller should log the message and
 * exit 1 to match (it fails for an unprivileged process with a finite hard limit).
 */
export function setCoreRlimitUnlimited(): FfiResult {
  const l = tryLibc();
  if (!l.ok) return l;
  const lim = new BigUint64Array([RLIM_INFINITY, RLIM_INFINITY]);
  if (l.libc.setrlimit(RLIMIT_CORE, ptr(lim)) === 0) return { ok: true };
  return failure(lastErrno(l.libc), "setrlimit(RLIMIT_CORE, unlimited)");
}

export interface ProcStat {
  pid: number;
  comm: string;
  state: string;
  ppid: number;
}

/** One /proc/<pid>/stat line. comm may hold spaces and ")" so parse from its last ")". */
export function parseProcStat(text: string): ProcStat | null {
  const open = text.indexOf(" (");
  const close = text.lastIndexOf(")");
  if (open < 0 || close < open) return null;
  const rest = text.slice(close + 2).split(" ");
  const pid = Number(text.slice(0, open));
  const ppid = Number(rest[1]);
  const state = rest[0];
  if (!Number.isInteger(pid) || !Number.isInteger(ppid) || state === undefined) return null;
  return { pid, comm: text.slice(open + 2, close), state, ppid };
}

/** Decodes a wait(2) status word. */
export function decodeWaitStatus(status: number): ExitStatus {
  const sig = status & 0x7f;
  if (sig === 0) return { code: (status >> 8) & 0xff, signal: null };
  return { code: null, signal: signalName(sig) };
}

/** waitpid(pid, WNOHANG) for exactly this pid; null when it was not reaped. */
function waitpidNoHang(pid: number): ExitStatus | null {
  const status = new Int32Array(1);
  const r = libc().waitpid(pid, ptr(status), WNOHANG);
  return r === pid ? decodeWaitStatus(status[0] ?? 0) : null;
}

export interface ReaperOptions {
  /** Poll period while active; default 200 ms. */
  intervalMs?: number;
  /** Be active even when we are not PID 1 (tests). */
  force?: boolean;
  /**
   * A zombie must have been seen by this many earlier scans before we reap it
   * (default 1). Gives Bun an event-loop turn to reap a child of its own that
   * did not go through our runner (e.g. Bun.$), so we do not steal that either.
   */
  graceScans?: number;
  /** For tests: a fake /proc and the pid whose children to scan. */
  procRoot?: string;
  pid?: number;
  onReap?: (pid: number, comm: string, status: ExitStatus) => void;
  /** A scan failed; the reaper keeps going. */
  onError?: (err: unknown) => void;
  /** For tests: replaces waitpid(pid, WNOHANG); null means "not reaped". */
  waitpid?: (pid: number) => ExitStatus | null;
}

/**
 * Reaps orphaned zombies while we are PID 1. Implements SpawnedPids: give it
 * to the runner (`new BunRunner({spawnedPids: reaper})`) so our own children
 * are left to Bun.spawn.
 */
export class Reaper implements SpawnedPids {
  readonly active: boolean;
  private readonly tracked = new Set<number>();
  private seen = new Map<number, number>();
  private timer: ReturnType<typeof setInterval> | undefined;
  private readonly intervalMs: number;
  private readonly graceScans: number;
  private readonly procRoot: string;
  private readonly pid: number;
  private readonly onReap: ReaperOptions["onReap"];
  private readonly onError: ReaperOptions["onError"];
  private readonly waitOne: (pid: number) => ExitStatus | null;

  constructor(options: ReaperOptions = {}) {
    this.pid = options.pid ?? process.pid;
    this.active = options.force === true || process.pid === 1;
    this.intervalMs = options.intervalMs ?? 200;
    this.graceScans = options.graceScans ?? 1;
    this.procRoot = options.procRoot ?? "/proc";
    this.onReap = options.onReap;
    this.onError = options.onError;
    this.waitOne = options.waitpid ?? waitpidNoHang;
  }

  add(pid: number): void {
    this.tracked.add(pid);
  }

  delete(pid: number): void {
    this.tracked.delete(pid);
  }

  /** Pids currently left to Bun. */
  get trackedPids(): ReadonlySet<number> {
    return this.tracked;
  }

  /**
   * Starts polling when active (no-op otherwise). Fails, without throwing,
   * when libc cannot be loaded: we then run without a reaper.
   */
  start(): FfiResult {
    if (!this.active || this.timer) return { ok: true };
    const l = tryLibc();
    if (!l.ok) return l;
    this.timer = setInterval(() => this.reapNow(), this.intervalMs);
    // The reaper alone must not keep the process alive.
    this.timer.unref();
    return { ok: true };
  }

  stop(): void {
    clearInterval(this.timer);
    this.timer = undefined;
  }

  /** One scan; returns the pids reaped. Safe to call any time (e.g. after a child exits). */
  reapNow(): number[] {
    if (!this.active) return [];
    const reaped: number[] = [];
    try {
      const next = new Map<number, number>();
      for (const z of this.zombieOrphans()) {
        const scans = (this.seen.get(z.pid) ?? 0) + 1;
        if (scans <= this.graceScans) {
          next.set(z.pid, scans);
          continue;
        }
        const status = this.waitOne(z.pid);
        if (status) {
          reaped.push(z.pid);
          this.onReap?.(z.pid, z.comm, status);
        }
      }
      this.seen = next;
    } catch (err) {
      this.onError?.(err);
    }
    return reaped;
  }

  /** Our zombie children that the runner did not spawn. */
  zombieOrphans(): ProcStat[] {
    const out: ProcStat[] = [];
    for (const pid of this.childPids()) {
      if (this.tracked.has(pid)) continue;
      let st: ProcStat | null;
      try {
        st = parseProcStat(readFileSync(`${this.procRoot}/${pid}/stat`, "utf8"));
      } catch {
        continue; // gone meanwhile
      }
      if (st && st.state === "Z" && st.ppid === this.pid && !this.tracked.has(st.pid)) out.push(st);
    }
    return out;
  }

  /**
   * Children of every thread of ours, from /proc/<pid>/task/<tid>/children
   * (cheap, where the kernel has CONFIG_PROC_CHILDREN); else a scan of all of
   * /proc for entries whose ppid is us.
   */
  private childPids(): number[] {
    const taskDir = `${this.procRoot}/${this.pid}/task`;
    const pids: number[] = [];
    let viaChildren = true;
    for (const tid of readdirSync(taskDir)) {
      let text: string;
      try {
        text = readFileSync(`${taskDir}/${tid}/children`, "utf8");
      } catch (err) {
        // The thread still exists but has no children file: the kernel lacks it.
        if (isErrno(err, "ENOENT") && existsSync(`${taskDir}/${tid}`)) {
          viaChildren = false;
          break;
        }
        continue; // the thread ended meanwhile
      }
      for (const p of text.trim().split(/\s+/)) if (p !== "") pids.push(Number(p));
    }
    if (viaChildren) return pids;
    return readdirSync(this.procRoot)
      .filter((n) => /^\d+$/.test(n))
      .map(Number);
  }
}

function isErrno(err: unknown, code: string): boolean {
  return typeof err === "object" && err !== null && "code" in err && err.code === code;
}
