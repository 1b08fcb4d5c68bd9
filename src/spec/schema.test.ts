import { describe, expect, test } from "bun:test";
import { ConfigError } from "../errors.ts";
import {
  parseComputeConfig,
  parseComputeSpec,
  parseConfigurationRequest,
  parseControlPlaneResponse,
  parsePromoteConfig,
} from "./parse.ts";
import {
  type ComputeSpec,
  computeModeTypeStr,
  computeSpecToJson,
  decodeComputeMode,
  encodeComputeMode,
} from "./schema.ts";

const TENANT = "b0554b632bd4d547a63b86c3630317e8";
const TIMELINE = "2414a61ffc94e428f14b5758fe308e13";

function minimalSpec(extra: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    format_version: 1.0,
    cluster: { roles: [], databases: [] },
    suspend_timeout_seconds: -1,
    ...extra,
  };
}

const JWKS = { jwks: { keys: [] } };

/** The message of the ConfigError thrown for a spec with `extra` fields. */
function specError(extra: Record<string, unknown>): string {
  try {
    parseComputeConfig({ spec: minimalSpec(extra), compute_ctl_config: JWKS });
  } catch (e) {
    expect(e).toBeInstanceOf(ConfigError);
    return (e as ConfigError).message;
  }
  throw new Error("expected a ConfigError");
}

function spec(extra: Record<string, unknown> = {}): ComputeSpec {
  return parseComputeSpec(minimalSpec(extra));
}

describe("ComputeSpec defaults", () => {
  test("a minimal spec gets upstream's serde defaults and nulls", () => {
    const s = spec();
    expect(s).toEqual({
      format_version: 1,
      operation_uuid: null,
      features: [],
      swap_size_bytes: null,
      disk_quota_bytes: null,
      disable_lfc_resizing: null,
      cluster: {
        cluster_id: null,
        name: null,
        state: null,
        roles: [],
        databases: [],
        postgresql_conf: null,
        settings: null,
      },
      delta_operations: null,
      skip_pg_catalog_updates: false,
      tenant_id: null,
      timeline_id: null,
      pageserver_connection_info: null,
      pageserver_connstring: null,
      shard_stripe_size: null,
      project_id: null,
      branch_id: null,
      endpoint_id: null,
      safekeepers_generation: null,
      safekeeper_connstrings: [],
      mode: { kind: "primary" },
      storage_auth_token: null,
      remote_extensions: null,
      pgbouncer_settings: null,
      local_proxy_config: null,
      reconfigure_concurrency: 1,
      drop_subscriptions_before_start: false,
      audit_log_level: "Disabled",
      logs_export_host: null,
      endpoint_storage_addr: null,
      endpoint_storage_token: null,
      autoprewarm: false,
      offload_lfc_interval_seconds: null,
      suspend_timeout_seconds: -1,
      databricks_settings: null,
    });
  });

  test("defaults are fresh objects per parse", () => {
    const a = spec();
    a.features.push("tls_experimental");
    a.safekeeper_connstrings.push("x:1");
    expect(spec().features).toEqual([]);
    expect(spec().safekeeper_connstrings).toEqual([]);
  });

  test("unknown keys are dropped everywhere", () => {
    const s = spec({
      timestamp: "2021-05-23T18:25:43.511Z",
      cluster: { roles: [{ name: "r", foo: 1 }], databases: [], bar: true },
    });
    expect("timestamp" in s).toBe(false);
    expect("bar" in s.cluster).toBe(false);
    expect(s.cluster.roles[0]).toEqual({ name: "r", encrypted_password: null, options: null });
  });

  test("Option fields take null", () => {
    const s = spec({ tenant_id: null, operation_uuid: null, pgbouncer_settings: null });
    expect(s.tenant_id).toBeNull();
  });
});

