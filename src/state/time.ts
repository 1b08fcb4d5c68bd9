// Timestamps as nanoseconds since the epoch (bigint), so /status can render
// chrono's formats: `start_time` with `Z`, `last_active` with `+00:00`, both with
// 0, 3, 6 or 9 fractional digits ("AutoSi": as many groups as non-zero digits need).

export type Timestamp = bigint;

const wallBaseNs = BigInt(Date.now()) * 1_000_000n;
const hrBase = process.hrtime.bigint();

/** Wall-clock now with nanosecond resolution (monotonic within the process). */
export function nowNs(): Timestamp {
  return wallBaseNs + (process.hrtime.bigint() - hrBase);
}

export function fromDate(d: Date): Timestamp {
  return BigInt(d.getTime()) * 1_000_000n;
}

/** Microseconds since the epoch (e.g. pg_stat_activity.state_change) to a Timestamp. */
export function fromMicros(us: bigint): Timestamp {
  return us * 1_000n;
}

function autoSiFraction(nanos: bigint): string {
  if (nanos === 0n) return "";
  const nine = nanos.toString().padStart(9, "0");
  if (nanos % 1_000_000n === 0n) return `.${nine.slice(0, 3)}`;
  if (nanos % 1_000n === 0n) return `.${nine.slice(0, 6)}`;
  return `.${nine}`;
}

function render(ts: Timestamp, suffix: string): string {
  const ms = ts / 1_000_000n;
  const nanos = ts % 1_000_000_000n;
  const base = new Date(Number(ms)).toISOString().slice(0, 19);
  return `${base}${autoSiFraction(nanos)}${suffix}`;
}

/** chrono's serde form: RFC 3339 with a `Z` suffix (`/status.start_time`). */
export function formatRfc3339Z(ts: Timestamp): string {
  return render(ts, "Z");
}

/** chrono's `to_rfc3339()`: `+00:00` suffix (`/status.last_active`). */
export function formatRfc3339Offset(ts: Timestamp): string {
  return render(ts, "+00:00");
}

/** setTimeout's limit: a longer delay fires after 1 ms. */
const MAX_TIMER_MS = 2 ** 31 - 1;

/** Resolves after `ms`, or at once when `signal` aborts (never rejects). Any length. */
export function abortableSleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal.aborted) return resolve();
    const end = performance.now() + ms;
    let timer: ReturnType<typeof setTimeout> | undefined;
    const done = () => {
      clearTimeout(timer);
      signal.removeEventListener("abort", done);
      resolve();
    };
    const arm = () => {
      const left = end - performance.now();
      if (left <= 0) return done();
      timer = setTimeout(arm, Math.min(left, MAX_TIMER_MS));
    };
    signal.addEventListener("abort", done, { once: true });
    arm();
  });
}
