// Vectors from upstream-api.md §3.11 (pg_helpers_tests.rs), written as raw text.
import { describe, expect, test } from "bun:test";
import { readFile } from "node:fs/promises";
import { fileURLToPath } from "node:url";
import { parseComputeSpec, parseJsonText } from "../spec/parse.ts";
import type { GenericOption } from "../spec/schema.ts";
import {
  escapeConfValue,
  escapeLiteral,
  pgQuote,
  pgQuoteDollar,
  renderSetting,
  renderSettingsConf,
  renderSqlOption,
  renderSqlOptions,
} from "./quote.ts";

const raw = String.raw;

describe("escapeLiteral", () => {
  test.each([
    ["test", "'test'"],
    ["test'", "'test'''"],
    [raw`test\'`, raw`E'test\\'''`],
    [raw`test\'\'`, raw`E'test\\''\\'''`],
    ["", "''"],
    ["a\nb", "'a\nb'"],
  ])("%p -> %p", (input, output) => {
    expect(escapeLiteral(input)).toBe(output);
  });
});

describe("escapeConfValue", () => {
  test.each([
    ["test", "'test'"],
    ["test'", "'test'''"],
    [raw`test\'`, raw`'test\\'''`],
    [raw`test\'\'`, raw`'test\\''\\'''`],
    ["", "''"],
    ['a "b"', `'a "b"'`],
  ])("%p -> %p", (input, output) => {
    expect(escapeConfValue(input)).toBe(output);
  });
});

describe("pgQuote", () => {
  test.each([
    [raw`"name";\n select 1;`, raw`"""name"";\n select 1;"`],
    ["name", '"name"'],
    ["MyRole", '"MyRole"'],
    ["", '""'],
  ])("%p -> %p", (input, output) => {
    expect(pgQuote(input)).toBe(output);
  });

  test("is not idempotent", () => {
    expect(pgQuote(pgQuote("a"))).toBe('"""a"""');
  });
});

describe("pgQuoteDollar", () => {
  test.each([
    ["name", "$x$name$x$", "xx"],
    ["name$", "$x$name$$x$", "xx"],
    ["name$$", "$x$name$$$x$", "xx"],
    ["name$$$", "$x$name$$$$x$", "xx"],
    ["name$$$$", "$x$name$$$$$x$", "xx"],
    ["name$x$", "$xx$name$x$$xx$", "xxx"],
    ["x", "$xx$x$xx$", "xxx"],
    ["xx", "$xxx$xx$xxx$", "xxxx"],
    ["$x", "$xx$$x$xx$", "xxx"],
    ["x$", "$xx$x$$xx$", "xxx"],
    ["$x$", "$xx$$x$$xx$", "xxx"],
    ["xx$", "$xxx$xx$$xxx$", "xxxx"],
    ["$xx", "$xxx$$xx$xxx$", "xxxx"],
    ["$xx$", "$xxx$$xx$$xxx$", "xxxx"],
  ])("%p -> %p, outer %p", (input, quoted, outerTag) => {
    expect(pgQuoteDollar(input)).toEqual({ quoted, outerTag });
  });
});

const opt = (name: string, value: string | null, vartype: string): GenericOption => ({
  name,
  value,
  vartype,
});

describe("single options", () => {
  test.each([
    [opt("a", "x'y", "string"), "a = 'x''y'", "a 'x''y'"],
    [opt("a", raw`x\y`, "string"), raw`a = 'x\\y'`, raw`a E'x\\y'`],
    [opt("a", "on", "bool"), "a = on", "a on"],
    [opt("a", "x'y", "enum"), "a = x'y", "a x'y"],
    // Only the exact vartype "string" is quoted.
    [opt("a", "1MB", "String"), "a = 1MB", "a 1MB"],
    [opt("a", null, "string"), "a", "a"],
    [opt("a", "", "string"), "a = ''", "a ''"],
  ])("%j", (option, setting, sql) => {
    expect(renderSetting(option)).toBe(setting);
    expect(renderSqlOption(option)).toBe(sql);
  });
});

describe("option lists", () => {
  const list = [
    opt("fsync", "off", "bool"),
    opt("name", "it's", "string"),
    opt("bare", null, "int"),
  ];

  test.each([
    ["null", null, ""],
    ["undefined", undefined, ""],
    ["empty", [], "\n"],
    ["one", [opt("a", "1", "int")], "a = 1\n"],
    ["three", list, "fsync = off\nname = 'it''s'\nbare\n"],
  ])("settings: %s list", (_label, input, output) => {
    expect(renderSettingsConf(input)).toBe(output);
  });

  test.each([
    ["null", null, ""],
    ["undefined", undefined, ""],
    ["empty", [], ""],
    ["three", list, "fsync off name 'it''s' bare"],
  ])("sql options: %s list", (_label, input, output) => {
    expect(renderSqlOptions(input)).toBe(output);
  });
});

const fixturePath = fileURLToPath(
  new URL("../../../shared/fixtures/neon/compute_api_cluster_spec.json", import.meta.url),
);
const spec = parseComputeSpec(parseJsonText(await readFile(fixturePath, "utf8")));

describe("fixture compute_api_cluster_spec.json", () => {
  test("settings_serialize", () => {
    const expected = [
      "fsync = off",
      "wal_level = logical",
      "hot_standby = on",
      "autoprewarm = off",
      "offload_lfc_interval_seconds = 20",
      "neon.safekeepers = '127.0.0.1:6502,127.0.0.1:6503,127.0.0.1:6501'",
      "wal_log_hints = on",
      "log_connections = on",
      "shared_buffers = 32768",
      "port = 55432",
      "max_connections = 100",
      "max_wal_senders = 10",
      "listen_addresses = '0.0.0.0'",
      "wal_sender_timeout = 0",
      "password_encryption = md5",
      "maintenance_work_mem = 65536",
      "max_parallel_workers = 8",
      "max_worker_processes = 8",
      "neon.tenant_id = 'b0554b632bd4d547a63b86c3630317e8'",
      "max_replication_slots = 10",
      "neon.timeline_id = '2414a61ffc94e428f14b5758fe308e13'",
      "shared_preload_libraries = 'neon'",
      "synchronous_standby_names = 'walproposer'",
      "neon.pageserver_connstring = 'host=127.0.0.1 port=6400'",
      raw`test.escaping = 'here''s a backslash \\ and a quote '' and a double-quote " hooray'`,
    ];
    expect(renderSettingsConf(spec.cluster.settings)).toBe(`${expected.join("\n")}\n`);
  });

  test("params_serialize: options of the first database", () => {
    const [db] = spec.cluster.databases;
    expect(renderSqlOptions(db?.options)).toBe("LC_COLLATE 'C' LC_CTYPE 'C' TEMPLATE template0");
  });
});