describe("required fields", () => {
  test.each([
    ["format_version", "spec.format_version: missing"],
    ["cluster", "spec.cluster: missing"],
    ["suspend_timeout_seconds", "spec.suspend_timeout_seconds: missing"],
  ])("%p", (field, message) => {
    const s = minimalSpec();
    delete s[field];
    expect(() => parseComputeConfig({ spec: s, compute_ctl_config: JWKS })).toThrow(message);
  });

  test("cluster.roles / cluster.databases", () => {
    expect(specError({ cluster: { databases: [] } })).toBe("spec.cluster.roles: missing");
    expect(specError({ cluster: { roles: [] } })).toBe("spec.cluster.databases: missing");
  });

  test("compute_ctl_config and its jwks", () => {
    expect(() => parseComputeConfig({ spec: null })).toThrow("compute_ctl_config: missing");
    expect(() => parseComputeConfig({ compute_ctl_config: {} })).toThrow(
      "compute_ctl_config.jwks: missing",
    );
    expect(() => parseComputeConfig({ compute_ctl_config: { jwks: {} } })).toThrow(
      "compute_ctl_config.jwks.keys: missing",
    );
  });

  test("ConfigError.path is set", () => {
    try {
      parseComputeConfig({
        spec: minimalSpec({ cluster: { roles: [{}], databases: [] } }),
        compute_ctl_config: JWKS,
      });
      throw new Error("unreachable");
    } catch (e) {
      expect(e).toBeInstanceOf(ConfigError);
      expect((e as ConfigError).path).toBe("spec.cluster.roles[0].name");
      expect((e as ConfigError).message).toBe("spec.cluster.roles[0].name: missing");
    }
  });
});

