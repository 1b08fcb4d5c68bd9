// postgresql.conf as compute_ctl writes it at startup and on every
// reconfiguration (upstream-lifecycle.md §4.4): a pure function of the spec
// and a few facts about the host, so the whole file is table-testable.
// Writing it is pgdata-files.ts's job; copying TLS key/cert is not done here.
import { readFileSync } from "node:fs";
import { escapeConfValue, renderSettingsConf } from "../apply/quote.ts";
import { ComputeCtlError } from "../errors.ts";
import { formatShardIndex } from "../spec/ids.ts";
import { formatLsn } from "../spec/lsn.ts";
import { genericOptionsFind, type ParsedSpec } from "../spec/parsed-spec.ts";
import {
  type ComputeAudit,
  type ComputeSpec,
  computeModeTypeStr,
  type PageserverConnectionInfo,
} from "../spec/schema.ts";

/** Included last, so whatever it holds overrides the whole file. */
export const TEMP_OVERRIDE_FILE = "compute_ctl_temp_override.conf";

/** The spec cannot be turned into postgresql.conf (upstream texts). */
export class PostgresConfError extends ComputeCtlError {
  override readonly name = "PostgresConfError";
  /** JSON path of the offending spec field. */
  readonly path: string | undefined;

  constructor(message: string, options?: { path?: string; cause?: unknown }) {
    super(message, options);
    this.path = options?.path;
  }
}

export interface PostgresConfInput {
  pspec: ParsedSpec;
  /** `--privileged-role-name`. */
  privilegedRoleName: string;
  /** Port of the internal HTTP server, which serves extension downloads. */
  internalHttpPort: number;
  /**
   * Set when feature `tls_experimental` is on and `compute_ctl_config.tls` is
   * given. The caller must have copied key and cert to `server.key` /
   * `server.crt` in PGDATA before postgres reads this file.
   */
  tls?: { enabled: boolean } | undefined;
  /** `/proc/sys/vm/overcommit_memory` is 2 (see readOvercommitMemory). */
  overcommitMemory2: boolean;
  /** Default `linux`. */
  platform?: "linux" | "darwin" | undefined;
  /**
   * Lakebase only: the port of `--connstr`, and the Databricks GUC lines that
   * go between the `# Databricks settings` markers (not specified in our docs,
   * so the caller supplies them verbatim).
   */
  lakebase?: { port: number; databricksLines?: readonly string[] } | undefined;
}

function pageserverLines(spec: ComputeSpec): string[] {
  const info = spec.pageserver_connection_info;
  if (info !== null) return connectionInfoLines(info);
  // Legacy fields only: GUC fallbacks from `settings` reach the file through
  // the settings block instead.
  const out: string[] = [];
  if (spec.shard_stripe_size !== null) {
    out.push("# from compute spec's shard_stripe_size field");
    out.push(`neon.stripe_size=${spec.shard_stripe_size}`);
  }
  if (spec.pageserver_connstring !== null) {
    out.push("# from compute spec's pageserver_connstring field");
    out.push(`neon.pageserver_connstring=${escapeConfValue(spec.pageserver_connstring)}`);
  }
  return out;
}

function connectionInfoLines(info: PageserverConnectionInfo): string[] {
  const out: string[] = [];
  if (info.stripe_size !== null) {
    out.push("# from compute spec's pageserver_connection_info.stripe_size field");
    out.push(`neon.stripe_size=${info.stripe_size}`);
  }
  const urls: string[] = [];
  let allLibpq = true;
  for (let n = 0; n < Math.max(info.shard_count, 1); n++) {
    const index = formatShardIndex(n, info.shard_count);
    const shard = info.shards[index];
    if (shard === undefined) {
      throw new PostgresConfError(
        `shard ${index} missing from pageserver_connection_info shard map`,
        { path: "spec.pageserver_connection_info.shards" },
      );
    }
    const [first] = shard.pageservers;
    // A panic upstream; an error here, so the compute fails instead of dying.
    if (first === undefined) {
      throw new PostgresConfError("must have at least one pageserver", {
        path: `spec.pageserver_connection_info.shards.${index}.pageservers`,
      });
    }
    if (first.libpq_url === null) allLibpq = false;
    else urls.push(first.libpq_url);
  }
  if (allLibpq) {
    out.push("# derived from compute spec's pageserver_connection_info field");
    out.push(`neon.pageserver_connstring=${escapeConfValue(urls.join(","))}`);
  } else {
    // Some shard has only a gRPC address: no complete libpq list exists.
    out.push("# no neon.pageserver_connstring");
  }
  return out;
}

function safekeepersLine(spec: ComputeSpec): string[] {
  if (spec.safekeeper_connstrings.length === 0) return [];
  const generation =
    spec.safekeepers_generation === null ? "" : `g#${spec.safekeepers_generation}:`;
  const value = `${generation}${spec.safekeeper_connstrings.join(",")}`;
  return [`neon.safekeepers=${escapeConfValue(value)}`];
}

function idLines(spec: ComputeSpec): string[] {
  const ids: [string, string | null][] = [
    ["neon.tenant_id", spec.tenant_id],
    ["neon.timeline_id", spec.timeline_id],
    ["neon.project_id", spec.project_id],
    ["neon.branch_id", spec.branch_id],
    ["neon.endpoint_id", spec.endpoint_id],
  ];
  return ids.flatMap(([name, value]) =>
    value === null ? [] : [`${name}=${escapeConfValue(value)}`],
  );
}

