// Logging to stderr in the shape upstream's tracing subscriber prints:
// `<RFC 3339 UTC>  INFO <message>`. Callers grep these lines (e.g. `PG:` relays,
// `Changing compute status from ...`), so only the prefix format is ours.
import { writeSync } from "node:fs";
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
const LOG_INFO = 3;

/**
 * Our level from a RUST_LOG-style filter: the bare directive (without `target=`)
 * sets it, the last one winning; per-target directives concern Rust crates and
 * are ignored. Default `info`.
 */
export function levelFromFilter(filter: string | undefined): number {
  let level = LOG_INFO;
  for (const d of (filter ?? "").split(",")) {
    const v = LEVELS[d.trim().toLowerCase()];
    if (v !== undefined) level = v;
  }
  return level;
}

function levelFromEnv(): number {
  return levelFromFilter(process.env.RUST_LOG ?? process.env.COMPUTE_CTL_LOG);
}

/** `toISOString` of the log timestamps, remembered for the millisecond it is about. */
export function isoTimestamp(date: Date): string {
  return isoTimestampAt(date.getTime());
}

function isoTimestampAt(ms: number): string {
  if (ms !== lastStampMs) {
    lastStampMs = ms;
    lastStamp = new Date(ms).toISOString();
  }
  return lastStamp;
}
let lastStampMs = Number.NaN;
let lastStamp = "";

function line(date: Date, level: string, text: string): string {
  return `${isoTimestamp(date)} ${level.padStart(5)} ${text}\n`;
}

function render(obj: LogObject): string {
  const text = obj.args
    .map((a) => (a instanceof Error ? a.message : typeof a === "string" ? a : JSON.stringify(a)))
    .join(" ");
  return line(obj.date, LEVEL_NAMES[obj.level] ?? "INFO", text);
}

/** Where each of our loggers puts a rendered line, for `infoLine`. */
const lineSinks = new WeakMap<object, (rendered: string) => void>();

/**
 * `logger.info(text)` for the one line logged per HTTP request: the same line,
 * handed straight to the logger's output. consola's per-call work (log object,
 * type resolution) was a sixth of a /status answer's CPU.
 */
export function infoLine(logger: Logger, text: string): void {
  if (logger.level < LOG_INFO) return;
  const sink = lineSinks.get(logger);
  if (sink) sink(`${isoTimestampAt(Date.now())}  INFO ${text}\n`);
  else logger.info(text);
}

/**
 * Text for stderr, written once per event-loop turn: under load the API logs a
 * line per request, and this makes it one write(2) per ~60 lines instead of one
 * per line. Everything bound for stderr (log lines, `PG:` relays, the last
 * error) goes through here so the order holds; what is pending is written at
 * exit (an uncaught exception's trace, printed by the runtime, may come before
 * the lines of its own turn).
 */
export class BatchedWriter {
  private pending: string[] = [];
  private scheduled = false;

  constructor(
    private readonly sink: (text: string) => void,
    private readonly schedule: (flush: () => void) => void = setImmediate,
  ) {}

  write(text: string): void {
    this.pending.push(text);
    if (this.scheduled) return;
    this.scheduled = true;
    this.schedule(() => this.flush());
  }

  flush(): void {
    this.scheduled = false;
    if (this.pending.length === 0) return;
    const text = this.pending.length === 1 ? (this.pending[0] as string) : this.pending.join("");
    this.pending = [];
    this.sink(text);
  }
}

/**
 * Synchronous and complete, as upstream's stderr writes: process.stderr.write
 * queues what a full pipe does not take, and exit drops the queue (measured:
 * 20 000 lines logged before process.exit, ~500 arrived).
 */
export function writeStderrSync(text: string): void {
  let rest = Buffer.from(text);
  while (rest.length > 0) {
    try {
      rest = rest.subarray(writeSync(2, rest));
    } catch (e) {
      // Made non-blocking by someone else: let the stream queue the rest. Any
      // other failure (stderr closed) leaves nowhere to report it.
      if ((e as NodeJS.ErrnoException).code === "EAGAIN") process.stderr.write(rest);
      return;
    }
  }
}

export const stderr = new BatchedWriter(writeStderrSync);
process.on("exit", () => stderr.flush());

// consola's default throttle folds a line repeated within a second into
// "(repeated N times)" and JSON-encodes every line to find out; upstream's
// logger prints every line.
const NO_THROTTLE = { throttle: 0 } as const;

export const log = createConsola({
  ...NO_THROTTLE,
  level: levelFromEnv(),
  reporters: [{ log: (obj) => stderr.write(render(obj)) }],
});
lineSinks.set(log, (rendered) => stderr.write(rendered));

export type Logger = typeof log;

/** A logger that keeps its lines in memory: for tests that assert on log text. */
export function memoryLogger(): { log: Logger; lines: string[] } {
  const lines: string[] = [];
  const logger = createConsola({
    ...NO_THROTTLE,
    level: 5,
    reporters: [{ log: (obj) => lines.push(render(obj).trimEnd()) }],
  });
  lineSinks.set(logger, (rendered) => lines.push(rendered.trimEnd()));
  return { log: logger, lines };
}
