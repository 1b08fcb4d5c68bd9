// The upstream fixtures (see /work/shared/fixtures/neon/README.md): current
// ones must parse, legacy ones must be refused with a message naming the field.
import { describe, expect, test } from "bun:test";
import { readFile } from "node:fs/promises";
import { fileURLToPath } from "node:url";
import * as v from "valibot";
import { ConfigError } from "../errors.ts";
import { parsePageserverConnstr } from "./connstr.ts";
import {
  loadConfigFile,
  parseComputeConfig,
  parseComputeSpec,
  parseControlPlaneResponse,
  parseJsonText,
} from "./parse.ts";
import { genericOptionsFind, shardUrl, toParsedSpec } from "./parsed-spec.ts";
import { ComputeSpecSchema, RemoteExtSpecSchema } from "./schema.ts";

const FIXTURES = new URL("../../../shared/fixtures/neon/", import.meta.url);
const fixturePath = (name: string) => fileURLToPath(new URL(name, FIXTURES));

async function fixture(name: string): Promise<unknown> {
  return parseJsonText(await readFile(fixturePath(name), "utf8"));
}

/** The fixture's `${NAME}` placeholders (ours, per the README). */
const placeholder = (name: string) => `$\{${name}}`;

/** How the README says to feed a bare ComputeSpec to `compute_ctl -c`. */
function wrap(spec: unknown): unknown {
  return { spec, compute_ctl_config: { jwks: { keys: [] } } };
}

function configError(f: () => unknown): ConfigError {
  try {
    f();
  } catch (e) {
    expect(e).toBeInstanceOf(ConfigError);
    return e as ConfigError;
  }
  throw new Error("expected a ConfigError");
}