describe("type errors", () => {
  test.each<[Record<string, unknown>, string]>([
    [{ format_version: "1.0" }, "spec.format_version: expected number, got string"],
    [{ suspend_timeout_seconds: 1.5 }, "spec.suspend_timeout_seconds: expected i64, got 1.5"],
    [{ suspend_timeout_seconds: "1" }, "spec.suspend_timeout_seconds: expected i64, got string"],
    [{ features: null }, "spec.features: expected array, got null"],
    [{ features: "tls_experimental" }, "spec.features: expected array, got string"],
    [{ features: [1] }, "spec.features[0]: expected string, got number"],
    [{ mode: null }, 'spec.mode: expected "Primary", "Replica" or {"Static": "<LSN>"}, got null'],
    [{ safekeeper_connstrings: null }, "spec.safekeeper_connstrings: expected array, got null"],
    [{ skip_pg_catalog_updates: null }, "spec.skip_pg_catalog_updates: expected boolean, got null"],
    [
      { skip_pg_catalog_updates: "true" },
      "spec.skip_pg_catalog_updates: expected boolean, got string",
    ],
    [{ reconfigure_concurrency: null }, "spec.reconfigure_concurrency: expected u64, got null"],
    [{ reconfigure_concurrency: -1 }, "spec.reconfigure_concurrency: expected u64, got -1"],
    [
      { audit_log_level: null },
      'spec.audit_log_level: expected one of "Disabled", "Log", "Base", "Hipaa", "Extended", "Full", got null',
    ],
    [
      { audit_log_level: "disabled" },
      'spec.audit_log_level: expected one of "Disabled", "Log", "Base", "Hipaa", "Extended", "Full", got "disabled"',
    ],
    [{ swap_size_bytes: -5 }, "spec.swap_size_bytes: expected u64, got -5"],
    [{ shard_stripe_size: 4294967296 }, "spec.shard_stripe_size: expected u32, got 4294967296"],
    [{ safekeepers_generation: 1.5 }, "spec.safekeepers_generation: expected u32, got 1.5"],
    [
      { offload_lfc_interval_seconds: 0 },
      "spec.offload_lfc_interval_seconds: expected non-zero u64, got 0",
    ],
    [
      { tenant_id: "TENANT_ID" },
      'spec.tenant_id: invalid tenant id "TENANT_ID" (expected 32 hex characters)',
    ],
    [{ timeline_id: 5 }, "spec.timeline_id: expected string, got number"],
    [{ cluster: [] }, "spec.cluster: expected object, got array"],
    [
      { cluster: { roles: [{ name: "a" }, { name: "b" }, { name: 3 }], databases: [] } },
      "spec.cluster.roles[2].name: expected string, got number",
    ],
    [
      { cluster: { roles: [], databases: [{ name: "d" }] } },
      "spec.cluster.databases[0].owner: missing",
    ],
    [
      {
        cluster: {
          roles: [],
          databases: [],
          settings: [{ name: "a", value: 100, vartype: "integer" }],
        },
      },
      "spec.cluster.settings[0].value: expected string, got number",
    ],
    [
      { cluster: { roles: [], databases: [], settings: [{ name: "a", value: "1" }] } },
      "spec.cluster.settings[0].vartype: missing",
    ],
    [{ delta_operations: [{ action: "delete_db" }] }, "spec.delta_operations[0].name: missing"],
    [
      { pgbouncer_settings: { pool_mode: 1 } },
      "spec.pgbouncer_settings.pool_mode: expected string, got number",
    ],
    [{ pgbouncer_settings: [] }, "spec.pgbouncer_settings: expected object, got array"],
    [
      { remote_extensions: { library_index: {} } },
      "spec.remote_extensions.extension_data: missing",
    ],
    [
      { remote_extensions: { library_index: {}, extension_data: { x: { control_data: {} } } } },
      "spec.remote_extensions.extension_data.x.archive_path: missing",
    ],
    [
      { local_proxy_config: { jwks: [{ id: "a", role_names: [], jwks_url: "u" }] } },
      "spec.local_proxy_config.jwks[0].provider_name: missing",
    ],
    [
      {
        databricks_settings: {
          databricks_pg_hba: "",
          databricks_pg_ident: "",
          databricks_workspace_host: "",
        },
      },
      "spec.databricks_settings.pg_compute_tls_settings: missing",
    ],
  ])("%j", (extra, message) => {
    expect(specError(extra)).toBe(message);
  });

  test("integer bounds", () => {
    expect(spec({ suspend_timeout_seconds: 3600 }).suspend_timeout_seconds).toBe(3600);
    expect(spec({ swap_size_bytes: 2 ** 40 }).swap_size_bytes).toBe(2 ** 40);
    // u64::MAX as JSON text rounds to 2^64 in JSON.parse; still accepted.
    const big = JSON.parse('{"n": 18446744073709551615}').n;
    expect(spec({ disk_quota_bytes: big }).disk_quota_bytes).toBe(big);
    expect(spec({ shard_stripe_size: 4294967295 }).shard_stripe_size).toBe(4294967295);
    expect(spec({ offload_lfc_interval_seconds: 1 }).offload_lfc_interval_seconds).toBe(1);
    expect(spec({ format_version: -3.25 }).format_version).toBe(-3.25);
  });

  test("the top-level value must be an object", () => {
    expect(() => parseComputeConfig([])).toThrow("expected object, got array");
    expect(() => parseComputeConfig(null)).toThrow("expected object, got null");
    try {
      parseComputeConfig("x");
    } catch (e) {
      expect((e as ConfigError).path).toBeUndefined();
    }
  });
});