function modeLines(spec: ComputeSpec): string[] {
  const mode = spec.mode;
  const out = [`neon.compute_mode=${computeModeTypeStr(mode)}`];
  if (mode.kind === "static") {
    out.push("hot_standby=on", `recovery_target_lsn='${formatLsn(mode.lsn)}'`);
  } else if (mode.kind === "replica") {
    out.push("hot_standby=on");
  }
  return out;
}

/**
 * `shared_preload_libraries` with the audit libraries added. The test is a
 * substring test, as upstream: `pgauditlogtofile` also counts as `pgaudit`.
 */
function preloadLibraries(spec: ComputeSpec, required: readonly string[]): string {
  const libs = genericOptionsFind(spec.cluster.settings, "shared_preload_libraries");
  if (libs === undefined) return `shared_preload_libraries='${["neon", ...required].join(",")}'`;
  const extra = required.filter((lib) => !libs.includes(lib)).map((lib) => `,${lib}`);
  return `shared_preload_libraries='${libs}${extra.join("")}'`;
}

// Written after the spec's settings so that they always win over them.
function auditLines(spec: ComputeSpec, level: ComputeAudit): string[] {
  switch (level) {
    case "Disabled":
      return [];
    case "Log":
    case "Base":
      return [
        "# Managed by compute_ctl base audit settings: start",
        "pgaudit.log='ddl,role'",
        "pgaudit.log_catalog=off",
        preloadLibraries(spec, ["pgaudit"]),
        "# Managed by compute_ctl base audit settings: end",
      ];
    case "Hipaa":
    case "Extended":
    case "Full": {
      const full = level === "Full";
      return [
        "# Managed by compute_ctl compliance audit settings: begin",
        full ? "pgaudit.log_parameter=on" : "pgaudit.log_parameter=off",
        full ? "pgaudit.log='all'" : "pgaudit.log='all, -misc'",
        "pgaudit.log_catalog=off",
        "pgaudit.log_rotation_age=5",
        preloadLibraries(spec, ["pgaudit", "pgauditlogtofile"]),
        "# Managed by compute_ctl compliance audit settings: end",
      ];
    }
  }
}

/**
 * The full text of `postgresql.conf`, every line ending in `\n`, in upstream's
 * order. Postgres takes the last occurrence of a parameter, so the order is
 * the precedence: postgresql_conf < storage/mode lines < settings < audit <
 * the temp override file.
 */
export function renderPostgresConf(input: PostgresConfInput): string {
  const spec = input.pspec.spec;
  const platform = input.platform ?? "linux";
  const locale = platform === "darwin" ? "'C'" : "'C.UTF-8'";
  const settings = spec.cluster.settings;

  const head: string[] = [];
  if (spec.cluster.postgresql_conf !== null) head.push(spec.cluster.postgresql_conf);
  head.push("# Neon storage settings", "");
  head.push(...pageserverLines(spec));
  head.push(...safekeepersLine(spec));
  head.push(...idLines(spec));
  if (input.tls?.enabled === true) {
    head.push("ssl = on", "ssl_cert_file = 'server.crt'", "ssl_key_file = 'server.key'");
  }
  head.push(
    `lc_messages=${locale}`,
    `lc_monetary=${locale}`,
    `lc_time=${locale}`,
    `lc_numeric=${locale}`,
  );
  head.push(...modeLines(spec));
  if (platform === "linux" && input.overcommitMemory2) {
    // Upstream's signal that the VM runs with swap; the mmap segments land
    // in pg_dynshmem, which prepare_pgdata links to /dev/shm.
    head.push("dynamic_shared_memory_type = mmap");
  }
  head.push(`neon.privileged_role_name=${escapeConfValue(input.privilegedRoleName)}`);

  // The settings block keeps its own newlines: an empty list is one blank line.
  const block =
    settings === null
      ? ""
      : `# Managed by compute_ctl: begin\n${renderSettingsConf(settings)}# Managed by compute_ctl: end\n`;

  const tail: string[] = [];
  tail.push(...auditLines(spec, spec.audit_log_level));
  tail.push(`neon.extension_server_port=${input.internalHttpPort}`);
  tail.push(`neon.disable_logical_replication_subscribers=${spec.drop_subscriptions_before_start}`);
  if (spec.logs_export_host !== null) tail.push("log_destination='stderr,syslog'");
  if (input.lakebase !== undefined) {
    tail.push(`port = ${input.lakebase.port}`, "# Databricks settings start");
    tail.push(...(input.lakebase.databricksLines ?? []));
    tail.push("# Databricks settings end");
  }
  tail.push(`include_if_exists = '${TEMP_OVERRIDE_FILE}'`);

  const lines = (xs: string[]) => xs.map((l) => `${l}\n`).join("");
  return lines(head) + block + lines(tail);
}

/**
 * Whether `/proc/sys/vm/overcommit_memory` says 2 (strict accounting). Any
 * read error counts as "no", as upstream: not every host has the file.
 * Synchronous: a one-line procfs read.
 */
export function readOvercommitMemory(path = "/proc/sys/vm/overcommit_memory"): boolean {
  try {
    return readFileSync(path, "utf8").trim() === "2";
  } catch {
    return false;
  }
}
