// The configurator (upstream configurator.rs): the only code that moves a
// running compute out of `configuration_pending` and
// `refresh_configuration_pending`. /configure stores the spec and sets
// `configuration_pending`; this loop sets `configuration`, applies the spec,
// then `running`, or `failed` with the error kept in `state.error` so the
// waiting /configure can report the real cause. /refresh_configuration sets
// `refresh_configuration_pending`; this loop re-reads the configuration (file
// or control plane) and applies it when the pageserver changed.
//
// The status is the durable signal and `waitFor` checks it before sleeping,
// so a request made between two iterations is never lost (upstream #9162).

import { ComputeCtlError, errorChain } from "../errors.ts";
import type { Logger } from "../log.ts";
import { type ParsedSpec, toParsedSpec } from "../spec/parsed-spec.ts";
import type { ComputeConfig } from "../spec/schema.ts";
import { statusDebug } from "../state/status.ts";
import type { ComputeState, ComputeStateStore, StatePredicate } from "../state/store.ts";
import { abortableSleep } from "../state/time.ts";

export interface ConfiguratorOptions {
  store: ComputeStateStore;
  log: Logger;
  /** Shutdown: the loop ends at its next wait. */
  signal: AbortSignal;
  /** Applies `pspec` (already the state's spec) to the running postgres. */
  reconfigure: (pspec: ParsedSpec) => Promise<void>;
  /** Re-reads the configuration (`-c` file or control plane) for a refresh. */
  fetchConfig?: () => Promise<ComputeConfig>;
  /** The refreshed configuration has no spec: the compute was detached. Upstream exits 1. */
  onDetached?: () => void;
  /** Between refresh attempts (default 5 s, ended early by `signal`). */
  sleep?: (ms: number) => Promise<void>;
}

/** Upstream waits this long before retrying a refresh, or after one found nothing new. */
export const REFRESH_RETRY_MS = 5_000;

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
  s.status === "configuration_pending" ||
  s.status === "refresh_configuration_pending" ||
  s.status === "terminated";

/** The part of a spec a refresh is about: where the pages come from. */
export function samePageservers(a: ParsedSpec, b: ParsedSpec): boolean {
  return JSON.stringify(a.pageserver_conninfo) === JSON.stringify(b.pageserver_conninfo);
}

/**
 * Runs until shutdown (`signal`) or `terminated`. Meant to be started once the
 * compute is `running` (after startCompute resolved); started earlier it
 * first waits for that, leaving the first spec to the main flow. A failed
 * reconfiguration leaves the compute `failed`; /configure refuses that state,
 * but a refresh may still bring it back (upstream's loop exits instead).
 * Never rejects for a failed reconfiguration: that becomes `failed`.
 */
export async function startConfigurator(opts: ConfiguratorOptions): Promise<void> {
  const { store, log, signal } = opts;
  const sleep = opts.sleep ?? ((ms: number) => abortableSleep(ms, signal));
  const wait = async (pred: StatePredicate): Promise<ComputeState | null> => {
    try {
      return await store.waitFor(pred, { signal });
    } catch (e) {
      if (signal.aborted) return null;
      throw e;
    }
  };

  if (beforeStart(store.state) && (await wait((s) => !beforeStart(s))) === null) return;
  // Only this loop fails a compute that ran, so `failed` here means the start failed.
  if (store.status === "failed") {
    log.info("compute node failed to start, configurator exiting");
    return;
  }
  log.info("waiting for reconfiguration requests");
  for (;;) {
    if (signal.aborted || (await wait(wakesConfigurator)) === null) {
      log.info("configurator: shutting down");
      return;
    }
    // Act on the state as it is now, not on the snapshot that woke us.
    const st = store.state;
    if (st.status === "terminated") {
      log.info(`compute node is now in ${statusDebug(st.status)} state, exiting`);
      return;
    }
    if (st.status === "refresh_configuration_pending") {
      if ((await refresh(opts, sleep)) === "detached") return;
      continue;
    }
    if (st.status !== "configuration_pending") continue;
    store.setStatus("configuration");
    try {
      if (st.pspec === null) throw new ComputeCtlError("configuration requested without a spec");
      await opts.reconfigure(st.pspec);
    } catch (e) {
      log.error(`could not configure compute node: ${errorChain(e)}`);
      store.setFailedStatus(e);
      continue;
    }
    log.info("compute node configured");
    store.setStatus("running");
  }
}

/** One refresh attempt (upstream's `RefreshConfigurationPending` arm). */
async function refresh(
  opts: ConfiguratorOptions,
  sleep: (ms: number) => Promise<void>,
): Promise<"done" | "retry" | "detached"> {
  const { store, log } = opts;
  store.setStatus("refresh_configuration");
  const retry = async (why: string) => {
    log.error(`refreshing the compute configuration: ${why}; retrying in ${REFRESH_RETRY_MS} ms`);
    await sleep(REFRESH_RETRY_MS);
    if (store.status === "refresh_configuration") store.setStatus("refresh_configuration_pending");
    return "retry" as const;
  };
  let pspec: ParsedSpec | null;
  try {
    if (!opts.fetchConfig) throw new ComputeCtlError("no configuration source to refresh from");
    const config = await opts.fetchConfig();
    pspec = config.spec ? toParsedSpec(config.spec) : null;
  } catch (e) {
    return retry(errorChain(e));
  }
  if (pspec === null) {
    log.error("the refreshed configuration has no spec: the compute was detached, exiting");
    opts.onDetached?.();
    return "detached";
  }
  const current = store.state.pspec;
  // Reviving a failed compute: its stored spec never applied, so apply this one.
  const reviving = store.state.error !== null;
  if (!reviving && current !== null && samePageservers(current, pspec)) {
    log.info("refreshed configuration has the same pageservers; waiting for the control plane");
    store.setStatus("running");
    await sleep(REFRESH_RETRY_MS);
    return "done";
  }
  try {
    await opts.reconfigure(pspec);
  } catch (e) {
    // Not installed: the retry compares against the spec that still runs.
    return retry(`could not apply the refreshed configuration: ${errorChain(e)}`);
  }
  store.update({ pspec, error: null });
  log.info("compute node configuration refreshed");
  store.setStatus("running");
  return "done";
}