describe("ComputeMode", () => {
  test.each<[unknown, unknown]>([
    ["Primary", { kind: "primary" }],
    ["Replica", { kind: "replica" }],
    [{ Primary: null }, { kind: "primary" }],
    [{ Replica: null }, { kind: "replica" }],
    [{ Static: "0/16B5BA8" }, { kind: "static", lsn: 0x16b5ba8n }],
    [{ Static: " 1/a " }, { kind: "static", lsn: (1n << 32n) | 10n }],
  ])("%j", (mode, parsed) => {
    expect(spec({ mode }).mode).toEqual(parsed as ComputeSpec["mode"]);
  });

  test("absent means Primary", () => {
    expect(spec().mode).toEqual({ kind: "primary" });
  });

  test.each<[unknown, string]>([
    [
      "Foo",
      'spec.mode: unknown compute mode "Foo" (expected "Primary", "Replica" or {"Static": "<LSN>"})',
    ],
    [
      "primary",
      'spec.mode: unknown compute mode "primary" (expected "Primary", "Replica" or {"Static": "<LSN>"})',
    ],
    [
      { Foo: "0/0" },
      'spec.mode: unknown compute mode "Foo" (expected "Primary", "Replica" or {"Static": "<LSN>"})',
    ],
    ["Static", 'spec.mode: compute mode "Static" needs an LSN: {"Static": "<LSN>"}'],
    [
      { Static: "nope" },
      'spec.mode.Static: invalid LSN "nope" (expected "<hex>/<hex>", e.g. "0/16B5BA8")',
    ],
    [{ Static: 5 }, "spec.mode.Static: expected LSN string, got 5"],
    [{ Primary: 1 }, "spec.mode.Primary: expected null, got 1"],
    [
      { Static: "0/1", Primary: null },
      'spec.mode: expected "Primary", "Replica" or {"Static": "<LSN>"}, got an object with 2 keys',
    ],
    [
      {},
      'spec.mode: expected "Primary", "Replica" or {"Static": "<LSN>"}, got an object with 0 keys',
    ],
    [7, 'spec.mode: expected "Primary", "Replica" or {"Static": "<LSN>"}, got number'],
  ])("rejects %j", (mode, message) => {
    expect(specError({ mode })).toBe(message);
  });

  test("encode, type string, round trip", () => {
    expect(encodeComputeMode({ kind: "primary" })).toBe("Primary");
    expect(encodeComputeMode({ kind: "replica" })).toBe("Replica");
    expect(encodeComputeMode({ kind: "static", lsn: 0x16b5ba8n })).toEqual({ Static: "0/16B5BA8" });
    expect(computeModeTypeStr({ kind: "static", lsn: 0n })).toBe("static");
    const decoded = decodeComputeMode({ Static: "0/16b5ba8" });
    expect(decoded.ok && encodeComputeMode(decoded.mode)).toEqual({ Static: "0/16B5BA8" });
  });

  test("computeSpecToJson is JSON-serialisable and parses back", () => {
    const s = spec({ mode: { Static: "2/ab" }, tenant_id: TENANT.toUpperCase() });
    const text = JSON.stringify(computeSpecToJson(s));
    expect(parseComputeSpec(JSON.parse(text))).toEqual(s);
  });
});

describe("features, audit, ids", () => {
  test("unknown features become unknown_feature", () => {
    expect(spec({ features: ["foo_bar_feature", "baz_feature"] }).features).toEqual([
      "unknown_feature",
      "unknown_feature",
    ]);
    expect(
      spec({ features: ["activity_monitor_experimental", "tls_experimental"] }).features,
    ).toEqual(["activity_monitor_experimental", "tls_experimental"]);
  });

  test("audit levels", () => {
    for (const level of ["Disabled", "Log", "Base", "Hipaa", "Extended", "Full"]) {
      expect(spec({ audit_log_level: level }).audit_log_level).toBe(
        level as ComputeSpec["audit_log_level"],
      );
    }
  });

  test("tenant/timeline ids are lowercased", () => {
    const s = spec({ tenant_id: TENANT.toUpperCase(), timeline_id: TIMELINE });
    expect(s.tenant_id as string).toBe(TENANT);
    expect(s.timeline_id as string).toBe(TIMELINE);
  });
});

describe("Database and GenericOption", () => {
  test("restrict_conn / invalid are ignored on input and false after parsing", () => {
    const s = spec({
      cluster: {
        roles: [],
        databases: [{ name: "d", owner: "o", restrict_conn: true, invalid: true, options: null }],
      },
    });
    expect(s.cluster.databases[0]).toEqual({
      name: "d",
      owner: "o",
      options: null,
      restrict_conn: false,
      invalid: false,
    });
  });

  test("GenericOption value may be absent or null", () => {
    const s = spec({
      cluster: {
        roles: [],
        databases: [],
        settings: [
          { name: "a", vartype: "bool" },
          { name: "b", value: null, vartype: "bool" },
          { name: "c", value: "1", vartype: "integer" },
        ],
      },
    });
    expect(s.cluster.settings).toEqual([
      { name: "a", value: null, vartype: "bool" },
      { name: "b", value: null, vartype: "bool" },
      { name: "c", value: "1", vartype: "integer" },
    ]);
  });
});

