// Text vectors for the apply's SQL builders (upstream-api.md §3.5, §3.8).
import { describe, expect, test } from "bun:test";
import type { GenericOption, Role } from "../spec/schema.ts";
import * as S from "./sql.ts";

const MD5 = "6b1d16b78004bbd51fa06af9eda75972";
const SCRAM =
  "SCRAM-SHA-256$4096:c2FsdHNhbHRzYWx0$c3RvcmVka2V5c3RvcmVka2V5:c2VydmVya2V5c2VydmVya2V5";

const role = (
  name: string,
  encrypted_password: string | null,
  options: GenericOption[] | null = null,
): Role => ({ name, encrypted_password, options });

const opt = (name: string, value: string | null, vartype: string): GenericOption => ({
  name,
  value,
  vartype,
});

const PRIVS = "INHERIT CREATEROLE CREATEDB BYPASSRLS REPLICATION IN ROLE neon_superuser";

describe("catalogPassword", () => {
  test.each([
    [null, null],
    [MD5, `md5${MD5}`],
    [SCRAM, SCRAM],
    // Only the exact SCRAM prefix is kept as is.
    ["scram-sha-256$x", "md5scram-sha-256$x"],
  ])("%p -> %p", (input, output) => {
    expect(S.catalogPassword(input)).toBe(output);
  });
});

describe("createRole / alterRole", () => {
  test.each([
    ["no password", role("alexk", null), `CREATE ROLE "alexk" ${PRIVS}  LOGIN PASSWORD NULL`],
    [
      "md5 digest gets its prefix",
      role("postgres", MD5),
      `CREATE ROLE "postgres" ${PRIVS}  LOGIN PASSWORD 'md5${MD5}'`,
    ],
    ["SCRAM kept as is", role("s", SCRAM), `CREATE ROLE "s" ${PRIVS}  LOGIN PASSWORD '${SCRAM}'`],
    [
      "quotes in the name doubled",
      role('zenith "new"', null),
      `CREATE ROLE "zenith ""new""" ${PRIVS}  LOGIN PASSWORD NULL`,
    ],
    [
      "options of each kind",
      role("o", null, [
        opt("CONNECTION LIMIT", "3", "integer"),
        opt("VALID UNTIL", "it's", "string"),
        opt("NOREPLICATION", null, "bool"),
      ]),
      `CREATE ROLE "o" ${PRIVS} CONNECTION LIMIT 3 VALID UNTIL 'it''s' NOREPLICATION LOGIN PASSWORD NULL`,
    ],
  ])("create: %s", (_label, r, sql) => {
    expect(S.createRole(r, "neon_superuser", false).sql).toBe(sql);
  });

  test("upstream params_serialize vector: the role options of fixture role postgres", () => {
    const sql = S.createRole(role("postgres", MD5), "neon_superuser", false).sql;
    expect(sql.endsWith(` LOGIN PASSWORD 'md56b1d16b78004bbd51fa06af9eda75972'`)).toBe(true);
  });

  test("the privileged role name is used unquoted", () => {
    expect(S.createRole(role("a", null), "my_superuser", false).sql).toBe(
      'CREATE ROLE "a" INHERIT CREATEROLE CREATEDB BYPASSRLS REPLICATION IN ROLE my_superuser  LOGIN PASSWORD NULL',
    );
  });

  test("JWKS (plain) roles get no privileges", () => {
    const s = S.createRole(role("jwt_user", null), "neon_superuser", true);
    expect(s.sql).toBe('CREATE ROLE "jwt_user"  LOGIN PASSWORD NULL');
    expect(S.createRole(role("jwt_user", MD5), "neon_superuser", true).sql).toBe(
      `CREATE ROLE "jwt_user"  LOGIN PASSWORD 'md5${MD5}'`,
    );
  });

  test.each([
    [role("postgres", MD5), `ALTER ROLE "postgres"  LOGIN PASSWORD 'md5${MD5}'`],
    [role("s", SCRAM), `ALTER ROLE "s"  LOGIN PASSWORD '${SCRAM}'`],
    [role("n", null), 'ALTER ROLE "n"  LOGIN PASSWORD NULL'],
  ])("alter %j", (r, sql) => {
    expect(S.alterRole(r).sql).toBe(sql);
  });

  test.each([
    ["create md5", S.createRole(role("p", MD5), "neon_superuser", false), MD5],
    ["create SCRAM", S.createRole(role("p", SCRAM), "neon_superuser", false), SCRAM],
    ["create plain", S.createRole(role("p", SCRAM), "neon_superuser", true), SCRAM],
    ["alter md5", S.alterRole(role("p", MD5)), MD5],
    ["alter SCRAM", S.alterRole(role("p", SCRAM)), SCRAM],
  ])("%s: display redacts the password", (_label, s, secret) => {
    expect(s.sql).toContain(secret);
    expect(s.display).not.toContain(secret);
    expect(s.display).toBe(s.sql.replace(/PASSWORD '.*'$/, "PASSWORD '***'"));
    expect(s.display.endsWith(" LOGIN PASSWORD '***'")).toBe(true);
    expect(s.object).toBe('role "p"');
  });

  test("display of a NULL password is the SQL itself", () => {
    const s = S.alterRole(role("n", null));
    expect(s.display).toBe(s.sql);
  });
});

