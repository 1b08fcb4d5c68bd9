// Termination signals (upstream §1.7): SIGINT, SIGTERM and SIGQUIT all mean
// "forward and exit 1". The caller forwards (SIGTERM to sync-safekeepers,
// SIGINT to postgres) and exits. A handler also matters as PID 1: without one
// the kernel drops SIGTERM sent to a namespace's init.

export const TERMINATION_SIGNALS = ["SIGINT", "SIGTERM", "SIGQUIT"] as const;
export type TerminationSignal = (typeof TERMINATION_SIGNALS)[number];

/** The part of `process` we use; tests can pass an EventEmitter. */
export interface SignalSource {
  on(event: TerminationSignal, listener: (signal: NodeJS.Signals) => void): unknown;
  off(event: TerminationSignal, listener: (signal: NodeJS.Signals) => void): unknown;
}

/**
 * Calls `handler` with the signal name on each termination signal. Installing
 * a handler replaces the default (die), so the caller must exit itself.
 * Returns the uninstall function (idempotent), which restores the default.
 */
export function onTerminationSignals(
  handler: (signal: TerminationSignal) => void,
  options: { signals?: readonly TerminationSignal[]; source?: SignalSource } = {},
): () => void {
  const source = options.source ?? process;
  const signals = options.signals ?? TERMINATION_SIGNALS;
  const installed = signals.map((sig) => {
    const listener = () => handler(sig);
    source.on(sig, listener);
    return { sig, listener };
  });
  let done = false;
  return () => {
    if (done) return;
    done = true;
    for (const { sig, listener } of installed) source.off(sig, listener);
  };
}
