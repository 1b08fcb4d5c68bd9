// Turning untrusted JSON into typed values. Every failure is a ConfigError whose
// message starts with the JSON path of the first bad field (also in `.path`).
import { open } from "node:fs/promises";
import * as v from "valibot";
import { ConfigError, errorMessage } from "../errors.ts";
import { findJsonSyntaxError } from "./json-syntax.ts";
import { defaultIssueMessage, formatJsonPath, issuePathKeys, jsonType } from "./messages.ts";
import {
  type ComputeConfig,
  ComputeConfigSchema,
  type ComputeSpec,
  ComputeSpecSchema,
  type ConfigurationRequest,
  ConfigurationRequestSchema,
  type ControlPlaneConfigResponse,
  ControlPlaneConfigResponseSchema,
  type PromoteConfig,
  PromoteConfigSchema,
} from "./schema.ts";

type AnySchema = v.GenericSchema<unknown, unknown>;

/** Runs `schema` and throws a ConfigError naming the first bad field. */
export function parseWith<TSchema extends AnySchema>(
  schema: TSchema,
  value: unknown,
  pathPrefix: readonly (string | number)[] = [],
): v.InferOutput<TSchema> {
  const result = v.safeParse(schema, value, { abortEarly: true, message: defaultIssueMessage });
  if (result.success) return result.output;
  const [issue] = result.issues;
  if (issue === undefined) throw new ConfigError("invalid value");
  const path = formatJsonPath([...pathPrefix, ...issuePathKeys(issue)]);
  if (path === "") throw new ConfigError(issue.message);
  throw new ConfigError(`${path}: ${issue.message}`, { path });
}

/** `{spec?, compute_ctl_config}`: the `-c/--config` file. */
export function parseComputeConfig(value: unknown): ComputeConfig {
  return parseWith(ComputeConfigSchema, value);
}

/** `{spec, compute_ctl_config}`: the body of `POST /configure`. */
export function parseConfigurationRequest(value: unknown): ConfigurationRequest {
  return parseWith(ConfigurationRequestSchema, value);
}

/** `{spec?, status, compute_ctl_config}`: the control plane's answer. */
export function parseControlPlaneResponse(value: unknown): ControlPlaneConfigResponse {
  return parseWith(ControlPlaneConfigResponseSchema, value);
}

/** `{spec, wal_flush_lsn}`: the body of `POST /promote`. */
export function parsePromoteConfig(value: unknown): PromoteConfig {
  return parseWith(PromoteConfigSchema, value);
}

/** A bare ComputeSpec; paths are relative to `pathPrefix` (none by default). */
export function parseComputeSpec(
  value: unknown,
  pathPrefix: readonly (string | number)[] = [],
): ComputeSpec {
  return parseWith(ComputeSpecSchema, value, pathPrefix);
}

/**
 * JSON.parse with a ConfigError that says where the text is broken:
 * `invalid JSON at line 3 column 7: expected ',' or '}', found "x"`.
 */
export function parseJsonText(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch (e) {
    const found = findJsonSyntaxError(text);
    if (found === undefined) throw new ConfigError(`invalid JSON: ${errorMessage(e)}`);
    throw new ConfigError(
      `invalid JSON at line ${found.line} column ${found.column}: ${found.reason}`,
    );
  }
}

/** Config files above this size are refused before they are read. */
export const MAX_CONFIG_FILE_BYTES = 16 * 1024 * 1024;

function formatBytes(n: number): string {
  return n % (1024 * 1024) === 0 ? `${n / (1024 * 1024)} MiB` : `${n} bytes`;
}

function ioReason(e: unknown): string {
  const code = typeof e === "object" && e !== null && "code" in e ? String(e.code) : "";
  switch (code) {
    case "ENOENT":
      return "no such file";
    case "EACCES":
    case "EPERM":
      return "permission denied";
    case "EISDIR":
      return "is a directory, not a file";
    case "ENOTDIR":
      return "a parent of this path is not a directory";
    case "ELOOP":
      return "too many levels of symbolic links";
    default:
      return `cannot read: ${code === "" ? errorMessage(e) : code}`;
  }
}

/** Reads at most `maxBytes` (fails beyond) without trusting the size stat reports. */
async function readBounded(path: string, maxBytes: number): Promise<Uint8Array> {
  const tooLarge = (size: string) =>
    `file is larger than the ${formatBytes(maxBytes)} limit (${size})`;
  const handle = await open(path, "r");
  try {
    const st = await handle.stat();
    if (st.isDirectory()) throw new ConfigError("is a directory, not a file");
    if (st.size > maxBytes) throw new ConfigError(tooLarge(`${st.size} bytes`));
    // stat can under-report (pipes, /proc); read in chunks and stop past the limit.
    const chunks: Uint8Array[] = [];
    let total = 0;
    for (;;) {
      const buf = new Uint8Array(Math.min(64 * 1024, maxBytes + 1 - total));
      const { bytesRead } = await handle.read(buf, 0, buf.length, null);
      if (bytesRead === 0) break;
      chunks.push(buf.subarray(0, bytesRead));
      total += bytesRead;
      if (total > maxBytes) throw new ConfigError(tooLarge(`more than ${maxBytes} bytes`));
    }
    return Buffer.concat(chunks);
  } finally {
    await handle.close();
  }
}

/**
 * Loads and validates a `ComputeConfig` file (`compute_ctl -c`). Errors are one
 * line and start with `config file <path>: `; shape errors also carry `.path`.
 */
export async function loadConfigFile(
  path: string,
  opts: { maxBytes?: number } = {},
): Promise<ComputeConfig> {
  const prefix = `config file ${path}`;
  const maxBytes = opts.maxBytes ?? MAX_CONFIG_FILE_BYTES;
  let bytes: Uint8Array;
  try {
    bytes = await readBounded(path, maxBytes);
  } catch (e) {
    const reason = e instanceof ConfigError ? e.message : ioReason(e);
    throw new ConfigError(`${prefix}: ${reason}`, { cause: e });
  }
  let text: string;
  try {
    text = new TextDecoder("utf-8", { fatal: true }).decode(bytes);
  } catch (e) {
    throw new ConfigError(`${prefix}: not valid UTF-8 text`, { cause: e });
  }
  if (text.trim() === "") throw new ConfigError(`${prefix}: file is empty`);
  try {
    const value = parseJsonText(text);
    if (typeof value !== "object" || value === null || Array.isArray(value)) {
      throw new ConfigError(`expected a JSON object, got ${jsonType(value)}`);
    }
    return parseComputeConfig(value);
  } catch (e) {
    if (!(e instanceof ConfigError)) throw e;
    throw new ConfigError(`${prefix}: ${e.message}`, { cause: e, path: e.path });
  }
}
