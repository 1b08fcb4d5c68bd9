// The spec apply as a pure function: catalog + spec -> the statements of every
// phase, in upstream's phase order (upstream-api.md §3.5). The executor only
// runs what this returns, so every rule here is unit-tested without postgres.
//
// Differences from upstream, all towards "a second apply of the same spec runs
// no DDL" (docs/COMPATIBILITY.md): statements whose effect the catalog shows is
// already in place are not planned, and the per-database phases visit only the
// databases that have something to do.

import { ConfigError } from "../errors.ts";
import type { ComputeSpec } from "../spec/schema.ts";
import type { Catalog, CatalogQuery } from "./catalog.ts";
import * as S from "./sql.ts";

export type PhaseName =
  | "CreatePrivilegedRole"
  | "DropInvalidDatabases"
  | "RenameRoles"
  | "CreateAndAlterRoles"
  | "RenameAndDeleteDatabases"
  | "CreateAndAlterDatabases"
  | "CreateSchemaNeon"
  | "DropLogicalSubscriptions"
  | "DeleteDBRoleReferences"
  | "ChangeSchemaPerms"
  | "HandleOtherExtensions"
  | "HandleNeonExtension"
  | "CreateAvailabilityCheck"
  | "DropRoles"
  | "FinalizeDropLogicalSubscriptions"
  | "CreatePgauditExtension"
  | "CreatePgauditlogtofileExtension"
  | "DisablePostgresDBPgAudit";

export interface Phase {
  name: PhaseName;
  statements: S.Statement[];
}

/** The work of one database, run on its own connection. */
export interface DatabaseTask {
  database: string;
  phases: Phase[];
  /** Set when the task runs ChangeSchemaPerms: what to record in `prepared` once it succeeds. */
  prepare?: PreparedFor;
}

export interface ApplyPlan {
  /** Step 0: subscriptions of databases about to be dropped. */
  preDrop: DatabaseTask[];
  /** Phases 1–8, on the system database. */
  before: Phase[];
  /** Step 9: user databases in spec order, the system database last. */
  perDatabase: DatabaseTask[];
  /** Phases 10–17, on the system database. */
  after: Phase[];
  warnings: string[];
}

export interface PlanInput {
  spec: ComputeSpec;
  catalog: Catalog;
  privilegedRoleName: string;
  /** The database of --connstr (normally `postgres`). */
  systemDb: string;
  /**
   * Databases whose ChangeSchemaPerms an earlier apply of this process ran,
   * with the key it ran for (see preparedKey). Empty at startup.
   */
  prepared: ReadonlyMap<string, string>;
}

type DeltaAction = "delete_role" | "rename_role" | "delete_db" | "rename_db";

function deltaOps(spec: ComputeSpec, action: DeltaAction) {
  return (spec.delta_operations ?? []).filter((op) => op.action === action);
}

function newName(op: { action: string; name: string; new_name: string | null }): string {
  if (op.new_name === null) {
    throw new ConfigError(`delta operation ${op.action} of "${op.name}" has no new_name`, {
      path: "spec.delta_operations",
    });
  }
  return op.new_name;
}

/**
 * What readCatalog must read for this spec. `timelineId` is the parsed spec's
 * (it falls back to the `neon.timeline_id` setting, as upstream's).
 */
export function catalogQuery(spec: ComputeSpec, timelineId: string): CatalogQuery {
  // A role renamed and dropped in the same spec still has its old name when the
  // catalog is read: ask for every name it had.
  const names = new Set<string>();
  for (const op of deltaOps(spec, "delete_role")) {
    let name = op.name;
    names.add(name);
    for (const rename of deltaOps(spec, "rename_role").reverse()) {
      if (rename.new_name === name) {
        name = rename.name;
        names.add(name);
      }
    }
  }
  return {
    rolesToDrop: [...names],
    dropSubscriptionsTimeline: spec.drop_subscriptions_before_start ? timelineId : null,
  };
}

export interface PreparedFor {
  privilegedRole: string;
  webAccess: boolean;
}

/**
 * The key ChangeSchemaPerms ran for: another database under the same name
 * (another oid), another privileged role or a web_access role that appeared
 * all need it again. The owner is not part of it: the block only gives schema
 * public to the owner while cloud_admin or zenith_admin holds it, which the
 * first run ended, so a later owner change has nothing for it to do.
 */
export function preparedKey(oid: string, f: PreparedFor): string {
  return JSON.stringify([oid, f.privilegedRole, f.webAccess]);
}

/** Whether the catalog value already is what the spec's password would set. */
export function passwordMatches(catalog: string | null, spec: string | null): boolean {
  return catalog === S.catalogPassword(spec);
}

function settingValue(spec: ComputeSpec, name: string): string | null {
  return spec.cluster.settings?.find((o) => o.name === name)?.value ?? null;
}