describe("PageserverConnectionInfo", () => {
  const ps = (info: unknown) =>
    spec({ pageserver_connection_info: info }).pageserver_connection_info;

  test("full form with defaults", () => {
    expect(
      ps({
        shard_count: 2,
        stripe_size: 32768,
        shards: {
          "0002": { pageservers: [{ id: 1, libpq_url: "postgres://no_user@h:1" }] },
          "0102": { pageservers: [{ grpc_url: "grpc://no_user@h:2", id: null }] },
        },
      }),
    ).toEqual({
      shard_count: 2,
      stripe_size: 32768,
      shards: {
        "0002": { pageservers: [{ id: 1, libpq_url: "postgres://no_user@h:1", grpc_url: null }] },
        "0102": { pageservers: [{ id: null, libpq_url: null, grpc_url: "grpc://no_user@h:2" }] },
      },
      prefer_protocol: "libpq",
    });
  });

  test("shard keys are normalised to lowercase", () => {
    expect(
      Object.keys(ps({ shard_count: 0, shards: { "0A0B": { pageservers: [] } } })?.shards ?? {}),
    ).toEqual(["0a0b"]);
  });

  test.each<[unknown, string]>([
    [{ shards: {} }, "spec.pageserver_connection_info.shard_count: missing"],
    [
      { shard_count: 256, shards: {} },
      "spec.pageserver_connection_info.shard_count: expected u8, got 256",
    ],
    [{ shard_count: 0 }, "spec.pageserver_connection_info.shards: missing"],
    [
      { shard_count: 0, shards: { "000": { pageservers: [] } } },
      'spec.pageserver_connection_info.shards["000"]: invalid shard index "000" (expected 4 hex characters "NNCC")',
    ],
    [
      { shard_count: 0, shards: { "0000": {} } },
      'spec.pageserver_connection_info.shards["0000"].pageservers: missing',
    ],
    [
      { shard_count: 0, shards: { "0000": { pageservers: [{ id: -1 }] } } },
      'spec.pageserver_connection_info.shards["0000"].pageservers[0].id: expected u64, got -1',
    ],
    [
      { shard_count: 0, shards: {}, prefer_protocol: "http" },
      'spec.pageserver_connection_info.prefer_protocol: expected one of "libpq", "grpc", got "http"',
    ],
    [
      { shard_count: 0, shards: {}, prefer_protocol: null },
      'spec.pageserver_connection_info.prefer_protocol: expected one of "libpq", "grpc", got null',
    ],
  ])("rejects %j", (info, message) => {
    expect(specError({ pageserver_connection_info: info })).toBe(message);
  });
});

