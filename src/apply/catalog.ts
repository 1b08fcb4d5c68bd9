// What the apply reads before planning (upstream-api.md §3.3), in one
// round trip of pipelined queries on the system database. Beyond upstream's
// roles and databases it reads what lets the plan skip work already done:
// which databases hold objects or privileges of a role to be dropped
// (pg_shdepend), which have subscriptions (pg_subscription), and the system
// database's neon schema, health_check table and extensions.

import type { Sql } from "postgres";
import { escapeLiteral } from "./quote.ts";

export interface CatalogRole {
  /** `rolpassword`: an md5 or SCRAM verifier, or null. */
  password: string | null;
}

export interface CatalogDatabase {
  oid: string;
  owner: string | null;
  /** NOT datallowconn: nobody can connect, so per-database phases skip it. */
  restrictConn: boolean;
  /** datconnlimit = -2: an interrupted DROP DATABASE left it behind. */
  invalid: boolean;
  isTemplate: boolean;
}

export interface CatalogExtension {
  version: string;
  schema: string;
}

export interface Catalog {
  serverVersionNum: number;
  roles: Map<string, CatalogRole>;
  databases: Map<string, CatalogDatabase>;
  /** For the roles asked about: the databases where pg_shdepend records anything of theirs. */
  roleDependencies: Map<string, Set<string>>;
  /** Subscription count per database. */
  subscriptions: Map<string, number>;
  /** Schemas of the system database (only those the plan asks about). */
  schemas: Set<string>;
  healthCheck: boolean;
  /** Installed in the system database. */
  extensions: Map<string, CatalogExtension>;
  /** Available to CREATE EXTENSION: name to default_version (only those the plan asks about). */
  availableExtensions: Map<string, string>;
  /** `ALTER DATABASE postgres SET pgaudit.log to 'none'` is in place. */
  postgresAuditOff: boolean;
  /** neon.drop_subscriptions_done has this timeline (only read when asked). */
  dropSubscriptionsDone: boolean;
}

export interface CatalogQuery {
  /** Roles of delete_role operations, whose dependencies are read. */
  rolesToDrop: readonly string[];
  /** The timeline to look up in neon.drop_subscriptions_done, if the spec asks for it. */
  dropSubscriptionsTimeline: string | null;
}

const ASKED_SCHEMAS = ["neon"];
const ASKED_EXTENSIONS = ["neon", "pg_stat_statements", "pgaudit", "pgauditlogtofile"];

function textArray(values: readonly string[]): string {
  return `ARRAY[${values.map(escapeLiteral).join(", ")}]::pg_catalog.text[]`;
}

type Row = Record<string, unknown>;

const str = (v: unknown): string => String(v);
const strOrNull = (v: unknown): string | null => (v === null || v === undefined ? null : String(v));

