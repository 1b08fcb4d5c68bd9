// The spec apply against a real PostgreSQL started for this file: every
// statement kind, the tricky names of upstream's catalog test, dependencies
// on drop, errors, and the proof that a second apply runs no DDL (the server
// logs DDL statements, and an event trigger logs DDL run inside DO blocks).

import { afterAll, beforeAll, describe, expect, setDefaultTimeout, test } from "bun:test";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { memoryLogger } from "../log.ts";
import { parseComputeSpec } from "../spec/parse.ts";
import { TEST_PG_BIN_DIR } from "../testing/pg.ts";
import { startTestCluster, type TestCluster } from "../testing/pg-cluster.ts";
import { minimalSpecJson } from "../testing/specs.ts";
import { until } from "../testing/until.ts";
import { ApplyError, applySpecSql } from "./execute.ts";

setDefaultTimeout(60_000);

let pg: TestCluster;

const LOG_DDL = `
CREATE FUNCTION public.log_ddl() RETURNS event_trigger LANGUAGE plpgsql AS $$
BEGIN RAISE LOG 'event trigger saw DDL: %', tg_tag; END $$;
CREATE EVENT TRIGGER log_ddl ON ddl_command_start EXECUTE FUNCTION public.log_ddl();
`;

beforeAll(async () => {
  pg = await startTestCluster({ log_statement: "'ddl'" });
  // New databases copy template1, so they log DDL as well.
  await pg.psql(LOG_DDL, "template1");
  await pg.psql(LOG_DDL, "postgres");
});

afterAll(async () => {
  await pg?.stop();
});

interface RoleJson {
  name: string;
  encrypted_password?: string | null;
  options?: { name: string; value: string | null; vartype: string }[] | null;
}
interface DbJson {
  name: string;
  owner: string;
  options?: { name: string; value: string | null; vartype: string }[] | null;
}

function spec(roles: RoleJson[], databases: DbJson[], extra: Record<string, unknown> = {}) {
  return parseComputeSpec(
    minimalSpecJson({
      cluster: {
        roles: roles.map((r) => ({ encrypted_password: null, options: null, ...r })),
        databases: databases.map((d) => ({ options: null, ...d })),
      },
      ...extra,
    }),
  );
}

async function apply(
  s: ReturnType<typeof spec>,
  o: { prepared?: Map<string, string>; concurrency?: number } = {},
) {
  const { log, lines } = memoryLogger();
  const summary = await applySpecSql(s, {
    connstr: new URL(pg.url),
    privilegedRoleName: "neon_superuser",
    concurrency: o.concurrency ?? 4,
    log,
    prepared: o.prepared ?? new Map(),
  });
  return { summary, lines };
}

/** The ApplyError an apply of `s` fails with. */
async function applyError(s: ReturnType<typeof spec>): Promise<ApplyError> {
  const err = await apply(s).catch((e: unknown) => e);
  expect(err).toBeInstanceOf(ApplyError);
  return err as ApplyError;
}

/** Server log lines about DDL written after `from` (an offset into the log). */
async function ddlSince(from: number): Promise<string[]> {
  await pg.logBarrier();
  return pg
    .log()
    .slice(from)
    .split("\n")
    .filter((l) => l.includes("statement: ") || l.includes("event trigger saw DDL"));
}

const q = async (sql: string, db = "postgres") => (await pg.psql(sql, db)).trim();
const md5 = (password: string, role: string) =>
  new Bun.CryptoHasher("md5").update(password + role).digest("hex");

