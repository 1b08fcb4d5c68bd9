// The SQL text of the spec apply (upstream-api.md §3.5, §3.8): pure builders,
// one per statement kind. Identifiers go through pgQuote, names inside DO
// blocks through pgQuoteDollar, option values through escapeLiteral. The
// privileged role name `p` is never quoted: the CLI allows only [a-z_]+.
//
// The DO blocks are ours. They have upstream's effect, and each checks the
// catalog first so a block that finds nothing to do runs no DDL.

import type { Database, Role } from "../spec/schema.ts";
import { escapeLiteral, pgQuote, pgQuoteDollar, renderSqlOptions } from "./quote.ts";

/** A statement with what it acts on (for errors) and its loggable text. */
export interface Statement {
  sql: string;
  /** `role "alice"`, `database "app"`, ...: named in errors. */
  object: string;
  /** The text to log: `sql` with any password replaced. */
  display: string;
  /** Once this succeeds, the per-database phases of this database may start. */
  unlocks?: string;
}

function stmt(sql: string, object: string, display = sql): Statement {
  return { sql, object, display };
}

export const roleObject = (name: string) => `role ${pgQuote(name)}`;
export const databaseObject = (name: string) => `database ${pgQuote(name)}`;

/** The catalog form of a spec password: SCRAM verifiers as they are, md5 digests with their prefix. */
export function catalogPassword(specPassword: string | null): string | null {
  if (specPassword === null) return null;
  return specPassword.startsWith("SCRAM-SHA-256") ? specPassword : `md5${specPassword}`;
}

/**
 * Upstream Role::to_pg_options: the options, ` LOGIN` and a password clause.
 * The password is escaped as a literal (upstream pastes it raw; verifiers
 * never contain quotes, so the text is the same for every valid value).
 */
function roleOptions(role: Role, redact: boolean): string {
  const password = catalogPassword(role.encrypted_password);
  const clause =
    password === null ? "PASSWORD NULL" : `PASSWORD ${redact ? "'***'" : escapeLiteral(password)}`;
  return `${renderSqlOptions(role.options)} LOGIN ${clause}`;
}

export function createRole(role: Role, p: string, plain: boolean): Statement {
  // Roles local_proxy authenticates by JWT get no privileges of their own.
  const head = plain
    ? `CREATE ROLE ${pgQuote(role.name)} `
    : `CREATE ROLE ${pgQuote(role.name)} INHERIT CREATEROLE CREATEDB BYPASSRLS REPLICATION IN ROLE ${p} `;
  return stmt(
    head + roleOptions(role, false),
    roleObject(role.name),
    head + roleOptions(role, true),
  );
}

export function alterRole(role: Role): Statement {
  const head = `ALTER ROLE ${pgQuote(role.name)} `;
  return stmt(
    head + roleOptions(role, false),
    roleObject(role.name),
    head + roleOptions(role, true),
  );
}

export function renameRole(from: string, to: string): Statement {
  return stmt(`ALTER ROLE ${pgQuote(from)} RENAME TO ${pgQuote(to)}`, roleObject(from));
}

export function dropRole(name: string): Statement {
  return stmt(`DROP ROLE IF EXISTS ${pgQuote(name)}`, roleObject(name));
}

export function createPrivilegedRole(p: string): Statement {
  return stmt(
    `CREATE ROLE ${p} CREATEDB CREATEROLE NOLOGIN REPLICATION BYPASSRLS IN ROLE pg_read_all_data, pg_write_all_data`,
    `privileged role ${p}`,
  );
}

/** Upstream Database::to_pg_options: the options, then ` OWNER "owner"`. */
export function createDatabase(db: Pick<Database, "name" | "owner" | "options">): Statement {
  return stmt(
    `CREATE DATABASE ${pgQuote(db.name)} ${renderSqlOptions(db.options)} OWNER ${pgQuote(db.owner)}`,
    databaseObject(db.name),
  );
}

/** The last statement for a new database: its own phases may start after it. */
export function grantDatabaseToPrivileged(name: string, p: string): Statement {
  return {
    ...stmt(`GRANT ALL PRIVILEGES ON DATABASE ${pgQuote(name)} TO ${p}`, databaseObject(name)),
    unlocks: name,
  };
}

export function alterDatabaseOwner(name: string, owner: string): Statement {
  return stmt(`ALTER DATABASE ${pgQuote(name)} OWNER TO ${pgQuote(owner)}`, databaseObject(name));
}

export function renameDatabase(from: string, to: string): Statement {
  return stmt(`ALTER DATABASE ${pgQuote(from)} RENAME TO ${pgQuote(to)}`, databaseObject(from));
}

/** A template database cannot be dropped; the flag goes first. */
export function unsetTemplate(name: string): Statement {
  return stmt(`ALTER DATABASE ${pgQuote(name)} IS_TEMPLATE false`, databaseObject(name));
}

/** Left behind by an interrupted DROP DATABASE (upstream: no FORCE here). */
export function dropInvalidDatabase(name: string): Statement {
  return stmt(`DROP DATABASE IF EXISTS ${pgQuote(name)}`, databaseObject(name));
}

