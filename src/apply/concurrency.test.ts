// max_service_connections at startup and reconfigure_concurrency (upstream-api.md §3.6).
import { describe, expect, test } from "bun:test";
import { parseComputeSpec } from "../spec/parse.ts";
import type { ComputeSpec } from "../spec/schema.ts";
import { minimalSpecJson } from "../testing/specs.ts";
import { reconfigureConcurrency, specMaxConnections, startupConcurrency } from "./concurrency.ts";

function spec(
  settings: { name: string; value: string | null; vartype: string }[] | null,
  postgresql_conf: string | null = null,
  extra: Record<string, unknown> = {},
): ComputeSpec {
  return parseComputeSpec(
    minimalSpecJson({ cluster: { roles: [], databases: [], settings, postgresql_conf }, ...extra }),
  );
}

const setting = (value: string | null) => [{ name: "max_connections", value, vartype: "integer" }];

describe("startupConcurrency: the mapping", () => {
  test.each([
    [0, 0],
    [1, 1],
    [9, 9],
    [10, 10],
    [29, 10],
    [30, 10],
    [31, 10],
    [33, 11],
    [100, 33],
    [299, 99],
    [300, 100],
    [301, 100],
    [10000, 100],
  ])("max_connections %p -> %p", (max, want) => {
    expect(startupConcurrency(spec(setting(String(max))))).toBe(want);
    expect(startupConcurrency(spec(null, `max_connections = ${max}`))).toBe(want);
  });

  test.each([
    ["no settings, no postgresql_conf", spec(null)],
    ["other settings only", spec([{ name: "port", value: "5432", vartype: "integer" }])],
    ["unparsable setting", spec(setting("lots"))],
  ])("not found -> 10: %s", (_label, s) => {
    expect(specMaxConnections(s)).toBeNull();
    expect(startupConcurrency(s)).toBe(10);
  });
});

describe("specMaxConnections", () => {
  test.each([
    ["setting", setting("120"), null, 120],
    ["setting wins over postgresql_conf", setting("120"), "max_connections = 50", 120],
    ["setting without value: postgresql_conf", setting(null), "max_connections = 50", 50],
    // Upstream: a setting that does not parse means "not found", with no fallback.
    ["unparsable setting: no fallback", setting("lots"), "max_connections = 50", null],
    ["negative setting", setting("-5"), null, null],
    ["first of several settings", [...setting("40"), ...setting("90")], null, 40],
  ])("%s", (_label, settings, conf, want) => {
    expect(specMaxConnections(spec(settings, conf))).toBe(want);
  });

  test.each([
    ["no spaces", "max_connections=200", 200],
    ["spaces and tabs around", "  max_connections \t=\t 42  ", 42],
    ["among other lines", "port=5432\nmax_connections = 77\nfsync=off", 77],
    ["CRLF line ends", "port=5432\r\nmax_connections = 40\r\nfsync=off\r\n", 40],
    ["first parsable line wins", "max_connections = 60\nmax_connections = 70", 60],
    ["commented out", "#max_connections = 7", null],
    ["key must be exact", "superuser_max_connections = 5\nmax_connections_x = 6", null],
    ["other key, then the real one", "my.max_connections = 5\nmax_connections = 33", 33],
    [
      "trailing comment does not parse: ignored",
      "max_connections = 100 # c\nmax_connections = 45",
      45,
    ],
    ["unparsable ignored", "max_connections = lots\nmax_connections=12", 12],
    ["negative ignored", "max_connections = -5", null],
    ["quoted ignored", "max_connections = '50'", null],
    ["empty value ignored", "max_connections =", null],
    ["no '=' ignored", "max_connections 50\nmax_connections=8", 8],
    ["split at the first '='", "max_connections = 1=2", null],
    ["empty", "", null],
  ])("postgresql_conf: %s", (_label, conf, want) => {
    expect(specMaxConnections(spec(null, conf))).toBe(want);
  });

  // Rust's usize::from_str accepts a leading '+', so upstream reads 100 here.
  test("a leading '+' parses, as Rust's usize does", () => {
    expect(specMaxConnections(spec(setting("+100")))).toBe(100);
    expect(specMaxConnections(spec(null, "max_connections = +100"))).toBe(100);
  });
});

describe("reconfigureConcurrency", () => {
  test.each([
    [{}, 1],
    [{ reconfigure_concurrency: 4 }, 4],
    [{ reconfigure_concurrency: 1 }, 1],
  ])("%j -> %p", (extra, want) => {
    // max_connections plays no part on /configure.
    expect(reconfigureConcurrency(spec(setting("300"), null, extra))).toBe(want);
  });
});
