// valibot schemas for the wire types of libs/compute_api (ComputeConfig,
// ComputeSpec and friends). Field names stay snake_case as on the wire.
//
// serde conventions reproduced here (upstream-api.md §2.1):
// - `Option<T>`: absent or null, both parse to `null` (`v.nullish(x, null)`);
// - serde default, non-Option: absent gives the default, null is an error
//   (`v.optional(x, default)`; valibot runs the default through `x`);
// - otherwise required: absent is an error (`missing`);
// - unknown keys are dropped (`v.object`), except in JWKs, whose key material
//   is kept for the auth middleware (`v.looseObject`).
import * as v from "valibot";
import {
  invalidIdMessage,
  invalidShardIndexMessage,
  isHexId,
  type TenantId,
  type TimelineId,
} from "./ids.ts";
import { formatLsn, invalidLsnMessage, type Lsn, tryParseLsn } from "./lsn.ts";
import { isJsonObject, jsonType, showValue } from "./messages.ts";

// ---------------------------------------------------------------------------
// Building blocks

/** Wrong JSON type: `expected string, got number`. */
function expectedMessage(expected: string) {
  return (issue: v.BaseIssue<unknown>) => `expected ${expected}, got ${jsonType(issue.input)}`;
}

/** Right type, wrong value: `expected u32, got -1`. */
function expectedValueMessage(expected: string) {
  return (issue: v.BaseIssue<unknown>) => `expected ${expected}, got ${showValue(issue.input)}`;
}

/** A JSON object (valibot's `object` would also take an array). */
function jsonObject() {
  return v.custom<Record<string, unknown>>(
    isJsonObject,
    (issue) => `expected object, got ${jsonType(issue.input)}`,
  );
}

function obj<const TEntries extends v.ObjectEntries>(entries: TEntries) {
  return v.pipe(jsonObject(), v.object(entries));
}

function map<
  const TKey extends v.BaseSchema<string, string | number | symbol, v.BaseIssue<unknown>>,
  const TValue extends v.BaseSchema<unknown, unknown, v.BaseIssue<unknown>>,
>(key: TKey, value: TValue) {
  return v.pipe(jsonObject(), v.record(key, value));
}

function str() {
  return v.string(expectedMessage("string"));
}

function bool() {
  return v.boolean(expectedMessage("boolean"));
}

/**
 * An integer type of Rust. JSON.parse rounds the top values of u64/i64 up to a
 * power of two (u64::MAX becomes 2^64), so the upper bound is inclusive.
 */
function int(name: string, min: number, max: number) {
  return v.pipe(
    v.number(expectedMessage(name)),
    v.check((n) => Number.isInteger(n) && n >= min && n <= max, expectedValueMessage(name)),
  );
}

const u8 = () => int("u8", 0, 0xff);
const u32 = () => int("u32", 0, 0xffff_ffff);
const u64 = () => int("u64", 0, 2 ** 64);
const i64 = () => int("i64", -(2 ** 63), 2 ** 63);

function oneOf<const TOptions extends readonly [string, ...string[]]>(options: TOptions) {
  const list = options.map((o) => JSON.stringify(o)).join(", ");
  return v.picklist(options, expectedValueMessage(`one of ${list}`));
}

// ---------------------------------------------------------------------------
// Primitive encodings (upstream-api.md §2.10)

export const TenantIdSchema = v.pipe(
  str(),
  v.check(isHexId, (issue) => invalidIdMessage("tenant", String(issue.input))),
  v.transform((s) => s.toLowerCase() as TenantId),
);

export const TimelineIdSchema = v.pipe(
  str(),
  v.check(isHexId, (issue) => invalidIdMessage("timeline", String(issue.input))),
  v.transform((s) => s.toLowerCase() as TimelineId),
);

export const LsnSchema = v.pipe(
  v.string(expectedMessage("LSN string")),
  v.check(
    (s) => tryParseLsn(s) !== undefined,
    (issue) => invalidLsnMessage(String(issue.input)),
  ),
  v.transform((s): Lsn => tryParseLsn(s) ?? 0n),
);

