// Log sequence numbers: a u64 on the wire as "<hi>/<lo>" (two u32 halves in hex).
import { ConfigError } from "../errors.ts";

/** A Postgres WAL position, 0..2^64-1. */
export type Lsn = bigint;

export const INVALID_LSN: Lsn = 0n;
export const MAX_LSN: Lsn = (1n << 64n) - 1n;

// Upstream parses each half with `u32::from_str_radix`, which also takes a
// leading `+` and leading zeros; accept the same inputs.
const HALF = /^\+?[0-9A-Fa-f]+$/;
const U32_MAX = 0xffff_ffffn;

function parseHalf(text: string): bigint | undefined {
  if (!HALF.test(text)) return undefined;
  const value = BigInt(`0x${text.startsWith("+") ? text.slice(1) : text}`);
  return value <= U32_MAX ? value : undefined;
}

/** Parses `"X/Y"`; `undefined` when the text is not an LSN. */
export function tryParseLsn(text: string): Lsn | undefined {
  const parts = text.trim().split("/");
  if (parts.length !== 2) return undefined;
  const hi = parseHalf(parts[0] ?? "");
  const lo = parseHalf(parts[1] ?? "");
  if (hi === undefined || lo === undefined) return undefined;
  return (hi << 32n) | lo;
}

export function invalidLsnMessage(text: string): string {
  return `invalid LSN ${JSON.stringify(text)} (expected "<hex>/<hex>", e.g. "0/16B5BA8")`;
}

/** Parses `"X/Y"` (whitespace trimmed, hex in any case); throws `ConfigError`. */
export function parseLsn(text: string): Lsn {
  const lsn = tryParseLsn(text);
  if (lsn === undefined) throw new ConfigError(invalidLsnMessage(text));
  return lsn;
}

/** Upstream's display form: uppercase hex halves without padding, e.g. `0/16B5BA8`. */
export function formatLsn(lsn: Lsn): string {
  if (lsn < 0n || lsn > MAX_LSN) throw new RangeError(`LSN out of range: ${lsn}`);
  const hi = (lsn >> 32n).toString(16).toUpperCase();
  const lo = (lsn & U32_MAX).toString(16).toUpperCase();
  return `${hi}/${lo}`;
}
