// The planner as a table of (spec, catalog, prepared) -> statements
// (upstream-api.md §3.4–§3.5, with the "skip what is already done" rules of plan.ts).
import { describe, expect, test } from "bun:test";
import { ConfigError } from "../errors.ts";
import { parseComputeSpec } from "../spec/parse.ts";
import type { ComputeSpec } from "../spec/schema.ts";
import { minimalSpecJson, TEST_TIMELINE } from "../testing/specs.ts";
import type { Catalog, CatalogDatabase } from "./catalog.ts";
import {
  type ApplyPlan,
  catalogQuery,
  type PhaseName,
  type PlanInput,
  passwordMatches,
  planApply,
  preparedKey,
} from "./plan.ts";
import * as S from "./sql.ts";

const P = "neon_superuser";
const MD5 = "6b1d16b78004bbd51fa06af9eda75972";
const MD5_OTHER = "5b1d16b78004bbd51fa06af9eda75972";
const SCRAM = "SCRAM-SHA-256$4096:c2FsdA==$c3RvcmVk:c2VydmVy";

function cdb(oid: string, owner: string | null, over: Partial<CatalogDatabase> = {}) {
  return { oid, owner, restrictConn: false, invalid: false, isTemplate: false, ...over };
}

/** A cluster where an empty spec has nothing to do. */
function catalog(over: Partial<Catalog> = {}): Catalog {
  return {
    serverVersionNum: 170000,
    roles: new Map([
      ["cloud_admin", { password: null }],
      [P, { password: null }],
    ]),
    databases: new Map([
      ["postgres", cdb("5", "cloud_admin")],
      ["template0", cdb("4", "cloud_admin", { restrictConn: true, isTemplate: true })],
      ["template1", cdb("1", "cloud_admin", { isTemplate: true })],
    ]),
    roleDependencies: new Map(),
    subscriptions: new Map(),
    schemas: new Set(["neon"]),
    healthCheck: true,
    extensions: new Map([["neon", { version: "1.6", schema: "neon" }]]),
    availableExtensions: new Map([["neon", "1.6"]]),
    postgresAuditOff: false,
    dropSubscriptionsDone: false,
    ...over,
  };
}

/** The base catalog plus some roles and databases. */
function withObjects(
  roles: Record<string, string | null>,
  dbs: Record<string, CatalogDatabase>,
  over: Partial<Catalog> = {},
): Catalog {
  const base = catalog(over);
  for (const [name, password] of Object.entries(roles)) base.roles.set(name, { password });
  for (const [name, db] of Object.entries(dbs)) base.databases.set(name, db);
  return base;
}

type RoleJson = { name: string; encrypted_password?: string | null; options?: unknown };
type DbJson = { name: string; owner: string; options?: unknown };
type DeltaJson = { action: string; name: string; new_name?: string | null };

function spec(
  o: {
    roles?: RoleJson[];
    databases?: DbJson[];
    delta?: DeltaJson[];
    settings?: unknown[];
    postgresql_conf?: string;
    extra?: Record<string, unknown>;
  } = {},
): ComputeSpec {
  return parseComputeSpec(
    minimalSpecJson({
      cluster: {
        roles: o.roles ?? [],
        databases: o.databases ?? [],
        ...(o.settings ? { settings: o.settings } : {}),
        ...(o.postgresql_conf ? { postgresql_conf: o.postgresql_conf } : {}),
      },
      ...(o.delta ? { delta_operations: o.delta } : {}),
      ...o.extra,
    }),
  );
}

function plan(
  s: ComputeSpec,
  c: Catalog = catalog(),
  over: Partial<Omit<PlanInput, "spec" | "catalog">> = {},
): ApplyPlan {
  return planApply({
    spec: s,
    catalog: c,
    privilegedRoleName: P,
    systemDb: "postgres",
    prepared: new Map(),
    ...over,
  });
}

/** SQL of one system-database phase ([] if planned empty, undefined if not planned). */
function phaseSql(p: ApplyPlan, name: PhaseName): string[] | undefined {
  return [...p.before, ...p.after].find((ph) => ph.name === name)?.statements.map((s) => s.sql);
}

function systemSql(p: ApplyPlan): string[] {
  return [...p.before, ...p.after].flatMap((ph) => ph.statements.map((s) => s.sql));
}

/** database -> phase names of its task. */
function taskShape(tasks: ApplyPlan["perDatabase"]): [string, PhaseName[]][] {
  return tasks.map((t) => [t.database, t.phases.map((ph) => ph.name)]);
}

function taskSql(p: ApplyPlan, database: string, phase: PhaseName): string[] | undefined {
  return p.perDatabase
    .find((t) => t.database === database)
    ?.phases.find((ph) => ph.name === phase)
    ?.statements.map((s) => s.sql);
}

/** What the executor records once a task's ChangeSchemaPerms succeeded. */
function preparedAfter(p: ApplyPlan, c: Catalog): Map<string, string> {
  const out = new Map<string, string>();
  for (const t of p.perDatabase) {
    const oid = c.databases.get(t.database)?.oid;
    if (t.prepare && oid !== undefined) out.set(t.database, preparedKey(oid, t.prepare));
  }
  return out;
}

