// The one ComputeState of the process. Upstream guards it with a mutex and a
// condvar; here every change replaces an immutable snapshot and wakes waiters.
// `waitFor` checks the current snapshot before it sleeps, so a change made
// between two awaits of a caller can never be missed (upstream bug #9162).

import { errorChain, TimeoutError } from "../errors.ts";
import type { Logger } from "../log.ts";
import type { Lsn } from "../spec/lsn.ts";
import type { ParsedSpec } from "../spec/parsed-spec.ts";
import { type ComputeMetrics, type ComputeMetricsField, emptyMetrics } from "./metrics.ts";
import { type ComputeStatus, canTransition, statusDisplay } from "./status.ts";
import { nowNs, type Timestamp } from "./time.ts";

export interface ComputeState {
  /** Process start; reset when the first spec arrives through /configure. */
  readonly startTime: Timestamp;
  /** When startup entered `init`. */
  readonly pgStartTime: Timestamp | null;
  readonly status: ComputeStatus;
  /** Last real user activity; null until the monitor sees some (upstream #4137). */
  readonly lastActive: Timestamp | null;
  /** Startup failure text (anyhow Debug shape); only set by `setFailedStatus`. */
  readonly error: string | null;
  readonly pspec: ParsedSpec | null;
  /** LSN returned by the shutdown sync-safekeepers. */
  readonly terminateFlushLsn: Lsn | null;
  readonly metrics: Readonly<ComputeMetrics>;
}

export type StatePredicate = (s: ComputeState) => boolean;

export interface WaitOptions {
  /** Absolute deadline in `performance.now()` milliseconds. */
  deadline?: number;
  signal?: AbortSignal;
}

interface Waiter {
  pred: StatePredicate;
  resolve: (s: ComputeState) => void;
  reject: (e: unknown) => void;
  cleanup: () => void;
}

export interface StoreOptions {
  log: Logger;
  now?: () => Timestamp;
  /** Called with the new status on every accepted status change (compute_ctl_up). */
  onStatus?: (status: ComputeStatus) => void;
  initial?: Partial<Pick<ComputeState, "pspec">>;
}

type Mutable<T> = { -readonly [K in keyof T]: T[K] };
type StatePatch = Partial<Omit<Mutable<ComputeState>, "status" | "metrics" | "lastActive">>;

export class ComputeStateStore {
  private snapshot: ComputeState;
  private readonly waiters = new Set<Waiter>();
  private readonly log: Logger;
  readonly now: () => Timestamp;
  private readonly onStatus: ((status: ComputeStatus) => void) | undefined;
  private changes = 0;

  constructor(opts: StoreOptions) {
    this.log = opts.log;
    this.now = opts.now ?? nowNs;
    this.onStatus = opts.onStatus;
    this.snapshot = Object.freeze({
      startTime: this.now(),
      pgStartTime: null,
      status: "empty",
      lastActive: null,
      error: null,
      pspec: opts.initial?.pspec ?? null,
      terminateFlushLsn: null,
      metrics: Object.freeze(emptyMetrics()),
    });
  }

  get state(): ComputeState {
    return this.snapshot;
  }

  get status(): ComputeStatus {
    return this.snapshot.status;
  }

  /** Accepted status changes so far: tells a poller whether anything happened in between. */
  get statusChanges(): number {
    return this.changes;
  }

  /**
   * Moves to `to` if the state diagram allows it. An illegal transition is a
   * bug in the caller: it is logged and refused (returns false), never applied.
   */
  setStatus(to: ComputeStatus): boolean {
    const from = this.snapshot.status;
    if (!canTransition(from, to)) {
      this.log.error(
        `refused illegal compute status transition from ${statusDisplay(from)} to ${statusDisplay(to)}`,
      );
      return false;
    }
    this.log.info(`Changing compute status from ${statusDisplay(from)} to ${statusDisplay(to)}`);
    this.replace({ status: to });
    this.changes++;
    this.onStatus?.(to);
    return true;
  }

  /** Startup failure: keeps the error chain for /status, then `failed`. */
  setFailedStatus(err: unknown): boolean {
    if (!canTransition(this.snapshot.status, "failed")) return this.setStatus("failed");
    this.replace({ error: errorChain(err) });
    return this.setStatus("failed");
  }

  update(patch: StatePatch): void {
    this.replace(patch);
  }

  setMetric(field: ComputeMetricsField, value: number): void {
    const metrics = Object.freeze({
      ...this.snapshot.metrics,
      [field]: Math.max(0, Math.round(value)),
    });
    this.replace({ metrics });
  }

  /** Only ever moves forward; null sorts below every timestamp. */
  updateLastActive(candidate: Timestamp): boolean {
    const cur = this.snapshot.lastActive;
    if (cur !== null && candidate <= cur) return false;
    this.replace({ lastActive: candidate });
    return true;
  }

  /**
   * Resolves with the first snapshot satisfying `pred`: the current one if it
   * already does (checked synchronously, before any sleep), else the first
   * later one. Rejects with TimeoutError at the deadline or on abort.
   */
  waitFor(pred: StatePredicate, opts: WaitOptions = {}): Promise<ComputeState> {
    if (pred(this.snapshot)) return Promise.resolve(this.snapshot);
    if (opts.signal?.aborted) return Promise.reject(abortError(opts.signal));
    return new Promise<ComputeState>((resolve, reject) => {
      let timer: ReturnType<typeof setTimeout> | undefined;
      const onAbort = () => {
        waiter.cleanup();
        reject(abortError(opts.signal));
      };
      const waiter: Waiter = {
        pred,
        resolve,
        reject,
        cleanup: () => {
          this.waiters.delete(waiter);
          if (timer !== undefined) clearTimeout(timer);
          opts.signal?.removeEventListener("abort", onAbort);
        },
      };
      this.waiters.add(waiter);
      if (opts.deadline !== undefined) {
        const ms = Math.max(0, opts.deadline - performance.now());
        timer = setTimeout(() => {
          waiter.cleanup();
          reject(
            new TimeoutError(
              `timed out waiting for compute state (status ${this.snapshot.status})`,
            ),
          );
        }, ms);
      }
      opts.signal?.addEventListener("abort", onAbort, { once: true });
    });
  }

  waitForStatus(statuses: readonly ComputeStatus[], opts?: WaitOptions): Promise<ComputeState> {
    return this.waitFor((s) => statuses.includes(s.status), opts);
  }

  private replace(patch: Partial<Mutable<ComputeState>>): void {
    this.snapshot = Object.freeze({ ...this.snapshot, ...patch });
    const snap = this.snapshot;
    for (const w of [...this.waiters]) {
      let ok = false;
      try {
        ok = w.pred(snap);
      } catch (e) {
        w.cleanup();
        w.reject(e);
        continue;
      }
      if (ok) {
        w.cleanup();
        w.resolve(snap);
      }
    }
  }

  /** Number of pending waiters (for tests and leak checks). */
  get pendingWaiters(): number {
    return this.waiters.size;
  }
}

function abortError(signal: AbortSignal | undefined): TimeoutError {
  const reason = signal?.reason;
  return new TimeoutError(
    reason instanceof Error ? reason.message : "wait for compute state aborted",
  );
}
