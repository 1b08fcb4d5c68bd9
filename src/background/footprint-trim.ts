// The idle trim: once the compute has settled (running, or empty and waiting
// for a spec) and a whole check interval passed quietly, give back the memory
// start-up or a burst of requests left behind (src/process/footprint.ts). Not
// upstream's (its Rust binary has no such start-up residue); an operator turns
// it off with COMPUTE_CTL_TRIM_INTERVAL_MS=0.

import { errorMessage } from "../errors.ts";
import type { Logger } from "../log.ts";
import { residentMemory, type TrimOutcome, trimFootprint } from "../process/footprint.ts";
import type { ComputeStatus } from "../state/status.ts";
import type { ComputeStateStore } from "../state/store.ts";

export const TRIM_INTERVAL_ENV = "COMPUTE_CTL_TRIM_INTERVAL_MS";

export interface TrimPolicy {
  /** How often to look; a trim needs one whole quiet interval. */
  intervalMs: number;
  /** Busier than this share of one CPU during the interval: not idle. */
  quietCpuShare: number;
  /** After a trim, another one only once RSS grew by this much ... */
  growthBytes: number;
  /** ... and not sooner than this (unless the status changed meanwhile). */
  minSpacingMs: number;
}

const MiB = 1024 * 1024;

export const DEFAULT_TRIM_POLICY: TrimPolicy = {
  intervalMs: 10_000,
  // An idle compute (activity monitor every 500 ms) stays far below this.
  quietCpuShare: 0.05,
  growthBytes: 2 * MiB,
  minSpacingMs: 60_000,
};

/** setInterval's limit: a longer delay fires at once, over and over. */
const MAX_INTERVAL_MS = 2_147_483_647;

/** Pure: the policy from the environment; null = off; a bad value warns and keeps the default. */
export function trimPolicyFromEnv(env: Record<string, string | undefined>): {
  policy: TrimPolicy | null;
  warning?: string;
} {
  const raw = env[TRIM_INTERVAL_ENV];
  if (raw === undefined || raw === "") return { policy: DEFAULT_TRIM_POLICY };
  const ms = Number(raw);
  if (!/^\d+$/.test(raw.trim()) || !(ms <= MAX_INTERVAL_MS)) {
    return {
      policy: DEFAULT_TRIM_POLICY,
      warning: `${TRIM_INTERVAL_ENV}=${JSON.stringify(raw)} is not a whole number of milliseconds up to ${MAX_INTERVAL_MS}; using ${DEFAULT_TRIM_POLICY.intervalMs}`,
    };
  }
  if (ms === 0) return { policy: null };
  const d = DEFAULT_TRIM_POLICY;
  // The spacing between trims keeps its ratio to the interval.
  return {
    policy: {
      ...d,
      intervalMs: ms,
      minSpacingMs: Math.max(ms, (d.minSpacingMs * ms) / d.intervalMs),
    },
  };
}

/** What the trimmer sees at each check. */
export interface TrimObservation {
  nowMs: number;
  status: ComputeStatus;
  /** Status changes so far (ComputeStateStore.statusChanges). */
  statusChanges: number;
  /** CPU time used by the process so far, all threads. */
  cpuMs: number;
  rssBytes: number;
}

/** The last trim: when, under which status, and the RSS the compute settled at after it. */
export interface LastTrim {
  atMs: number;
  statusChanges: number;
  /** Trims since the status last changed (1: the first). */
  passes: number;
  /**
   * The highest RSS at a quiet check within `minSpacingMs` after the trim. An
   * idle compute's own work (the activity monitor, timers, recompiling what
   * the trim dropped) faults some code back in, and the kernel maps 64 KiB
   * around each fault: growth is measured from this level, not from right
   * after the trim, or every trim would be followed by another.
   */
  rssSettled: number;
}

export type TrimDecision =
  | { trim: true; reason: "settled" | "second pass" | "grown" }
  | { trim: false; reason: "not resting" | "status changed" | "busy" | "settling" | "not grown" };

/** Statuses a compute stays in while nothing is asked of it. */
const RESTING: ReadonlySet<ComputeStatus> = new Set(["running", "empty"]);

/**
 * Pure: trim now? `prev` is the previous check's observation (the interval's
 * start). A trim needs a resting status that held, and a quiet interval. Then:
 * the first trim after a status change at once; one more `minSpacingMs` later
 * (what came back after the first is mostly one-off: recompilation, first
 * collections; measured ~3 MiB lower after the second); later ones only when
 * RSS grew `growthBytes` past where it settled.
 */
export function decideTrim(
  policy: TrimPolicy,
  prev: TrimObservation,
  cur: TrimObservation,
  last: LastTrim | null,
): TrimDecision {
  if (!RESTING.has(cur.status)) return { trim: false, reason: "not resting" };
  if (cur.statusChanges !== prev.statusChanges) return { trim: false, reason: "status changed" };
  const elapsed = cur.nowMs - prev.nowMs;
  if (elapsed <= 0 || cur.cpuMs - prev.cpuMs > policy.quietCpuShare * elapsed) {
    return { trim: false, reason: "busy" };
  }
  if (last === null || last.statusChanges !== cur.statusChanges) {
    return { trim: true, reason: "settled" };
  }
  if (cur.nowMs - last.atMs < policy.minSpacingMs) return { trim: false, reason: "settling" };
  if (last.passes === 1) return { trim: true, reason: "second pass" };
  if (cur.rssBytes - last.rssSettled < policy.growthBytes) {
    return { trim: false, reason: "not grown" };
  }
  return { trim: true, reason: "grown" };
}

