// One error hierarchy for the whole binary. Each error knows how it surfaces:
// the process exit code (CLI/startup) and the HTTP status (API). The message is
// what an operator reads, so it names the flag, field or phase that is wrong.

export class ComputeCtlError extends Error {
  override readonly name: string = "ComputeCtlError";
  /** Exit status when this error ends the process. */
  readonly exitCode: number = 1;
  /** HTTP status when this error answers a request. */
  readonly httpStatus: number = 500;

  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
  }
}

/** Bad command line: message on stderr, exit 2 (clap's behaviour upstream). */
export class UsageError extends ComputeCtlError {
  override readonly name = "UsageError";
  override readonly exitCode = 2;
  override readonly httpStatus = 400;
}

/**
 * Invalid configuration or spec. `path` is the JSON path of the offending field
 * (e.g. `spec.suspend_timeout_seconds`) when there is one.
 */
export class ConfigError extends ComputeCtlError {
  override readonly name = "ConfigError";
  override readonly httpStatus = 400;
  readonly path: string | undefined;

  constructor(message: string, options?: { path?: string; cause?: unknown }) {
    super(message, options);
    this.path = options?.path;
  }
}

/** A request refused because of the compute's current status (upstream: 412). */
export class InvalidStatusError extends ComputeCtlError {
  override readonly name = "InvalidStatusError";
  override readonly httpStatus = 412;
}

/** An HTTP-only error with an explicit status (body parsing, auth, ...). */
export class HttpError extends ComputeCtlError {
  override readonly name = "HttpError";
  override readonly httpStatus: number;

  constructor(status: number, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.httpStatus = status;
  }
}

/** A wait that reached its deadline or was aborted. */
export class TimeoutError extends ComputeCtlError {
  override readonly name = "TimeoutError";
}

/** Text for an unknown thrown value, without a stack trace. */
export function errorMessage(err: unknown): string {
  if (err instanceof Error) return err.message;
  return String(err);
}

/**
 * Upstream renders startup failures with anyhow's Debug format: the outer
 * message, then `Caused by:` and the chain of causes. We build the same shape
 * from `Error.cause` so `/status.error` reads the same.
 */
export function errorChain(err: unknown): string {
  const messages: string[] = [];
  let cur: unknown = err;
  const seen = new Set<unknown>();
  while (cur !== undefined && cur !== null && !seen.has(cur)) {
    seen.add(cur);
    messages.push(errorMessage(cur));
    cur = cur instanceof Error ? cur.cause : undefined;
  }
  const [head, ...causes] = messages;
  if (causes.length === 0) return head ?? "";
  const lines = causes.length === 1 ? [`    ${causes[0]}`] : causes.map((c, i) => `    ${i}: ${c}`);
  return `${head}\n\nCaused by:\n${lines.join("\n")}`;
}
