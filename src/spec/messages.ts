// Wording shared by the schemas and the parsers, so every rejection reads the
// same way: `<json path>: expected <what>, got <what>` or `<json path>: missing`.
import type * as v from "valibot";

/** JSON type name of a parsed JSON value (`array` and `null` kept apart from `object`). */
export function jsonType(value: unknown): string {
  if (value === null) return "null";
  if (value === undefined) return "nothing";
  if (Array.isArray(value)) return "array";
  return typeof value;
}

/** Short rendering of a wrong value: literals for scalars, the type name otherwise. */
export function showValue(value: unknown): string {
  if (typeof value === "string")
    return JSON.stringify(value.length > 80 ? `${value.slice(0, 77)}...` : value);
  if (typeof value === "number" || typeof value === "boolean" || value === null)
    return String(value);
  return jsonType(value);
}

export function isJsonObject(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

const EXPECTED_BY_SCHEMA: Record<string, string> = {
  string: "string",
  number: "number",
  boolean: "boolean",
  array: "array",
  object: "object",
  loose_object: "object",
  record: "object",
};

/**
 * Fallback message for valibot issues that carry no message of their own
 * (type mismatches and missing keys). Passed as `config.message`.
 */
export function defaultIssueMessage(issue: v.BaseIssue<unknown>): string {
  const isMissingKey =
    (issue.type === "object" || issue.type === "loose_object") &&
    issue.input === undefined &&
    issue.path !== undefined &&
    issue.path.length > 0;
  if (isMissingKey) return "missing";
  const expected = EXPECTED_BY_SCHEMA[issue.type] ?? issue.expected ?? issue.type;
  return `expected ${expected}, got ${jsonType(issue.input)}`;
}

const IDENTIFIER = /^[A-Za-z_][A-Za-z0-9_]*$/;

/** `spec.cluster.roles[2].name`; keys that are not identifiers become `["0000"]`. */
export function formatJsonPath(keys: readonly (string | number)[]): string {
  let out = "";
  for (const key of keys) {
    if (typeof key === "number") out += `[${key}]`;
    else if (IDENTIFIER.test(key)) out += out === "" ? key : `.${key}`;
    else out += `[${JSON.stringify(key)}]`;
  }
  return out;
}

/** Keys of a valibot issue path (object keys, array indexes, record keys). */
export function issuePathKeys(issue: v.BaseIssue<unknown>): (string | number)[] {
  const keys: (string | number)[] = [];
  for (const item of issue.path ?? []) {
    const key: unknown = item.key;
    if (typeof key === "string" || typeof key === "number") keys.push(key);
  }
  return keys;
}