const schemaPerms = (db: string, owner: string) => S.changeSchemaPerms(db, owner, P).sql;
const references = (role: string, newOwner: string) => [
  S.reassignOwned(role, newOwner).sql,
  S.revokeRoleTablePrivileges(role).sql,
  S.dropOwned(role).sql,
];

describe("phase order", () => {
  test("every phase, in upstream order", () => {
    const p = plan(
      spec({
        roles: [{ name: "alice", encrypted_password: MD5 }],
        databases: [{ name: "app", owner: "alice" }],
        delta: [
          { action: "delete_db", name: "old" },
          { action: "delete_role", name: "bob" },
        ],
        extra: { drop_subscriptions_before_start: true, audit_log_level: "Hipaa" },
      }),
      withObjects(
        { bob: null },
        { old: cdb("10", "bob"), app: cdb("11", "alice") },
        {
          subscriptions: new Map([
            ["old", 1],
            ["app", 1],
          ]),
          roleDependencies: new Map([["bob", new Set(["app"])]]),
        },
      ),
    );
    expect(p.before.map((ph) => ph.name)).toEqual([
      "CreatePrivilegedRole",
      "DropInvalidDatabases",
      "RenameRoles",
      "CreateAndAlterRoles",
      "RenameAndDeleteDatabases",
      "CreateAndAlterDatabases",
      "CreateSchemaNeon",
    ]);
    expect(p.after.map((ph) => ph.name)).toEqual([
      "HandleOtherExtensions",
      "HandleNeonExtension",
      "CreateAvailabilityCheck",
      "DropRoles",
      "FinalizeDropLogicalSubscriptions",
      "CreatePgauditExtension",
      "CreatePgauditlogtofileExtension",
      "DisablePostgresDBPgAudit",
    ]);
    expect(taskShape(p.preDrop)).toEqual([["old", ["DropLogicalSubscriptions"]]]);
    expect(taskShape(p.perDatabase)).toEqual([
      ["app", ["DeleteDBRoleReferences", "ChangeSchemaPerms", "DropLogicalSubscriptions"]],
    ]);
  });
});

describe("CreatePrivilegedRole", () => {
  test.each([
    ["present", catalog(), P, []],
    [
      "missing",
      withObjects({}, {}, { roles: new Map([["cloud_admin", { password: null }]]) }),
      P,
      [S.createPrivilegedRole(P).sql],
    ],
    ["another name, missing", catalog(), "my_su", [S.createPrivilegedRole("my_su").sql]],
  ])("%s", (_label, c, name, sql) => {
    expect(phaseSql(plan(spec(), c, { privilegedRoleName: name }), "CreatePrivilegedRole")).toEqual(
      sql,
    );
  });
});

describe("CreateAndAlterRoles", () => {
  test.each([
    ["md5 equal (catalog md5<hex>, spec <hex>)", `md5${MD5}`, MD5, "none"],
    ["md5 differs", `md5${MD5_OTHER}`, MD5, "alter"],
    ["catalog without prefix is not equal", MD5, MD5, "alter"],
    ["SCRAM equal", SCRAM, SCRAM, "none"],
    ["SCRAM differs", `${SCRAM}x`, SCRAM, "alter"],
    ["null / null", null, null, "none"],
    ["catalog md5, spec null", `md5${MD5}`, null, "alter"],
    ["catalog null, spec md5", null, MD5, "alter"],
    ["catalog SCRAM, spec md5", SCRAM, MD5, "alter"],
    ["missing", undefined, MD5, "create"],
  ] as const)("%s", (_label, catalogPassword, specPassword, expected) => {
    const role = { name: "alice", encrypted_password: specPassword, options: null };
    const c =
      catalogPassword === undefined ? catalog() : withObjects({ alice: catalogPassword }, {});
    const sql = phaseSql(plan(spec({ roles: [role] }), c), "CreateAndAlterRoles");
    const want = {
      none: [],
      alter: [S.alterRole(role).sql],
      create: [S.createRole(role, P, false).sql],
    }[expected];
    expect(sql).toEqual(want);
  });

  test.each([
    [`md5${MD5}`, MD5, true],
    [MD5, MD5, false],
    [SCRAM, SCRAM, true],
    [null, null, true],
    [null, MD5, false],
    [`md5${MD5}`, null, false],
  ])("passwordMatches(%p, %p) = %p", (c, s, want) => {
    expect(passwordMatches(c, s)).toBe(want);
  });

  test("spec order; JWKS roles created plain; privileged role from the input", () => {
    const s = spec({
      roles: [
        { name: "b", encrypted_password: MD5 },
        { name: "jwt", encrypted_password: null },
        { name: "a", encrypted_password: null },
      ],
      extra: {
        local_proxy_config: {
          jwks: [
            {
              id: "1",
              role_names: ["jwt"],
              jwks_url: "https://example.com/jwks",
              provider_name: "p",
            },
          ],
        },
      },
    });
    const c = withObjects({ my_su: null }, {});
    expect(phaseSql(plan(s, c, { privilegedRoleName: "my_su" }), "CreateAndAlterRoles")).toEqual([
      `CREATE ROLE "b" INHERIT CREATEROLE CREATEDB BYPASSRLS REPLICATION IN ROLE my_su  LOGIN PASSWORD 'md5${MD5}'`,
      'CREATE ROLE "jwt"  LOGIN PASSWORD NULL',
      'CREATE ROLE "a" INHERIT CREATEROLE CREATEDB BYPASSRLS REPLICATION IN ROLE my_su  LOGIN PASSWORD NULL',
    ]);
  });
});

