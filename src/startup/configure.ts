// Post-start configuration of a primary (upstream configure_as_primary): the
// temporary `neon.max_cluster_size=-1` override around the catalog apply, then
// `neon.disable_logical_replication_subscribers=false` and a reload.

import { join } from "node:path";
import type { Sql } from "postgres";
import { pgCtlPath } from "../cli.ts";
import { errorMessage } from "../errors.ts";
import { runToCompletion } from "../process/runner.ts";
import type { StartupContext } from "./context.ts";
import { lineInFile, withTempOverride } from "./pgdata-files.ts";

/** `pg_ctl reload -D <pgdata>`: output and exit status ignored, as upstream. */
export async function pgReloadConf(ctx: StartupContext): Promise<void> {
  const cmd = [pgCtlPath(ctx.params.pgbin), "reload", "-D", ctx.params.pgdata];
  await runToCompletion(
    ctx.runner,
    { cmd, user: ctx.runAs },
    { allowFailure: true, deadline: performance.now() + 30_000 },
  );
}

export type ApplyTrigger = "startup" | "reconfigure";

/**
 * Upstream apply_spec_sql for a primary: roles, databases, extensions
 * (src/apply/). At startup the concurrency follows max_connections and the
 * migrations follow in the background; on /configure the spec's
 * reconfigure_concurrency applies and no migrations run.
 */
export async function applyConfig(ctx: StartupContext, trigger: ApplyTrigger): Promise<void> {
  const [{ applySpecSql }, { startupConcurrency, reconfigureConcurrency }] = await Promise.all([
    import("../apply/execute.ts"),
    import("../apply/concurrency.ts"),
  ]);
  const spec = ctx.pspec.spec;
  await applySpecSql(spec, {
    connstr: ctx.params.connstr,
    privilegedRoleName: ctx.params.privilegedRoleName,
    timelineId: ctx.pspec.timeline_id,
    concurrency: trigger === "startup" ? startupConcurrency(spec) : reconfigureConcurrency(spec),
    log: ctx.log,
    signal: ctx.signal,
    prepared: ctx.catalog.prepared,
    warned: ctx.catalog.warned,
  });
  if (trigger === "startup") startMigrations(ctx);
}

/**
 * A background task on its own connection as `applicationName`: ended when
 * compute_ctl shuts down; errors are only logged (upstream's spawned tasks).
 */
function inBackground(
  ctx: StartupContext,
  applicationName: string,
  what: string,
  task: (sql: Sql) => Promise<void>,
): void {
  void (async () => {
    const { connectionTarget, openConnection } = await import("../apply/connection.ts");
    const sql = openConnection(connectionTarget(ctx.params.connstr), {
      applicationName,
      log: ctx.log,
    });
    const end = () => void sql.end({ timeout: 0 });
    ctx.signal.addEventListener("abort", end, { once: true });
    try {
      await task(sql);
    } finally {
      ctx.signal.removeEventListener("abort", end);
      await sql.end({ timeout: 0 });
    }
  })().catch((e) => ctx.log.error(`${what}: ${errorMessage(e)}`));
}

/** Migrations run after the startup apply; failures are logged and counted. */
function startMigrations(ctx: StartupContext): void {
  inBackground(ctx, "compute_ctl:migrations", "migrations", async (sql) => {
    const { runMigrations } = await import("../apply/migrations.ts");
    await runMigrations(sql, {
      privilegedRoleName: ctx.params.privilegedRoleName,
      log: ctx.log,
      onFailure: (id) => ctx.catalog.onMigrationFailure(id),
    });
  });
}

/**
 * Upstream post_apply_config, for every primary: `ALTER EXTENSION neon UPDATE`
 * where the extension is installed.
 */
function startNeonExtensionUpdate(ctx: StartupContext): void {
  inBackground(ctx, "compute_ctl:post_apply_config", "ALTER EXTENSION neon UPDATE", async (sql) => {
    const rows = await sql.unsafe(
      "SELECT 1 FROM pg_catalog.pg_extension WHERE extname OPERATOR(pg_catalog.=) 'neon'",
    );
    if (rows.length === 0) return;
    await sql.unsafe("ALTER EXTENSION neon UPDATE");
    ctx.log.info("updated the neon extension");
  });
}

/** One installed-extensions scan after a primary is configured (upstream: always). */
function startInstalledExtensionsScan(ctx: StartupContext): void {
  void (async () => {
    const { collectInstalledExtensions } = await import("../background/installed-extensions.ts");
    await collectInstalledExtensions(
      ctx.params.connstr,
      ctx.log,
      (list) => ctx.catalog.onInstalledExtensions(list),
      ctx.signal,
    );
  })().catch((e) => ctx.log.error(`installed extensions: ${errorMessage(e)}`));
}

export async function configureAsPrimary(ctx: StartupContext): Promise<void> {
  await configureCatalog(ctx);
  // Upstream's post_apply_config and first extension scan, for every primary that got here.
  startNeonExtensionUpdate(ctx);
  startInstalledExtensionsScan(ctx);
}

async function configureCatalog(ctx: StartupContext): Promise<void> {
  if (ctx.pspec.spec.skip_pg_catalog_updates) return;
  const { collectionIntervalSeconds } = await import("../background/installed-extensions.ts");
  ctx.catalog.extensionsCollectionInterval = collectionIntervalSeconds(
    ctx.pspec.spec.suspend_timeout_seconds,
  );
  const { pgdata } = ctx.params;
  const owner = ctx.runAs ?? undefined;
  await withTempOverride(
    pgdata,
    "neon.max_cluster_size=-1",
    async () => {
      await pgReloadConf(ctx);
      await applyConfig(ctx, "startup");
    },
    owner,
  );
  const line = "neon.disable_logical_replication_subscribers=false";
  if (await lineInFile(join(pgdata, "postgresql.conf"), line)) {
    ctx.log.info(`updated postgresql.conf to set ${line}`);
  }
  await pgReloadConf(ctx).catch((e) => ctx.log.warn(`pg_ctl reload: ${errorMessage(e)}`));
}