describe("tricky names (upstream test_compute_catalog)", () => {
  const fixture = JSON.parse(
    readFileSync(
      join(
        import.meta.dir,
        "../../../shared/fixtures/neon/extracted__test_compute_catalog_tricky_names.json",
      ),
      "utf8",
    ),
  ) as { roles: RoleJson[]; databases: DbJson[] };

  test("all are created, a second apply runs no DDL, and delta operations drop them all", async () => {
    const s = spec(fixture.roles, fixture.databases);
    await apply(s);
    const roles = (await q("SELECT rolname FROM pg_roles")).split("\n");
    const dbs = (await q("SELECT datname FROM pg_database")).split("\n");
    // psql prints a name with a tab or newline as is; compare through JSON to be exact.
    const exact = JSON.parse(
      await q(
        "SELECT json_build_object('r', (SELECT json_agg(rolname) FROM pg_roles), 'd', (SELECT json_agg(datname) FROM pg_database))",
      ),
    ) as { r: string[]; d: string[] };
    for (const r of fixture.roles) expect(exact.r).toContain(r.name);
    for (const d of fixture.databases) expect(exact.d).toContain(d.name);
    expect(roles.length).toBeGreaterThan(fixture.roles.length);
    expect(dbs.length).toBeGreaterThan(fixture.databases.length);
    // Owners as in the spec.
    const owners = JSON.parse(
      await q("SELECT json_object_agg(datname, pg_get_userbyid(datdba)) FROM pg_database"),
    ) as Record<string, string>;
    for (const d of fixture.databases) expect(owners[d.name]).toBe(d.owner);

    // A fresh process (nothing remembered) applying the same spec: no DDL at all.
    const from = pg.log().length;
    const again = await apply(s);
    expect(await ddlSince(from)).toEqual([]);
    expect(again.summary.statements).toBe(fixture.databases.length);

    const drop = spec([], [], {
      delta_operations: [
        ...fixture.databases.map((d) => ({ action: "delete_db", name: d.name })),
        ...fixture.roles.map((r) => ({ action: "delete_role", name: r.name })),
      ],
    });
    await apply(drop);
    const left = JSON.parse(
      await q(
        "SELECT json_build_object('r', (SELECT json_agg(rolname) FROM pg_roles), 'd', (SELECT json_agg(datname) FROM pg_database))",
      ),
    ) as { r: string[]; d: string[] };
    for (const r of fixture.roles) expect(left.r).not.toContain(r.name);
    for (const d of fixture.databases) expect(left.d).not.toContain(d.name);
  });

  test("renames round-trip the tricky names too", async () => {
    const names = fixture.roles.slice(1, 8).map((r) => r.name);
    await apply(
      spec(
        names.map((name) => ({ name })),
        [],
      ),
    );
    const renamed = names.map((n) => `${n} renamed`.slice(0, 63));
    await apply(
      spec(
        renamed.map((name) => ({ name })),
        [],
        {
          delta_operations: names.map((n, i) => ({
            action: "rename_role",
            name: n,
            new_name: renamed[i],
          })),
        },
      ),
    );
    const now = JSON.parse(await q("SELECT json_agg(rolname) FROM pg_roles")) as string[];
    for (const n of renamed) expect(now).toContain(n);
    for (const n of names) expect(now).not.toContain(n);
    await apply(
      spec([], [], { delta_operations: renamed.map((name) => ({ action: "delete_role", name })) }),
    );
  });
});