describe("RenameRoles", () => {
  test("renames when the old role exists; the cleared password then needs an ALTER", () => {
    const role = { name: 'zenith "new"', encrypted_password: MD5, options: null };
    const p = plan(
      spec({
        roles: [role],
        delta: [{ action: "rename_role", name: "zenith new", new_name: role.name }],
      }),
      withObjects({ "zenith new": `md5${MD5}` }, {}),
    );
    expect(phaseSql(p, "RenameRoles")).toEqual([
      'ALTER ROLE "zenith new" RENAME TO "zenith ""new"""',
    ]);
    expect(phaseSql(p, "CreateAndAlterRoles")).toEqual([S.alterRole(role).sql]);
  });

  test("a renamed role without a password needs no ALTER", () => {
    const p = plan(
      spec({
        roles: [{ name: "new" }],
        delta: [{ action: "rename_role", name: "old", new_name: "new" }],
      }),
      withObjects({ old: null }, {}),
    );
    expect(phaseSql(p, "RenameRoles")).toEqual(['ALTER ROLE "old" RENAME TO "new"']);
    expect(phaseSql(p, "CreateAndAlterRoles")).toEqual([]);
  });

  test("skipped when the old role is absent (already renamed)", () => {
    const p = plan(
      spec({
        roles: [{ name: "new", encrypted_password: MD5 }],
        delta: [{ action: "rename_role", name: "old", new_name: "new" }],
      }),
      withObjects({ new: `md5${MD5}` }, {}),
    );
    expect(systemSql(p)).toEqual([]);
  });

  test("without new_name: ConfigError", () => {
    const s = spec({ delta: [{ action: "rename_role", name: "old" }] });
    expect(() => plan(s, withObjects({ old: null }, {}))).toThrow(ConfigError);
  });

  test("a renamed role's dependencies follow it", () => {
    const p = plan(
      spec({
        databases: [{ name: "app", owner: "alice" }],
        delta: [
          { action: "rename_role", name: "old", new_name: "new" },
          { action: "delete_role", name: "new" },
        ],
      }),
      withObjects(
        { old: null, alice: null },
        { app: cdb("20", "alice") },
        { roleDependencies: new Map([["old", new Set(["app"])]]) },
      ),
      {
        prepared: new Map([["app", preparedKey("20", { privilegedRole: P, webAccess: false })]]),
      },
    );
    expect(taskSql(p, "app", "DeleteDBRoleReferences")).toEqual(references("new", "alice"));
    expect(phaseSql(p, "DropRoles")).toEqual(['DROP ROLE IF EXISTS "new"']);
  });
});

describe("RenameAndDeleteDatabases", () => {
  test.each([
    ["present", cdb("30", "alice"), ['DROP DATABASE IF EXISTS "gone" WITH (FORCE)']],
    [
      "a template",
      cdb("30", "alice", { isTemplate: true }),
      ['ALTER DATABASE "gone" IS_TEMPLATE false', 'DROP DATABASE IF EXISTS "gone" WITH (FORCE)'],
    ],
    ["absent", undefined, []],
  ])("delete_db, %s", (_label, db, sql) => {
    const c = withObjects({ alice: null }, db ? { gone: db } : {});
    const p = plan(spec({ delta: [{ action: "delete_db", name: "gone" }] }), c);
    expect(phaseSql(p, "RenameAndDeleteDatabases")).toEqual(sql);
  });

  test("delete_db and rename_db in delta order", () => {
    const p = plan(
      spec({
        delta: [
          { action: "rename_db", name: "a", new_name: "b" },
          { action: "delete_db", name: "c" },
          { action: "rename_db", name: "missing", new_name: "x" },
          { action: "delete_role", name: "nobody" },
        ],
      }),
      withObjects({}, { a: cdb("31", "cloud_admin"), c: cdb("32", "cloud_admin") }),
    );
    expect(phaseSql(p, "RenameAndDeleteDatabases")).toEqual([
      'ALTER DATABASE "a" RENAME TO "b"',
      'DROP DATABASE IF EXISTS "c" WITH (FORCE)',
    ]);
  });

  test("a renamed database in the spec is not re-created; its owner is compared", () => {
    const delta = [{ action: "rename_db", name: "DB", new_name: "DB2" }];
    const c = withObjects({ alexk: null, bob: null }, { DB: cdb("33", "alexk") });
    const same = plan(spec({ databases: [{ name: "DB2", owner: "alexk" }], delta }), c);
    expect(phaseSql(same, "CreateAndAlterDatabases")).toEqual([]);
    const other = plan(spec({ databases: [{ name: "DB2", owner: "bob" }], delta }), c);
    expect(phaseSql(other, "CreateAndAlterDatabases")).toEqual([
      'ALTER DATABASE "DB2" OWNER TO "bob"',
    ]);
  });

  test("rename_db without new_name: ConfigError", () => {
    const s = spec({ delta: [{ action: "rename_db", name: "a" }] });
    expect(() => plan(s, withObjects({}, { a: cdb("34", "cloud_admin") }))).toThrow(ConfigError);
  });
});