describe("createDatabase", () => {
  test.each([
    [
      "upstream fixture DB2",
      {
        name: "DB2",
        owner: "alexk",
        options: [
          opt("LC_COLLATE", "C", "string"),
          opt("LC_CTYPE", "C", "string"),
          opt("TEMPLATE", "template0", "enum"),
        ],
      },
      `CREATE DATABASE "DB2" LC_COLLATE 'C' LC_CTYPE 'C' TEMPLATE template0 OWNER "alexk"`,
    ],
    [
      "no options",
      { name: "zen", owner: "zen", options: null },
      `CREATE DATABASE "zen"  OWNER "zen"`,
    ],
    [
      "empty options",
      { name: "zen", owner: "zen", options: [] },
      `CREATE DATABASE "zen"  OWNER "zen"`,
    ],
    [
      "string value escaped, other vartype verbatim, no value bare",
      {
        name: "d",
        owner: "o",
        options: [
          opt("LC_COLLATE", "it's", "string"),
          opt("ENCODING", String.raw`a\b`, "string"),
          opt("CONNECTION LIMIT", "5", "integer"),
          opt("IS_TEMPLATE", null, "bool"),
        ],
      },
      String.raw`CREATE DATABASE "d" LC_COLLATE 'it''s' ENCODING E'a\\b' CONNECTION LIMIT 5 IS_TEMPLATE OWNER "o"`,
    ],
    [
      "quotes in names doubled",
      { name: 'my "db"', owner: 'o"wner', options: null },
      `CREATE DATABASE "my ""db"""  OWNER "o""wner"`,
    ],
  ])("%s", (_label, db, sql) => {
    const s = S.createDatabase(db);
    expect(s.sql).toBe(sql);
    expect(s.display).toBe(sql);
  });
});

describe("single statements", () => {
  test.each([
    [S.renameRole('a"b', "c"), 'ALTER ROLE "a""b" RENAME TO "c"', 'role "a""b"'],
    [S.dropRole('x"y'), 'DROP ROLE IF EXISTS "x""y"', 'role "x""y"'],
    [
      S.createPrivilegedRole("neon_superuser"),
      "CREATE ROLE neon_superuser CREATEDB CREATEROLE NOLOGIN REPLICATION BYPASSRLS IN ROLE pg_read_all_data, pg_write_all_data",
      "privileged role neon_superuser",
    ],
    [
      S.grantDatabaseToPrivileged("D", "my_su"),
      'GRANT ALL PRIVILEGES ON DATABASE "D" TO my_su',
      'database "D"',
    ],
    [S.alterDatabaseOwner("d", 'o"'), 'ALTER DATABASE "d" OWNER TO "o"""', 'database "d"'],
    [S.renameDatabase("DB", "DB2"), 'ALTER DATABASE "DB" RENAME TO "DB2"', 'database "DB"'],
    [S.unsetTemplate("t"), 'ALTER DATABASE "t" IS_TEMPLATE false', 'database "t"'],
    [S.dropInvalidDatabase("bad"), 'DROP DATABASE IF EXISTS "bad"', 'database "bad"'],
    [S.dropDatabase('x"'), 'DROP DATABASE IF EXISTS "x""" WITH (FORCE)', 'database "x"""'],
    [S.createSchemaNeon(), "CREATE SCHEMA IF NOT EXISTS neon", "schema neon"],
    [S.reassignOwned("r", "own"), 'REASSIGN OWNED BY "r" TO "own"', 'role "r"'],
    [S.dropOwned('r"'), 'DROP OWNED BY "r"""', 'role "r"""'],
    [
      S.createExtension("pg_stat_statements", "public"),
      "CREATE EXTENSION IF NOT EXISTS pg_stat_statements WITH SCHEMA public",
      "extension pg_stat_statements",
    ],
    [S.neonExtension.setSchema, "ALTER EXTENSION neon SET SCHEMA neon", "extension neon"],
    [S.neonExtension.update, "ALTER EXTENSION neon UPDATE", "extension neon"],
    [
      S.disablePostgresDbAudit(),
      "ALTER DATABASE postgres SET pgaudit.log to 'none'",
      'database "postgres"',
    ],
  ])("%j", (s, sql, object) => {
    expect(s.sql).toBe(sql);
    expect(s.object).toBe(object);
    expect(s.display).toBe(sql);
  });

  test("neon made relocatable with schema-qualified operators", () => {
    const { sql } = S.neonExtension.makeRelocatable;
    expect(sql).toStartWith("UPDATE pg_catalog.pg_extension SET extrelocatable = true WHERE ");
    expect(sql).toContain("extname OPERATOR(pg_catalog.=) 'neon'::pg_catalog.name");
    expect(sql).toContain("extrelocatable OPERATOR(pg_catalog.=) false");
  });
});

/**
 * Splits `DO $t$ body $t$` the way the server's lexer does: the block ends
 * at the first `$t$` after the opening one, so it must be the last token.
 */
