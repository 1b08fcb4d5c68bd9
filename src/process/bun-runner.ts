// ProcessRunner on Bun.spawn. Notes that shaped it (docs/bun-notes.md §2):
// uid and gid are always passed together (uid alone keeps gid 0), HOME/USER are
// not changed by Bun so we set them, `exited` is independent of pipe EOF, and
// Bun.spawn throws synchronously when the program cannot be started.

import { existsSync } from "node:fs";
import {
  type ChildProcess,
  childEnv,
  type ExitStatus,
  type ProcessRunner,
  type Signal,
  SpawnError,
  type SpawnedPids,
  type SpawnSpec,
  STDERR_TAIL_LINES,
  type StdinWriter,
  type StdoutMode,
  signalName,
} from "./runner.ts";

export interface BunRunnerOptions {
  /** Told about every child from spawn until Bun has reaped it. */
  spawnedPids?: SpawnedPids;
}

/**
 * Splits a byte stream into lines as they arrive: "\n" (and a "\r" before it)
 * stripped, the final partial line yielded at EOF. UTF-8 split across chunks
 * is decoded correctly.
 */
export async function* splitLines(chunks: AsyncIterable<Uint8Array>): AsyncGenerator<string> {
  const decoder = new TextDecoder();
  let buf = "";
  for await (const chunk of chunks) {
    buf += decoder.decode(chunk, { stream: true });
    let nl = buf.indexOf("\n");
    while (nl !== -1) {
      yield stripCr(buf.slice(0, nl));
      buf = buf.slice(nl + 1);
      nl = buf.indexOf("\n");
    }
  }
  buf += decoder.decode();
  if (buf !== "") yield stripCr(buf);
}

function stripCr(line: string): string {
  return line.endsWith("\r") ? line.slice(0, -1) : line;
}

function bunStdio(mode: StdoutMode | undefined): "pipe" | "inherit" | "ignore" {
  if (mode === "lines") return "pipe";
  return mode ?? "inherit";
}

export class BunRunner implements ProcessRunner {
  private readonly spawnedPids: SpawnedPids | undefined;

  constructor(options: BunRunnerOptions = {}) {
    this.spawnedPids = options.spawnedPids;
  }

  spawn(spec: SpawnSpec): ChildProcess {
    if (spec.cmd.length === 0) throw new SpawnError(spec.cmd, new Error("empty command"));
    let proc: Bun.Subprocess;
    try {
      proc = Bun.spawn({
        cmd: spec.cmd,
        env: childEnv(spec),
        cwd: spec.cwd,
        stdin: spec.stdin ?? "ignore",
        stdout: bunStdio(spec.stdout),
        stderr: bunStdio(spec.stderr),
        detached: spec.detached ?? false,
        ...(spec.user ? { uid: spec.user.uid, gid: spec.user.gid } : {}),
      });
    } catch (err) {
      // Bun reports a missing cwd as ENOENT on the program; say what is missing.
      if (spec.cwd !== undefined && !existsSync(spec.cwd)) {
        throw new SpawnError(
          spec.cmd,
          new Error(`working directory ${spec.cwd} does not exist`, { cause: err }),
        );
      }
      throw new SpawnError(spec.cmd, err);
    }
    // Synchronously after spawn: no reaper scan can run in between.
    this.spawnedPids?.add(proc.pid);
    return new BunChild(proc, spec, this.spawnedPids);
  }
}

function statusOf(proc: Bun.Subprocess): ExitStatus {
  if (proc.signalCode !== null) {
    const sig = typeof proc.signalCode === "number" ? signalName(proc.signalCode) : proc.signalCode;
    return { code: null, signal: sig };
  }
  return { code: proc.exitCode ?? 0, signal: null };
}

class BunChild implements ChildProcess {
  readonly pid: number;
  readonly command: readonly string[];
  readonly exited: Promise<ExitStatus>;
  readonly stdin: StdinWriter | null;
  private readonly proc: Bun.Subprocess;
  private readonly tail: string[] = [];
  private readonly taken = { stdout: false, stderr: false };

  constructor(proc: Bun.Subprocess, spec: SpawnSpec, spawnedPids: SpawnedPids | undefined) {
    this.proc = proc;
    this.pid = proc.pid;
    this.command = [...spec.cmd];
    this.exited = proc.exited.then(
      () => {
        spawnedPids?.delete(proc.pid);
        return statusOf(proc);
      },
      // Not expected from Bun; keep the promise non-rejecting either way.
      () => {
        spawnedPids?.delete(proc.pid);
        return statusOf(proc);
      },
    );
    const sink = proc.stdin;
    this.stdin =
      typeof sink === "object" && sink !== null
        ? {
            write: async (data) => {
              sink.write(data);
              await sink.flush();
            },
            end: async () => {
              await sink.end();
            },
          }
        : null;
  }

  private hasExited(): boolean {
    // Bun sets these when it reaps, before `exited` callbacks run.
    return this.proc.exitCode !== null || this.proc.signalCode !== null;
  }

  kill(signal: Signal = "SIGTERM", options?: { group?: boolean }): boolean {
    try {
      if (options?.group) {
        // A pgid is not reused while any member lives, so this is safe after the leader exited.
        process.kill(-this.pid, signal);
        return true;
      }
      if (this.hasExited()) return false;
      this.proc.kill(signal);
      return true;
    } catch {
      return false;
    }
  }

  stdoutLines(): AsyncIterable<string> {
    return this.lines("stdout", this.proc.stdout, () => {});
  }

  stderrLines(): AsyncIterable<string> {
    return this.lines("stderr", this.proc.stderr, (l) => {
      this.tail.push(l);
      if (this.tail.length > STDERR_TAIL_LINES) this.tail.shift();
    });
  }

  stderrTail(): string[] {
    return [...this.tail];
  }

  private lines(
    which: "stdout" | "stderr",
    stream: unknown,
    onLine: (line: string) => void,
  ): AsyncIterable<string> {
    if (!(stream instanceof ReadableStream)) {
      throw new Error(`${which} of ${this.command[0]} was not spawned with "lines"`);
    }
    if (this.taken[which]) throw new Error(`${which} lines of ${this.command[0]} already taken`);
    this.taken[which] = true;
    const bytes = stream as ReadableStream<Uint8Array>;
    return (async function* () {
      for await (const line of splitLines(bytes)) {
        onLine(line);
        yield line;
      }
    })();
  }
}
