// ComputeNode: the process's compute, as upstream's compute.rs. It owns the
// state store, the HTTP servers and the children, and runs the top-level flow
// of `run()`: listen, obtain a spec, start the compute, wait on the postmaster,
// clean up, exit.

import type { VmMonitorHandle } from "./background/vm-monitor.ts";
import type { CliOptions } from "./cli.ts";
import { errorChain, errorMessage } from "./errors.ts";
import { authorize } from "./http/middleware/authorize.ts";
import type { ApiContext } from "./http/route.ts";
import {
  buildApp,
  externalRoutes,
  INTERNAL_ROUTES,
  type Listener,
  LOOPBACK,
  listen,
} from "./http/server.ts";
import type { Logger } from "./log.ts";
import { ComputeCtlMetrics } from "./metrics/registry.ts";
import {
  type ChildProcess,
  type ProcessRunner,
  type RunAs,
  shellExitCode,
} from "./process/runner.ts";
import type { TerminationSignal } from "./process/signals.ts";
import { formatLsn, type Lsn } from "./spec/lsn.ts";
import { type ParsedSpec, toParsedSpec } from "./spec/parsed-spec.ts";
import type { ComputeConfig, ComputeCtlConfig } from "./spec/schema.ts";
import {
  type CatalogState,
  type ChildRegistry,
  maybeCgexec,
  newCatalogState,
  type StartupContext,
} from "./startup/context.ts";
import type { StartedCompute } from "./startup/index.ts";
import type { PostmasterContext } from "./startup/postgres.ts";
import { ComputeStateStore } from "./state/store.ts";
import { abortableSleep } from "./state/time.ts";

/** Exit delays after the postmaster is gone (upstream run(), step 12). */
export const EXIT_DELAY_MS = 300;
export const EXIT_DELAY_AFTER_FAILURE_MS = 30_000;
/** How long a termination signal waits for the children it was forwarded to. */
export const SIGNAL_CHILD_GRACE_MS = 30_000;
/** After a refresh found the compute detached: SIGQUIT, then SIGKILL after this. */
export const DETACH_KILL_AFTER_MS = 10_000;

export interface ComputeNodeDeps {
  log: Logger;
  runner: ProcessRunner;
  /** Identity for postgres and the tools next to it; null: our own (not root). */
  runAs: RunAs | null;
  /** The startup pipeline; resolves when the compute is running. */
  startCompute: (ctx: StartupContext) => Promise<StartedCompute>;
  /** Run before listening when started without a spec (upstream prewarm_postgres_vm_memory). */
  prewarm?: (ctx: PostmasterContext) => Promise<void>;
  sleep?: (ms: number) => Promise<void>;
  env?: Record<string, string | undefined>;
  /** The Prometheus registry (compute_ctl_up follows every status change). */
  metrics?: ComputeCtlMetrics;
  /** false: no activity monitor (unit tests of the node with fake processes). */
  monitor?: boolean;
  /** Reads the configuration again (`-c` file or control plane) for /refresh_configuration. */
  fetchConfig?: () => Promise<ComputeConfig>;
}