/** Map key `"NNCC"`; normalised to lowercase so lookups by `formatShardIndex` work. */
export const ShardIndexKeySchema = v.pipe(
  str(),
  v.check(
    (s) => /^[0-9A-Fa-f]{4}$/.test(s),
    (issue) => invalidShardIndexMessage(String(issue.input)),
  ),
  v.transform((s) => s.toLowerCase()),
);

// ---------------------------------------------------------------------------
// ComputeMode: externally tagged, PascalCase (upstream-api.md §2.5)

export type ComputeMode = { kind: "primary" } | { kind: "replica" } | { kind: "static"; lsn: Lsn };

const MODE_CHOICES = `"Primary", "Replica" or {"Static": "<LSN>"}`;

export type ComputeModeDecoding =
  | { ok: true; mode: ComputeMode }
  | { ok: false; message: string; key?: string };

/** Decodes the wire form of a compute mode; pure, used by the schema. */
export function decodeComputeMode(value: unknown): ComputeModeDecoding {
  if (typeof value === "string") {
    if (value === "Primary") return { ok: true, mode: { kind: "primary" } };
    if (value === "Replica") return { ok: true, mode: { kind: "replica" } };
    if (value === "Static") {
      return { ok: false, message: `compute mode "Static" needs an LSN: {"Static": "<LSN>"}` };
    }
    return {
      ok: false,
      message: `unknown compute mode ${JSON.stringify(value)} (expected ${MODE_CHOICES})`,
    };
  }
  if (!isJsonObject(value)) {
    return { ok: false, message: `expected ${MODE_CHOICES}, got ${jsonType(value)}` };
  }
  const keys = Object.keys(value);
  const [key] = keys;
  if (key === undefined || keys.length !== 1) {
    return {
      ok: false,
      message: `expected ${MODE_CHOICES}, got an object with ${keys.length} keys`,
    };
  }
  const inner = value[key];
  if (key === "Primary" || key === "Replica") {
    // serde also takes the map form of a unit variant, with a null payload.
    if (inner !== null)
      return { ok: false, key, message: `expected null, got ${showValue(inner)}` };
    return { ok: true, mode: { kind: key === "Primary" ? "primary" : "replica" } };
  }
  if (key === "Static") {
    if (typeof inner !== "string") {
      return { ok: false, key, message: `expected LSN string, got ${showValue(inner)}` };
    }
    const lsn = tryParseLsn(inner);
    if (lsn === undefined) return { ok: false, key, message: invalidLsnMessage(inner) };
    return { ok: true, mode: { kind: "static", lsn } };
  }
  return {
    ok: false,
    message: `unknown compute mode ${JSON.stringify(key)} (expected ${MODE_CHOICES})`,
  };
}

export const ComputeModeSchema = v.pipe(
  v.unknown(),
  v.rawTransform(({ dataset, addIssue, NEVER }) => {
    const decoded = decodeComputeMode(dataset.value);
    if (decoded.ok) return decoded.mode;
    const input = dataset.value;
    if (decoded.key !== undefined && isJsonObject(input)) {
      const path: [v.ObjectPathItem] = [
        { type: "object", origin: "value", input, key: decoded.key, value: input[decoded.key] },
      ];
      addIssue({ message: decoded.message, path });
    } else {
      addIssue({ message: decoded.message });
    }
    return NEVER;
  }),
);

// ---------------------------------------------------------------------------
// Other enums (upstream-api.md §2.5)

export const KNOWN_COMPUTE_FEATURES = [
  "activity_monitor_experimental",
  "tls_experimental",
] as const;
export type ComputeFeature = (typeof KNOWN_COMPUTE_FEATURES)[number] | "unknown_feature";

function toComputeFeature(name: string): ComputeFeature {
  const known: readonly string[] = KNOWN_COMPUTE_FEATURES;
  return known.includes(name) ? (name as ComputeFeature) : "unknown_feature";
}

/** Any string parses; names this build does not know become `unknown_feature`. */
export const ComputeFeatureSchema = v.pipe(str(), v.transform(toComputeFeature));

