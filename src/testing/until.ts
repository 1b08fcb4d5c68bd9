// The one way tests wait: poll a condition until it holds, with a deadline.
// Never a bare sleep as synchronisation.

/** Thrown from a check to stop waiting at once (e.g. the process under test died). */
export class GiveUp extends Error {
  override readonly name = "GiveUp";
}

export interface UntilOptions {
  timeoutMs?: number;
  intervalMs?: number;
  /** Treat errors thrown by `check` as "not yet" (e.g. a server not listening yet). */
  retryErrors?: boolean;
}

/**
 * Polls `check` until it returns a value other than undefined/false; throws at
 * the deadline. Errors from `check` end the wait unless `retryErrors`; GiveUp always does.
 */
export async function until<T>(
  what: string,
  check: () => T | undefined | false | Promise<T | undefined | false>,
  options: number | UntilOptions = {},
): Promise<T> {
  const opts = typeof options === "number" ? { timeoutMs: options } : options;
  const timeoutMs = opts.timeoutMs ?? 5000;
  const deadline = performance.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const v = await check();
      if (v !== undefined && v !== false) return v;
      // The check ran: an error from an earlier poll no longer explains the wait.
      last = undefined;
    } catch (e) {
      if (!opts.retryErrors || e instanceof GiveUp) throw e;
      last = e;
    }
    if (performance.now() > deadline) {
      const why =
        last === undefined
          ? ""
          : ` (last error: ${last instanceof Error ? last.message : String(last)})`;
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${why}`);
    }
    await Bun.sleep(opts.intervalMs ?? 10);
  }
}