/** FORCE ends the sessions still connected to it. */
export function dropDatabase(name: string): Statement {
  return stmt(`DROP DATABASE IF EXISTS ${pgQuote(name)} WITH (FORCE)`, databaseObject(name));
}

export function createSchemaNeon(): Statement {
  return stmt("CREATE SCHEMA IF NOT EXISTS neon", "schema neon");
}

/**
 * Run in the database itself: disable, detach from the remote slot and drop
 * every subscription of this database, so its DROP or a new branch does not
 * touch the publisher's slot.
 */
export function dropSubscriptions(dbName: string): Statement {
  const { quoted, outerTag } = pgQuoteDollar(dbName);
  const sql = `DO $${outerTag}$
DECLARE
  sub pg_catalog.name;
BEGIN
  LOCK TABLE pg_catalog.pg_subscription IN ACCESS EXCLUSIVE MODE;
  FOR sub IN
    SELECT s.subname FROM pg_catalog.pg_subscription s
    JOIN pg_catalog.pg_database d ON d.oid OPERATOR(pg_catalog.=) s.subdbid
    WHERE d.datname OPERATOR(pg_catalog.=) ${quoted}::pg_catalog.name
  LOOP
    EXECUTE pg_catalog.format('ALTER SUBSCRIPTION %I DISABLE', sub);
    EXECUTE pg_catalog.format('ALTER SUBSCRIPTION %I SET (slot_name = NONE)', sub);
    EXECUTE pg_catalog.format('DROP SUBSCRIPTION %I', sub);
  END LOOP;
END $${outerTag}$`;
  return stmt(sql, `subscriptions of ${databaseObject(dbName)}`);
}

/** What `role` owns in this database goes to `newOwner`. */
export function reassignOwned(role: string, newOwner: string): Statement {
  return stmt(`REASSIGN OWNED BY ${pgQuote(role)} TO ${pgQuote(newOwner)}`, roleObject(role));
}

/**
 * Table privileges on schema public granted to `role` by other roles: DROP
 * OWNED run by the superuser only revokes those granted by the owners, so each
 * grantor revokes its own. Grantors are collected before any SET ROLE.
 */
export function revokeRoleTablePrivileges(role: string): Statement {
  const { quoted, outerTag } = pgQuoteDollar(role);
  const sql = `DO $${outerTag}$
DECLARE
  grantee_name pg_catalog.text := ${quoted};
  grantee_oid pg_catalog.oid;
  grantors pg_catalog.text[];
  grantor_name pg_catalog.text;
BEGIN
  SELECT oid INTO grantee_oid FROM pg_catalog.pg_roles WHERE rolname OPERATOR(pg_catalog.=) grantee_name;
  IF grantee_oid IS NULL THEN RETURN; END IF;
  SELECT pg_catalog.array_agg(DISTINCT r.rolname::pg_catalog.text) INTO grantors
  FROM pg_catalog.pg_class c
  JOIN pg_catalog.pg_namespace n ON n.oid OPERATOR(pg_catalog.=) c.relnamespace,
  LATERAL pg_catalog.aclexplode(c.relacl) a
  JOIN pg_catalog.pg_roles r ON r.oid OPERATOR(pg_catalog.=) a.grantor
  WHERE n.nspname OPERATOR(pg_catalog.=) 'public'
    AND c.relkind OPERATOR(pg_catalog.=) ANY (ARRAY['r', 'v', 'm', 'f', 'p']::"char"[])
    AND a.grantee OPERATOR(pg_catalog.=) grantee_oid;
  IF grantors IS NULL THEN RETURN; END IF;
  FOREACH grantor_name IN ARRAY grantors LOOP
    EXECUTE pg_catalog.format('SET LOCAL ROLE %I', grantor_name);
    EXECUTE pg_catalog.format('REVOKE ALL PRIVILEGES ON ALL TABLES IN SCHEMA public FROM %I GRANTED BY %I', grantee_name, grantor_name);
  END LOOP;
END $${outerTag}$`;
  return stmt(sql, roleObject(role));
}

export function dropOwned(role: string): Statement {
  return stmt(`DROP OWNED BY ${pgQuote(role)}`, roleObject(role));
}

/**
 * Upstream's ChangeSchemaPerms in one block: schema public goes to the
 * database owner if cloud_admin or zenith_admin holds it; on PG 15+ role
 * web_access may create in it; `p` gets all privileges, with grant option, on
 * tables and sequences cloud_admin creates there. Each part checks first.
 */
