// The configurator (upstream configurator.rs): the only code that moves a
// running compute out of `configuration_pending`. /configure stores the spec
// and sets `configuration_pending`; this loop sets `configuration`, applies the
// spec, then `running`, or `failed` with the error kept in `state.error` so
// the waiting /configure can report the real cause.
//
// The status is the durable signal and `waitFor` checks it before sleeping,
// so a request made between two iterations is never lost (upstream #9162).

import { ComputeCtlError, errorChain } from "../errors.ts";
import type { Logger } from "../log.ts";
import type { ParsedSpec } from "../spec/parsed-spec.ts";
import { statusDebug } from "../state/status.ts";
import type { ComputeState, ComputeStateStore, StatePredicate } from "../state/store.ts";

export interface ConfiguratorOptions {
  store: ComputeStateStore;
  log: Logger;
  /** Shutdown: the loop ends at its next wait. */
  signal: AbortSignal;
  /** Applies `pspec` (already the state's spec) to the running postgres. */
  reconfigure: (pspec: ParsedSpec) => Promise<void>;
}

/**
 * Before the compute first ran, `configuration_pending` is an empty compute's
 * first spec, which belongs to the main flow (wait_spec → start_compute).
 * `pgStartTime` is only set on entering `init`, so it tells the two apart.
 */
export function beforeStart(s: ComputeState): boolean {
  return (
    s.status === "empty" ||
    s.status === "init" ||
    (s.status === "configuration_pending" && s.pgStartTime === null)
  );
}

const wakesConfigurator: StatePredicate = (s) =>
  s.status === "configuration_pending" || s.status === "failed" || s.status === "terminated";

/**
 * Runs until shutdown (`signal`), `failed` (as upstream, a failed compute is
 * never reconfigured again) or `terminated`. Meant to be started once the
 * compute is `running` (after startCompute resolved); started earlier it
 * first waits for that, leaving the first spec to the main flow.
 * Never rejects for a failed reconfiguration: that becomes `failed`.
 */
export async function startConfigurator(opts: ConfiguratorOptions): Promise<void> {
  const { store, log, signal } = opts;
  const wait = async (pred: StatePredicate): Promise<ComputeState | null> => {
    try {
      return await store.waitFor(pred, { signal });
    } catch (e) {
      if (signal.aborted) return null;
      throw e;
    }
  };

  if (beforeStart(store.state) && (await wait((s) => !beforeStart(s))) === null) return;
  log.info("waiting for reconfiguration requests");
  for (;;) {
    if (signal.aborted || (await wait(wakesConfigurator)) === null) {
      log.info("configurator: shutting down");
      return;
    }
    // Act on the state as it is now, not on the snapshot that woke us.
    const st = store.state;
    if (st.status === "failed" || st.status === "terminated") {
      log.info(`compute node is now in ${statusDebug(st.status)} state, exiting`);
      return;
    }
    if (st.status !== "configuration_pending") continue;
    store.setStatus("configuration");
    try {
      if (st.pspec === null) throw new ComputeCtlError("configuration requested without a spec");
      await opts.reconfigure(st.pspec);
    } catch (e) {
      log.error(`could not configure compute node: ${errorChain(e)}`);
      store.setFailedStatus(e);
      log.info("compute node is now in Failed state, exiting");
      return;
    }
    log.info("compute node configured");
    store.setStatus("running");
  }
}