/** Reads the catalog on `sql` (the system database, as superuser). */
export async function readCatalog(sql: Sql, query: CatalogQuery): Promise<Catalog> {
  const q = (text: string) => sql.unsafe<Row[]>(text);
  const dropped = query.rolesToDrop;
  const [version, roles, databases, deps, subs, schemas, health, ext, avail, audit, done] =
    await Promise.all([
      q("SELECT pg_catalog.current_setting('server_version_num') AS v"),
      q(
        "SELECT rolname::pg_catalog.text AS name, rolpassword AS password FROM pg_catalog.pg_authid",
      ),
      q(`SELECT d.datname::pg_catalog.text AS name, d.oid::pg_catalog.text AS oid,
  (SELECT r.rolname::pg_catalog.text FROM pg_catalog.pg_roles r WHERE r.oid OPERATOR(pg_catalog.=) d.datdba) AS owner,
  NOT d.datallowconn AS restrict_conn,
  d.datconnlimit OPERATOR(pg_catalog.=) OPERATOR(pg_catalog.-) 2 AS invalid,
  d.datistemplate AS is_template
FROM pg_catalog.pg_database d`),
      dropped.length === 0
        ? Promise.resolve([] as Row[])
        : q(`SELECT DISTINCT a.rolname::pg_catalog.text AS role, d.datname::pg_catalog.text AS db
FROM pg_catalog.pg_shdepend s
JOIN pg_catalog.pg_authid a ON a.oid OPERATOR(pg_catalog.=) s.refobjid
JOIN pg_catalog.pg_database d ON d.oid OPERATOR(pg_catalog.=) s.dbid
WHERE s.refclassid OPERATOR(pg_catalog.=) 'pg_catalog.pg_authid'::pg_catalog.regclass
  AND a.rolname OPERATOR(pg_catalog.=) ANY (${textArray(dropped)})`),
      q(`SELECT d.datname::pg_catalog.text AS db, pg_catalog.count(*)::pg_catalog.int4 AS n
FROM pg_catalog.pg_subscription s JOIN pg_catalog.pg_database d ON d.oid OPERATOR(pg_catalog.=) s.subdbid
GROUP BY d.datname`),
      q(`SELECT nspname::pg_catalog.text AS name FROM pg_catalog.pg_namespace
WHERE nspname OPERATOR(pg_catalog.=) ANY (${textArray(ASKED_SCHEMAS)})`),
      q("SELECT pg_catalog.to_regclass('public.health_check') IS NOT NULL AS present"),
      q(`SELECT e.extname::pg_catalog.text AS name, e.extversion AS version, n.nspname::pg_catalog.text AS schema
FROM pg_catalog.pg_extension e JOIN pg_catalog.pg_namespace n ON n.oid OPERATOR(pg_catalog.=) e.extnamespace
WHERE e.extname OPERATOR(pg_catalog.=) ANY (${textArray(ASKED_EXTENSIONS)})`),
      q(`SELECT name::pg_catalog.text AS name, default_version AS version FROM pg_catalog.pg_available_extensions
WHERE name OPERATOR(pg_catalog.=) ANY (${textArray(ASKED_EXTENSIONS)})`),
      q(`SELECT EXISTS (SELECT FROM pg_catalog.pg_db_role_setting s JOIN pg_catalog.pg_database d ON d.oid OPERATOR(pg_catalog.=) s.setdatabase
WHERE d.datname OPERATOR(pg_catalog.=) 'postgres' AND s.setrole OPERATOR(pg_catalog.=) 0
  AND 'pgaudit.log=none' OPERATOR(pg_catalog.=) ANY (s.setconfig)) AS off`),
      query.dropSubscriptionsTimeline === null
        ? Promise.resolve([] as Row[])
        : q(`SELECT pg_catalog.to_regclass('neon.drop_subscriptions_done') IS NOT NULL AS present`),
    ]);

  let dropSubscriptionsDone = false;
  if (query.dropSubscriptionsTimeline !== null && done[0]?.present === true) {
    const rows = await q(
      `SELECT 1 FROM neon.drop_subscriptions_done WHERE timeline_id OPERATOR(pg_catalog.=) ${escapeLiteral(query.dropSubscriptionsTimeline)}`,
    );
    dropSubscriptionsDone = rows.length > 0;
  }

  const roleDependencies = new Map<string, Set<string>>();
  for (const r of deps) {
    const role = str(r.role);
    const set = roleDependencies.get(role) ?? new Set<string>();
    set.add(str(r.db));
    roleDependencies.set(role, set);
  }
  return {
    serverVersionNum: Number(version[0]?.v),
    roles: new Map(roles.map((r) => [str(r.name), { password: strOrNull(r.password) }])),
    databases: new Map(
      databases.map((r) => [
        str(r.name),
        {
          oid: str(r.oid),
          owner: strOrNull(r.owner),
          restrictConn: r.restrict_conn === true,
          invalid: r.invalid === true,
          isTemplate: r.is_template === true,
        },
      ]),
    ),
    roleDependencies,
    subscriptions: new Map(subs.map((r) => [str(r.db), Number(r.n)])),
    schemas: new Set(schemas.map((r) => str(r.name))),
    healthCheck: health[0]?.present === true,
    extensions: new Map(
      ext.map((r) => [str(r.name), { version: str(r.version), schema: str(r.schema) }]),
    ),
    availableExtensions: new Map(avail.map((r) => [str(r.name), str(r.version)])),
    postgresAuditOff: audit[0]?.off === true,
    dropSubscriptionsDone,
  };
}
