// Migrations against a real PostgreSQL: upstream's twelve applied once and
// not again, each in its own transaction, a failure stopping the run and
// being retried from the same number next time.

import { afterAll, beforeAll, describe, expect, setDefaultTimeout, test } from "bun:test";
import type { Sql } from "postgres";
import { memoryLogger } from "../log.ts";
import { startTestCluster, type TestCluster } from "../testing/pg-cluster.ts";
import { connectionTarget, openConnection } from "./connection.ts";
import { MIGRATIONS, runMigrations } from "./migrations.ts";

setDefaultTimeout(60_000);

let pg: TestCluster;
const open: Sql[] = [];

beforeAll(async () => {
  pg = await startTestCluster({ log_statement: "'ddl'" });
  // The startup apply creates the privileged role before migrations run.
  await pg.psql(
    "CREATE ROLE neon_superuser CREATEDB CREATEROLE NOLOGIN REPLICATION IN ROLE pg_read_all_data, pg_write_all_data; CREATE DATABASE mig_fail",
  );
});

afterAll(async () => {
  await Promise.all(open.map((s) => s.end({ timeout: 0 })));
  await pg?.stop();
});

function connect(database = "postgres"): Sql {
  const { log } = memoryLogger();
  const sql = openConnection(connectionTarget(new URL(pg.url)), {
    database,
    applicationName: "compute_ctl:migrations",
    log,
  });
  open.push(sql);
  return sql;
}

const q = async (sql: string, db = "postgres") => (await pg.psql(sql, db)).trim();

describe("runMigrations", () => {
  test("upstream's list runs once: every number recorded, the grants in place, nothing the second time", async () => {
    const { log, lines } = memoryLogger();
    const failures: number[] = [];
    const first = await runMigrations(connect(), {
      privilegedRoleName: "neon_superuser",
      log,
      onFailure: (id) => failures.push(id),
    });
    expect(first).toEqual({
      id: MIGRATIONS.length,
      ran: Array.from({ length: MIGRATIONS.length }, (_, i) => i + 1),
      failed: null,
    });
    expect(failures).toEqual([]);
    expect(MIGRATIONS).toHaveLength(12);
    expect(await q("SELECT id FROM neon_migration.migration_id")).toBe("12");
    expect(lines.some((l) => l.includes("Skipping migration id=5"))).toBe(true);
    expect(lines.some((l) => l.includes("Finished migration id=12"))).toBe(true);
    expect(await q("SELECT rolbypassrls FROM pg_roles WHERE rolname = 'neon_superuser'")).toBe("t");
    expect(
      await q(
        "SELECT string_agg(r.rolname || ':' || m.admin_option, ',' ORDER BY r.rolname) FROM pg_auth_members m JOIN pg_roles r ON r.oid = m.roleid WHERE m.member = 'neon_superuser'::regrole AND r.rolname IN ('pg_monitor', 'pg_signal_backend')",
      ),
    ).toBe("pg_monitor:true,pg_signal_backend:true");
    expect(
      await q(
        "SELECT has_function_privilege('neon_superuser', 'pg_show_replication_origin_status()', 'EXECUTE')",
      ),
    ).toBe("t");
    expect(
      await q("SELECT nspowner::regrole FROM pg_namespace WHERE nspname = 'neon_migration'"),
    ).toBe("cloud_admin");

    const from = pg.log().length;
    const second = await runMigrations(connect(), { privilegedRoleName: "neon_superuser", log });
    expect(second).toEqual({ id: 12, ran: [], failed: null });
    await pg.logBarrier();
    expect(pg.log().slice(from)).not.toContain("statement: ");
  });

  test("a failing migration rolls back, stops the run and is retried from its number", async () => {
    const { log, lines } = memoryLogger();
    const failures: number[] = [];
    const list = [
      "CREATE TABLE public.m1 (i int)",
      "CREATE TABLE public.m2 (i int); SELECT 1/0",
      "-- SKIP",
    ];
    const first = await runMigrations(connect("mig_fail"), {
      privilegedRoleName: "neon_superuser",
      log,
      onFailure: (id) => failures.push(id),
      migrations: list,
    });
    expect(first).toEqual({ id: 1, ran: [1], failed: 2 });
    expect(failures).toEqual([2]);
    expect(lines.some((l) => l.includes("Failed to run migration id=2: division by zero"))).toBe(
      true,
    );
    // Its own transaction: the table of the failed migration is not there.
    expect(
      await q(
        "SELECT to_regclass('public.m1') IS NOT NULL, to_regclass('public.m2') IS NULL",
        "mig_fail",
      ),
    ).toBe("t|t");
    expect(await q("SELECT id FROM neon_migration.migration_id", "mig_fail")).toBe("1");

    const fixed = [list[0] as string, "CREATE TABLE public.m2 (i int)", "-- SKIP"];
    const second = await runMigrations(connect("mig_fail"), {
      privilegedRoleName: "neon_superuser",
      log,
      migrations: fixed,
    });
    expect(second).toEqual({ id: 3, ran: [2, 3], failed: null });
  });
});
