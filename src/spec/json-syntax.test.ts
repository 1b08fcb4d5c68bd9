import { describe, expect, test } from "bun:test";
import { findJsonSyntaxError } from "./json-syntax.ts";

describe("findJsonSyntaxError", () => {
  test.each([
    "{}",
    "[]",
    ' { "a" : [1, -2.5e3, true, false, null, "x\\n\\u00e9"] , "b": {} } ',
    "0",
    '"s"',
  ])("valid: %p", (text) => {
    expect(findJsonSyntaxError(text)).toBeUndefined();
  });

  test.each([
    ['{"a": 1,}', 1, 9, 'expected a string key, found "}"'],
    ['{\n  "a": 1\n  "b": 2\n}', 3, 3, "expected ',' or '}', found \"\\\"\""],
    ["[1, 2", 1, 6, "expected ',' or ']', found end of input"],
    ["", 1, 1, "unexpected end of input, expected a value"],
    ['{"a" 1}', 1, 6, "expected ':', found \"1\""],
    ["{} x", 1, 4, 'trailing characters after the JSON value, found "x"'],
    ['{"a": tru}', 1, 7, 'expected a value, found "t"'],
    ['{"a": "x', 1, 9, "unterminated string"],
    ['["\\q"]', 1, 3, "invalid escape"],
    ["[-]", 1, 2, "invalid number"],
    ["{'a': 1}", 1, 2, "expected a string key or '}', found \"'\""],
  ])("%p -> line %p column %p", (text, line, column, reason) => {
    const err = findJsonSyntaxError(text);
    expect(err).toMatchObject({ line, column, reason });
    // Whatever we call broken, JSON.parse must refuse too.
    expect(() => JSON.parse(text)).toThrow();
  });

  test("deep nesting does not overflow the stack", () => {
    const text = `${"[".repeat(200_000)}1`;
    expect(findJsonSyntaxError(text)?.reason).toBe("expected ',' or ']', found end of input");
  });
});
