// Child processes behind a small interface (the Effect CommandExecutor shape):
// startup code asks a ProcessRunner for a ChildProcess, so unit tests can run a
// fake postmaster (fake-runner.ts) and process-level tests the real one
// (bun-runner.ts).

import { constants } from "node:os";
import { ComputeCtlError } from "../errors.ts";

/** The identity a child runs as (see user.ts). */
export interface RunAs {
  readonly uid: number;
  readonly gid: number;
  readonly name: string;
  readonly home: string;
}

export type StdoutMode = "lines" | "inherit" | "ignore";

export interface SpawnSpec {
  /** Program and arguments; `cmd[0]` is looked up in PATH. */
  cmd: string[];
  /** Added on top of the inherited environment (upstream: "inherited + X"). */
  env?: Record<string, string>;
  cwd?: string;
  /** Run as this user: uid/gid plus HOME/USER/LOGNAME. Null/undefined: as ourselves. */
  user?: RunAs | null;
  /** Default "ignore". */
  stdin?: "ignore" | "pipe";
  /**
   * Default "inherit". With "lines" the caller must read `stdoutLines()`: an
   * unread pipe fills up and blocks the child.
   */
  stdout?: StdoutMode;
  /** Default "inherit". */
  stderr?: StdoutMode;
  /** New session and process group (setsid), so `kill(sig, {group: true})` reaches grandchildren. */
  detached?: boolean;
}

/** How a child ended: exactly one of `code` and `signal` is non-null. */
export interface ExitStatus {
  readonly code: number | null;
  readonly signal: string | null;
}

export type Signal = NodeJS.Signals | number;

export interface StdinWriter {
  /** Writes and flushes. Writing after the child exited is silently dropped by Bun. */
  write(data: string | Uint8Array): Promise<void>;
  end(): Promise<void>;
}

export interface ChildProcess {
  readonly pid: number;
  readonly command: readonly string[];
  /** Resolves when the child exits; independent of who still holds its stdout/stderr. Never rejects. */
  readonly exited: Promise<ExitStatus>;
  /**
   * Sends a signal; false when the child has already exited (never signals a
   * reused pid). `group: true` signals the process group (useful with `detached`).
   */
  kill(signal?: Signal, options?: { group?: boolean }): boolean;
  /**
   * stdout lines as they arrive, newline stripped, the final partial line at
   * EOF. Only with `stdout: "lines"`, and only once. EOF waits for every holder
   * of the pipe (grandchildren included), so it can come after `exited`.
   */
  stdoutLines(): AsyncIterable<string>;
  /** As stdoutLines, for stderr; the lines read are also kept for `stderrTail`. */
  stderrLines(): AsyncIterable<string>;
  /** The last stderr lines read so far through `stderrLines` (for ChildError). */
  stderrTail(): string[];
  /** Present when spawned with `stdin: "pipe"`. */
  readonly stdin: StdinWriter | null;
}

export interface ProcessRunner {
  /** Starts a child. Throws SpawnError (and nothing else) when it cannot be started. */
  spawn(spec: SpawnSpec): ChildProcess;
}

/** Where spawned pids are announced, so the PID 1 reaper leaves them to Bun (reaper.ts). */
export interface SpawnedPids {
  add(pid: number): void;
  delete(pid: number): void;
}

/** Kept by ChildProcess implementations for `stderrTail`. */
export const STDERR_TAIL_LINES = 20;

