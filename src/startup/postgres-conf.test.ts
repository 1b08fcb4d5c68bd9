// Tables of spec -> exact postgresql.conf text (upstream-lifecycle.md §4.4).
import { afterAll, describe, expect, test } from "bun:test";
import { mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { parseComputeSpec, parseJsonText } from "../spec/parse.ts";
import { type ParsedSpec, toParsedSpec } from "../spec/parsed-spec.ts";
import {
  PostgresConfError,
  type PostgresConfInput,
  readOvercommitMemory,
  renderPostgresConf,
} from "./postgres-conf.ts";

const TENANT = "b0554b632bd4d547a63b86c3630317e8";
const TIMELINE = "2414a61ffc94e428f14b5758fe308e13";
const PS = "postgres://no_user@127.0.0.1:64000";

/** A minimal valid primary spec (wire JSON), with `extra` merged on top. */
function pspecOf(extra: Record<string, unknown> = {}, cluster: Record<string, unknown> = {}) {
  return toParsedSpec(
    parseComputeSpec({
      format_version: 1,
      suspend_timeout_seconds: -1,
      cluster: { roles: [], databases: [], ...cluster },
      tenant_id: TENANT,
      timeline_id: TIMELINE,
      pageserver_connstring: PS,
      safekeeper_connstrings: ["sk1:5454", "sk2:5454"],
      ...extra,
    }),
  );
}

function render(pspec: ParsedSpec, input: Partial<PostgresConfInput> = {}): string {
  return renderPostgresConf({
    pspec,
    privilegedRoleName: "neon_superuser",
    internalHttpPort: 3081,
    overcommitMemory2: false,
    ...input,
  });
}

const text = (...lines: string[]) => lines.map((l) => `${l}\n`).join("");

const LOCALE = [
  "lc_messages='C.UTF-8'",
  "lc_monetary='C.UTF-8'",
  "lc_time='C.UTF-8'",
  "lc_numeric='C.UTF-8'",
];
const HEAD = ["# Neon storage settings", ""];
const LEGACY_PS = [
  "# from compute spec's pageserver_connstring field",
  `neon.pageserver_connstring='${PS}'`,
];
const IDS = [`neon.tenant_id='${TENANT}'`, `neon.timeline_id='${TIMELINE}'`];
const TAIL = [
  "neon.extension_server_port=3081",
  "neon.disable_logical_replication_subscribers=false",
  "include_if_exists = 'compute_ctl_temp_override.conf'",
];
const ROLE = "neon.privileged_role_name='neon_superuser'";

/** The lines between the storage header and the locale lines. */
function storageLines(conf: string): string[] {
  const lines = conf.split("\n");
  const start = lines.indexOf("# Neon storage settings") + 2;
  const end = lines.indexOf("lc_messages='C.UTF-8'");
  return lines.slice(start, end);
}

function thrown(f: () => unknown): unknown {
  try {
    f();
  } catch (e) {
    return e;
  }
  throw new Error("expected an error");
}

describe("whole file by mode", () => {
  test.each([
    [
      "primary",
      {},
      [
        ...HEAD,
        ...LEGACY_PS,
        "neon.safekeepers='sk1:5454,sk2:5454'",
        ...IDS,
        ...LOCALE,
        "neon.compute_mode=primary",
        ROLE,
        ...TAIL,
      ],
    ],
    [
      "replica",
      { mode: "Replica", safekeeper_connstrings: [] },
      [
        ...HEAD,
        ...LEGACY_PS,
        ...IDS,
        ...LOCALE,
        "neon.compute_mode=replica",
        "hot_standby=on",
        ROLE,
        ...TAIL,
      ],
    ],
    [
      "static",
      { mode: { Static: "0/16b5ba8" }, safekeeper_connstrings: [] },
      [
        ...HEAD,
        ...LEGACY_PS,
        ...IDS,
        ...LOCALE,
        "neon.compute_mode=static",
        "hot_standby=on",
        "recovery_target_lsn='0/16B5BA8'",
        ROLE,
        ...TAIL,
      ],
    ],
    [
      // Safekeepers listed in the spec are written whatever the mode.
      "replica with safekeepers",
      { mode: "Replica" },
      [
        ...HEAD,
        ...LEGACY_PS,
        "neon.safekeepers='sk1:5454,sk2:5454'",
        ...IDS,
        ...LOCALE,
        "neon.compute_mode=replica",
        "hot_standby=on",
        ROLE,
        ...TAIL,
      ],
    ],
  ])("%s", (_name, extra, lines) => {
    expect(render(pspecOf(extra))).toBe(text(...lines));
  });

  test("every optional part at once, in order", () => {
    const pspec = pspecOf(
      {
        shard_stripe_size: 2048,
        safekeepers_generation: 3,
        project_id: "p'1",
        branch_id: "br\\1",
        endpoint_id: "ep-1",
        audit_log_level: "Base",
        drop_subscriptions_before_start: true,
        logs_export_host: "logs:514",
      },
      {
        postgresql_conf: "listen_addresses='*'\nport=55432",
        settings: [{ name: "fsync", value: "off", vartype: "bool" }],
      },
    );
    const conf = render(pspec, {
      tls: { enabled: true },
      overcommitMemory2: true,
      privilegedRoleName: "my_superuser",
      internalHttpPort: 1234,
      lakebase: { port: 5432, databricksLines: ["databricks.x=1"] },
    });
    expect(conf).toBe(
      text(
        "listen_addresses='*'",
        "port=55432",
        ...HEAD,
        "# from compute spec's shard_stripe_size field",
        "neon.stripe_size=2048",
        ...LEGACY_PS,
        "neon.safekeepers='g#3:sk1:5454,sk2:5454'",
        ...IDS,
        "neon.project_id='p''1'",
        "neon.branch_id='br\\\\1'",
        "neon.endpoint_id='ep-1'",
        "ssl = on",
        "ssl_cert_file = 'server.crt'",
        "ssl_key_file = 'server.key'",
        ...LOCALE,
        "neon.compute_mode=primary",
        "dynamic_shared_memory_type = mmap",
        "neon.privileged_role_name='my_superuser'",
        "# Managed by compute_ctl: begin",
        "fsync = off",
        "# Managed by compute_ctl: end",
        "# Managed by compute_ctl base audit settings: start",
        "pgaudit.log='ddl,role'",
        "pgaudit.log_catalog=off",
        "shared_preload_libraries='neon,pgaudit'",
        "# Managed by compute_ctl base audit settings: end",
        "neon.extension_server_port=1234",
        "neon.disable_logical_replication_subscribers=true",
        "log_destination='stderr,syslog'",
        "port = 5432",
        "# Databricks settings start",
        "databricks.x=1",
        "# Databricks settings end",
        "include_if_exists = 'compute_ctl_temp_override.conf'",
      ),
    );
  });
});

describe("postgresql_conf from the spec", () => {
  test.each([
    ["no trailing newline", "a=1\nb=2", ["a=1", "b=2", "# Neon storage settings"]],
    // Verbatim plus one newline: a conf ending in \n leaves a blank line.
    ["trailing newline", "a=1\n", ["a=1", "", "# Neon storage settings"]],
    ["empty string", "", ["", "# Neon storage settings"]],
  ])("%s", (_name, conf, first) => {
    const out = render(pspecOf({}, { postgresql_conf: conf })).split("\n");
    expect(out.slice(0, first.length)).toEqual(first);
  });
});

describe("pageserver lines", () => {
  const shard = (libpq: string | null, grpc: string | null = null) => ({
    pageservers: [{ id: 1, libpq_url: libpq, grpc_url: grpc }],
  });

  test.each([
    [
      "legacy sharded connstring with stripe size",
      { pageserver_connstring: "postgres://a:1,postgres://b:2", shard_stripe_size: 32768 },
      [
        "# from compute spec's shard_stripe_size field",
        "neon.stripe_size=32768",
        "# from compute spec's pageserver_connstring field",
        "neon.pageserver_connstring='postgres://a:1,postgres://b:2'",
      ],
    ],
    [
      "legacy keyword/value connstring is quoted, not parsed",
      { pageserver_connstring: "host=127.0.0.1 port=6400 password='x'" },
      [
        "# from compute spec's pageserver_connstring field",
        "neon.pageserver_connstring='host=127.0.0.1 port=6400 password=''x'''",
      ],
    ],
    [
      "unsharded connection info",
      {
        pageserver_connection_info: { shard_count: 0, shards: { "0000": shard(PS) } },
      },
      [
        "# derived from compute spec's pageserver_connection_info field",
        `neon.pageserver_connstring='${PS}'`,
      ],
    ],
    [
      "sharded connection info with libpq URLs, in shard order",
      {
        pageserver_connection_info: {
          shard_count: 2,
          stripe_size: 2048,
          shards: {
            "0102": shard("postgres://b:2", "grpc://b:3"),
            "0002": shard("postgres://a:1"),
          },
        },
      },
      [
        "# from compute spec's pageserver_connection_info.stripe_size field",
        "neon.stripe_size=2048",
        "# derived from compute spec's pageserver_connection_info field",
        "neon.pageserver_connstring='postgres://a:1,postgres://b:2'",
      ],
    ],
    [
      "a shard without a libpq URL",
      {
        pageserver_connection_info: {
          shard_count: 2,
          stripe_size: 2048,
          prefer_protocol: "grpc",
          shards: { "0002": shard("postgres://a:1"), "0102": shard(null, "grpc://b:3") },
        },
      },
      [
        "# from compute spec's pageserver_connection_info.stripe_size field",
        "neon.stripe_size=2048",
        "# no neon.pageserver_connstring",
      ],
    ],
    [
      "only the first pageserver of a shard counts",
      {
        pageserver_connection_info: {
          shard_count: 0,
          shards: {
            "0000": {
              pageservers: [
                { id: 1, libpq_url: null, grpc_url: "grpc://a:1" },
                { id: 2, libpq_url: "postgres://b:2", grpc_url: null },
              ],
            },
          },
        },
      },
      ["# no neon.pageserver_connstring"],
    ],
    [
      "connection info wins over the legacy fields",
      {
        pageserver_connstring: "postgres://legacy:1",
        shard_stripe_size: 8,
        pageserver_connection_info: { shard_count: 0, shards: { "0000": shard(PS) } },
      },
      [
        "# derived from compute spec's pageserver_connection_info field",
        `neon.pageserver_connstring='${PS}'`,
      ],
    ],
  ])("%s", (_name, extra, lines) => {
    const conf = render(pspecOf({ ...extra, safekeeper_connstrings: [], mode: "Replica" }));
    expect(storageLines(conf)).toEqual([...lines, ...IDS]);
  });

  test("GUC-only pageserver info writes no storage lines (the settings block carries it)", () => {
    const pspec = pspecOf(
      { pageserver_connstring: null, safekeeper_connstrings: [], mode: "Replica" },
      { settings: [{ name: "neon.pageserver_connstring", value: PS, vartype: "string" }] },
    );
    expect(storageLines(render(pspec))).toEqual(IDS);
  });

  test.each([
    [
      "a missing shard",
      { shard_count: 2, stripe_size: 8, shards: { "0002": shard("postgres://a:1") } },
      "shard 0102 missing from pageserver_connection_info shard map",
      "spec.pageserver_connection_info.shards",
    ],
    [
      "an unsharded map without 0000",
      { shard_count: 0, shards: { "0001": shard("postgres://a:1") } },
      "shard 0000 missing from pageserver_connection_info shard map",
      "spec.pageserver_connection_info.shards",
    ],
    [
      "a shard without pageservers",
      { shard_count: 0, shards: { "0000": { pageservers: [] } } },
      "must have at least one pageserver",
      "spec.pageserver_connection_info.shards.0000.pageservers",
    ],
  ])("%s is an error", (_name, info, message, path) => {
    const pspec = pspecOf({ pageserver_connection_info: info });
    const err = thrown(() => render(pspec));
    expect(err).toBeInstanceOf(PostgresConfError);
    expect((err as PostgresConfError).message).toBe(message);
    expect((err as PostgresConfError).path).toBe(path);
  });
});

describe("safekeepers and ids", () => {
  test.each([
    ["no generation", {}, ["neon.safekeepers='sk1:5454,sk2:5454'"]],
    ["generation 0", { safekeepers_generation: 0 }, ["neon.safekeepers='g#0:sk1:5454,sk2:5454'"]],
    [
      "generation 42",
      { safekeepers_generation: 42 },
      ["neon.safekeepers='g#42:sk1:5454,sk2:5454'"],
    ],
    // Non-primary without safekeepers: nothing, even with a generation.
    ["empty list", { safekeepers_generation: 5, safekeeper_connstrings: [], mode: "Replica" }, []],
  ])("%s", (_name, extra, lines) => {
    expect(storageLines(render(pspecOf(extra)))).toEqual([...LEGACY_PS, ...lines, ...IDS]);
  });

  test("GUC fallbacks for safekeepers and ids are not written outside the settings block", () => {
    const pspec = pspecOf(
      { tenant_id: null, timeline_id: null, safekeeper_connstrings: [] },
      {
        settings: [
          { name: "neon.safekeepers", value: "sk9:1", vartype: "string" },
          { name: "neon.tenant_id", value: TENANT, vartype: "string" },
          { name: "neon.timeline_id", value: TIMELINE, vartype: "string" },
        ],
      },
    );
    expect(pspec.safekeeper_connstrings).toEqual(["sk9:1"]);
    expect(storageLines(render(pspec))).toEqual(LEGACY_PS);
  });
});

describe("host facts", () => {
  test.each([
    ["linux, overcommit 0", "linux", false, [...LOCALE, "neon.compute_mode=primary", ROLE]],
    [
      "linux, overcommit 2",
      "linux",
      true,
      [...LOCALE, "neon.compute_mode=primary", "dynamic_shared_memory_type = mmap", ROLE],
    ],
    [
      "darwin ignores overcommit",
      "darwin",
      true,
      [
        "lc_messages='C'",
        "lc_monetary='C'",
        "lc_time='C'",
        "lc_numeric='C'",
        "neon.compute_mode=primary",
        ROLE,
      ],
    ],
  ] as const)("%s", (_name, platform, overcommitMemory2, lines) => {
    const conf = render(pspecOf(), { platform, overcommitMemory2 });
    const all = conf.split("\n");
    const start = all.findIndex((l) => l.startsWith("lc_messages="));
    expect(all.slice(start, start + lines.length)).toEqual([...lines]);
  });

  test.each([
    ["absent", undefined, false],
    ["disabled", { enabled: false }, false],
    ["enabled", { enabled: true }, true],
  ])("tls %s", (_name, tls, expected) => {
    const conf = render(pspecOf(), { tls });
    const ssl = "ssl = on\nssl_cert_file = 'server.crt'\nssl_key_file = 'server.key'\nlc_messages=";
    expect(conf.includes(ssl)).toBe(expected);
    expect(conf.includes("ssl")).toBe(expected);
  });

  test("privileged role name is escaped", () => {
    expect(render(pspecOf(), { privilegedRoleName: "it's" })).toContain(
      "\nneon.privileged_role_name='it''s'\n",
    );
  });
});

describe("settings block", () => {
  /** From the privileged role line (exclusive) to the extension port line (exclusive). */
  function middle(conf: string): string {
    const from = conf.indexOf(`${ROLE}\n`) + ROLE.length + 1;
    return conf.slice(from, conf.indexOf("neon.extension_server_port="));
  }

  test.each([
    ["null: no markers", null, ""],
    [
      "empty list: markers around one blank line",
      [],
      "# Managed by compute_ctl: begin\n\n# Managed by compute_ctl: end\n",
    ],
    [
      "values rendered by vartype",
      [
        { name: "fsync", value: "off", vartype: "bool" },
        { name: "primary_conninfo", value: "host=x user='u'", vartype: "string" },
        { name: "bare", vartype: "int" },
      ],
      text(
        "# Managed by compute_ctl: begin",
        "fsync = off",
        "primary_conninfo = 'host=x user=''u'''",
        "bare",
        "# Managed by compute_ctl: end",
      ),
    ],
  ])("%s", (_name, settings, expected) => {
    expect(middle(render(pspecOf({}, { settings })))).toBe(expected);
  });
});

describe("audit block", () => {
  const BASE = (spl: string) => [
    "# Managed by compute_ctl base audit settings: start",
    "pgaudit.log='ddl,role'",
    "pgaudit.log_catalog=off",
    `shared_preload_libraries='${spl}'`,
    "# Managed by compute_ctl base audit settings: end",
  ];
  const COMPLIANCE = (full: boolean, spl: string) => [
    "# Managed by compute_ctl compliance audit settings: begin",
    full ? "pgaudit.log_parameter=on" : "pgaudit.log_parameter=off",
    full ? "pgaudit.log='all'" : "pgaudit.log='all, -misc'",
    "pgaudit.log_catalog=off",
    "pgaudit.log_rotation_age=5",
    `shared_preload_libraries='${spl}'`,
    "# Managed by compute_ctl compliance audit settings: end",
  ];
  // settings: null list / list without the GUC / GUC with a null value / GUC values.
  const SPL = (value: string | null) => [
    { name: "shared_preload_libraries", value, vartype: "string" },
  ];
  const CASES: [string, unknown][] = [
    ["null settings", null],
    ["no shared_preload_libraries", [{ name: "fsync", value: "off", vartype: "bool" }]],
    ["null shared_preload_libraries", SPL(null)],
    ["neon", SPL("neon")],
    ["neon,pgaudit", SPL("neon,pgaudit")],
    ["neon,pgauditlogtofile", SPL("neon,pgauditlogtofile")],
    ["neon,pgaudit,pgauditlogtofile", SPL("neon,pgaudit,pgauditlogtofile")],
  ];
  const BASE_SPL = [
    "neon,pgaudit",
    "neon,pgaudit",
    "neon,pgaudit",
    "neon,pgaudit",
    "neon,pgaudit",
    // Substring test, as upstream: pgauditlogtofile already "contains" pgaudit.
    "neon,pgauditlogtofile",
    "neon,pgaudit,pgauditlogtofile",
  ];
  const COMPLIANCE_SPL = [
    "neon,pgaudit,pgauditlogtofile",
    "neon,pgaudit,pgauditlogtofile",
    "neon,pgaudit,pgauditlogtofile",
    "neon,pgaudit,pgauditlogtofile",
    "neon,pgaudit,pgauditlogtofile",
    "neon,pgauditlogtofile",
    "neon,pgaudit,pgauditlogtofile",
  ];

  const rows: [string, string, unknown, string[]][] = [];
  CASES.forEach(([label, settings], i) => {
    rows.push(["Disabled", label, settings, []]);
    for (const level of ["Log", "Base"]) {
      rows.push([level, label, settings, BASE(BASE_SPL[i] ?? "")]);
    }
    for (const level of ["Hipaa", "Extended"]) {
      rows.push([level, label, settings, COMPLIANCE(false, COMPLIANCE_SPL[i] ?? "")]);
    }
    rows.push(["Full", label, settings, COMPLIANCE(true, COMPLIANCE_SPL[i] ?? "")]);
  });

  test.each(rows)("%s with %s", (level, _label, settings, lines) => {
    const conf = render(pspecOf({ audit_log_level: level }, { settings }));
    // Right after the settings block (or the role line when there is none).
    const anchor = settings === null ? `${ROLE}\n` : "# Managed by compute_ctl: end\n";
    const after = conf.slice(conf.indexOf(anchor) + anchor.length);
    expect(after).toBe(text(...lines, ...TAIL));
  });
});

describe("tail", () => {
  test.each([
    ["defaults", {}, TAIL],
    [
      "drop subscriptions and log export",
      { drop_subscriptions_before_start: true, logs_export_host: "h:1" },
      [
        "neon.extension_server_port=3081",
        "neon.disable_logical_replication_subscribers=true",
        "log_destination='stderr,syslog'",
        "include_if_exists = 'compute_ctl_temp_override.conf'",
      ],
    ],
  ])("%s", (_name, extra, lines) => {
    expect(render(pspecOf(extra)).endsWith(`${ROLE}\n${text(...lines)}`)).toBe(true);
  });

  test("lakebase without Databricks lines", () => {
    expect(render(pspecOf(), { lakebase: { port: 6543 } })).toEndWith(
      text(
        "neon.disable_logical_replication_subscribers=false",
        "port = 6543",
        "# Databricks settings start",
        "# Databricks settings end",
        "include_if_exists = 'compute_ctl_temp_override.conf'",
      ),
    );
  });
});

const fixturePath = fileURLToPath(
  new URL("../../../shared/fixtures/neon/compute_api_cluster_spec.json", import.meta.url),
);
const fixture = parseComputeSpec(parseJsonText(await readFile(fixturePath, "utf8")));

describe("fixture compute_api_cluster_spec.json", () => {
  const conf = render(toParsedSpec(fixture));

  test("storage info only in settings: no storage lines, then the settings block", () => {
    const lines = conf.split("\n");
    expect(lines.slice(0, 8)).toEqual([...HEAD, ...LOCALE, "neon.compute_mode=primary", ROLE]);
    expect(lines[8]).toBe("# Managed by compute_ctl: begin");
    expect(lines[8 + 26]).toBe("# Managed by compute_ctl: end");
    expect(lines.slice(8 + 27)).toEqual([...TAIL, ""]);
  });

  test("test.escaping doubles the quotes and the backslash, keeps the double quote", () => {
    expect(conf).toContain(
      "\ntest.escaping = 'here''s a backslash \\\\ and a quote '' and a double-quote \" hooray'\n",
    );
  });
});

describe("readOvercommitMemory", () => {
  const dirs: string[] = [];
  afterAll(async () => {
    for (const d of dirs) await rm(d, { recursive: true, force: true });
  });

  test.each([
    ["2\n", true],
    [" 2 ", true],
    ["0\n", false],
    ["1\n", false],
    ["", false],
    ["22\n", false],
  ])("content %j -> %p", async (content, expected) => {
    const dir = await mkdtemp(join(tmpdir(), "overcommit-"));
    dirs.push(dir);
    const file = join(dir, "overcommit_memory");
    await writeFile(file, content);
    expect(readOvercommitMemory(file)).toBe(expected);
  });

  test("missing file or a directory -> false", async () => {
    const dir = await mkdtemp(join(tmpdir(), "overcommit-"));
    dirs.push(dir);
    await mkdir(join(dir, "sub"));
    expect(readOvercommitMemory(join(dir, "absent"))).toBe(false);
    expect(readOvercommitMemory(join(dir, "sub"))).toBe(false);
  });
});