export function changeSchemaPerms(dbName: string, owner: string, p: string): Statement {
  const { quoted, outerTag } = pgQuoteDollar(owner);
  const missingDefaults = (aclKind: string, objType: string) =>
    `EXISTS (
    SELECT d.privilege_type FROM pg_catalog.aclexplode(pg_catalog.acldefault('${aclKind}', me)) d
    EXCEPT
    SELECT a.privilege_type FROM pg_catalog.pg_default_acl da, LATERAL pg_catalog.aclexplode(da.defaclacl) a
    WHERE da.defaclrole OPERATOR(pg_catalog.=) me AND da.defaclnamespace OPERATOR(pg_catalog.=) pub
      AND da.defaclobjtype OPERATOR(pg_catalog.=) '${objType}' AND a.grantee OPERATOR(pg_catalog.=) privileged AND a.is_grantable)`;
  const sql = `DO $${outerTag}$
DECLARE
  owner_name pg_catalog.text := ${quoted};
  pub pg_catalog.oid;
  schema_owner pg_catalog.text;
  me pg_catalog.oid;
  privileged pg_catalog.oid;
  web pg_catalog.oid;
BEGIN
  SELECT oid, nspowner::pg_catalog.regrole::pg_catalog.text INTO pub, schema_owner
  FROM pg_catalog.pg_namespace WHERE nspname OPERATOR(pg_catalog.=) 'public';
  IF pub IS NULL THEN RETURN; END IF;
  IF schema_owner OPERATOR(pg_catalog.=) ANY (ARRAY['cloud_admin', 'zenith_admin']) THEN
    EXECUTE pg_catalog.format('ALTER SCHEMA public OWNER TO %I', owner_name);
  END IF;
  SELECT oid INTO web FROM pg_catalog.pg_roles WHERE rolname OPERATOR(pg_catalog.=) 'web_access';
  IF web IS NOT NULL
    AND pg_catalog.current_setting('server_version_num')::pg_catalog.int4 OPERATOR(pg_catalog.>=) 150000
    AND NOT EXISTS (
      SELECT FROM pg_catalog.pg_namespace n, LATERAL pg_catalog.aclexplode(n.nspacl) a
      WHERE n.oid OPERATOR(pg_catalog.=) pub AND a.grantee OPERATOR(pg_catalog.=) web
        AND a.privilege_type OPERATOR(pg_catalog.=) 'CREATE')
  THEN
    GRANT CREATE ON SCHEMA public TO web_access;
  END IF;
  SELECT oid INTO me FROM pg_catalog.pg_roles WHERE rolname OPERATOR(pg_catalog.=) CURRENT_USER;
  SELECT oid INTO privileged FROM pg_catalog.pg_roles WHERE rolname OPERATOR(pg_catalog.=) '${p}';
  IF ${missingDefaults("r", "r")} THEN
    ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT ALL ON TABLES TO ${p} WITH GRANT OPTION;
  END IF;
  IF ${missingDefaults("s", "S")} THEN
    ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT ALL ON SEQUENCES TO ${p} WITH GRANT OPTION;
  END IF;
END $${outerTag}$`;
  return stmt(sql, `schema public of ${databaseObject(dbName)}`);
}

export function createExtension(name: string, schema: string): Statement {
  return stmt(`CREATE EXTENSION IF NOT EXISTS ${name} WITH SCHEMA ${schema}`, `extension ${name}`);
}

/** Upstream's neon extension steps, each only when the catalog says it is needed. */
export const neonExtension = {
  makeRelocatable: stmt(
    "UPDATE pg_catalog.pg_extension SET extrelocatable = true WHERE extname OPERATOR(pg_catalog.=) 'neon'::pg_catalog.name AND extrelocatable OPERATOR(pg_catalog.=) false",
    "extension neon",
  ),
  setSchema: stmt("ALTER EXTENSION neon SET SCHEMA neon", "extension neon"),
  update: stmt("ALTER EXTENSION neon UPDATE", "extension neon"),
};

/** public.health_check, which /check_writability updates. */
export function createAvailabilityCheck(): Statement {
  return stmt(
    `DO $x$
BEGIN
  IF pg_catalog.to_regclass('public.health_check') IS NULL THEN
    CREATE TABLE public.health_check (
      id pg_catalog.int4 PRIMARY KEY GENERATED BY DEFAULT AS IDENTITY,
      updated_at pg_catalog.timestamptz DEFAULT pg_catalog.now()
    );
    INSERT INTO public.health_check VALUES (1, pg_catalog.now())
      ON CONFLICT (id) DO UPDATE SET updated_at = pg_catalog.now();
  END IF;
END $x$`,
    "table public.health_check",
  );
}

/** Remembers, per timeline, that the subscriptions of a new branch were dropped. */
export function finalizeDropSubscriptions(): Statement {
  return stmt(
    `DO $x$
BEGIN
  IF pg_catalog.to_regclass('neon.drop_subscriptions_done') IS NULL THEN
    CREATE TABLE neon.drop_subscriptions_done (
      id pg_catalog.int4 PRIMARY KEY GENERATED BY DEFAULT AS IDENTITY,
      timeline_id pg_catalog.text
    );
  END IF;
  INSERT INTO neon.drop_subscriptions_done VALUES (1, pg_catalog.current_setting('neon.timeline_id'))
    ON CONFLICT (id) DO UPDATE SET timeline_id = EXCLUDED.timeline_id;
END $x$`,
    "table neon.drop_subscriptions_done",
  );
}

export function disablePostgresDbAudit(): Statement {
  return stmt("ALTER DATABASE postgres SET pgaudit.log to 'none'", databaseObject("postgres"));
}