export const COMPUTE_AUDIT_LEVELS = [
  "Disabled",
  "Log",
  "Base",
  "Hipaa",
  "Extended",
  "Full",
] as const;
export const ComputeAuditSchema = oneOf(COMPUTE_AUDIT_LEVELS);
export type ComputeAudit = v.InferOutput<typeof ComputeAuditSchema>;

export const PageserverProtocolSchema = oneOf(["libpq", "grpc"]);
export type PageserverProtocol = v.InferOutput<typeof PageserverProtocolSchema>;

export const ControlPlaneComputeStatusSchema = oneOf(["empty", "attached"]);
export type ControlPlaneComputeStatus = v.InferOutput<typeof ControlPlaneComputeStatusSchema>;

// ---------------------------------------------------------------------------
// Cluster, roles, databases, options (upstream-api.md §2.4)

export const GenericOptionSchema = obj({
  name: str(),
  value: v.nullish(str(), null),
  vartype: str(),
});
export type GenericOption = v.InferOutput<typeof GenericOptionSchema>;

export const GenericOptionsSchema = v.nullish(
  v.array(GenericOptionSchema, expectedMessage("array")),
  null,
);
export type GenericOptions = v.InferOutput<typeof GenericOptionsSchema>;

export const RoleSchema = obj({
  name: str(),
  encrypted_password: v.nullish(str(), null),
  options: GenericOptionsSchema,
});
export type Role = v.InferOutput<typeof RoleSchema>;

export const DatabaseSchema = v.pipe(
  obj({
    name: str(),
    owner: str(),
    options: GenericOptionsSchema,
  }),
  // Output-only flags (filled from the catalog); whatever the input says is ignored.
  v.transform((db) => ({ ...db, restrict_conn: false as boolean, invalid: false as boolean })),
);
export type Database = v.InferOutput<typeof DatabaseSchema>;

export const ClusterSchema = obj({
  cluster_id: v.nullish(str(), null),
  name: v.nullish(str(), null),
  state: v.nullish(str(), null),
  roles: v.array(RoleSchema, expectedMessage("array")),
  databases: v.array(DatabaseSchema, expectedMessage("array")),
  postgresql_conf: v.nullish(str(), null),
  settings: GenericOptionsSchema,
});
export type Cluster = v.InferOutput<typeof ClusterSchema>;

export const DeltaOpSchema = obj({
  action: str(),
  name: str(),
  new_name: v.nullish(str(), null),
});
export type DeltaOp = v.InferOutput<typeof DeltaOpSchema>;

// ---------------------------------------------------------------------------
// Pageserver connection info (upstream-api.md §2.6)

export const PageserverShardConnectionInfoSchema = obj({
  id: v.nullish(u64(), null),
  libpq_url: v.nullish(str(), null),
  grpc_url: v.nullish(str(), null),
});
export type PageserverShardConnectionInfo = v.InferOutput<
  typeof PageserverShardConnectionInfoSchema
>;

export const PageserverShardInfoSchema = obj({
  pageservers: v.array(PageserverShardConnectionInfoSchema, expectedMessage("array")),
});
export type PageserverShardInfo = v.InferOutput<typeof PageserverShardInfoSchema>;

export const PageserverConnectionInfoSchema = obj({
  shard_count: u8(),
  stripe_size: v.nullish(u32(), null),
  shards: map(ShardIndexKeySchema, PageserverShardInfoSchema),
  prefer_protocol: v.optional(PageserverProtocolSchema, "libpq"),
});
export type PageserverConnectionInfo = v.InferOutput<typeof PageserverConnectionInfoSchema>;

// ---------------------------------------------------------------------------
// Remote extensions (upstream-api.md §2.7)

export const ExtensionDataSchema = obj({
  control_data: map(str(), str()),
  archive_path: str(),
});
export type ExtensionData = v.InferOutput<typeof ExtensionDataSchema>;

export const RemoteExtSpecSchema = obj({
  public_extensions: v.nullish(v.array(str(), expectedMessage("array")), null),
  custom_extensions: v.nullish(v.array(str(), expectedMessage("array")), null),
  library_index: map(str(), str()),
  extension_data: map(str(), ExtensionDataSchema),
});
export type RemoteExtSpec = v.InferOutput<typeof RemoteExtSpecSchema>;

