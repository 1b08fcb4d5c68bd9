import { describe, expect, test } from "bun:test";
import { ConfigError } from "../errors.ts";
import {
  formatShardIndex,
  formatTenantShardId,
  parseShardIndex,
  parseTenantId,
  parseTimelineId,
  type TenantId,
  tryParseShardIndex,
  tryParseTenantId,
} from "./ids.ts";

describe("tenant and timeline ids", () => {
  test("lowercases any-case hex", () => {
    expect(parseTenantId("B0554B632BD4D547A63B86C3630317E8")).toBe(
      "b0554b632bd4d547a63b86c3630317e8" as TenantId,
    );
    expect(parseTimelineId("2414a61ffc94e428f14b5758fe308e13") as string).toBe(
      "2414a61ffc94e428f14b5758fe308e13",
    );
  });

  test.each([
    "",
    "TENANT_ID",
    "b0554b632bd4d547a63b86c3630317e",
    "b0554b632bd4d547a63b86c3630317e8a",
    "g0554b632bd4d547a63b86c3630317e8",
    " b0554b632bd4d547a63b86c3630317e8",
  ])("rejects %p", (text) => {
    expect(tryParseTenantId(text)).toBeUndefined();
    expect(() => parseTenantId(text)).toThrow(ConfigError);
  });

  test("messages", () => {
    expect(() => parseTenantId("TENANT_ID")).toThrow(
      'invalid tenant id "TENANT_ID" (expected 32 hex characters)',
    );
    expect(() => parseTimelineId("x")).toThrow(
      'invalid timeline id "x" (expected 32 hex characters)',
    );
  });
});

describe("ShardIndex", () => {
  test.each([
    [0, 0, "0000"],
    [0, 2, "0002"],
    [1, 2, "0102"],
    [1, 4, "0104"],
    [10, 255, "0aff"],
  ])("shard %p of %p is %p", (n, c, key) => {
    expect(formatShardIndex(n, c)).toBe(key);
    expect(parseShardIndex(key)).toEqual({ shardNumber: n, shardCount: c });
  });

  test("parses uppercase, rejects other lengths", () => {
    expect(tryParseShardIndex("0AFF")).toEqual({ shardNumber: 10, shardCount: 255 });
    expect(tryParseShardIndex("000")).toBeUndefined();
    expect(tryParseShardIndex("00000")).toBeUndefined();
    expect(() => parseShardIndex("zz")).toThrow('invalid shard index "zz"');
  });

  test("format rejects non-u8", () => {
    expect(() => formatShardIndex(256, 0)).toThrow(RangeError);
    expect(() => formatShardIndex(-1, 0)).toThrow(RangeError);
  });

  test("TenantShardId display", () => {
    const t = parseTenantId("b0554b632bd4d547a63b86c3630317e8");
    expect(formatTenantShardId(t, { shardNumber: 0, shardCount: 0 })).toBe(t);
    expect(formatTenantShardId(t, { shardNumber: 1, shardCount: 4 })).toBe(`${t}-0104`);
  });
});