describe("roles", () => {
  test("options of every kind, md5 and SCRAM passwords, alter only on change", async () => {
    const scram = await q(
      "SET password_encryption = 'scram-sha-256'; CREATE ROLE tmp_scram PASSWORD 'secret'; SELECT rolpassword FROM pg_authid WHERE rolname = 'tmp_scram'; DROP ROLE tmp_scram",
    );
    expect(scram).toStartWith("SCRAM-SHA-256$");
    const roles: RoleJson[] = [
      { name: "r_md5", encrypted_password: md5("pw1", "r_md5") },
      { name: "r_scram", encrypted_password: scram },
      {
        name: "r_opts",
        options: [
          { name: "CONNECTION LIMIT", value: "7", vartype: "integer" },
          { name: "VALID UNTIL", value: "2099-01-01 00:00:00+00", vartype: "string" },
          { name: "SUPERUSER", value: null, vartype: "bool" },
        ],
      },
    ];
    const first = await apply(spec(roles, []));
    const row = await q(
      "SELECT rolname, rolcanlogin, rolconnlimit, rolvaliduntil, rolsuper, rolpassword FROM pg_authid WHERE rolname LIKE 'r\\_%' ORDER BY 1",
    );
    expect(row.split("\n")).toEqual([
      `r_md5|t|-1||f|md5${md5("pw1", "r_md5")}`,
      "r_opts|t|7|2099-01-01 00:00:00+00|t|",
      `r_scram|t|-1||f|${scram}`,
    ]);
    // The password never reaches the log.
    expect(first.lines.join("\n")).not.toContain(scram);
    expect(first.lines.join("\n")).not.toContain(md5("pw1", "r_md5"));
    // Members of the privileged role, with its privileges.
    expect(
      await q(
        "SELECT string_agg(rolname, ',' ORDER BY rolname) FROM pg_roles WHERE pg_has_role(oid, 'neon_superuser', 'member') AND rolname LIKE 'r\\_%'",
      ),
    ).toBe("r_md5,r_opts,r_scram");

    // Same spec: no statements at all; a new md5 password: one ALTER ROLE.
    const from = pg.log().length;
    expect((await apply(spec(roles, []))).summary.statements).toBe(0);
    expect(await ddlSince(from)).toEqual([]);
    const changed = roles.map((r) =>
      r.name === "r_md5" ? { ...r, encrypted_password: md5("pw2", "r_md5") } : r,
    );
    const from2 = pg.log().length;
    expect((await apply(spec(changed, []))).summary.statements).toBe(1);
    const logged = await ddlSince(from2);
    expect(logged).toHaveLength(1);
    expect(logged[0]).toContain('ALTER ROLE "r_md5"');
    expect(await q("SELECT rolpassword FROM pg_authid WHERE rolname = 'r_md5'")).toBe(
      `md5${md5("pw2", "r_md5")}`,
    );
    await apply(
      spec([], [], {
        delta_operations: roles.map((r) => ({ action: "delete_role", name: r.name })),
      }),
    );
    expect(await q("SELECT count(*) FROM pg_roles WHERE rolname LIKE 'r\\_%'")).toBe("0");
  });

  test("rename_role renames an existing role and a later apply sets its password again", async () => {
    await apply(spec([{ name: "ren_a", encrypted_password: md5("x", "ren_a") }], []));
    const s = spec([{ name: "ren_b", encrypted_password: md5("x", "ren_b") }], [], {
      delta_operations: [{ action: "rename_role", name: "ren_a", new_name: "ren_b" }],
    });
    await apply(s);
    expect(await q("SELECT rolpassword FROM pg_authid WHERE rolname = 'ren_b'")).toBe(
      `md5${md5("x", "ren_b")}`,
    );
    // The same delta again: the old name is gone, nothing to do (upstream panics here).
    expect((await apply(s)).summary.statements).toBe(0);
    await apply(spec([], [], { delta_operations: [{ action: "delete_role", name: "ren_b" }] }));
  });

  test("a role owning objects in several databases, one not in the spec, is dropped", async () => {
    await apply(
      spec(
        [{ name: "own_a" }, { name: "gone" }],
        [
          { name: "dep_1", owner: "own_a" },
          { name: "dep_2", owner: "own_a" },
        ],
      ),
    );
    await q("CREATE DATABASE dep_x OWNER own_a");
    for (const db of ["dep_1", "dep_2", "dep_x", "postgres"]) {
      await q(
        `GRANT CREATE ON SCHEMA public TO gone; SET ROLE gone; CREATE TABLE public.t_${db} (i int); RESET ROLE; GRANT SELECT ON public.t_${db} TO own_a`,
        db,
      );
    }
    await q(
      "GRANT SELECT ON ALL TABLES IN SCHEMA public TO gone; CREATE TABLE public.granted (i int); GRANT SELECT ON public.granted TO gone",
      "dep_1",
    );
    await apply(
      spec(
        [{ name: "own_a" }],
        [
          { name: "dep_1", owner: "own_a" },
          { name: "dep_2", owner: "own_a" },
        ],
        { delta_operations: [{ action: "delete_role", name: "gone" }] },
      ),
    );
    expect(await q("SELECT count(*) FROM pg_roles WHERE rolname = 'gone'")).toBe("0");
    // Objects went to the database's owner (cloud_admin in the system database).
    expect(
      await q("SELECT pg_get_userbyid(relowner) FROM pg_class WHERE relname = 't_dep_1'", "dep_1"),
    ).toBe("own_a");
    expect(
      await q("SELECT pg_get_userbyid(relowner) FROM pg_class WHERE relname = 't_dep_x'", "dep_x"),
    ).toBe("own_a");
    expect(
      await q("SELECT pg_get_userbyid(relowner) FROM pg_class WHERE relname = 't_postgres'"),
    ).toBe("cloud_admin");
    await q("DROP TABLE public.t_postgres");
    await q("DROP DATABASE dep_x");
  });

  test("a role renamed and dropped in one spec loses its objects first", async () => {
    await apply(spec([{ name: "rd_a" }], []));
    await q(
      "GRANT CREATE ON SCHEMA public TO rd_a; SET ROLE rd_a; CREATE TABLE public.rd_t (i int)",
    );
    await apply(
      spec([], [], {
        delta_operations: [
          { action: "rename_role", name: "rd_a", new_name: "rd_b" },
          { action: "delete_role", name: "rd_b" },
        ],
      }),
    );
    expect(await q("SELECT count(*) FROM pg_roles WHERE rolname IN ('rd_a', 'rd_b')")).toBe("0");
    expect(await q("SELECT pg_get_userbyid(relowner) FROM pg_class WHERE relname = 'rd_t'")).toBe(
      "cloud_admin",
    );
    await q("DROP TABLE public.rd_t");
  });

  test("a role that owns a spec database cannot be dropped: the error says why", async () => {
    await apply(spec([{ name: "owner_k" }], [{ name: "kept_db", owner: "owner_k" }]));
    const e = await applyError(
      spec([], [{ name: "kept_db", owner: "owner_k" }], {
        delta_operations: [{ action: "delete_role", name: "owner_k" }],
      }),
    );
    expect(e.phase).toBe("DropRoles");
    expect(e.sqlstate).toBe("2BP01");
    expect(e.message).toContain('role "owner_k"');
    expect(e.message).toContain("owner of database kept_db");
    await q("DROP DATABASE kept_db");
    await q("DROP ROLE owner_k");
  });
});