describe("DropInvalidDatabases and CreateAndAlterDatabases", () => {
  test("an invalid database is dropped, and re-created if the spec lists it", () => {
    const c = withObjects(
      { alice: null },
      {
        broken: cdb("40", "alice", { invalid: true }),
        app: cdb("41", "alice", { invalid: true }),
      },
    );
    const p = plan(
      spec({
        databases: [{ name: "app", owner: "alice" }],
        delta: [{ action: "delete_db", name: "broken" }],
      }),
      c,
    );
    expect(phaseSql(p, "DropInvalidDatabases")).toEqual([
      'DROP DATABASE IF EXISTS "broken"',
      'DROP DATABASE IF EXISTS "app"',
    ]);
    // Already dropped above: delete_db has nothing left to do.
    expect(phaseSql(p, "RenameAndDeleteDatabases")).toEqual([]);
    expect(phaseSql(p, "CreateAndAlterDatabases")).toEqual([
      'CREATE DATABASE "app"  OWNER "alice"',
      `GRANT ALL PRIVILEGES ON DATABASE "app" TO ${P}`,
    ]);
    expect(taskShape(p.perDatabase)).toEqual([["app", ["ChangeSchemaPerms"]]]);
  });

  test.each([
    [
      "new",
      undefined,
      ['CREATE DATABASE "app"  OWNER "alice"', `GRANT ALL PRIVILEGES ON DATABASE "app" TO ${P}`],
    ],
    ["same owner", "alice", []],
    ["other owner", "bob", ['ALTER DATABASE "app" OWNER TO "alice"']],
    ["owner unknown", null, ['ALTER DATABASE "app" OWNER TO "alice"']],
  ])("%s", (_label, owner, sql) => {
    const c = withObjects(
      { alice: null, bob: null },
      owner === undefined ? {} : { app: cdb("42", owner) },
    );
    const p = plan(spec({ databases: [{ name: "app", owner: "alice" }] }), c);
    expect(phaseSql(p, "CreateAndAlterDatabases")).toEqual(sql);
  });

  test("options and quoting of a new database", () => {
    const p = plan(
      spec({
        databases: [
          {
            name: "DB2",
            owner: "alexk",
            options: [
              { name: "LC_COLLATE", value: "C", vartype: "string" },
              { name: "LC_CTYPE", value: "C", vartype: "string" },
              { name: "TEMPLATE", value: "template0", vartype: "enum" },
            ],
          },
        ],
      }),
    );
    expect(phaseSql(p, "CreateAndAlterDatabases")).toEqual([
      `CREATE DATABASE "DB2" LC_COLLATE 'C' LC_CTYPE 'C' TEMPLATE template0 OWNER "alexk"`,
      `GRANT ALL PRIVILEGES ON DATABASE "DB2" TO ${P}`,
    ]);
  });

  test("databases not in the spec are never dropped implicitly", () => {
    const p = plan(spec(), withObjects({}, { stray: cdb("43", "cloud_admin") }));
    expect(systemSql(p)).toEqual([]);
  });
});

