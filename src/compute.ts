// ComputeNode: the process's compute, as upstream's compute.rs. It owns the
// state store and the HTTP servers, and runs the top-level flow of `run()`:
// listen, obtain a spec, start the compute, wait on the postmaster, exit.

import type { CliOptions } from "./cli.ts";
import type { ApiContext } from "./http/route.ts";
import {
  buildApp,
  EXTERNAL_ROUTES,
  INTERNAL_ROUTES,
  type Listener,
  listen,
} from "./http/server.ts";
import type { Logger } from "./log.ts";
import { type ParsedSpec, toParsedSpec } from "./spec/parsed-spec.ts";
import type { ComputeConfig, ComputeCtlConfig } from "./spec/schema.ts";
import { ComputeStateStore } from "./state/store.ts";

/** Exit delays after the postmaster is gone (upstream run(), step 12). */
export const EXIT_DELAY_MS = 300;
export const EXIT_DELAY_AFTER_FAILURE_MS = 30_000;

export interface ComputeNodeDeps {
  log: Logger;
  /** The startup pipeline; resolves when the compute is running. */
  startCompute: (node: ComputeNode, pspec: ParsedSpec) => Promise<StartedCompute>;
  sleep?: (ms: number) => Promise<void>;
}

/** What a successful start hands back: a way to wait for the postmaster's exit. */
export interface StartedCompute {
  /** Resolves with the postmaster's exit code (null when killed by a signal). */
  waitPostgres(): Promise<number | null>;
}

export class ComputeNode {
  readonly store: ComputeStateStore;
  readonly params: CliOptions;
  readonly computeCtlConfig: ComputeCtlConfig;
  private readonly log: Logger;
  private readonly deps: ComputeNodeDeps;
  private listeners: Listener[] = [];

  /**
   * Parses the spec (if any) before anything listens: an invalid spec given at
   * start is fatal, as upstream's ComputeNode::new.
   */
  constructor(params: CliOptions, config: ComputeConfig, deps: ComputeNodeDeps) {
    this.params = params;
    this.deps = deps;
    this.log = deps.log;
    this.computeCtlConfig = config.compute_ctl_config;
    const pspec = config.spec ? toParsedSpec(config.spec) : null;
    this.store = new ComputeStateStore({ log: deps.log, initial: { pspec } });
  }

  apiContext(): ApiContext {
    return { store: this.store, log: this.log, computeId: this.params.computeId };
  }

  /** Starts both HTTP servers. */
  listen(): void {
    const ctx = this.apiContext();
    this.listeners.push(
      listen(buildApp(EXTERNAL_ROUTES, ctx), this.params.externalHttpPort, "external", this.log),
      listen(buildApp(INTERNAL_ROUTES, ctx), this.params.internalHttpPort, "internal", this.log),
    );
  }

  async stopListening(): Promise<void> {
    await Promise.all(this.listeners.map((l) => l.stop()));
    this.listeners = [];
  }

  /** Blocks until /configure hands over a spec (upstream wait_spec). */
  async waitSpec(): Promise<ParsedSpec | null> {
    this.log.info("no compute spec provided, waiting");
    const st = await this.store.waitFor(
      (s) =>
        s.status === "configuration_pending" ||
        s.status === "termination_pending_fast" ||
        s.status === "termination_pending_immediate",
    );
    if (st.status !== "configuration_pending") return null;
    const now = this.store.now();
    const waited = Number((now - st.startTime) / 1_000_000n);
    this.store.setMetric("wait_for_spec_ms", waited);
    // start_time and total_startup_ms exclude the time spent in the pool.
    this.store.update({ startTime: now });
    this.log.info("got spec, continue configuration");
    return st.pspec;
  }

  /** Upstream run(): returns the process exit code. */
  async run(): Promise<number> {
    const cliSpec = this.store.state.pspec;
    // With a spec on the command line nobody may observe `empty` (neon_local
    // treats it as fatal), so enter `init` before the servers answer.
    if (cliSpec) this.store.setStatus("init");
    this.listen();

    const pspec = cliSpec ?? (await this.waitSpec());
    let exitCode: number | null = null;
    let delayExit = false;
    if (pspec) {
      if (!cliSpec) this.store.setStatus("init");
      this.store.update({ pgStartTime: this.store.now() });
      try {
        const started = await this.deps.startCompute(this, pspec);
        exitCode = await started.waitPostgres();
        this.log.info(`Postgres exited with code ${exitCode ?? "(signal)"}, shutting down`);
      } catch (e) {
        this.log.error(
          `could not start the compute node: ${e instanceof Error ? e.message : String(e)}`,
        );
        this.store.setFailedStatus(e);
        delayExit = true;
      }
    } else if (this.store.status === "termination_pending_fast") {
      delayExit = true;
    }
    if (this.store.status.startsWith("termination_pending")) this.store.setStatus("terminated");

    const delay = delayExit ? EXIT_DELAY_AFTER_FAILURE_MS : EXIT_DELAY_MS;
    if (delayExit) this.log.info("giving control plane 30s to collect the error before shutdown");
    await (this.deps.sleep ?? Bun.sleep)(delay);
    await this.stopListening();
    return exitCode ?? 1;
  }
}