describe("privileged role", () => {
  test("is created with its attributes and memberships, and spec roles are its members", async () => {
    await apply(spec([{ name: "priv_member" }], []));
    expect(
      await q(
        "SELECT rolcreatedb, rolcreaterole, rolcanlogin, rolreplication, rolbypassrls, rolsuper FROM pg_roles WHERE rolname = 'neon_superuser'",
      ),
    ).toBe("t|t|f|t|t|f");
    expect(
      await q(
        "SELECT string_agg(b.rolname, ',' ORDER BY b.rolname) FROM pg_auth_members m JOIN pg_roles b ON b.oid = m.roleid WHERE m.member = 'neon_superuser'::regrole",
      ),
    ).toBe("pg_read_all_data,pg_write_all_data");
    expect(
      await q(
        "SELECT rolcreatedb, rolcreaterole, rolreplication, rolbypassrls, rolinherit, pg_has_role('priv_member', 'neon_superuser', 'member') FROM pg_roles WHERE rolname = 'priv_member'",
      ),
    ).toBe("t|t|t|t|t|t");
    await q("DROP ROLE priv_member");
  });
});

describe("databases", () => {
  test("options, owner change, rename, template flag and drop", async () => {
    const roles = [{ name: "db_o1" }, { name: "db_o2" }];
    await apply(
      spec(roles, [
        {
          name: "db_opts",
          owner: "db_o1",
          options: [
            { name: "TEMPLATE", value: "template0", vartype: "string_noquote" },
            { name: "LC_COLLATE", value: "C", vartype: "string" },
            { name: "LC_CTYPE", value: "C", vartype: "string" },
            { name: "CONNECTION LIMIT", value: "12", vartype: "integer" },
          ],
        },
      ]),
    );
    expect(
      await q(
        "SELECT pg_get_userbyid(datdba), datcollate, datconnlimit FROM pg_database WHERE datname = 'db_opts'",
      ),
    ).toBe("db_o1|C|12");
    // New databases: schema public grants for the privileged role.
    expect(
      await q(
        "SELECT count(*) FROM pg_default_acl d, aclexplode(d.defaclacl) a WHERE a.grantee = 'neon_superuser'::regrole AND a.is_grantable",
        "db_opts",
      ),
    ).not.toBe("0");
    expect(await q("SELECT has_database_privilege('neon_superuser', 'db_opts', 'CREATE')")).toBe(
      "t",
    );

    await apply(spec(roles, [{ name: "db_opts", owner: "db_o2" }]));
    expect(
      await q("SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = 'db_opts'"),
    ).toBe("db_o2");

    await q("ALTER DATABASE db_opts IS_TEMPLATE true");
    await apply(
      spec(roles, [{ name: "db_new", owner: "db_o2" }], {
        delta_operations: [{ action: "rename_db", name: "db_opts", new_name: "db_new" }],
      }),
    );
    expect(await q("SELECT datname FROM pg_database WHERE datname LIKE 'db\\_%' ORDER BY 1")).toBe(
      "db_new",
    );
    await apply(spec(roles, [], { delta_operations: [{ action: "delete_db", name: "db_new" }] }));
    expect(await q("SELECT count(*) FROM pg_database WHERE datname = 'db_new'")).toBe("0");
  });

  test("a database with a subscription and open sessions is dropped", async () => {
    await apply(spec([{ name: "sub_o" }], [{ name: "sub_db", owner: "sub_o" }]));
    await q(
      "CREATE SUBSCRIPTION s1 CONNECTION 'host=127.0.0.1 port=1 dbname=x' PUBLICATION p WITH (connect = false)",
      "sub_db",
    );
    // A session that stays connected while the drop runs.
    const holder = Bun.spawn(
      [
        join(TEST_PG_BIN_DIR, "psql"),
        "-X",
        "-h",
        "127.0.0.1",
        "-p",
        String(pg.port),
        "-U",
        "cloud_admin",
        "-d",
        "sub_db",
        "-c",
        "SELECT pg_sleep(60)",
      ],
      { stdout: "ignore", stderr: "ignore" },
    );
    try {
      await until(
        "the holding session to connect",
        async () =>
          (await q("SELECT count(*) FROM pg_stat_activity WHERE datname = 'sub_db'")) !== "0",
        10_000,
      );
      await apply(
        spec([{ name: "sub_o" }], [], {
          delta_operations: [{ action: "delete_db", name: "sub_db" }],
        }),
      );
      expect(await q("SELECT count(*) FROM pg_database WHERE datname = 'sub_db'")).toBe("0");
      expect(await q("SELECT count(*) FROM pg_subscription")).toBe("0");
    } finally {
      holder.kill();
      await holder.exited;
    }
  });
});