describe("per-database tasks", () => {
  const key = (oid: string, webAccess = false, privilegedRole = P) =>
    preparedKey(oid, { privilegedRole, webAccess });

  test("spec order, then other databases holding a dropped role's objects, then the system db", () => {
    const p = plan(
      spec({
        databases: [
          { name: "b", owner: "alice" },
          { name: "a", owner: "alice" },
        ],
        delta: [{ action: "delete_role", name: "bob" }],
      }),
      withObjects(
        { alice: null, bob: null },
        { other: cdb("50", "alice") },
        { roleDependencies: new Map([["bob", new Set(["postgres", "other", "a"])]]) },
      ),
    );
    expect(taskShape(p.perDatabase)).toEqual([
      ["b", ["ChangeSchemaPerms"]],
      ["a", ["DeleteDBRoleReferences", "ChangeSchemaPerms"]],
      ["other", ["DeleteDBRoleReferences"]],
      ["postgres", ["DeleteDBRoleReferences"]],
    ]);
    expect(taskSql(p, "b", "ChangeSchemaPerms")).toEqual([schemaPerms("b", "alice")]);
    expect(p.perDatabase[0]?.prepare).toEqual({
      privilegedRole: P,
      webAccess: false,
    });
    // No ChangeSchemaPerms outside the spec: nothing to record for those.
    expect(p.perDatabase[2]?.prepare).toBeUndefined();
    expect(p.perDatabase[3]?.prepare).toBeUndefined();
  });

  test.each([
    ["nothing recorded", new Map<string, string>(), [], true],
    ["recorded for this oid", new Map([["app", key("60")]]), [], false],
    ["recorded for another oid", new Map([["app", key("99")]]), [], true],
    ["recorded for another privileged role", new Map([["app", key("60", false, "x")]]), [], true],
    ["recorded before web_access existed", new Map([["app", key("60")]]), ["web_access"], true],
    ["recorded with web_access", new Map([["app", key("60", true)]]), ["web_access"], false],
    ["recorded for another database", new Map([["other", key("60")]]), [], true],
  ])("ChangeSchemaPerms: %s", (_label, prepared, extraRoles, planned) => {
    const roles: Record<string, null> = { alice: null, bob: null };
    for (const r of extraRoles) roles[r] = null;
    const c = withObjects(roles, { app: cdb("60", "alice") });
    const p = plan(spec({ databases: [{ name: "app", owner: "alice" }] }), c, { prepared });
    expect(taskShape(p.perDatabase)).toEqual(planned ? [["app", ["ChangeSchemaPerms"]]] : []);
  });

  test("web_access counts when the spec creates it", () => {
    const c = withObjects({ alice: null }, { app: cdb("60", "alice") });
    const p = plan(
      spec({ roles: [{ name: "web_access" }], databases: [{ name: "app", owner: "alice" }] }),
      c,
      { prepared: new Map([["app", key("60")]]) },
    );
    expect(p.perDatabase[0]?.prepare?.webAccess).toBe(true);
  });

  test("an owner change of a prepared database needs no new visit", () => {
    const c = withObjects({ alice: null, bob: null }, { app: cdb("60", "bob") });
    const p = plan(spec({ databases: [{ name: "app", owner: "alice" }] }), c, {
      prepared: new Map([["app", key("60")]]),
    });
    expect(phaseSql(p, "CreateAndAlterDatabases")).toEqual([
      'ALTER DATABASE "app" OWNER TO "alice"',
    ]);
    expect(taskShape(p.perDatabase)).toEqual([]);
  });

  test("a new database is prepared even if a dropped one of that name was", () => {
    const p = plan(
      spec({ databases: [{ name: "app", owner: "alice" }] }),
      withObjects({ alice: null }, {}),
      {
        prepared: new Map([["app", key("60")]]),
      },
    );
    expect(taskShape(p.perDatabase)).toEqual([["app", ["ChangeSchemaPerms"]]]);
  });

  test("a re-created invalid database is prepared again (same oid recorded)", () => {
    const c = withObjects({ alice: null }, { app: cdb("60", "alice", { invalid: true }) });
    const p = plan(spec({ databases: [{ name: "app", owner: "alice" }] }), c, {
      prepared: new Map([["app", key("60")]]),
    });
    expect(taskShape(p.perDatabase)).toEqual([["app", ["ChangeSchemaPerms"]]]);
  });

  test("a database that refuses connections is skipped with a warning", () => {
    const c = withObjects(
      { alice: null, bob: null },
      { locked: cdb("61", "alice", { restrictConn: true }) },
      {
        roleDependencies: new Map([["bob", new Set(["locked"])]]),
        subscriptions: new Map([["locked", 1]]),
      },
    );
    const p = plan(
      spec({
        databases: [{ name: "locked", owner: "alice" }],
        delta: [{ action: "delete_role", name: "bob" }],
        extra: { drop_subscriptions_before_start: true },
      }),
      c,
    );
    expect(p.perDatabase).toEqual([]);
    expect(p.warnings.filter((w) => w.includes('"locked"'))).toHaveLength(1);
  });

  test("invalid or restricted databases outside the spec are skipped", () => {
    const c = withObjects(
      { bob: null },
      {
        broken: cdb("62", "cloud_admin", { invalid: true }),
        locked: cdb("63", "cloud_admin", { restrictConn: true }),
      },
      { roleDependencies: new Map([["bob", new Set(["broken", "locked"])]]) },
    );
    const p = plan(spec({ delta: [{ action: "delete_role", name: "bob" }] }), c);
    expect(p.perDatabase).toEqual([]);
  });
});