// ---------------------------------------------------------------------------
// TLS, local_proxy, Databricks (upstream-api.md §2.2, §2.8)

export const TlsConfigSchema = obj({
  key_path: str(),
  cert_path: str(),
});
export type TlsConfig = v.InferOutput<typeof TlsConfigSchema>;

export const JwksSettingsSchema = obj({
  id: str(),
  role_names: v.array(str(), expectedMessage("array")),
  jwks_url: str(),
  provider_name: str(),
  jwt_audience: v.nullish(str(), null),
});
export type JwksSettings = v.InferOutput<typeof JwksSettingsSchema>;

export const LocalProxySpecSchema = obj({
  jwks: v.nullish(v.array(JwksSettingsSchema, expectedMessage("array")), null),
  tls: v.nullish(TlsConfigSchema, null),
});
export type LocalProxySpec = v.InferOutput<typeof LocalProxySpecSchema>;

export const PgComputeTlsSettingsSchema = obj({
  cert_file: str(),
  key_file: str(),
  ca_file: str(),
});

export const DatabricksSettingsSchema = obj({
  pg_compute_tls_settings: PgComputeTlsSettingsSchema,
  databricks_pg_hba: str(),
  databricks_pg_ident: str(),
  databricks_workspace_host: str(),
});
export type DatabricksSettings = v.InferOutput<typeof DatabricksSettingsSchema>;

// ---------------------------------------------------------------------------
// ComputeSpec (upstream-api.md §2.3), in declaration order

export const ComputeSpecSchema = obj({
  format_version: v.number(expectedMessage("number")),
  operation_uuid: v.nullish(str(), null),
  features: v.optional(v.array(ComputeFeatureSchema, expectedMessage("array")), []),
  swap_size_bytes: v.nullish(u64(), null),
  disk_quota_bytes: v.nullish(u64(), null),
  disable_lfc_resizing: v.nullish(bool(), null),
  cluster: ClusterSchema,
  delta_operations: v.nullish(v.array(DeltaOpSchema, expectedMessage("array")), null),
  skip_pg_catalog_updates: v.optional(bool(), false),
  tenant_id: v.nullish(TenantIdSchema, null),
  timeline_id: v.nullish(TimelineIdSchema, null),
  pageserver_connection_info: v.nullish(PageserverConnectionInfoSchema, null),
  pageserver_connstring: v.nullish(str(), null),
  shard_stripe_size: v.nullish(u32(), null),
  project_id: v.nullish(str(), null),
  branch_id: v.nullish(str(), null),
  endpoint_id: v.nullish(str(), null),
  safekeepers_generation: v.nullish(u32(), null),
  safekeeper_connstrings: v.optional(v.array(str(), expectedMessage("array")), []),
  mode: v.optional(ComputeModeSchema, "Primary"),
  storage_auth_token: v.nullish(str(), null),
  remote_extensions: v.nullish(RemoteExtSpecSchema, null),
  // IndexMap upstream: order matters for pgbouncer.ini, and JS objects keep
  // insertion order for non-numeric keys.
  pgbouncer_settings: v.nullish(map(str(), str()), null),
  local_proxy_config: v.nullish(LocalProxySpecSchema, null),
  reconfigure_concurrency: v.optional(u64(), 1),
  drop_subscriptions_before_start: v.optional(bool(), false),
  audit_log_level: v.optional(ComputeAuditSchema, "Disabled"),
  logs_export_host: v.nullish(str(), null),
  endpoint_storage_addr: v.nullish(str(), null),
  endpoint_storage_token: v.nullish(str(), null),
  autoprewarm: v.optional(bool(), false),
  // NonZeroU64 upstream: 0 is a parse error, not "disabled".
  offload_lfc_interval_seconds: v.nullish(int("non-zero u64", 1, 2 ** 64), null),
  suspend_timeout_seconds: i64(),
  databricks_settings: v.nullish(DatabricksSettingsSchema, null),
});
export type ComputeSpec = v.InferOutput<typeof ComputeSpecSchema>;

