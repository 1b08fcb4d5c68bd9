// Catalog migrations (upstream-api.md §3.10): a numbered list, only ever
// appended to, with the last applied number in neon_migration.migration_id.
// Each runs in its own transaction together with the bump of that number, so
// a failed migration leaves the number before it and is retried on the next
// start. The SQL is ours; the effect of each entry is upstream's.

import type { Sql } from "postgres";
import { errorMessage } from "../errors.ts";
import type { Logger } from "../log.ts";

/** An entry whose effect moved elsewhere: only its number is recorded. */
const SKIP = "-- SKIP";

/** `{privileged_role_name}` is replaced by the privileged role (upstream's one placeholder). */
export const MIGRATIONS: readonly string[] = [
  // 1: the privileged role bypasses row-level security.
  "ALTER ROLE {privileged_role_name} BYPASSRLS",
  // 2: members of the privileged role inherit its rights; other roles
  // (predefined pg_* ones aside) lose BYPASSRLS.
  `DO $$
DECLARE
  r pg_catalog.name;
BEGIN
  FOR r IN
    SELECT rolname FROM pg_catalog.pg_roles
    WHERE pg_catalog.pg_has_role(rolname, '{privileged_role_name}', 'member')
  LOOP
    RAISE NOTICE 'EXECUTING ALTER ROLE % INHERIT', pg_catalog.quote_ident(r);
    EXECUTE pg_catalog.format('ALTER ROLE %I INHERIT', r);
  END LOOP;
  FOR r IN
    SELECT rolname FROM pg_catalog.pg_roles
    WHERE NOT pg_catalog.pg_has_role(rolname, '{privileged_role_name}', 'member')
      AND NOT pg_catalog.starts_with(rolname, 'pg_')
  LOOP
    RAISE NOTICE 'EXECUTING ALTER ROLE % NOBYPASSRLS', pg_catalog.quote_ident(r);
    EXECUTE pg_catalog.format('ALTER ROLE %I NOBYPASSRLS', r);
  END LOOP;
END $$`,
  // 3: subscriptions may be created by the privileged role (the role exists from PG 16).
  `DO $$
BEGIN
  IF pg_catalog.current_setting('server_version_num')::pg_catalog.int4 >= 160000 THEN
    EXECUTE 'GRANT pg_create_subscription TO {privileged_role_name}';
  END IF;
END $$`,
  // 4
  "GRANT pg_monitor TO {privileged_role_name} WITH ADMIN OPTION",
  // 5–8: default privileges, now granted per database by the apply itself.
  SKIP,
  SKIP,
  SKIP,
  SKIP,
  // 9: revoking REPLICATION from existing roles was withdrawn.
  SKIP,
  // 10: snapshot synchronisation functions (pg_log_standby_snapshot exists from PG 16).
  `DO $$
BEGIN
  IF pg_catalog.current_setting('server_version_num')::pg_catalog.int4 >= 160000 THEN
    EXECUTE 'GRANT EXECUTE ON FUNCTION pg_catalog.pg_export_snapshot() TO {privileged_role_name}';
    EXECUTE 'GRANT EXECUTE ON FUNCTION pg_catalog.pg_log_standby_snapshot() TO {privileged_role_name}';
  END IF;
END $$`,
  // 11
  "GRANT EXECUTE ON FUNCTION pg_catalog.pg_show_replication_origin_status() TO {privileged_role_name}",
  // 12
  "GRANT pg_signal_backend TO {privileged_role_name} WITH ADMIN OPTION",
];

export function renderMigration(text: string, privilegedRoleName: string): string {
  return text.replaceAll("{privileged_role_name}", privilegedRoleName);
}

const PREPARE = [
  "CREATE SCHEMA IF NOT EXISTS neon_migration",
  "CREATE TABLE IF NOT EXISTS neon_migration.migration_id (key pg_catalog.int4 NOT NULL PRIMARY KEY, id pg_catalog.int8 NOT NULL DEFAULT 0)",
  "INSERT INTO neon_migration.migration_id VALUES (0, 0) ON CONFLICT DO NOTHING",
  "ALTER SCHEMA neon_migration OWNER TO cloud_admin",
  "REVOKE ALL ON SCHEMA neon_migration FROM PUBLIC",
];

export interface MigrationOptions {
  privilegedRoleName: string;
  log: Logger;
  /** Called with the 1-based number of a migration that failed. */
  onFailure?: (id: number) => void;
  /** Default MIGRATIONS; tests pass their own. */
  migrations?: readonly string[];
}

export interface MigrationResult {
  /** The recorded number afterwards. */
  id: number;
  ran: number[];
  failed: number | null;
}

/**
 * Runs the migrations after the recorded number on `sql`. A failure is logged
 * and reported, never thrown: startup does not depend on migrations.
 */
export async function runMigrations(sql: Sql, o: MigrationOptions): Promise<MigrationResult> {
  const list = o.migrations ?? MIGRATIONS;
  const ran: number[] = [];
  let current = 0;
  let k = 0;
  try {
    // Already there on every start but the first: checking saves five DDL statements.
    const [exists] = await sql.unsafe<{ present: boolean }[]>(
      "SELECT pg_catalog.to_regclass('neon_migration.migration_id') IS NOT NULL AS present",
    );
    if (exists?.present !== true) for (const s of PREPARE) await sql.unsafe(s);
    const [row] = await sql.unsafe<{ id: string }[]>(
      "SELECT id::pg_catalog.text AS id FROM neon_migration.migration_id",
    );
    current = Number(row?.id ?? 0);
    for (k = current + 1; k <= list.length; k++) {
      const text = renderMigration(list[k - 1] as string, o.privilegedRoleName);
      const id = k;
      await sql.begin(async (tx) => {
        if (text.startsWith(SKIP)) {
          o.log.info(`Skipping migration id=${id}`);
        } else {
          o.log.info(`Running migration id=${id}:\n${text}`);
          await tx.unsafe(text);
        }
        await tx.unsafe(`UPDATE neon_migration.migration_id SET id = ${id}`);
      });
      if (!text.startsWith(SKIP)) o.log.info(`Finished migration id=${id}`);
      ran.push(id);
      current = id;
    }
    return { id: current, ran, failed: null };
  } catch (e) {
    const id = k === 0 ? 0 : k;
    o.log.error(
      id === 0
        ? `Failed to prepare the migrations: ${errorMessage(e)}`
        : `Failed to run migration id=${id}: ${errorMessage(e)}`,
    );
    if (id !== 0) o.onFailure?.(id);
    return { id: current, ran, failed: id };
  }
}
