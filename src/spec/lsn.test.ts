import { describe, expect, test } from "bun:test";
import { ConfigError } from "../errors.ts";
import { formatLsn, MAX_LSN, parseLsn, tryParseLsn } from "./lsn.ts";

describe("parseLsn", () => {
  test.each([
    ["0/16B5BA8", 0x16b5ba8n],
    ["0/16b5ba8", 0x16b5ba8n],
    ["1/0", 1n << 32n],
    ["0/0", 0n],
    ["  A/b \n", (0xan << 32n) | 0xbn],
    ["FFFFFFFF/FFFFFFFF", MAX_LSN],
    ["00000000001/0", 1n << 32n],
    ["+1/+2", (1n << 32n) | 2n],
  ])("%p -> %p", (text, lsn) => {
    expect(parseLsn(text)).toBe(lsn);
  });

  test.each([
    "",
    "0",
    "16B5BA8",
    "0/1/2",
    "/1",
    "1/",
    "1/g",
    "-1/0",
    "100000000/0",
    "0/100000000",
    "0x1/0",
    "1 /0",
  ])("rejects %p", (text) => {
    expect(tryParseLsn(text)).toBeUndefined();
    expect(() => parseLsn(text)).toThrow(ConfigError);
  });

  test("error names the input and the expected form", () => {
    expect(() => parseLsn("zz")).toThrow(
      'invalid LSN "zz" (expected "<hex>/<hex>", e.g. "0/16B5BA8")',
    );
  });
});

describe("formatLsn", () => {
  test.each([
    [0n, "0/0"],
    [0x16b5ba8n, "0/16B5BA8"],
    [1n << 32n, "1/0"],
    [MAX_LSN, "FFFFFFFF/FFFFFFFF"],
  ])("%p -> %p", (lsn, text) => {
    expect(formatLsn(lsn)).toBe(text);
    expect(parseLsn(text)).toBe(lsn);
  });

  test("rejects values outside u64", () => {
    expect(() => formatLsn(-1n)).toThrow(RangeError);
    expect(() => formatLsn(MAX_LSN + 1n)).toThrow(RangeError);
  });
});