// ---------------------------------------------------------------------------
// ComputeCtlConfig and the envelopes (upstream-api.md §1.3, §2.2)

/** `kty` values jsonwebtoken's `Jwk` accepts. */
export const JWK_KEY_TYPES = ["EC", "RSA", "oct", "OKP"] as const;
/** `alg` values jsonwebtoken's `Jwk` accepts; anything else fails the whole config. */
export const JWK_ALGORITHMS = [
  "HS256",
  "HS384",
  "HS512",
  "ES256",
  "ES384",
  "RS256",
  "RS384",
  "RS512",
  "PS256",
  "PS384",
  "PS512",
  "EdDSA",
  "RSA1_5",
  "RSA-OAEP",
  "RSA-OAEP-256",
] as const;

export const JwkSchema = v.pipe(
  jsonObject(),
  v.looseObject({
    kty: oneOf(JWK_KEY_TYPES),
    alg: v.nullish(oneOf(JWK_ALGORITHMS)),
    use: v.nullish(str()),
    key_ops: v.nullish(v.array(str(), expectedMessage("array"))),
    kid: v.nullish(str()),
    x5u: v.nullish(str()),
    x5c: v.nullish(v.array(str(), expectedMessage("array"))),
    x5t: v.nullish(str()),
    "x5t#S256": v.nullish(str()),
  }),
);
export type Jwk = v.InferOutput<typeof JwkSchema>;

export const JwkSetSchema = obj({
  keys: v.array(JwkSchema, expectedMessage("array")),
});
export type JwkSet = v.InferOutput<typeof JwkSetSchema>;

export const ComputeCtlConfigSchema = obj({
  jwks: JwkSetSchema,
  tls: v.nullish(TlsConfigSchema, null),
});
export type ComputeCtlConfig = v.InferOutput<typeof ComputeCtlConfigSchema>;

/** Content of the `-c/--config` file. */
export const ComputeConfigSchema = obj({
  spec: v.nullish(ComputeSpecSchema, null),
  compute_ctl_config: ComputeCtlConfigSchema,
});
export type ComputeConfig = v.InferOutput<typeof ComputeConfigSchema>;

/** Body of `POST /configure`; `compute_ctl_config` is required but unused. */
export const ConfigurationRequestSchema = obj({
  spec: ComputeSpecSchema,
  compute_ctl_config: ComputeCtlConfigSchema,
});
export type ConfigurationRequest = v.InferOutput<typeof ConfigurationRequestSchema>;

/** Answer of `GET {cplane}/compute/api/v2/computes/{id}/spec`. */
export const ControlPlaneConfigResponseSchema = obj({
  spec: v.nullish(ComputeSpecSchema, null),
  status: ControlPlaneComputeStatusSchema,
  compute_ctl_config: ComputeCtlConfigSchema,
});
export type ControlPlaneConfigResponse = v.InferOutput<typeof ControlPlaneConfigResponseSchema>;

/** Body of `POST /promote`. */
export const PromoteConfigSchema = obj({
  spec: ComputeSpecSchema,
  wal_flush_lsn: LsnSchema,
});
export type PromoteConfig = v.InferOutput<typeof PromoteConfigSchema>;

// ---------------------------------------------------------------------------
// Back to the wire form (the parsed mode holds a bigint, which JSON.stringify rejects)

export type ComputeModeJson = "Primary" | "Replica" | { Static: string };

export function encodeComputeMode(mode: ComputeMode): ComputeModeJson {
  switch (mode.kind) {
    case "primary":
      return "Primary";
    case "replica":
      return "Replica";
    case "static":
      return { Static: formatLsn(mode.lsn) };
  }
}

/** Upstream `ComputeMode::to_type_str`: `primary`, `replica` or `static`. */
export function computeModeTypeStr(mode: ComputeMode): "primary" | "replica" | "static" {
  return mode.kind;
}

/** A parsed spec as a JSON-serialisable wire object (for `JSON.stringify`). */
export function computeSpecToJson(
  spec: ComputeSpec,
): Omit<ComputeSpec, "mode"> & { mode: ComputeModeJson } {
  return { ...spec, mode: encodeComputeMode(spec.mode) };
}
