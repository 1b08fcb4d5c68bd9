// Every wire operation ends by itself, by its caller's AbortSignal, or at its deadline;
// this joins the last two so an operation has one place to hear about either.

import { TimeoutError } from "../errors.ts";

export function asError(reason: unknown): Error {
  return reason instanceof Error ? reason : new Error(String(reason));
}

/** Calls `onAbort` at most once: with the signal's reason, or a TimeoutError after `timeoutMs`. */
export class Deadline {
  private timer: ReturnType<typeof setTimeout> | undefined;
  private unlink: (() => void) | undefined;
  private done = false;

  constructor(
    what: string,
    private readonly onAbort: (err: Error) => void,
    signal?: AbortSignal,
    timeoutMs?: number,
  ) {
    if (signal?.aborted) {
      // Async so the caller finishes setting up the operation it is about to abort.
      queueMicrotask(() => this.fire(asError(signal.reason)));
      return;
    }
    if (signal) {
      const f = () => this.fire(asError(signal.reason));
      signal.addEventListener("abort", f, { once: true });
      this.unlink = () => signal.removeEventListener("abort", f);
    }
    if (timeoutMs !== undefined) {
      this.timer = setTimeout(
        () => this.fire(new TimeoutError(`${what} timed out after ${timeoutMs} ms`)),
        timeoutMs,
      );
    }
  }

  private fire(err: Error): void {
    if (this.done) return;
    this.dispose();
    this.onAbort(err);
  }

  /** The operation ended: forget the signal and the timer. */
  dispose(): void {
    this.done = true;
    clearTimeout(this.timer);
    this.unlink?.();
    this.unlink = undefined;
  }
}
