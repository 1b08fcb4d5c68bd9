// Logging to stderr in the shape upstream's tracing subscriber prints:
// `<RFC 3339 UTC>  INFO <message>`. Callers grep these lines (e.g. `PG:` relays,
// `Changing compute status from ...`), so only the prefix format is ours.
import { createConsola, type LogObject } from "consola/core";

const LEVEL_NAMES: Record<number, string> = {
  0: "ERROR",
  1: "WARN",
  2: "INFO",
  3: "INFO",
  4: "DEBUG",
  5: "TRACE",
};

const LEVELS: Record<string, number> = { error: 0, warn: 1, info: 3, debug: 4, trace: 5 };

/**
 * Our level from a RUST_LOG-style filter: the bare directive (without `target=`)
 * sets it, the last one winning; per-target directives concern Rust crates and
 * are ignored. Default `info`.
 */
export function levelFromFilter(filter: string | undefined): number {
  let level = LEVELS.info ?? 3;
  for (const d of (filter ?? "").split(",")) {
    const v = LEVELS[d.trim().toLowerCase()];
    if (v !== undefined) level = v;
  }
  return level;
}

function levelFromEnv(): number {
  return levelFromFilter(process.env.RUST_LOG ?? process.env.COMPUTE_CTL_LOG);
}

function render(obj: LogObject): string {
  const level = LEVEL_NAMES[obj.level] ?? "INFO";
  const text = obj.args
    .map((a) => (a instanceof Error ? a.message : typeof a === "string" ? a : JSON.stringify(a)))
    .join(" ");
  return `${obj.date.toISOString()} ${level.padStart(5)} ${text}\n`;
}

export const log = createConsola({
  level: levelFromEnv(),
  reporters: [{ log: (obj) => process.stderr.write(render(obj)) }],
});

export type Logger = typeof log;

/** A logger that keeps its lines in memory: for tests that assert on log text. */
export function memoryLogger(): { log: Logger; lines: string[] } {
  const lines: string[] = [];
  const logger = createConsola({
    level: 5,
    reporters: [{ log: (obj) => lines.push(render(obj).trimEnd()) }],
  });
  return { log: logger, lines };
}