describe("current fixtures", () => {
  test("compute_api_cluster_spec.json parses (wrapped) with upstream's asserted defaults", async () => {
    const config = parseComputeConfig(wrap(await fixture("compute_api_cluster_spec.json")));
    const spec = config.spec;
    if (spec === null) throw new Error("spec expected");
    expect(spec.format_version).toBe(1);
    expect(spec.operation_uuid).toBe("0f657b36-4b0f-4a2d-9c2e-1dcd615e7d8b");
    expect(spec.suspend_timeout_seconds).toBe(3600);
    expect(spec.features).toEqual([]);
    expect(spec.reconfigure_concurrency).toBe(1);
    expect(spec.mode).toEqual({ kind: "primary" });
    expect("timestamp" in spec).toBe(false);
    expect(spec.cluster.roles.map((r) => r.name)).toEqual([
      "postgres",
      "alexk",
      'zenith "new"',
      "zen",
      '"name";\\n select 1;',
      "MyRole",
    ]);
    expect(spec.cluster.roles[3]?.options).toBeNull();
    expect(
      spec.cluster.databases.map((d) => [d.name, d.owner, d.restrict_conn, d.invalid]),
    ).toEqual([
      ["DB2", "alexk", false, false],
      ["zenith", "MyRole", false, false],
      ["zen", "zen", false, false],
    ]);
    expect(spec.cluster.databases[0]?.options?.[2]).toEqual({
      name: "TEMPLATE",
      value: "template0",
      vartype: "enum",
    });
    expect(spec.cluster.settings).toHaveLength(25);
    expect(genericOptionsFind(spec.cluster.settings, "test.escaping")).toBe(
      "here's a backslash \\ and a quote ' and a double-quote \" hooray",
    );
    expect(spec.delta_operations).toEqual([
      { action: "delete_db", name: "zenith_test", new_name: null },
      { action: "rename_db", name: "DB", new_name: "DB2" },
      { action: "delete_role", name: "zenith2", new_name: null },
      { action: "rename_role", name: "zenith new", new_name: 'zenith "new"' },
    ]);
    expect(spec.remote_extensions?.public_extensions).toEqual(["postgis"]);
    expect(spec.remote_extensions?.custom_extensions).toEqual([]);
    expect(Object.keys(spec.remote_extensions?.library_index ?? {})).toHaveLength(6);
    expect(
      Object.keys(spec.remote_extensions?.extension_data.postgis?.control_data ?? {}),
    ).toHaveLength(8);
    expect(Object.entries(spec.pgbouncer_settings ?? {})).toEqual([
      ["default_pool_size", "42"],
      ["pool_mode", "session"],
    ]);
  });

  test("compute_api_cluster_spec.json: upstream's feature tests", async () => {
    const raw = (await fixture("compute_api_cluster_spec.json")) as Record<string, unknown>;
    expect(parseComputeSpec({ ...raw, new_unknown_field: { a: 1 } }).features).toEqual([]);
    expect(
      parseComputeSpec({ ...raw, features: ["foo_bar_feature", "baz_feature"] }).features,
    ).toEqual(["unknown_feature", "unknown_feature"]);
    expect(
      parseComputeSpec({ ...raw, features: ["activity_monitor_experimental"] }).features,
    ).toEqual(["activity_monitor_experimental"]);
  });

  test("compute_api_cluster_spec.json: toParsedSpec uses the legacy GUC fallbacks", async () => {
    const spec = parseComputeSpec(await fixture("compute_api_cluster_spec.json"));
    const parsed = toParsedSpec(spec);
    expect(parsed.tenant_id as string).toBe("b0554b632bd4d547a63b86c3630317e8");
    expect(parsed.timeline_id as string).toBe("2414a61ffc94e428f14b5758fe308e13");
    expect(parsed.safekeeper_connstrings).toEqual([
      "127.0.0.1:6502",
      "127.0.0.1:6503",
      "127.0.0.1:6501",
    ]);
    expect(parsed.pageserver_conninfo).toEqual({
      shard_count: 0,
      stripe_size: null,
      shards: {
        "0000": {
          pageservers: [{ id: null, libpq_url: "host=127.0.0.1 port=6400", grpc_url: null }],
        },
      },
      prefer_protocol: "libpq",
    });
    const url = shardUrl(parsed.pageserver_conninfo, 0, "libpq");
    expect(parsePageserverConnstr(url)).toMatchObject({ host: "127.0.0.1", port: 6400 });
    expect(parsed.storage_auth_token).toBeNull();
    expect(parsed.endpoint_storage_addr).toBeNull();
  });

  test("compute_tools_cluster_spec_duplicate_safekeeper.json parses, but toParsedSpec refuses it", async () => {
    const raw = await fixture("compute_tools_cluster_spec_duplicate_safekeeper.json");
    const config = parseComputeConfig(wrap(raw));
    const spec = config.spec;
    if (spec === null) throw new Error("spec expected");
    expect(genericOptionsFind(spec.cluster.settings, "prewarm_lfc_on_startup")).toBe("off");
    const err = configError(() => toParsedSpec(spec));
    expect(err.message).toBe("duplicate entry in safekeeper_connstrings: 127.0.0.1:6502!");
    expect(err.path).toBe("spec.safekeeper_connstrings");
  });

  test("docker_compose_compute_config.json: parses, its TENANT_ID placeholder (in settings) is refused", async () => {
    const config = await loadConfigFile(fixturePath("docker_compose_compute_config.json"));
    const spec = config.spec;
    if (spec === null) throw new Error("spec expected");
    expect(spec.suspend_timeout_seconds).toBe(-1);
    expect(spec.delta_operations).toEqual([]);
    expect(config.compute_ctl_config.jwks.keys).toHaveLength(1);
    expect(config.compute_ctl_config.jwks.keys[0]).toMatchObject({
      kty: "OKP",
      alg: "EdDSA",
      crv: "Ed25519",
    });
    // The placeholder sits in cluster.settings (neon.tenant_id), so the schema
    // accepts the file and ParsedSpec derivation rejects it, as upstream.
    const err = configError(() => toParsedSpec(spec));
    expect(err.message).toBe("invalid tenant id");
    expect(err.path).toBe("spec.cluster.settings[18].value");
    expect(spec.cluster.settings?.[18]).toEqual({
      name: "neon.tenant_id",
      value: "TENANT_ID",
      vartype: "string",
    });
  });

  test("docker_compose_compute_config.json: works once the placeholders are substituted", async () => {
    const text = (await readFile(fixturePath("docker_compose_compute_config.json"), "utf8"))
      .replace("TENANT_ID", "B0554B632BD4D547A63B86C3630317E8")
      .replace("TIMELINE_ID", "2414a61ffc94e428f14b5758fe308e13");
    const spec = parseComputeConfig(parseJsonText(text)).spec;
    if (spec === null) throw new Error("spec expected");
    const parsed = toParsedSpec(spec);
    expect(parsed.tenant_id as string).toBe("b0554b632bd4d547a63b86c3630317e8");
    expect(parsed.safekeeper_connstrings).toEqual([
      "safekeeper1:5454",
      "safekeeper2:5454",
      "safekeeper3:5454",
    ]);
    const url = shardUrl(parsed.pageserver_conninfo, 0, "libpq");
    expect(parsePageserverConnstr(url)).toMatchObject({ host: "pageserver", port: 6400 });
  });

  test("docker_compose_compute_config.json with the placeholder in spec.tenant_id is refused by the schema", async () => {
    const raw = (await fixture("docker_compose_compute_config.json")) as {
      spec: Record<string, unknown>;
    };
    const err = configError(() =>
      parseComputeConfig({ ...raw, spec: { ...raw.spec, tenant_id: "TENANT_ID" } }),
    );
    expect(err.message).toBe(
      'spec.tenant_id: invalid tenant id "TENANT_ID" (expected 32 hex characters)',
    );
    expect(err.path).toBe("spec.tenant_id");
  });
});