/** Pure: the record after a trim that left `rssAfter` (at `atMs`). */
export function afterTrim(
  last: LastTrim | null,
  statusChanges: number,
  atMs: number,
  rssAfter: number,
): LastTrim {
  const passes = last !== null && last.statusChanges === statusChanges ? last.passes + 1 : 1;
  return { atMs, statusChanges, passes, rssSettled: rssAfter };
}

/** Pure: a quiet check while settling raises the level growth is measured from. */
export function settle(last: LastTrim, decision: TrimDecision, rss: number): LastTrim {
  if (decision.reason !== "settling") return last;
  return rss > last.rssSettled ? { ...last, rssSettled: rss } : last;
}

export interface FootprintTrimmerDeps {
  policy: TrimPolicy;
  log: Logger;
  observe: () => TrimObservation;
  trim: () => Promise<TrimOutcome>;
}

const mib = (b: number) => (b / MiB).toFixed(1);

export function describeTrim(o: TrimOutcome, reason: string): string {
  const paged =
    typeof o.pagedOut === "number"
      ? `${mib(o.pagedOut)} MiB of the executable's mappings advised out (MADV_PAGEOUT)`
      : `executable not paged out: ${o.pagedOut}`;
  return `released memory (${reason}): RSS ${mib(o.before.rss)} → ${mib(o.after.rss)} MiB (file ${mib(o.after.file)}, anon ${mib(o.after.anon)}); ${paged}; ${Math.round(o.ms)} ms`;
}

/** Checks every `policy.intervalMs` and trims by `decideTrim`; one trim at a time. */
export class FootprintTrimmer {
  private timer: ReturnType<typeof setInterval> | undefined;
  private prev: TrimObservation | undefined;
  private last: LastTrim | null = null;
  private running: Promise<void> | null = null;
  /** The process could not be observed: the trimmer has given up for good. */
  private gaveUp = false;
  private readonly deps: FootprintTrimmerDeps;

  constructor(deps: FootprintTrimmerDeps) {
    this.deps = deps;
  }

  start(): void {
    if (this.timer) return;
    this.prev = this.deps.observe();
    this.timer = setInterval(() => void this.check(), this.deps.policy.intervalMs);
    // Never what keeps the process alive.
    this.timer.unref();
  }

  stop(): void {
    clearInterval(this.timer);
    this.timer = undefined;
  }

  get lastTrim(): LastTrim | null {
    return this.last;
  }

  /**
   * One check (the timer's tick); resolves when a trim it started is done.
   * Never throws or rejects: it runs in PID 1's timer, where an escaped error
   * would end the compute. If the process cannot even be observed (no /proc),
   * the trimmer says so once and stops.
   */
  check(): Promise<void> {
    if (this.running) return this.running;
    if (this.gaveUp) return Promise.resolve();
    let cur: TrimObservation;
    try {
      cur = this.deps.observe();
    } catch (e) {
      this.deps.log.warn(`idle memory trim stopped: ${errorMessage(e)}`);
      this.gaveUp = true;
      this.stop();
      return Promise.resolve();
    }
    const prev = this.prev ?? cur;
    this.prev = cur;
    const decision = decideTrim(this.deps.policy, prev, cur, this.last);
    if (!decision.trim) {
      if (this.last) this.last = settle(this.last, decision, cur.rssBytes);
      return Promise.resolve();
    }
    this.running = this.trimNow(cur, decision.reason).finally(() => {
      this.running = null;
    });
    return this.running;
  }

  private async trimNow(cur: TrimObservation, reason: string): Promise<void> {
    let rssAfter = cur.rssBytes;
    try {
      const o = await this.deps.trim();
      rssAfter = o.after.rss;
      this.deps.log.info(describeTrim(o, reason));
    } catch (e) {
      this.deps.log.warn(`releasing memory failed: ${errorMessage(e)}`);
    }
    // Also after a failure: the next attempt waits as after a trim.
    let after = cur;
    try {
      after = this.deps.observe();
    } catch {
      // The next check reports it.
    }
    this.last = afterTrim(this.last, cur.statusChanges, after.nowMs, rssAfter);
    // The trim's own CPU time does not count against the next interval.
    this.prev = after;
  }
}

/** The process's trimmer over the real /proc and madvise; null when turned off. */
export function startFootprintTrimmer(opts: {
  store: ComputeStateStore;
  log: Logger;
  env: Record<string, string | undefined>;
}): FootprintTrimmer | null {
  const { policy, warning } = trimPolicyFromEnv(opts.env);
  if (warning) opts.log.warn(warning);
  if (policy === null || process.platform !== "linux") return null;
  const trimmer = new FootprintTrimmer({
    policy,
    log: opts.log,
    observe: () => {
      const cpu = process.cpuUsage();
      return {
        nowMs: performance.now(),
        status: opts.store.status,
        statusChanges: opts.store.statusChanges,
        cpuMs: (cpu.user + cpu.system) / 1000,
        rssBytes: residentMemory().rss,
      };
    },
    trim: trimFootprint,
  });
  trimmer.start();
  return trimmer;
}
