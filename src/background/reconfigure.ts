// reconfigure() (upstream compute.rs; upstream-api.md §5, lifecycle §7.3): what
// a /configure does to a running compute. postgresql.conf is rewritten from
// the new spec and postgres reloads it; then, unless catalog updates are
// skipped, the catalog apply runs (primaries) inside the
// `neon.max_cluster_size=-1` override. Postgres is never restarted: only
// reloadable settings take effect. No migrations, basebackup or safekeeper sync.

import { ComputeCtlError } from "../errors.ts";
import type { ComputeSpec } from "../spec/schema.ts";
import { type ApplyTrigger, applyConfig, pgReloadConf } from "../startup/configure.ts";
import type { StartupContext } from "../startup/context.ts";
import { unsupportedSpecFeatures } from "../startup/index.ts";
import { withTempOverride, writePostgresConf } from "../startup/pgdata-files.ts";
import { readOvercommitMemory, renderPostgresConf } from "../startup/postgres-conf.ts";
import { collectionIntervalSeconds } from "./installed-extensions.ts";

export interface ReconfigureOptions {
  /** The catalog apply (primaries only); default startup's applyConfig. */
  applyConfig?: (ctx: StartupContext, trigger: ApplyTrigger) => Promise<void>;
}

/**
 * Spec fields upstream acts on in reconfigure that this build does not:
 * named in the log rather than silently dropped (as at startup).
 */
function unsupportedOnReconfigure(spec: ComputeSpec): string[] {
  const named: [unknown, string][] = [
    [spec.pgbouncer_settings, "pgbouncer_settings (pgbouncer tuning)"],
    [spec.local_proxy_config, "local_proxy_config (local_proxy configuration)"],
    [spec.logs_export_host, "logs_export_host (rsyslog export)"],
  ];
  return named
    .filter(([value]) => value !== null && value !== undefined)
    .map(([, what]) => `spec field ${what} is not supported by this build yet; ignored`);
}

/**
 * Applies `ctx.pspec` (the spec /configure stored) to the running postgres.
 * Any error fails the reconfiguration; the configurator turns it into `failed`.
 */
export async function reconfigure(
  ctx: StartupContext,
  options: ReconfigureOptions = {},
): Promise<void> {
  const { pspec, params, log } = ctx;
  const spec = pspec.spec;
  for (const w of unsupportedOnReconfigure(spec)) log.warn(w);
  // Startup refuses compliance audit levels too: a file promising an audit
  // trail we do not keep would be worse than a failed reconfiguration.
  const { fatal } = unsupportedSpecFeatures(spec);
  if (fatal !== null) throw new ComputeCtlError(fatal);

  ctx.catalog.extensionsCollectionInterval = collectionIntervalSeconds(
    spec.suspend_timeout_seconds,
  );
  const owner = ctx.runAs ?? undefined;
  // Same inputs as startup's preparePgdata, so the file differs only by the spec.
  const conf = renderPostgresConf({
    pspec,
    privilegedRoleName: params.privilegedRoleName,
    internalHttpPort: params.internalHttpPort,
    overcommitMemory2: readOvercommitMemory(),
    platform: process.platform === "darwin" ? "darwin" : "linux",
  });
  await writePostgresConf(params.pgdata, conf, owner);
  await pgReloadConf(ctx);

  if (!spec.skip_pg_catalog_updates) {
    const apply = options.applyConfig ?? applyConfig;
    await withTempOverride(
      params.pgdata,
      "neon.max_cluster_size=-1",
      async () => {
        await pgReloadConf(ctx);
        if (pspec.mode.kind === "primary") await apply(ctx, "reconfigure");
      },
      owner,
    );
    await pgReloadConf(ctx);
  }
  log.info(
    `finished reconfiguration of compute node for operation ${spec.operation_uuid ?? "unknown"}`,
  );
}