describe("ComputeCtlConfig", () => {
  const okp = {
    use: "sig",
    key_ops: ["verify"],
    alg: "EdDSA",
    kid: "k1",
    kty: "OKP",
    crv: "Ed25519",
    x: "MGQ4ZDFh",
  };

  test("keeps JWK key material, tls optional", () => {
    const c = parseComputeConfig({ compute_ctl_config: { jwks: { keys: [okp] } } });
    expect(c.spec).toBeNull();
    expect(c.compute_ctl_config.tls).toBeNull();
    expect(c.compute_ctl_config.jwks.keys[0] as unknown).toEqual(okp);
    const t = parseComputeConfig({
      compute_ctl_config: { jwks: { keys: [] }, tls: { key_path: "/k", cert_path: "/c", x: 1 } },
    });
    expect(t.compute_ctl_config.tls).toEqual({ key_path: "/k", cert_path: "/c" });
  });

  test.each<[unknown, string]>([
    [
      { ...okp, kty: "XYZ" },
      'compute_ctl_config.jwks.keys[0].kty: expected one of "EC", "RSA", "oct", "OKP", got "XYZ"',
    ],
    [{ x: "1" }, "compute_ctl_config.jwks.keys[0].kty: missing"],
    [
      { ...okp, alg: "none" },
      'compute_ctl_config.jwks.keys[0].alg: expected one of "HS256", "HS384", "HS512", "ES256", "ES384", "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "EdDSA", "RSA1_5", "RSA-OAEP", "RSA-OAEP-256", got "none"',
    ],
    [
      { ...okp, key_ops: "verify" },
      "compute_ctl_config.jwks.keys[0].key_ops: expected array, got string",
    ],
    ["key", "compute_ctl_config.jwks.keys[0]: expected object, got string"],
  ])("rejects JWK %j", (key, message) => {
    expect(() => parseComputeConfig({ compute_ctl_config: { jwks: { keys: [key] } } })).toThrow(
      message,
    );
  });

  test("every listed alg and kty is accepted", () => {
    for (const alg of [
      "HS256",
      "ES384",
      "RS512",
      "PS256",
      "EdDSA",
      "RSA1_5",
      "RSA-OAEP",
      "RSA-OAEP-256",
    ]) {
      for (const kty of ["EC", "RSA", "oct", "OKP"]) {
        expect(() =>
          parseComputeConfig({ compute_ctl_config: { jwks: { keys: [{ kty, alg }] } } }),
        ).not.toThrow();
      }
    }
  });

  test("tls needs both paths", () => {
    expect(() =>
      parseComputeConfig({ compute_ctl_config: { jwks: { keys: [] }, tls: { key_path: "/k" } } }),
    ).toThrow("compute_ctl_config.tls.cert_path: missing");
  });
});

describe("envelopes", () => {
  test("ConfigurationRequest needs both keys", () => {
    expect(() => parseConfigurationRequest({ compute_ctl_config: JWKS })).toThrow("spec: missing");
    expect(() => parseConfigurationRequest({ spec: null, compute_ctl_config: JWKS })).toThrow(
      "spec: expected object, got null",
    );
    expect(() => parseConfigurationRequest({ spec: minimalSpec() })).toThrow(
      "compute_ctl_config: missing",
    );
    const r = parseConfigurationRequest({ spec: minimalSpec(), compute_ctl_config: JWKS });
    expect(r.spec.suspend_timeout_seconds).toBe(-1);
  });

  test("ControlPlaneConfigResponse", () => {
    expect(parseControlPlaneResponse({ status: "empty", compute_ctl_config: JWKS })).toEqual({
      spec: null,
      status: "empty",
      compute_ctl_config: { jwks: { keys: [] }, tls: null },
    });
    expect(() => parseControlPlaneResponse({ spec: null, compute_ctl_config: JWKS })).toThrow(
      "status: missing",
    );
    expect(() =>
      parseControlPlaneResponse({ status: "Attached", compute_ctl_config: JWKS }),
    ).toThrow('status: expected one of "empty", "attached", got "Attached"');
    expect(() => parseControlPlaneResponse({ status: "attached", spec: minimalSpec() })).toThrow(
      "compute_ctl_config: missing",
    );
  });
});

describe("PromoteConfig", () => {
  test("spec and wal_flush_lsn are required", () => {
    const p = parsePromoteConfig({ spec: minimalSpec(), wal_flush_lsn: "0/16b5ba8" });
    expect(p.wal_flush_lsn).toBe(0x16b5ba8n);
    expect(() => parsePromoteConfig({ spec: minimalSpec() })).toThrow("wal_flush_lsn: missing");
    expect(() => parsePromoteConfig({ spec: minimalSpec(), wal_flush_lsn: 5 })).toThrow(
      "wal_flush_lsn: expected LSN string, got number",
    );
    expect(() => parsePromoteConfig({ spec: minimalSpec(), wal_flush_lsn: "5" })).toThrow(
      'wal_flush_lsn: invalid LSN "5" (expected "<hex>/<hex>", e.g. "0/16B5BA8")',
    );
  });
});
