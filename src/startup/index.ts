// The startup pipeline (upstream start_compute): fresh PGDATA, postgresql.conf,
// start LSN, basebackup, PGDATA fix-ups, postgres, then `running`. Each phase
// is its own file; this one only orders them and records the metrics.

import { ComputeCtlError } from "../errors.ts";
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
  await preparePgdata(ctx);
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
    if (postgres.child.kill("SIGQUIT")) await postgres.exited;
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