export function planApply(input: PlanInput): ApplyPlan {
  const { spec, catalog, systemDb } = input;
  const p = input.privilegedRoleName;
  const warnings: string[] = [];
  // The context later phases see: the catalog as earlier phases leave it.
  const roles = new Map(catalog.roles);
  const dbs = new Map(catalog.databases);
  const roleDeps = new Map(
    [...catalog.roleDependencies].map(([role, held]) => [role, new Set(held)]),
  );
  const phase = (name: PhaseName, statements: S.Statement[]): Phase => ({ name, statements });

  // Step 0: a database to be dropped loses its subscriptions first (only where it has any).
  const preDrop: DatabaseTask[] = [];
  for (const op of deltaOps(spec, "delete_db")) {
    const db = dbs.get(op.name);
    if (db === undefined || db.restrictConn || db.invalid) continue;
    if ((catalog.subscriptions.get(op.name) ?? 0) === 0) continue;
    preDrop.push({
      database: op.name,
      phases: [phase("DropLogicalSubscriptions", [S.dropSubscriptions(op.name)])],
    });
  }

  const before: Phase[] = [];
  before.push(phase("CreatePrivilegedRole", roles.has(p) ? [] : [S.createPrivilegedRole(p)]));

  const dropInvalid: S.Statement[] = [];
  for (const [name, db] of dbs) {
    if (!db.invalid) continue;
    dbs.delete(name);
    dropInvalid.push(S.dropInvalidDatabase(name));
  }
  before.push(phase("DropInvalidDatabases", dropInvalid));

  // Upstream inverted this condition (§3.13 #1); renaming when the old role exists is the intent.
  const renames: S.Statement[] = [];
  for (const op of deltaOps(spec, "rename_role")) {
    const to = newName(op);
    if (!roles.has(op.name)) continue;
    renames.push(S.renameRole(op.name, to));
    roles.delete(op.name);
    // An md5 verifier is salted with the role name: postgres clears it on rename.
    roles.set(to, { password: null });
    const deps = roleDeps.get(op.name);
    if (deps !== undefined) {
      roleDeps.delete(op.name);
      roleDeps.set(to, deps);
    }
  }
  before.push(phase("RenameRoles", renames));

  const jwksRoles = new Set((spec.local_proxy_config?.jwks ?? []).flatMap((j) => j.role_names));
  const roleStatements: S.Statement[] = [];
  for (const role of spec.cluster.roles) {
    const existing = roles.get(role.name);
    if (existing === undefined) {
      roleStatements.push(S.createRole(role, p, jwksRoles.has(role.name)));
    } else if (!passwordMatches(existing.password, role.encrypted_password)) {
      roleStatements.push(S.alterRole(role));
    }
  }
  before.push(phase("CreateAndAlterRoles", roleStatements));

  const dbDeltas: S.Statement[] = [];
  for (const op of spec.delta_operations ?? []) {
    if (op.action === "delete_db") {
      const db = dbs.get(op.name);
      if (db === undefined) continue;
      dbs.delete(op.name);
      if (db.isTemplate) dbDeltas.push(S.unsetTemplate(op.name));
      dbDeltas.push(S.dropDatabase(op.name));
    } else if (op.action === "rename_db") {
      const to = newName(op);
      const db = dbs.get(op.name);
      if (db === undefined) continue;
      dbs.delete(op.name);
      dbs.set(to, db);
      // What roles to be dropped hold in it is found under its new name.
      for (const held of roleDeps.values()) {
        if (held.delete(op.name)) held.add(to);
      }
      dbDeltas.push(S.renameDatabase(op.name, to));
    }
  }
  before.push(phase("RenameAndDeleteDatabases", dbDeltas));

  const dbStatements: S.Statement[] = [];
  const createdDbs = new Set<string>();
  for (const db of spec.cluster.databases) {
    const existing = dbs.get(db.name);
    if (existing === undefined) {
      dbs.set(db.name, {
        oid: "new",
        owner: db.owner,
        restrictConn: false,
        invalid: false,
        isTemplate: false,
      });
      createdDbs.add(db.name);
      dbStatements.push(S.createDatabase(db), S.grantDatabaseToPrivileged(db.name, p));
    } else if (existing.owner !== db.owner) {
      dbs.set(db.name, { ...existing, owner: db.owner });
      dbStatements.push(S.alterDatabaseOwner(db.name, db.owner));
    }
  }
  // A new database's own phases may start as soon as it exists, unless a
  // database created after it uses it as TEMPLATE (a connection would block that).
  const templates = new Set(
    spec.cluster.databases.flatMap((d) =>
      (d.options ?? []).flatMap((o) =>
        o.name.toUpperCase() === "TEMPLATE" && o.value !== null ? [o.value] : [],
      ),
    ),
  );
  for (const [i, st] of dbStatements.entries()) {
    if (st.unlocks !== undefined && templates.has(st.unlocks)) {
      const { unlocks: _, ...rest } = st;
      dbStatements[i] = rest;
    }
  }
  before.push(phase("CreateAndAlterDatabases", dbStatements));
  before.push(phase("CreateSchemaNeon", catalog.schemas.has("neon") ? [] : [S.createSchemaNeon()]));

  // Step 9. Roles to drop are cleaned out of every connectable database that
  // holds something of theirs (upstream: only spec databases and the system DB).
  const dropSubs = spec.drop_subscriptions_before_start && !catalog.dropSubscriptionsDone;
  const dropping = deltaOps(spec, "delete_role")
    .map((op) => op.name)
    .filter((name) => roles.has(name));
  const webAccess =
    roles.has("web_access") || spec.cluster.roles.some((r) => r.name === "web_access");
  const specDbs = new Map(spec.cluster.databases.map((d) => [d.name, d]));
  const perDatabase: DatabaseTask[] = [];
  const visit = (name: string, isSystem: boolean) => {
    const db = dbs.get(name);
    if (!isSystem && (db === undefined || db.restrictConn || db.invalid)) {
      if (specDbs.has(name))
        warnings.push(`skipping database ${JSON.stringify(name)}: it does not allow connections`);
      return;
    }
    const phases: Phase[] = [];
    const specDb = specDbs.get(name);
    const references: S.Statement[] = [];
    for (const role of dropping) {
      if (!(roleDeps.get(role)?.has(name) ?? false)) continue;
      const owner = isSystem ? "cloud_admin" : (specDb?.owner ?? db?.owner ?? "cloud_admin");
      // A role that owns the database keeps it: DROP ROLE then fails, as upstream.
      if (!isSystem && owner === role) continue;
      references.push(
        S.reassignOwned(role, owner),
        S.revokeRoleTablePrivileges(role),
        S.dropOwned(role),
      );
    }
    if (references.length > 0) phases.push(phase("DeleteDBRoleReferences", references));
    let prepare: PreparedFor | undefined;
    if (!isSystem && specDb !== undefined) {
      const wanted = { privilegedRole: p, webAccess };
      const found = catalog.databases.get(name);
      const done =
        found !== undefined &&
        !createdDbs.has(name) &&
        input.prepared.get(name) === preparedKey(found.oid, wanted);
      if (!done) {
        phases.push(phase("ChangeSchemaPerms", [S.changeSchemaPerms(name, specDb.owner, p)]));
        prepare = wanted;
      }
      if (dropSubs && (catalog.subscriptions.get(name) ?? 0) > 0) {
        phases.push(phase("DropLogicalSubscriptions", [S.dropSubscriptions(name)]));
      }
    }
    if (phases.length > 0)
      perDatabase.push({ database: name, phases, ...(prepare ? { prepare } : {}) });
  };
  const visited = new Set<string>();
  for (const db of spec.cluster.databases) {
    if (visited.has(db.name)) continue;
    visited.add(db.name);
    visit(db.name, false);
  }
  for (const name of dropping.flatMap((role) => [...(roleDeps.get(role) ?? [])])) {
    if (visited.has(name) || name === systemDb) continue;
    visited.add(name);
    visit(name, false);
  }
  visit(systemDb, true);

  const after: Phase[] = [];
  const preload = settingValue(spec, "shared_preload_libraries");
  after.push(
    phase(
      "HandleOtherExtensions",
      preload?.includes("pg_stat_statements") && !catalog.extensions.has("pg_stat_statements")
        ? [S.createExtension("pg_stat_statements", "public")]
        : [],
    ),
  );
  after.push(phase("HandleNeonExtension", planNeonExtension(catalog, warnings)));
  after.push(
    phase("CreateAvailabilityCheck", catalog.healthCheck ? [] : [S.createAvailabilityCheck()]),
  );
  after.push(
    phase(
      "DropRoles",
      dropping.map((name) => S.dropRole(name)),
    ),
  );
  if (dropSubs) {
    after.push(phase("FinalizeDropLogicalSubscriptions", [S.finalizeDropSubscriptions()]));
  }
  const audit = spec.audit_log_level;
  if (audit !== "Disabled") {
    const ext = (name: string) =>
      catalog.extensions.has(name) ? [] : [S.createExtension(name, "public")];
    after.push(phase("CreatePgauditExtension", ext("pgaudit")));
    if (audit === "Hipaa" || audit === "Extended" || audit === "Full") {
      after.push(phase("CreatePgauditlogtofileExtension", ext("pgauditlogtofile")));
    }
    after.push(
      phase(
        "DisablePostgresDBPgAudit",
        catalog.postgresAuditOff ? [] : [S.disablePostgresDbAudit()],
      ),
    );
  }

  return { preDrop, before, perDatabase, after, warnings };
}

/**
 * Upstream runs four statements every time; we run each only when the
 * catalog says so. Vanilla PostgreSQL has no neon extension: one warning.
 */
function planNeonExtension(catalog: Catalog, warnings: string[]): S.Statement[] {
  const available = catalog.availableExtensions.get("neon");
  if (available === undefined) {
    warnings.push(
      "the neon extension is not available in this PostgreSQL: its create/update steps are skipped",
    );
    return [];
  }
  const installed = catalog.extensions.get("neon");
  const out: S.Statement[] = [];
  if (installed === undefined) {
    out.push(S.createExtension("neon", "neon"));
  } else {
    if (installed.schema !== "neon")
      out.push(S.neonExtension.makeRelocatable, S.neonExtension.setSchema);
    if (installed.version !== available) out.push(S.neonExtension.update);
  }
  return out;
}