describe("delete_role", () => {
  const prepared = new Map([
    ["app", preparedKey("70", { privilegedRole: P, webAccess: false })],
    ["app2", preparedKey("71", { privilegedRole: P, webAccess: false })],
    ["bobs", preparedKey("72", { privilegedRole: P, webAccess: false })],
  ]);
  const c = (
    deps: string[],
    roles: Record<string, null> = { alice: null, bob: null, carol: null },
  ) =>
    withObjects(
      roles,
      {
        app: cdb("70", "alice"),
        app2: cdb("71", "alice"),
        bobs: cdb("72", "bob"),
        other: cdb("73", "carol"),
      },
      { roleDependencies: new Map([["bob", new Set(deps)]]) },
    );
  const s = spec({
    databases: [
      { name: "app", owner: "alice" },
      { name: "app2", owner: "alice" },
      { name: "bobs", owner: "bob" },
    ],
    delta: [{ action: "delete_role", name: "bob" }],
  });

  test("references removed where the catalog has some, including outside the spec", () => {
    const p = plan(s, c(["app", "other", "postgres"]), { prepared });
    expect(taskShape(p.perDatabase)).toEqual([
      ["app", ["DeleteDBRoleReferences"]],
      ["other", ["DeleteDBRoleReferences"]],
      ["postgres", ["DeleteDBRoleReferences"]],
    ]);
    // New owner: the spec owner, the catalog owner outside the spec, cloud_admin in the system db.
    expect(taskSql(p, "app", "DeleteDBRoleReferences")).toEqual(references("bob", "alice"));
    expect(taskSql(p, "other", "DeleteDBRoleReferences")).toEqual(references("bob", "carol"));
    expect(taskSql(p, "postgres", "DeleteDBRoleReferences")).toEqual(
      references("bob", "cloud_admin"),
    );
    expect(phaseSql(p, "DropRoles")).toEqual(['DROP ROLE IF EXISTS "bob"']);
  });

  test("not in a database the role owns", () => {
    const p = plan(s, c(["bobs"]), { prepared });
    expect(p.perDatabase).toEqual([]);
    expect(phaseSql(p, "DropRoles")).toEqual(['DROP ROLE IF EXISTS "bob"']);
  });

  test("nothing for a role that is already gone", () => {
    const p = plan(s, c(["app"], { alice: null, carol: null }), { prepared });
    expect(p.perDatabase).toEqual([]);
    expect(phaseSql(p, "DropRoles")).toEqual([]);
  });

  test("several roles, in delta order, only those present", () => {
    const p = plan(
      spec({
        delta: [
          { action: "delete_role", name: "r2" },
          { action: "delete_role", name: "absent" },
          { action: "delete_role", name: "r1" },
        ],
      }),
      withObjects(
        { r1: null, r2: null },
        {},
        {
          roleDependencies: new Map([
            ["r1", new Set(["postgres"])],
            ["r2", new Set(["postgres"])],
          ]),
        },
      ),
    );
    expect(taskSql(p, "postgres", "DeleteDBRoleReferences")).toEqual([
      ...references("r2", "cloud_admin"),
      ...references("r1", "cloud_admin"),
    ]);
    expect(phaseSql(p, "DropRoles")).toEqual([
      'DROP ROLE IF EXISTS "r2"',
      'DROP ROLE IF EXISTS "r1"',
    ]);
  });

  // Upstream's own fixture delta: rename_db DB -> DB2 with delete_role zenith2.
  // pg_shdepend names the database by its old name; the references must still
  // be removed in DB2 (upstream visits every spec database), else DROP ROLE fails.
  test("references are removed in a database renamed by the same spec", () => {
    const p = plan(
      spec({
        databases: [{ name: "DB2", owner: "alexk" }],
        delta: [
          { action: "rename_db", name: "DB", new_name: "DB2" },
          { action: "delete_role", name: "zenith2" },
        ],
      }),
      withObjects(
        { alexk: null, zenith2: null },
        { DB: cdb("80", "alexk") },
        { roleDependencies: new Map([["zenith2", new Set(["DB"])]]) },
      ),
    );
    expect(taskSql(p, "DB2", "DeleteDBRoleReferences")).toEqual(references("zenith2", "alexk"));
  });
});

describe("subscriptions", () => {
  test.each([
    ["with subscriptions", { subs: 2, present: true }, [["gone", ["DropLogicalSubscriptions"]]]],
    ["without subscriptions", { subs: 0, present: true }, []],
    ["absent", { subs: 0, present: false }, []],
  ] as const)("preDrop for a delete_db database %s", (_label, o, shape) => {
    const c = withObjects({}, o.present ? { gone: cdb("90", "cloud_admin") } : {}, {
      subscriptions: new Map([["gone", o.subs]]),
    });
    const p = plan(spec({ delta: [{ action: "delete_db", name: "gone" }] }), c);
    expect(taskShape(p.preDrop)).toEqual(shape.map(([d, ph]) => [d, [...ph]]));
    if (shape.length > 0) {
      expect(p.preDrop[0]?.phases[0]?.statements.map((x) => x.sql)).toEqual([
        S.dropSubscriptions("gone").sql,
      ]);
    }
  });

  test("preDrop only for delete_db databases, in delta order", () => {
    const c = withObjects(
      {},
      { a: cdb("91", "cloud_admin"), b: cdb("92", "cloud_admin"), keep: cdb("93", "cloud_admin") },
      {
        subscriptions: new Map([
          ["a", 1],
          ["b", 1],
          ["keep", 1],
        ]),
      },
    );
    const p = plan(
      spec({
        delta: [
          { action: "delete_db", name: "b" },
          { action: "rename_db", name: "keep", new_name: "kept" },
          { action: "delete_db", name: "a" },
        ],
      }),
      c,
    );
    expect(p.preDrop.map((t) => t.database)).toEqual(["b", "a"]);
  });

  const prepared = new Map([
    ["a", preparedKey("94", { privilegedRole: P, webAccess: false })],
    ["b", preparedKey("95", { privilegedRole: P, webAccess: false })],
  ]);
  const subsCatalog = (done: boolean) =>
    withObjects(
      {},
      { a: cdb("94", "cloud_admin"), b: cdb("95", "cloud_admin"), c: cdb("96", "cloud_admin") },
      {
        subscriptions: new Map([
          ["a", 1],
          ["c", 3],
        ]),
        dropSubscriptionsDone: done,
      },
    );
  const dbs = [
    { name: "a", owner: "cloud_admin" },
    { name: "b", owner: "cloud_admin" },
  ];

  test("drop_subscriptions_before_start: spec databases with subscriptions, then finalize", () => {
    const p = plan(
      spec({ databases: dbs, extra: { drop_subscriptions_before_start: true } }),
      subsCatalog(false),
      { prepared },
    );
    expect(taskShape(p.perDatabase)).toEqual([["a", ["DropLogicalSubscriptions"]]]);
    expect(taskSql(p, "a", "DropLogicalSubscriptions")).toEqual([S.dropSubscriptions("a").sql]);
    expect(phaseSql(p, "FinalizeDropLogicalSubscriptions")).toEqual([
      S.finalizeDropSubscriptions().sql,
    ]);
  });

  test("drop_subscriptions_before_start already done for this timeline", () => {
    const p = plan(
      spec({ databases: dbs, extra: { drop_subscriptions_before_start: true } }),
      subsCatalog(true),
      { prepared },
    );
    expect(p.perDatabase).toEqual([]);
    expect(phaseSql(p, "FinalizeDropLogicalSubscriptions")).toBeUndefined();
  });

  test("without drop_subscriptions_before_start", () => {
    const p = plan(spec({ databases: dbs }), subsCatalog(false), { prepared });
    expect(p.perDatabase).toEqual([]);
    expect(phaseSql(p, "FinalizeDropLogicalSubscriptions")).toBeUndefined();
  });
});

