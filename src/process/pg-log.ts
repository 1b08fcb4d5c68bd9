// Relay of postgres' stderr as upstream does it (pg_helpers.rs ::
// handle_postgres_logs_async): one `PG:` line per log record, continuation
// lines joined with U+200B, so log collectors see a multi-line record (a
// query, a DETAIL) as one line. Callers grep for `PG:`.

import { stderr } from "../log.ts";

/** A postgres log line that starts a new record (log_line_prefix starts with %m or %t). */
export const PG_RECORD_START = /^\d+-\d{2}-\d{2} \d{2}:\d{2}:\d{2}/;
export const PG_LINE_JOINER = "\u200B";
export const PG_IDLE_FLUSH_MS = 100;

/** setTimeout/clearTimeout, injectable so tests need not sleep (fake-runner.ts ManualScheduler). */
export interface Scheduler {
  setTimeout(fn: () => void, ms: number): unknown;
  clearTimeout(handle: unknown): void;
}

export const realScheduler: Scheduler = {
  setTimeout: (fn, ms) => setTimeout(fn, ms),
  clearTimeout: (h) => clearTimeout(h as ReturnType<typeof setTimeout>),
};

/** Upstream writes each record straight to its stderr, bypassing the logger (same stream, same order). */
export function writeToStderr(record: string): void {
  stderr.write(`${record}\n`);
}

export interface PgLogOptions {
  /** Receives `PG:<record>` without a newline; default writeToStderr. */
  write?: (record: string) => void;
  idleMs?: number;
  scheduler?: Scheduler;
}

/**
 * The record assembler, synchronous so it can be tested step by step: feed
 * lines, call `end()` at EOF. A pending record is flushed when a new record
 * starts, at end, or after `idleMs` without a line.
 */
export class PgLogRelay {
  private readonly write: (record: string) => void;
  private readonly idleMs: number;
  private readonly scheduler: Scheduler;
  private pending: string[] = [];
  private timer: unknown;

  constructor(options: PgLogOptions = {}) {
    this.write = options.write ?? writeToStderr;
    this.idleMs = options.idleMs ?? PG_IDLE_FLUSH_MS;
    this.scheduler = options.scheduler ?? realScheduler;
  }

  line(text: string): void {
    this.cancelTimer();
    if (PG_RECORD_START.test(text)) this.flush();
    this.pending.push(text);
    this.timer = this.scheduler.setTimeout(() => {
      this.timer = undefined;
      this.flush();
    }, this.idleMs);
  }

  end(): void {
    this.cancelTimer();
    this.flush();
  }

  flush(): void {
    if (this.pending.length === 0) return;
    const record = this.pending.join(PG_LINE_JOINER);
    this.pending = [];
    this.write(`PG:${record}`);
  }

  private cancelTimer(): void {
    if (this.timer !== undefined) this.scheduler.clearTimeout(this.timer);
    this.timer = undefined;
  }
}

/**
 * Relays every line until EOF (usually `child.stderrLines()` of the
 * postmaster). The pending record is flushed even when reading fails; the
 * error then propagates.
 */
export async function relayPostgresLog(
  lines: AsyncIterable<string>,
  options: PgLogOptions = {},
): Promise<void> {
  const relay = new PgLogRelay(options);
  try {
    for await (const l of lines) relay.line(l);
  } finally {
    relay.end();
  }
}
