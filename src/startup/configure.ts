// Post-start configuration of a primary (upstream configure_as_primary): the
// temporary `neon.max_cluster_size=-1` override around the catalog apply, then
// `neon.disable_logical_replication_subscribers=false` and a reload.

import { join } from "node:path";
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

/**
 * The catalog apply itself (roles, databases, extensions, migrations) is its
 * own piece of work; until it lands this build says so once, loudly, instead
 * of pretending the spec's roles and databases exist.
 */
export async function applyConfig(ctx: StartupContext): Promise<void> {
  const { cluster } = ctx.pspec.spec;
  ctx.log.warn(
    `spec apply is not implemented in this build yet: ${cluster.roles.length} role(s) and ${cluster.databases.length} database(s) of the spec were not reconciled`,
  );
}

export async function configureAsPrimary(ctx: StartupContext): Promise<void> {
  if (ctx.pspec.spec.skip_pg_catalog_updates) return;
  const { pgdata } = ctx.params;
  const owner = ctx.runAs ?? undefined;
  await withTempOverride(
    pgdata,
    "neon.max_cluster_size=-1",
    async () => {
      await pgReloadConf(ctx);
      await applyConfig(ctx);
    },
    owner,
  );
  const line = "neon.disable_logical_replication_subscribers=false";
  if (await lineInFile(join(pgdata, "postgresql.conf"), line)) {
    ctx.log.info(`updated postgresql.conf to set ${line}`);
  }
  await pgReloadConf(ctx).catch((e) => ctx.log.warn(`pg_ctl reload: ${errorMessage(e)}`));
}