describe("system database phases", () => {
  test.each([
    ["CreateSchemaNeon", { schemas: new Set<string>() }, ["CREATE SCHEMA IF NOT EXISTS neon"]],
    ["CreateSchemaNeon", {}, []],
    ["CreateAvailabilityCheck", { healthCheck: false }, [S.createAvailabilityCheck().sql]],
    ["CreateAvailabilityCheck", {}, []],
  ] as const)("%s with %j", (name, over, sql) => {
    expect(phaseSql(plan(spec(), catalog(over)), name)).toEqual([...sql]);
  });

  const pss = "CREATE EXTENSION IF NOT EXISTS pg_stat_statements WITH SCHEMA public";
  const preload = (value: string) => [
    { name: "shared_preload_libraries", value, vartype: "string" },
  ];
  test.each([
    ["preloaded, not installed", preload("neon,pg_stat_statements"), false, undefined, [pss]],
    ["preloaded, installed", preload("neon,pg_stat_statements"), true, undefined, []],
    ["not preloaded", preload("neon"), false, undefined, []],
    ["no settings", undefined, false, undefined, []],
    // Upstream reads cluster.settings only.
    [
      "only in postgresql_conf",
      undefined,
      false,
      "shared_preload_libraries='pg_stat_statements'",
      [],
    ],
  ])("pg_stat_statements: %s", (_label, settings, installed, conf, sql) => {
    const c = catalog();
    if (installed) c.extensions.set("pg_stat_statements", { version: "1.10", schema: "public" });
    const p = plan(spec({ settings, postgresql_conf: conf }), c);
    expect(phaseSql(p, "HandleOtherExtensions")).toEqual(sql);
  });

  const { makeRelocatable, setSchema, update } = S.neonExtension;
  test.each([
    ["not available", undefined, undefined, [], true],
    [
      "available, not installed",
      "1.6",
      undefined,
      ["CREATE EXTENSION IF NOT EXISTS neon WITH SCHEMA neon"],
      false,
    ],
    ["installed as available", "1.6", { version: "1.6", schema: "neon" }, [], false],
    [
      "installed in another schema",
      "1.6",
      { version: "1.6", schema: "public" },
      [makeRelocatable.sql, setSchema.sql],
      false,
    ],
    ["another version", "1.6", { version: "1.5", schema: "neon" }, [update.sql], false],
    [
      "another schema and version",
      "1.6",
      { version: "1.5", schema: "public" },
      [makeRelocatable.sql, setSchema.sql, update.sql],
      false,
    ],
  ])("neon extension: %s", (_label, available, installed, sql, warns) => {
    const c = catalog({
      availableExtensions: new Map(available === undefined ? [] : [["neon", available]]),
      extensions: new Map(installed === undefined ? [] : [["neon", installed]]),
    });
    const p = plan(spec(), c);
    expect(phaseSql(p, "HandleNeonExtension")).toEqual(sql);
    expect(p.warnings.some((w) => w.includes("neon extension"))).toBe(warns);
  });

  const audit = [
    "CREATE EXTENSION IF NOT EXISTS pgaudit WITH SCHEMA public",
    "CREATE EXTENSION IF NOT EXISTS pgauditlogtofile WITH SCHEMA public",
    "ALTER DATABASE postgres SET pgaudit.log to 'none'",
  ];
  const auditPhases = [
    "CreatePgauditExtension",
    "CreatePgauditlogtofileExtension",
    "DisablePostgresDBPgAudit",
  ];
  test.each([
    ["Disabled", []],
    ["Log", [0, 2]],
    ["Base", [0, 2]],
    ["Hipaa", [0, 1, 2]],
    ["Extended", [0, 1, 2]],
    ["Full", [0, 1, 2]],
  ] as const)("audit level %s", (level, which) => {
    const p = plan(spec({ extra: { audit_log_level: level } }));
    const names = p.after.map((ph) => ph.name).filter((n) => auditPhases.includes(n));
    expect(names).toEqual(which.map((i) => auditPhases[i] as PhaseName));
    expect(
      p.after
        .filter((ph) => auditPhases.includes(ph.name))
        .flatMap((ph) => ph.statements.map((x) => x.sql)),
    ).toEqual(which.map((i) => audit[i] as string));
  });

  test("audit already in place: phases planned empty", () => {
    const c = catalog({ postgresAuditOff: true });
    c.extensions.set("pgaudit", { version: "16", schema: "public" });
    c.extensions.set("pgauditlogtofile", { version: "1.6", schema: "public" });
    const p = plan(spec({ extra: { audit_log_level: "Full" } }), c);
    for (const name of auditPhases) expect(phaseSql(p, name as PhaseName)).toEqual([]);
  });
});