/** Renders a command for messages: arguments with spaces or quotes are single-quoted. */
export function formatCommand(cmd: readonly string[]): string {
  return cmd
    .map((a) => (a === "" || /[\s'"\\$`]/.test(a) ? `'${a.replaceAll("'", "'\\''")}'` : a))
    .join(" ");
}

/** The child could not be started (ENOENT, EACCES, bad cwd, ...). */
export class SpawnError extends ComputeCtlError {
  override readonly name = "SpawnError";
  readonly command: readonly string[];
  /** errno name when known, e.g. "ENOENT". */
  readonly code: string | undefined;

  constructor(command: readonly string[], cause: unknown) {
    const code = errnoCode(cause);
    const reason = cause instanceof Error ? cause.message : String(cause);
    super(`failed to start ${formatCommand(command)}: ${reason}`, { cause });
    this.command = command;
    this.code = code;
  }
}

function errnoCode(err: unknown): string | undefined {
  if (typeof err === "object" && err !== null && "code" in err && typeof err.code === "string") {
    return err.code;
  }
  return undefined;
}

/** A child that ran and failed: carries what an operator needs to see why. */
export class ChildError extends ComputeCtlError {
  override readonly name = "ChildError";
  readonly command: readonly string[];
  readonly status: ExitStatus;
  readonly stderrTail: readonly string[];

  constructor(
    command: readonly string[],
    status: ExitStatus,
    options?: { stderrTail?: readonly string[]; message?: string; cause?: unknown },
  ) {
    super(
      options?.message ??
        `${formatCommand(command)} exited with non-zero status: ${formatExitStatus(status)}`,
      { cause: options?.cause },
    );
    this.command = command;
    this.status = status;
    this.stderrTail = options?.stderrTail ?? [];
  }

  /** The child's exit code (null when killed); `exitCode` is ours, for the CLI. */
  get childCode(): number | null {
    return this.status.code;
  }

  get signal(): string | null {
    return this.status.signal;
  }
}

/** Signal number for a name like "SIGTERM" (or "SIG64" for unnamed ones); undefined if unknown. */
export function signalNumber(name: string): number | undefined {
  const known = (constants.signals as Record<string, number | undefined>)[name];
  if (known !== undefined) return known;
  const m = /^SIG(\d+)$/.exec(name);
  return m?.[1] === undefined ? undefined : Number(m[1]);
}

/** Signal name for a number; unnamed ones (real-time signals) become "SIG<n>". */
export function signalName(signo: number): string {
  for (const [name, n] of Object.entries(constants.signals)) if (n === signo) return name;
  return `SIG${signo}`;
}

/** The shell's view: the exit code, or 128+signal number when killed. */
export function shellExitCode(status: ExitStatus): number {
  if (status.code !== null) return status.code;
  const n = status.signal === null ? undefined : signalNumber(status.signal);
  return 128 + (n ?? 0);
}

export function isSuccess(status: ExitStatus): boolean {
  return status.code === 0;
}

/** Rust's `ExitStatus` Display, which upstream error messages embed. */
export function formatExitStatus(status: ExitStatus): string {
  if (status.code !== null) return `exit status: ${status.code}`;
  const n = status.signal === null ? undefined : signalNumber(status.signal);
  return `signal: ${n ?? "?"} (${status.signal ?? "unknown"})`;
}

/** Environment for a child: ours, then the user's identity, then the spec's additions. */
export function childEnv(
  spec: Pick<SpawnSpec, "env" | "user">,
  base: Record<string, string | undefined> = process.env,
): Record<string, string> {
  const env: Record<string, string> = {};
  for (const [k, v] of Object.entries(base)) if (v !== undefined) env[k] = v;
  if (spec.user) Object.assign(env, identityEnv(spec.user));
  return Object.assign(env, spec.env);
}

/** Environment entries a login as `user` would have (Bun.spawn does not set them). */
export function identityEnv(user: RunAs): Record<string, string> {
  return { HOME: user.home, USER: user.name, LOGNAME: user.name };
}

export interface OutputResult {
  status: ExitStatus;
  stdout: string[];
  stderr: string[];
}

/**
 * Runs a command to completion collecting stdout and stderr lines (like
 * upstream's `wait_with_output`); throws ChildError on a non-zero exit unless
 * `allowFailure`. Waits for pipe EOF too, so a grandchild holding the pipes
 * delays it: only for short-lived tools. `deadline` (performance.now() ms)
 * sends SIGKILL when reached.
 */
export async function runToCompletion(
  runner: ProcessRunner,
  spec: Omit<SpawnSpec, "stdout" | "stderr">,
  options?: { allowFailure?: boolean; deadline?: number; onSpawn?: (child: ChildProcess) => void },
): Promise<OutputResult> {
  const child = runner.spawn({ ...spec, stdout: "lines", stderr: "lines" });
  options?.onSpawn?.(child);
  const collect = async (it: AsyncIterable<string>) => {
    const out: string[] = [];
    for await (const l of it) out.push(l);
    return out;
  };
  let timer: ReturnType<typeof setTimeout> | undefined;
  if (options?.deadline !== undefined) {
    const ms = Math.max(0, options.deadline - performance.now());
    timer = setTimeout(() => child.kill("SIGKILL"), ms);
  }
  try {
    const [status, stdout, stderr] = await Promise.all([
      child.exited,
      collect(child.stdoutLines()),
      collect(child.stderrLines()),
    ]);
    if (!options?.allowFailure && !isSuccess(status)) {
      throw new ChildError(spec.cmd, status, { stderrTail: stderr.slice(-STDERR_TAIL_LINES) });
    }
    return { status, stdout, stderr };
  } finally {
    clearTimeout(timer);
  }
}

/**
 * Stops a child the execa way: `signal` (default SIGTERM), then SIGKILL when it
 * has not exited after `graceMs`. Resolves with its exit status.
 */
export async function terminate(
  child: ChildProcess,
  options?: { signal?: Signal; graceMs?: number; group?: boolean },
): Promise<ExitStatus> {
  const group = options?.group ?? false;
  child.kill(options?.signal ?? "SIGTERM", { group });
  let timer: ReturnType<typeof setTimeout> | undefined;
  const killed = new Promise<void>((resolve) => {
    timer = setTimeout(() => {
      child.kill("SIGKILL", { group });
      resolve();
    }, options?.graceMs ?? 5000);
  });
  try {
    await Promise.race([child.exited, killed]);
    return await child.exited;
  } finally {
    clearTimeout(timer);
  }
}