function doBlock(sql: string): { tag: string; body: string } {
  const m = /^DO \$(x+)\$/.exec(sql);
  if (m === null) throw new Error(`not a DO block: ${sql.slice(0, 20)}`);
  const tag = `$${m[1]}$`;
  const start = m[0].length;
  const end = sql.indexOf(tag, start);
  expect(end).toBe(sql.length - tag.length);
  return { tag: m[1] as string, body: sql.slice(start, end) };
}

/** Reads the dollar-quoted literal starting at `at` in `text`, as the lexer would. */
function readDollarLiteral(text: string, at: number): string {
  const m = /^\$(x*)\$/.exec(text.slice(at));
  if (m === null) throw new Error("no dollar quote here");
  const open = m[0];
  const from = at + open.length;
  const close = text.indexOf(open, from);
  if (close < 0) throw new Error("unterminated dollar quote");
  return text.slice(from, close);
}

describe("DO blocks embedding a name", () => {
  // [name, inner literal, outer tag]: the outer tag never occurs in the name.
  const names = [
    ["app", "$x$app$x$", "xx"],
    ["$x$", "$xx$$x$$xx$", "xxx"],
    ["xx", "$xxx$xx$xxx$", "xxxx"],
    ["a$$b", "$x$a$$b$x$", "xx"],
    ["$$", "$x$$$$x$", "xx"],
    ["end$", "$x$end$$x$", "xx"],
    ["$xxx$ $$", "$xxxx$$xxx$ $$$xxxx$", "xxxxx"],
    [`it's "odd"`, `$x$it's "odd"$x$`, "xx"],
  ] as const;

  const builders = [
    ["dropSubscriptions", (n: string) => S.dropSubscriptions(n)],
    ["revokeRoleTablePrivileges", (n: string) => S.revokeRoleTablePrivileges(n)],
    ["changeSchemaPerms (owner)", (n: string) => S.changeSchemaPerms("db", n, "neon_superuser")],
  ] as const;

  for (const [label, build] of builders) {
    test.each(names)(`${label}: %p`, (name, literal, outer) => {
      const { sql } = build(name);
      const { tag, body } = doBlock(sql);
      expect(tag).toBe(outer);
      expect(name).not.toContain(`$${outer}$`);
      const at = body.indexOf(literal);
      expect(at).toBeGreaterThanOrEqual(0);
      expect(readDollarLiteral(body, at)).toBe(name);
    });
  }

  test("objects name what the block acts on", () => {
    expect(S.dropSubscriptions("app").object).toBe('subscriptions of database "app"');
    expect(S.revokeRoleTablePrivileges("r").object).toBe('role "r"');
    expect(S.changeSchemaPerms("app", "o", "p").object).toBe('schema public of database "app"');
  });

  test("dropSubscriptions disables, detaches and drops each subscription of the database", () => {
    const { body } = doBlock(S.dropSubscriptions("app").sql);
    const order = [
      "LOCK TABLE pg_catalog.pg_subscription IN ACCESS EXCLUSIVE MODE",
      "ALTER SUBSCRIPTION %I DISABLE",
      "ALTER SUBSCRIPTION %I SET (slot_name = NONE)",
      "DROP SUBSCRIPTION %I",
    ].map((s) => body.indexOf(s));
    expect(order.every((i) => i >= 0)).toBe(true);
    expect(order).toEqual([...order].sort((a, b) => a - b));
    expect(body).toContain("$x$app$x$::pg_catalog.name");
  });

  test("changeSchemaPerms grants to the privileged role it is given", () => {
    const { body } = doBlock(S.changeSchemaPerms("app", "alice", "my_superuser").sql);
    expect(body).toContain("GRANT ALL ON TABLES TO my_superuser WITH GRANT OPTION");
    expect(body).toContain("GRANT ALL ON SEQUENCES TO my_superuser WITH GRANT OPTION");
    expect(body).toContain("'my_superuser'");
    expect(body).not.toContain("neon_superuser");
    expect(body).toContain("ALTER SCHEMA public OWNER TO %I");
    expect(body).toContain("GRANT CREATE ON SCHEMA public TO web_access");
  });

  test("revokeRoleTablePrivileges revokes as each grantor", () => {
    const { body } = doBlock(S.revokeRoleTablePrivileges("bob").sql);
    expect(body).toContain("grantee_name pg_catalog.text := $x$bob$x$;");
    expect(body).toContain("SET LOCAL ROLE %I");
    expect(body).toContain(
      "REVOKE ALL PRIVILEGES ON ALL TABLES IN SCHEMA public FROM %I GRANTED BY %I",
    );
  });

  test.each([
    ["createAvailabilityCheck", S.createAvailabilityCheck(), "public.health_check"],
    ["finalizeDropSubscriptions", S.finalizeDropSubscriptions(), "neon.drop_subscriptions_done"],
  ])("%s is a well-formed block", (_label, s, table) => {
    const { body } = doBlock(s.sql);
    expect(body).toContain(`CREATE TABLE ${table}`);
    expect(s.object).toBe(`table ${table}`);
  });
});