export class ComputeNode {
  readonly store: ComputeStateStore;
  readonly params: CliOptions;
  readonly computeCtlConfig: ComputeCtlConfig;
  readonly children: ChildRegistry = { postgres: null, syncSafekeepers: null, tools: new Set() };
  private terminating = false;
  private detached = false;
  readonly metrics: ComputeCtlMetrics;
  private readonly log: Logger;
  private readonly deps: ComputeNodeDeps;
  private readonly shutdownController = new AbortController();
  /** Ends the configurator and the LSN lease task: on shutdown and when run() returns. */
  private readonly backgroundController = new AbortController();
  private listeners: Listener[] = [];
  /** Kept across the startup apply and every /configure. */
  private readonly catalog: CatalogState;

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
    this.metrics = deps.metrics ?? new ComputeCtlMetrics();
    const metrics = this.metrics;
    this.catalog = newCatalogState({
      onMigrationFailure: (id) => metrics.migrationFailed(id),
      extensionsCollectionInterval: params.installedExtensionsCollectionInterval,
      onInstalledExtensions: (list) => metrics.setInstalledExtensions(list),
    });
    this.store = new ComputeStateStore({
      log: deps.log,
      initial: { pspec },
      onStatus: (s) => metrics.setStatus(s),
    });
  }

  get shutdownSignal(): AbortSignal {
    return this.shutdownController.signal;
  }

  private sleep(ms: number): Promise<void> {
    return (this.deps.sleep ?? Bun.sleep)(ms);
  }

  apiContext(): ApiContext {
    return {
      store: this.store,
      log: this.log,
      computeId: this.params.computeId,
      forwardTermination: () => {
        this.children.syncSafekeepers?.kill("SIGTERM");
        this.children.postgres?.kill("SIGINT");
      },
      reportPagestreamError: () => this.metrics.pagestreamRequestErrors.inc(),
    };
  }

  /** What any phase that runs postgres or its tools needs. */
  processContext(): PostmasterContext {
    return {
      log: this.log,
      runner: this.deps.runner,
      runAs: this.deps.runAs,
      children: this.children,
      sleep: (ms) => this.sleep(ms),
      signal: this.shutdownSignal,
      wrap: maybeCgexec(this.deps.env ?? process.env),
    };
  }

  startupContext(pspec: ParsedSpec): StartupContext {
    return {
      ...this.processContext(),
      params: this.params,
      pspec,
      store: this.store,
      catalog: this.catalog,
    };
  }

  /** Starts both HTTP servers; the external one checks JWTs (upstream's authorize middleware). */
  listen(): void {
    const ctx = this.apiContext();
    const auth = authorize({
      jwks: this.computeCtlConfig.jwks,
      computeId: this.params.computeId,
      instanceId: (this.deps.env ?? process.env).INSTANCE_ID,
      log: this.log,
    });
    this.listeners.push(
      listen(
        buildApp(externalRoutes(this.metrics), ctx, { authorize: auth }),
        this.params.externalHttpPort,
        "external",
        this.log,
      ),
      listen(
        buildApp(INTERNAL_ROUTES, ctx),
        this.params.internalHttpPort,
        "internal",
        this.log,
        this.params.internalHttpHost === "localhost" ? LOOPBACK : [this.params.internalHttpHost],
      ),
    );
  }

  async stopListening(): Promise<void> {
    await Promise.all(this.listeners.map((l) => l.stop()));
    this.listeners = [];
  }

  /** Blocks until /configure hands over a spec (upstream wait_spec), or termination. */
  async waitSpec(): Promise<ParsedSpec | null> {
    this.log.info("no compute spec provided, waiting");
    const st = await this.store
      .waitFor(
        (s) =>
          s.status === "configuration_pending" ||
          s.status === "termination_pending_fast" ||
          s.status === "termination_pending_immediate",
        { signal: this.shutdownSignal },
      )
      .catch(() => null);
    if (st?.status !== "configuration_pending") return null;
    const now = this.store.now();
    this.store.setMetric("wait_for_spec_ms", Number((now - st.startTime) / 1_000_000n));
    // start_time and total_startup_ms exclude the time spent in the pool.
    this.store.update({ startTime: now });
    this.log.info("got spec, continue configuration");
    return st.pspec;
  }

  /** Upstream run(): returns the process exit code. Background tasks end with it. */
  async run(): Promise<number> {
    try {
      return await this.runInner();
    } finally {
      this.backgroundController.abort();
      // A /terminate that arrived after the cleanup looked at the status still gets its answer.
      if (this.store.status.startsWith("termination_pending")) this.store.setStatus("terminated");
      await this.stopListening();
    }
  }

  private async runInner(): Promise<number> {
    const cliSpec = this.store.state.pspec;
    if (!cliSpec && this.deps.prewarm) {
      try {
        await this.deps.prewarm(this.processContext());
      } catch (e) {
        this.log.error(`prewarming postgres failed: ${errorChain(e)}`);
        return 1;
      }
    }
    // With a spec on the command line nobody may observe `empty` (neon_local
    // treats it as fatal), so enter `init` before the servers answer.
    if (cliSpec) this.enterInit();
    this.listen();

    const pspec = cliSpec ?? (await this.waitSpec());
    let exitCode: number | null = null;
    let delayExit = false;
    if (pspec) {
      if (!cliSpec) this.enterInit();
      // Static computes lease their LSN while the basebackup runs (upstream's order).
      this.startLsnLease();
      try {
        const started = await this.deps.startCompute(this.startupContext(pspec));
        this.startConfigurator();
        this.startMonitor(pspec);
        this.startInstalledExtensionsTask();
        const vmMonitor = await this.startVmMonitor(pspec);
        const status = await started.postgres.exited;
        // No reconfiguration of a postmaster that is gone.
        this.backgroundController.abort();
        // It watches the cgroup postgres ran in: released once postgres is gone.
        await vmMonitor?.stop();
        if (this.detached) {
          this.log.info("compute detached from the control plane: exiting");
          return 1;
        }
        exitCode = status.code;
        this.log.info(`Postgres exited with code ${shellExitCode(status)}, shutting down`);
      } catch (e) {
        this.log.error(`could not start the compute node: ${errorChain(e)}`);
        this.store.setFailedStatus(e);
        delayExit = true;
      }
      if (this.shutdownSignal.aborted) return 1;
      try {
        delayExit = (await this.cleanupAfterPostgresExit(pspec)) || delayExit;
      } catch (e) {
        this.log.error(`cleanup after postgres exit failed: ${errorChain(e)}`);
        // Upstream exits at once here; after a failed start we still give the
        // control plane its 30 s to read the startup error from /status.
        if (!delayExit) return 1;
        exitCode = null;
      }
    } else if (this.store.status.startsWith("termination_pending")) {
      // Ours: /terminate on an empty compute ends it (upstream hangs here).
      delayExit = this.store.status === "termination_pending_fast";
      this.store.setStatus("terminated");
    } else {
      return 1;
    }

    if (delayExit) this.log.info("giving control plane 30s to collect the error before shutdown");
    await this.sleep(delayExit ? EXIT_DELAY_AFTER_FAILURE_MS : EXIT_DELAY_MS);
    await this.stopListening();
    return exitCode ?? 1;
  }

  /**
   * The configurator takes later specs from /configure (upstream starts it
   * during start_compute; the first spec of an empty compute is the main flow's).
   */
  private startConfigurator(): void {
    void (async () => {
      const [{ startConfigurator }, { reconfigure }] = await Promise.all([
        import("./background/configurator.ts"),
        import("./background/reconfigure.ts"),
      ]);
      await startConfigurator({
        store: this.store,
        log: this.log,
        signal: this.backgroundSignal,
        reconfigure: (pspec) =>
          reconfigure({ ...this.startupContext(pspec), signal: this.backgroundSignal }),
        ...(this.deps.fetchConfig ? { fetchConfig: this.deps.fetchConfig } : {}),
        onDetached: () => this.detach(),
      });
    })().catch((e) => this.log.error(`configurator: ${errorChain(e)}`));
  }

  /** The periodic installed-extensions scan (all modes), while postgres runs. */
  private startInstalledExtensionsTask(): void {
    if (this.deps.monitor === false) return;
    const signal = this.backgroundSignal;
    void (async () => {
      const { collectInstalledExtensions, runInstalledExtensionsTask } = await import(
        "./background/installed-extensions.ts"
      );
      await runInstalledExtensionsTask({
        intervalSeconds: () => this.catalog.extensionsCollectionInterval,
        scan: () =>
          collectInstalledExtensions(
            this.params.connstr,
            this.log,
            (list) => this.catalog.onInstalledExtensions(list),
            signal,
          ),
        sleep: (ms) => abortableSleep(ms, signal),
        signal,
      });
    })().catch((e) => this.log.error(`installed extensions: ${errorChain(e)}`));
  }

  /** With AUTOSCALING (Linux): the vm-monitor beside postgres; never restarted. */
  private async startVmMonitor(pspec: ParsedSpec): Promise<VmMonitorHandle | null> {
    const env = this.deps.env ?? process.env;
    if (env.AUTOSCALING === undefined || process.platform !== "linux") return null;
    const { findVmMonitor, startVmMonitor } = await import("./background/vm-monitor.ts");
    const handle = startVmMonitor({
      runner: this.deps.runner,
      log: this.log,
      path: findVmMonitor(env, process.execPath),
      config: {
        cgroup: this.params.cgroup,
        pgconnstr: pspec.spec.disable_lfc_resizing === true ? null : this.params.filecacheConnstr,
        addr: this.params.vmMonitorAddr,
      },
      onExit: (status) =>
        this.metrics.vmMonitorExits.inc({
          code: status.code !== null ? String(status.code) : String(status.signal),
        }),
    });
    if (handle !== null) {
      // A termination signal reaches it like any other tool of ours.
      this.children.tools.add(handle.child);
      void handle.exited.then(() => this.children.tools.delete(handle.child));
    }
    return handle;
  }

  /**
   * A refresh found no spec: the control plane detached this compute.
   * Upstream exits 1 on the spot; we stop postgres at once (SIGQUIT) and exit 1
   * when it is gone, with no shutdown sync and no delay.
   */
  private detach(): void {
    this.detached = true;
    const postgres = this.children.postgres;
    postgres?.kill("SIGQUIT");
    // Immediate shutdown is quick; a postgres that does not go is killed.
    setTimeout(() => postgres?.kill("SIGKILL"), DETACH_KILL_AFTER_MS).unref();
  }

  /** The activity monitor (last_active), once the compute runs; ends with the postmaster. */
  private startMonitor(pspec: ParsedSpec): void {
    if (this.deps.monitor === false) return;
    void (async () => {
      const { runActivityMonitor, connectMonitor } = await import("./background/monitor.ts");
      await runActivityMonitor({
        store: this.store,
        log: this.log,
        signal: this.backgroundSignal,
        experimental: pspec.spec.features.includes("activity_monitor_experimental"),
        connect: () => connectMonitor(this.params.connstr, this.log),
        metrics: {
          setCurrentDowntimeMs: (ms) => this.metrics.pgCurrentDowntimeMs.set(Math.round(ms)),
          addDowntimeMs: (ms) => this.metrics.pgDowntimeMsTotal.inc(Math.max(0, Math.round(ms))),
        },
      });
    })().catch((e) => this.log.error(`compute monitor: ${errorChain(e)}`));
  }

  private get backgroundSignal(): AbortSignal {
    return AbortSignal.any([this.shutdownSignal, this.backgroundController.signal]);
  }

  private startLsnLease(): void {
    if (this.store.state.pspec?.mode.kind !== "static") return;
    void (async () => {
      const { launchLsnLeaseTask } = await import("./background/lsn-lease.ts");
      await launchLsnLeaseTask({ store: this.store, log: this.log, signal: this.backgroundSignal });
    })().catch((e) => this.log.error(`lsn lease task: ${errorChain(e)}`));
  }

  private enterInit(): void {
    this.store.update({ pgStartTime: this.store.now() });
    this.store.setStatus("init");
  }

  /**
   * Upstream cleanup_after_postgres_exit: a primary syncs safekeepers once more
   * (its LSN is /terminate's answer); `termination_pending_*` becomes
   * `terminated`. Returns whether to delay the exit.
   */
  private async cleanupAfterPostgresExit(pspec: ParsedSpec): Promise<boolean> {
    let lsn: Lsn | null = null;
    if (pspec.mode.kind === "primary") {
      this.log.info("syncing safekeepers on shutdown");
      const { syncSafekeepers } = await import("./startup/safekeepers.ts");
      lsn = await syncSafekeepers(this.startupContext(pspec));
      this.log.info(`synced safekeepers at lsn ${formatLsn(lsn)}`);
    } else {
      this.log.info("not primary, not syncing safekeepers");
    }
    this.store.update({ terminateFlushLsn: lsn });
    const status = this.store.status;
    const delay = status === "termination_pending_fast";
    if (status === "termination_pending_fast" || status === "termination_pending_immediate") {
      this.store.setStatus("terminated");
    }
    return delay;
  }

  /**
   * A termination signal (upstream handle_exit_signal): SIGTERM to a running
   * sync-safekeepers, SIGINT (fast shutdown) to postgres. Unlike upstream we
   * then wait, bounded, for them to exit, so no orphan outlives us.
   */
  async onTerminationSignal(sig: TerminationSignal): Promise<void> {
    this.log.info(`received ${sig} termination signal`);
    if (this.terminating) {
      // A second signal: the operator wants out now (upstream exits on the first).
      this.log.warn("second termination signal: killing children and exiting");
      this.killChildren();
      return;
    }
    this.terminating = true;
    this.shutdownController.abort(new Error(`received ${sig}`));
    const waits: Promise<unknown>[] = [];
    const forward = (child: ChildProcess | null, signal: NodeJS.Signals) => {
      if (child?.kill(signal)) waits.push(child.exited);
    };
    forward(this.children.syncSafekeepers, "SIGTERM");
    for (const tool of this.children.tools) forward(tool, "SIGTERM");
    forward(this.children.postgres, "SIGINT");
    if (waits.length === 0) return;
    const all = Promise.all(waits);
    let timer: ReturnType<typeof setTimeout> | undefined;
    const grace = new Promise<boolean>((resolve) => {
      timer = setTimeout(() => resolve(true), SIGNAL_CHILD_GRACE_MS);
    });
    const timedOut = await Promise.race([all.then(() => false), grace]);
    clearTimeout(timer);
    if (timedOut) {
      this.log.warn(`children did not exit within ${SIGNAL_CHILD_GRACE_MS} ms; killing them`);
      this.killChildren();
      await all.catch((e) => this.log.warn(errorMessage(e)));
    }
  }

  private killChildren(): void {
    this.children.syncSafekeepers?.kill("SIGKILL");
    for (const tool of this.children.tools) tool.kill("SIGKILL");
    this.children.postgres?.kill("SIGKILL");
  }
}