describe("extracted fixtures", () => {
  test("control plane: empty", async () => {
    const resp = parseControlPlaneResponse(
      await fixture("extracted__cplane_get_spec_response_empty.json"),
    );
    expect(resp).toEqual({
      status: "empty",
      spec: null,
      compute_ctl_config: { jwks: { keys: [] }, tls: null },
    });
  });

  test("control plane: attached template, placeholders filled", async () => {
    const text = (
      await readFile(
        fixturePath("extracted__cplane_get_spec_response_attached_template.json"),
        "utf8",
      )
    )
      .replace(placeholder("TENANT_ID"), "b0554b632bd4d547a63b86c3630317e8")
      .replace(placeholder("TIMELINE_ID"), "2414a61ffc94e428f14b5758fe308e13")
      .replace(placeholder("PAGESERVER_PG_PORT"), "64000")
      .replace(placeholder("SAFEKEEPER_HOST_PORT_1"), "127.0.0.1:5454");
    const resp = parseControlPlaneResponse(parseJsonText(text));
    expect(resp.status).toBe("attached");
    const spec = resp.spec;
    if (spec === null) throw new Error("spec expected");
    expect(spec.skip_pg_catalog_updates).toBe(true);
    const parsed = toParsedSpec(spec);
    expect(parsed.safekeeper_connstrings).toEqual(["127.0.0.1:5454"]);
    expect(parsePageserverConnstr(shardUrl(parsed.pageserver_conninfo, 0, "libpq"))).toMatchObject({
      host: "localhost",
      port: 64000,
      user: "no_user",
    });
  });

  test("control plane: attached template, placeholders NOT filled, names spec.tenant_id", async () => {
    const raw = await fixture("extracted__cplane_get_spec_response_attached_template.json");
    const err = configError(() => parseControlPlaneResponse(raw));
    expect(err.message).toBe(
      `spec.tenant_id: invalid tenant id "${placeholder("TENANT_ID")}" (expected 32 hex characters)`,
    );
  });

  test("remote extensions spec (test_download_extensions)", async () => {
    const ext = v.parse(
      RemoteExtSpecSchema,
      await fixture("extracted__remote_extensions_spec_test_download_extensions.json"),
    );
    expect(ext.custom_extensions).toBeNull();
    expect(ext.extension_data.test_extension_sql_only?.archive_path).toBe("");
  });

  test("remote_ext_index_v14__legacy.json is a valid RemoteExtSpec (no custom_extensions)", async () => {
    const ext = v.parse(RemoteExtSpecSchema, await fixture("remote_ext_index_v14__legacy.json"));
    expect(ext.custom_extensions).toBeNull();
    expect(ext.public_extensions).toEqual(["anon", "pg_buffercache"]);
    expect(ext.extension_data.anon?.control_data["anon.control"]).toContain(
      "requires = 'pgcrypto'",
    );
  });

  test("tricky role and database names fit into a spec", async () => {
    const names = (await fixture("extracted__test_compute_catalog_tricky_names.json")) as {
      roles: unknown[];
      databases: unknown[];
    };
    const spec = v.parse(ComputeSpecSchema, {
      format_version: 1.0,
      cluster: { roles: names.roles, databases: names.databases },
      suspend_timeout_seconds: -1,
      delta_operations: names.databases.map((d) => ({
        action: "delete_db",
        name: (d as { name: string }).name,
      })),
    });
    expect(spec.cluster.roles).toHaveLength(22);
    expect(spec.cluster.databases).toHaveLength(22);
    expect(spec.cluster.roles[6]).toEqual({
      name: "role with emoji 🌍",
      encrypted_password: null,
      options: null,
    });
    expect(spec.cluster.databases[21]?.name).toHaveLength(63);
  });
});

