// Quoting for the two languages compute_ctl writes: postgresql.conf values and
// SQL (identifiers, literals, dollar-quoted bodies). Upstream semantics and
// test vectors: upstream-api.md §3.8 and §3.11, upstream-lifecycle.md §2.7.
import type { GenericOption } from "../spec/schema.ts";

/** Doubles `'` and then `\`: the shared first step of both literal forms. */
function escapeQuotesAndBackslashes(s: string): string {
  return s.replaceAll("'", "''").replaceAll("\\", "\\\\");
}

/** A postgresql.conf value: always `'...'`, never `E'...'`. */
export function escapeConfValue(s: string): string {
  return `'${escapeQuotesAndBackslashes(s)}'`;
}

/**
 * A SQL string literal. Backslashes are doubled, which only means "one
 * backslash" in an escape string, hence the `E` prefix whenever one occurs.
 */
export function escapeLiteral(s: string): string {
  const body = escapeQuotesAndBackslashes(s);
  return body.includes("\\") ? `E'${body}'` : `'${body}'`;
}

/** A SQL identifier, always quoted (so case and odd characters survive). */
export function pgQuote(ident: string): string {
  return `"${ident.replaceAll('"', '""')}"`;
}

export interface DollarQuoted {
  /** `$tag$text$tag$`. */
  quoted: string;
  /** A longer tag, free for an enclosing `DO $outer$ ... $outer$` block. */
  outerTag: string;
}

/**
 * Dollar quoting with a tag of `x`s that does not occur in `s` at all (a
 * plain substring test, stricter than needed but what upstream does).
 */
export function pgQuoteDollar(s: string): DollarQuoted {
  let tag = "x";
  while (s.includes(tag)) tag += "x";
  return { quoted: `$${tag}$${s}$${tag}$`, outerTag: `${tag}x` };
}

/** One postgresql.conf line: only vartype `string` is quoted. */
export function renderSetting(option: GenericOption): string {
  if (option.value === null) return option.name;
  if (option.vartype === "string") return `${option.name} = ${escapeConfValue(option.value)}`;
  return `${option.name} = ${option.value}`;
}

/** One option of CREATE/ALTER ROLE or DATABASE. */
export function renderSqlOption(option: GenericOption): string {
  if (option.value === null) return option.name;
  if (option.vartype === "string") return `${option.name} ${escapeLiteral(option.value)}`;
  return `${option.name} ${option.value}`;
}

/**
 * The settings block of postgresql.conf: one line per setting, each ending in
 * `\n`. An empty list still yields one `\n` (upstream joins, then appends a
 * newline); a missing list yields nothing.
 */
export function renderSettingsConf(settings: readonly GenericOption[] | null | undefined): string {
  if (settings === null || settings === undefined) return "";
  return `${settings.map(renderSetting).join("\n")}\n`;
}

/** Role/database options joined by single spaces; a missing list yields "". */
export function renderSqlOptions(options: readonly GenericOption[] | null | undefined): string {
  if (options === null || options === undefined) return "";
  return options.map(renderSqlOption).join(" ");
}