describe("a spec the catalog already matches", () => {
  const s = spec({
    roles: [
      { name: "alexk", encrypted_password: null },
      { name: "postgres_user", encrypted_password: MD5 },
      { name: "scram", encrypted_password: SCRAM },
      { name: 'zenith "new"', encrypted_password: MD5_OTHER },
      { name: "web_access" },
    ],
    databases: [
      {
        name: "DB2",
        owner: "alexk",
        options: [{ name: "LC_COLLATE", value: "C", vartype: "string" }],
      },
      { name: "zen", owner: "scram" },
    ],
    delta: [
      { action: "delete_db", name: "zenith_test" },
      { action: "rename_db", name: "DB", new_name: "DB2" },
      { action: "delete_role", name: "zenith2" },
      { action: "rename_role", name: "zenith new", new_name: 'zenith "new"' },
    ],
    settings: [
      { name: "shared_preload_libraries", value: "neon,pg_stat_statements", vartype: "string" },
    ],
    extra: { drop_subscriptions_before_start: true, audit_log_level: "Hipaa" },
  });
  const c = withObjects(
    {
      alexk: null,
      postgres_user: `md5${MD5}`,
      scram: SCRAM,
      'zenith "new"': `md5${MD5_OTHER}`,
      web_access: null,
    },
    { DB2: cdb("100", "alexk"), zen: cdb("101", "scram") },
    { dropSubscriptionsDone: true, postgresAuditOff: true, subscriptions: new Map([["zen", 1]]) },
  );
  for (const ext of ["pg_stat_statements", "pgaudit", "pgauditlogtofile"]) {
    c.extensions.set(ext, { version: "1", schema: "public" });
  }

  test("the first apply only prepares the schemas", () => {
    const p = plan(s, c);
    expect(systemSql(p)).toEqual([]);
    expect(taskShape(p.perDatabase)).toEqual([
      ["DB2", ["ChangeSchemaPerms"]],
      ["zen", ["ChangeSchemaPerms"]],
    ]);
  });

  test("once prepared: no statements, no per-database tasks, no warnings", () => {
    const prepared = preparedAfter(plan(s, c), c);
    expect(prepared.size).toBe(2);
    const p = plan(s, c, { prepared });
    expect(systemSql(p)).toEqual([]);
    expect(p.preDrop).toEqual([]);
    expect(p.perDatabase).toEqual([]);
    expect(p.warnings).toEqual([]);
  });
});

describe("catalogQuery", () => {
  test.each([
    ["nothing asked", spec(), { rolesToDrop: [], dropSubscriptionsTimeline: null }],
    [
      "roles of delete_role ops, timeline when dropping subscriptions",
      spec({
        delta: [
          { action: "delete_role", name: "a" },
          { action: "delete_db", name: "x" },
          { action: "delete_role", name: "b" },
        ],
        extra: { drop_subscriptions_before_start: true },
      }),
      { rolesToDrop: ["a", "b"], dropSubscriptionsTimeline: TEST_TIMELINE },
    ],
  ])("%s", (_label, s, query) => {
    expect(catalogQuery(s, TEST_TIMELINE)).toEqual(query);
  });
});

describe("catalogQuery: renames and the timeline", () => {
  test("a role renamed and dropped in one spec is looked up under its old name too", () => {
    const s = spec({
      delta: [
        { action: "rename_role", name: "a", new_name: "b" },
        { action: "rename_role", name: "b", new_name: "c" },
        { action: "delete_role", name: "c" },
      ],
    });
    expect([...catalogQuery(s, TEST_TIMELINE).rolesToDrop].sort()).toEqual(["a", "b", "c"]);
  });

  test("the timeline is the one given (ParsedSpec's), not only the spec field", () => {
    const s = spec({ extra: { drop_subscriptions_before_start: true, timeline_id: null } });
    expect(catalogQuery(s, "f".repeat(32)).dropSubscriptionsTimeline).toBe("f".repeat(32));
  });
});

test("a new database used as TEMPLATE by another is not unlocked early", () => {
  const p = planApply({
    spec: spec({
      databases: [
        { name: "base", owner: "alice" },
        {
          name: "copy",
          owner: "alice",
          options: [{ name: "TEMPLATE", value: "base", vartype: "string_noquote" }],
        },
      ],
    }),
    catalog: withObjects({ alice: null }, {}),
    privilegedRoleName: P,
    systemDb: "postgres",
    prepared: new Map(),
  });
  const grants = (
    p.before.find((ph) => ph.name === "CreateAndAlterDatabases")?.statements ?? []
  ).filter((st) => st.sql.startsWith("GRANT"));
  expect(grants.map((g) => g.unlocks)).toEqual([undefined, "copy"]);
});