describe("drop_subscriptions_before_start", () => {
  test("drops the subscriptions of spec databases once per timeline", async () => {
    // compute_ctl's postgresql.conf sets it; the bookkeeping reads it back.
    await q(`ALTER DATABASE postgres SET neon.timeline_id = '${"b".repeat(32)}'`);
    const prepared = new Map<string, string>();
    await apply(spec([{ name: "dsb_o" }], [{ name: "dsb_db", owner: "dsb_o" }]), { prepared });
    const subscribe = (name: string) =>
      q(
        `CREATE SUBSCRIPTION ${name} CONNECTION 'host=127.0.0.1 port=1 dbname=x' PUBLICATION p WITH (connect = false)`,
        "dsb_db",
      );
    await subscribe("branch_sub");
    const s = spec([{ name: "dsb_o" }], [{ name: "dsb_db", owner: "dsb_o" }], {
      drop_subscriptions_before_start: true,
    });
    await apply(s, { prepared });
    expect(await q("SELECT count(*) FROM pg_subscription")).toBe("0");
    expect(await q("SELECT timeline_id FROM neon.drop_subscriptions_done")).toBe("b".repeat(32));
    // Done for this timeline: a subscription made afterwards is the user's and stays.
    await subscribe("user_sub");
    expect((await apply(s, { prepared })).summary).toEqual({ statements: 0, databasesVisited: 0 });
    expect(await q("SELECT subname FROM pg_subscription")).toBe("user_sub");
    await q(
      "ALTER SUBSCRIPTION user_sub SET (slot_name = NONE); DROP SUBSCRIPTION user_sub",
      "dsb_db",
    );
    await q(
      "DROP TABLE neon.drop_subscriptions_done; ALTER DATABASE postgres RESET neon.timeline_id",
    );
  });
});

