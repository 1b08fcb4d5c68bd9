// What every startup phase needs, passed explicitly so a phase can be tested
// with a fake runner, a fake clock and stand-in servers.

import type { CliOptions } from "../cli.ts";
import type { Logger } from "../log.ts";
import type { InstalledExtension } from "../metrics/registry.ts";
import type { ChildProcess, ProcessRunner, RunAs } from "../process/runner.ts";
import type { ParsedSpec } from "../spec/parsed-spec.ts";
import type { ComputeStateStore } from "../state/store.ts";

/** Children a termination signal must reach (upstream's PG_PID and SYNC_SAFEKEEPERS_PID). */
export interface ChildRegistry {
  postgres: ChildProcess | null;
  syncSafekeepers: ChildProcess | null;
  /** Other tools running now (initdb of the prewarm): SIGTERM'd and awaited on a signal. */
  tools: Set<ChildProcess>;
}

/**
 * What the catalog apply keeps between applies of one compute_ctl process
 * (startup, then each /configure).
 */
export interface CatalogState {
  /** Databases whose ChangeSchemaPerms ran, with the key it ran for (apply/plan.ts). */
  prepared: Map<string, string>;
  /** Warnings already logged once. */
  warned: Set<string>;
  /** A migration failed: upstream's compute_ctl_db_migration_failed_total. */
  onMigrationFailure(id: number): void;
  /** Seconds between installed-extensions scans, halved (set from suspend_timeout_seconds). */
  extensionsCollectionInterval: number;
  /** A scan finished: upstream's compute_installed_extensions. */
  onInstalledExtensions(list: InstalledExtension[]): void;
}

export function newCatalogState(o: Partial<CatalogState> = {}): CatalogState {
  return {
    prepared: new Map(),
    warned: new Set(),
    onMigrationFailure: () => {},
    extensionsCollectionInterval: 3600,
    onInstalledExtensions: () => {},
    ...o,
  };
}

export type StartupParams = Pick<
  CliOptions,
  | "pgbin"
  | "pgBinDir"
  | "pgdata"
  | "connstr"
  | "privilegedRoleName"
  | "internalHttpPort"
  | "lakebaseMode"
  | "resizeSwapOnBind"
  | "setDiskQuotaForFs"
>;

export interface StartupContext {
  params: StartupParams;
  pspec: ParsedSpec;
  store: ComputeStateStore;
  log: Logger;
  runner: ProcessRunner;
  /** Who postgres and the tools from --pgbin's directory run as; null: ourselves. */
  runAs: RunAs | null;
  children: ChildRegistry;
  sleep: (ms: number) => Promise<void>;
  /** Aborted when compute_ctl shuts down: long waits end early. */
  signal: AbortSignal;
  catalog: CatalogState;
  /** `cgexec -g memory:neon-postgres` prefix when AUTOSCALING is set (upstream maybe_cgexec). */
  wrap: (cmd: string[]) => string[];
}

export function maybeCgexec(env: Record<string, string | undefined>): (cmd: string[]) => string[] {
  return env.AUTOSCALING !== undefined
    ? (cmd) => ["cgexec", "-g", "memory:neon-postgres", ...cmd]
    : (cmd) => cmd;
}
