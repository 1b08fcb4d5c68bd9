// The startup pipeline (upstream start_compute): fresh PGDATA, postgresql.conf,
// start LSN, basebackup, PGDATA fix-ups, postgres, then `running`. Each phase
// is its own file; this one only orders them and records the metrics.

import { ComputeCtlError } from "../errors.ts";
import { terminate } from "../process/runner.ts";
import { formatLsn, type Lsn } from "../spec/lsn.ts";
import { getBasebackup } from "./basebackup.ts";
import type { StartupContext } from "./context.ts";
import {
  addStandbySignal,
  createPgdata,
  linkDynShmem,
  updatePgHba,
  writePostgresConf,
} from "./pgdata-files.ts";
import { type RunningPostgres, startPostgres, waitForPostgres } from "./postgres.ts";
import { readOvercommitMemory, renderPostgresConf } from "./postgres-conf.ts";
import { primaryStartLsn } from "./safekeepers.ts";
import { prepareVmResources } from "./vm-resources.ts";

/**
 * Spec features this build does not carry out yet: each is named once in the
 * log rather than silently dropped. Compliance audit levels refuse to start,
 * since running without the audit trail they promise would be worse.
 */
export function unsupportedSpecFeatures(spec: StartupContext["pspec"]["spec"]): {
  warnings: string[];
  fatal: string | null;
} {
  const warnings: string[] = [];
  const named: [unknown, string][] = [
    [spec.remote_extensions, "remote_extensions (remote extension download)"],
    [spec.pgbouncer_settings, "pgbouncer_settings (pgbouncer tuning)"],
    [spec.local_proxy_config, "local_proxy_config (local_proxy configuration)"],
    [spec.logs_export_host, "logs_export_host (rsyslog export)"],
  ];
  for (const [value, what] of named) {
    if (value !== null && value !== undefined)
      warnings.push(`spec field ${what} is not supported by this build yet; ignored`);
  }
  const level = spec.audit_log_level;
  const fatal =
    level === "Hipaa" || level === "Extended" || level === "Full"
      ? `audit_log_level ${level} needs compliance audit logging, which this compute_ctl does not implement yet`
      : null;
  return { warnings, fatal };
}

export interface StartedCompute {
  postgres: RunningPostgres;
}

/** Upstream prepare_pgdata: everything on disk before postgres starts. */
export async function preparePgdata(ctx: StartupContext): Promise<void> {
  const { pgdata } = ctx.params;
  const owner = ctx.runAs ? { uid: ctx.runAs.uid, gid: ctx.runAs.gid } : undefined;
  await createPgdata(pgdata, owner);
  const conf = renderPostgresConf({
    pspec: ctx.pspec,
    privilegedRoleName: ctx.params.privilegedRoleName,
    internalHttpPort: ctx.params.internalHttpPort,
    overcommitMemory2: readOvercommitMemory(),
    platform: process.platform === "darwin" ? "darwin" : "linux",
  });
  await writePostgresConf(pgdata, conf, owner);

  const mode = ctx.pspec.mode;
  let lsn: Lsn;
  if (mode.kind === "primary") {
    lsn = await primaryStartLsn(ctx);
  } else if (mode.kind === "static") {
    ctx.log.info(`Starting read-only node at static LSN ${formatLsn(mode.lsn)}`);
    lsn = mode.lsn;
  } else {
    ctx.log.info("Initializing standby from latest Pageserver LSN");
    lsn = 0n;
  }
  await getBasebackup(ctx, lsn);

  ctx.log.info(
    (await updatePgHba(pgdata))
      ? "updated pg_hba.conf to allow external connections"
      : "pg_hba.conf is up-to-date",
  );
  await linkDynShmem(pgdata);
  if (mode.kind !== "primary") {
    ctx.log.info(
      (await addStandbySignal(pgdata))
        ? "created standby.signal"
        : "reused pre-existing standby.signal",
    );
  }
}

/**
 * Runs the pipeline up to `running`. On failure the status is still `init`
 * (the caller sets `failed`); a postmaster already started has been stopped.
 */
export async function startCompute(
  ctx: StartupContext,
  configureAsPrimary: (ctx: StartupContext) => Promise<void> = async () => {},
): Promise<StartedCompute> {
  const { pspec, log, store } = ctx;
  const spec = pspec.spec;
  log.info(
    `starting compute for project ${spec.cluster.cluster_id ?? "None"}, operation ${spec.operation_uuid ?? "None"}, tenant ${pspec.tenant_id}, timeline ${pspec.timeline_id}, project ${spec.project_id ?? "None"}, branch ${spec.branch_id ?? "None"}, endpoint ${spec.endpoint_id ?? "None"}, features [${spec.features.join(", ")}]`,
  );
  const unsupported = unsupportedSpecFeatures(spec);
  for (const w of unsupported.warnings) log.warn(w);
  if (unsupported.fatal) throw new ComputeCtlError(unsupported.fatal);
  // Swap and disk quota are set while PGDATA is prepared, and before postgres starts.
  const vmResources = prepareVmResources(ctx, ctx.params);
  const [pgdataDone, vmDone] = await Promise.allSettled([preparePgdata(ctx), vmResources]);
  if (pgdataDone.status === "rejected") throw pgdataDone.reason;
  if (vmDone.status === "rejected") throw vmDone.reason;
  if (ctx.signal.aborted) throw new ComputeCtlError("shutdown requested during startup");

  const pgStarted = performance.now();
  const postgres = startPostgres(ctx);
  try {
    await waitForPostgres(ctx, postgres);
    store.setMetric("start_postgres_ms", performance.now() - pgStarted);
    log.info("PostgreSQL is now running, continuing to configure it");
    const configStarted = performance.now();
    if (pspec.mode.kind === "primary") await configureAsPrimary(ctx);
    store.setMetric("config_ms", performance.now() - configStarted);
  } catch (e) {
    // Upstream sends SIGQUIT to a started postmaster on failure; make sure it is gone.
    await terminate(postgres.child, { signal: "SIGQUIT", graceMs: 5_000 });
    throw e;
  }
  store.setMetric("total_startup_ms", Number((store.now() - store.state.startTime) / 1_000_000n));
  store.setStatus("running");
  const m = store.state.metrics;
  log.info(
    `compute start finished: postmaster_pid=${postgres.child.pid} basebackup_ms=${m.basebackup_ms} start_postgres_ms=${m.start_postgres_ms} total_startup_ms=${m.total_startup_ms}`,
  );
  return { postgres };
}