describe("errors", () => {
  test("a failing statement names the phase, the object and the SQLSTATE; the rest of the phase ran", async () => {
    const e = await applyError(
      spec(
        [{ name: "err_ok" }],
        [
          { name: "err_db", owner: "no_such_role" },
          { name: "err_db2", owner: "err_ok" },
        ],
      ),
    );
    expect(e.phase).toBe("CreateAndAlterDatabases");
    expect(e.sqlstate).toBe("42704");
    expect(e.message).toContain('database "err_db"');
    expect(e.message).toContain('role "no_such_role" does not exist');
    // Statements are pipelined as upstream: the earlier phase and the rest of this one ran.
    expect(await q("SELECT count(*) FROM pg_roles WHERE rolname = 'err_ok'")).toBe("1");
    expect(await q("SELECT count(*) FROM pg_database WHERE datname = 'err_db2'")).toBe("1");
    await q("DROP DATABASE err_db2");
    await q("DROP ROLE err_ok");
  });

  test("the log lists what ran and what failed", async () => {
    const { log, lines } = memoryLogger();
    await applySpecSql(spec([{ name: "log_r" }], [{ name: "log_db", owner: "nobody_here" }]), {
      connstr: new URL(pg.url),
      privilegedRoleName: "neon_superuser",
      concurrency: 1,
      log,
      prepared: new Map(),
    }).catch(() => {});
    const text = lines.join("\n");
    expect(text).toContain("applying CreateAndAlterRoles: 1 statement(s)");
    expect(text).toContain('CREATE ROLE "log_r"');
    expect(text).toMatch(
      /CreateAndAlterDatabases: statement 1 of 2 failed: role "nobody_here" does not exist/,
    );
    // The GRANT on the database that was not created fails too; both are listed.
    expect(text).toMatch(/statement 2 of 2 failed: database "log_db" does not exist/);
    expect(text).toContain("CreateAndAlterDatabases: 0 of 2 statement(s) succeeded");
    await q("DROP ROLE log_r");
  });

  test("an unreachable server is an ApplyError, not a hang", async () => {
    const closed = Bun.listen({ hostname: "127.0.0.1", port: 0, socket: { data() {} } });
    const port = closed.port;
    closed.stop(true);
    const { log } = memoryLogger();
    const err = await applySpecSql(spec([], []), {
      connstr: new URL(`postgresql://cloud_admin@127.0.0.1:${port}/postgres`),
      privilegedRoleName: "neon_superuser",
      concurrency: 1,
      log,
      prepared: new Map(),
    }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ApplyError);
    expect((err as Error).message).toStartWith("apply_spec_sql: reading the catalog:");
  });
});

describe("concurrency and memo", () => {
  test("a re-apply with the remembered state opens no database connection", async () => {
    const dbs = Array.from({ length: 12 }, (_, i) => ({ name: `memo_${i}`, owner: "memo_o" }));
    const prepared = new Map<string, string>();
    const first = await apply(spec([{ name: "memo_o" }], dbs), { prepared, concurrency: 5 });
    expect(first.summary.databasesVisited).toBe(12);
    expect(prepared.size).toBeGreaterThanOrEqual(12);
    const again = await apply(spec([{ name: "memo_o" }], dbs), { prepared, concurrency: 1 });
    expect(again.summary).toEqual({ statements: 0, databasesVisited: 0 });
    // A database dropped and re-created under the same name is prepared again.
    await q("DROP DATABASE memo_3; CREATE DATABASE memo_3 OWNER memo_o");
    const third = await apply(spec([{ name: "memo_o" }], dbs), { prepared, concurrency: 1 });
    expect(third.summary.databasesVisited).toBe(1);
    await apply(
      spec([], [], {
        delta_operations: [
          ...dbs.map((d) => ({ action: "delete_db", name: d.name })),
          { action: "delete_role", name: "memo_o" },
        ],
      }),
    );
  });
});