describe("legacy fixtures are refused", () => {
  test.each([
    "compute_api_cluster_spec__legacy_no_suspend_timeout.json",
    "compute_api_cluster_spec__legacy_anon_custom_extension.json",
  ])("%p (wrapped): spec.suspend_timeout_seconds: missing", async (name) => {
    const raw = await fixture(name);
    const e = configError(() => parseComputeConfig(wrap(raw)));
    expect(e.message).toBe("spec.suspend_timeout_seconds: missing");
    expect(e.path).toBe("spec.suspend_timeout_seconds");
  });

  test("legacy anon fixture parses once the field is added", async () => {
    const raw = (await fixture(
      "compute_api_cluster_spec__legacy_anon_custom_extension.json",
    )) as Record<string, unknown>;
    const spec = parseComputeSpec({ ...raw, suspend_timeout_seconds: 3600 });
    expect(spec.remote_extensions?.custom_extensions).toEqual(["anon"]);
  });

  test("docker_compose_spec__legacy_bare_computespec.json used as a config file: compute_ctl_config: missing", async () => {
    const path = fixturePath("docker_compose_spec__legacy_bare_computespec.json");
    const err = await loadConfigFile(path).then(
      () => {
        throw new Error("expected a failure");
      },
      (e: unknown) => e as ConfigError,
    );
    expect(err).toBeInstanceOf(ConfigError);
    expect(err.message).toBe(`config file ${path}: compute_ctl_config: missing`);
    expect(err.path).toBe("compute_ctl_config");
  });

  test("the bare legacy docker-compose spec, wrapped, still lacks suspend_timeout_seconds", async () => {
    const raw = await fixture("docker_compose_spec__legacy_bare_computespec.json");
    expect(configError(() => parseComputeConfig(wrap(raw))).message).toBe(
      "spec.suspend_timeout_seconds: missing",
    );
  });

  test("bare current specs used as config files: compute_ctl_config: missing", async () => {
    for (const name of [
      "compute_api_cluster_spec.json",
      "compute_tools_cluster_spec_duplicate_safekeeper.json",
    ]) {
      const path = fixturePath(name);
      await expect(loadConfigFile(path)).rejects.toThrow(
        `config file ${path}: compute_ctl_config: missing`,
      );
    }
  });
});

describe("negative cases built from the current fixtures", () => {
  type Json = Record<string, unknown> & { cluster: { roles: unknown[]; settings?: unknown[] } };
  const base = async () => (await fixture("compute_api_cluster_spec.json")) as Json;

  test.each<[string, (s: Json) => void, string]>([
    [
      "wrong type",
      (s) => {
        s.cluster.roles[2] = { name: 7 };
      },
      "spec.cluster.roles[2].name: expected string, got number",
    ],
    [
      "bad tenant id",
      (s) => {
        s.tenant_id = "TENANT_ID";
      },
      'spec.tenant_id: invalid tenant id "TENANT_ID" (expected 32 hex characters)',
    ],
    [
      "bad timeline id",
      (s) => {
        s.timeline_id = "2414a61ffc94e428f14b5758fe308e1";
      },
      'spec.timeline_id: invalid timeline id "2414a61ffc94e428f14b5758fe308e1" (expected 32 hex characters)',
    ],
    [
      "bad LSN",
      (s) => {
        s.mode = { Static: "0/XYZ" };
      },
      'spec.mode.Static: invalid LSN "0/XYZ" (expected "<hex>/<hex>", e.g. "0/16B5BA8")',
    ],
    [
      "unknown mode",
      (s) => {
        s.mode = "Foo";
      },
      'spec.mode: unknown compute mode "Foo" (expected "Primary", "Replica" or {"Static": "<LSN>"})',
    ],
    [
      "null for a defaulted field",
      (s) => {
        s.features = null;
      },
      "spec.features: expected array, got null",
    ],
    [
      "GenericOption value a number",
      (s) => {
        (s.cluster.settings?.[8] as Record<string, unknown>).value = 32768;
      },
      "spec.cluster.settings[8].value: expected string, got number",
    ],
    [
      "offload interval 0",
      (s) => {
        s.offload_lfc_interval_seconds = 0;
      },
      "spec.offload_lfc_interval_seconds: expected non-zero u64, got 0",
    ],
    [
      "remote extension without archive_path",
      (s) => {
        const ext = s.remote_extensions as { extension_data: Record<string, object> };
        ext.extension_data.postgis = { control_data: {} };
      },
      "spec.remote_extensions.extension_data.postgis.archive_path: missing",
    ],
  ])("%s", async (_what, mutate, message) => {
    const s = await base();
    mutate(s);
    const err = configError(() => parseComputeConfig(wrap(s)));
    expect(err.message).toBe(message);
    expect(err.path).toBe(message.slice(0, message.indexOf(":")));
  });

  test("truncated fixture text: invalid JSON with line and column", async () => {
    const text = await readFile(fixturePath("docker_compose_compute_config.json"), "utf8");
    const cut = text.slice(0, text.indexOf('"cluster_id"') + 5);
    const lines = cut.split("\n");
    const err = configError(() => parseJsonText(cut));
    expect(err.message).toBe(
      `invalid JSON at line ${lines.length} column ${(lines.at(-1) ?? "").length + 1}: unterminated string`,
    );
  });
});
