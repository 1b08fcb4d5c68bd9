// Helpers for this folder's tests: waits with deadlines, temp dirs the postgres user
// can reach, child processes (psql, tar) and a raw protocol client that speaks the
// exact message sequences of other clients (rust-postgres's copy_out, SSLRequest).

import { chmodSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Socket } from "bun";
import { type RunAs, resolveRunAs } from "../process/user.ts";
import {
  type BackendMessage,
  decodeBackend,
  encodeFrontend,
  FrameSplitter,
  type FrontendMessage,
} from "../wire/protocol.ts";

export { TEST_PG_BIN_DIR as PG_BIN } from "../testing/pg.ts";
export const TENANT = "de200bd42b49cc1814412c7e592dd6e9";
export const TIMELINE = "2f0b5cbd8a2b2e6ee51ab0a3d46e54f5";

/** The postgres user when we are root (children must not run as root), else null. */
export const RUN_AS: RunAs | null = resolveRunAs();

export { until } from "../testing/until.ts";

/** Temp dirs made world-searchable (the postgres user runs things inside), removed by `cleanup`. */
export class TempDirs {
  private readonly dirs: string[] = [];

  make(label: string): string {
    const d = mkdtempSync(join(tmpdir(), `cc-dev-${label}-`));
    chmodSync(d, 0o755);
    this.dirs.push(d);
    return d;
  }

  cleanup(): void {
    for (const d of this.dirs.splice(0)) rmSync(d, { recursive: true, force: true });
  }
}

export interface RunResult {
  code: number;
  stdout: Uint8Array;
  stderr: string;
  text: string;
}

/** Run a command to completion (with a deadline), optionally as another user. */
export async function runCmd(
  cmd: string[],
  opts: {
    env?: Record<string, string>;
    user?: RunAs | null;
    cwd?: string;
    timeoutMs?: number;
  } = {},
): Promise<RunResult> {
  const env: Record<string, string> = {
    PATH: process.env.PATH ?? "/usr/bin:/bin",
    LC_ALL: "C",
    HOME: opts.user?.home ?? process.env.HOME ?? "/",
    ...opts.env,
  };
  const proc = Bun.spawn(cmd, {
    env,
    stdin: "ignore",
    stdout: "pipe",
    stderr: "pipe",
    ...(opts.cwd ? { cwd: opts.cwd } : {}),
    ...(opts.user ? { uid: opts.user.uid, gid: opts.user.gid } : {}),
  });
  const timer = setTimeout(() => proc.kill("SIGKILL"), opts.timeoutMs ?? 20_000);
  try {
    const [out, err, code] = await Promise.all([
      new Response(proc.stdout).bytes(),
      new Response(proc.stderr).text(),
      proc.exited,
    ]);
    return { code, stdout: out, stderr: err, text: new TextDecoder().decode(out) };
  } finally {
    clearTimeout(timer);
  }
}

/** `psql -X -A -t -q` against `url` (PGPASSWORD from `password`), never prompting. */
export function psql(url: string, sql: string, password?: string): Promise<RunResult> {
  return runCmd(["psql", "-XAtqw", "-v", "ON_ERROR_STOP=1", url, "-c", sql], {
    env: password === undefined ? {} : { PGPASSWORD: password },
  });
}

/**
 * A protocol client with no logic of its own: the test says exactly which messages
 * go out and checks each one that comes back.
 */
export class RawClient {
  private readonly splitter = new FrameSplitter();
  private pending: Uint8Array[] = [];
  private wake: (() => void) | null = null;
  closed = false;
  /** Payload sizes of the CopyData messages received, in order. */
  readonly copySizes: number[] = [];

  private constructor(private socket: Socket<undefined> | undefined) {}

  static async connect(port: number, host = "127.0.0.1"): Promise<RawClient> {
    const c = new RawClient(undefined);
    c.socket = await Bun.connect({
      hostname: host,
      port,
      socket: {
        data: (_s, chunk) => {
          c.pending.push(new Uint8Array(chunk));
          c.notify();
        },
        close: () => {
          c.closed = true;
          c.notify();
        },
        end: () => {
          c.closed = true;
          c.notify();
        },
        error: () => {
          c.closed = true;
          c.notify();
        },
      },
    });
    return c;
  }

  private notify(): void {
    const w = this.wake;
    this.wake = null;
    w?.();
  }

  private async waitData(deadline: number): Promise<void> {
    if (this.pending.length > 0) return;
    if (this.closed) throw new Error("connection closed by the server");
    const left = deadline - performance.now();
    if (left <= 0) throw new Error("timed out waiting for the server");
    let timer: ReturnType<typeof setTimeout> | undefined;
    await new Promise<void>((resolve) => {
      this.wake = resolve;
      timer = setTimeout(resolve, left);
    });
    clearTimeout(timer);
  }

  send(...msgs: FrontendMessage[]): void {
    this.socket?.write(encodeFrontend(...msgs));
  }

  /** One raw byte (the answer to SSLRequest/GSSENCRequest is not a framed message). */
  async readByte(timeoutMs = 5000): Promise<number> {
    const deadline = performance.now() + timeoutMs;
    for (;;) {
      const head = this.pending[0];
      if (head && head.length > 0) {
        const b = head[0] ?? 0;
        if (head.length === 1) this.pending.shift();
        else this.pending[0] = head.subarray(1);
        return b;
      }
      if (head) this.pending.shift();
      await this.waitData(deadline);
    }
  }

  async recv(timeoutMs = 5000): Promise<BackendMessage> {
    const deadline = performance.now() + timeoutMs;
    for (;;) {
      for (const c of this.pending.splice(0)) this.splitter.push(c);
      const f = this.splitter.next();
      if (f) {
        const m = decodeBackend(f);
        if (m.type === "CopyData") this.copySizes.push(m.data.length);
        return m;
      }
      await this.waitData(deadline);
    }
  }

  async expect<T extends BackendMessage["type"]>(
    type: T,
    timeoutMs = 5000,
  ): Promise<Extract<BackendMessage, { type: T }>> {
    const m = await this.recv(timeoutMs);
    if (m.type !== type) {
      const why = m.type === "ErrorResponse" ? `: ${m.fields.message}` : "";
      throw new Error(`expected ${type}, got ${m.type}${why}`);
    }
    return m as Extract<BackendMessage, { type: T }>;
  }

  /** Resolves when the server has closed the connection (data still arriving is dropped). */
  async waitClosed(timeoutMs = 5000): Promise<void> {
    const deadline = performance.now() + timeoutMs;
    while (!this.closed) {
      this.pending = [];
      const left = deadline - performance.now();
      if (left <= 0) throw new Error("timed out waiting for the server to close");
      let timer: ReturnType<typeof setTimeout> | undefined;
      await new Promise<void>((resolve) => {
        this.wake = resolve;
        timer = setTimeout(resolve, left);
      });
      clearTimeout(timer);
    }
  }

  /** StartupMessage, then everything up to the first ReadyForQuery. */
  async startup(params: Record<string, string>, password?: string): Promise<BackendMessage[]> {
    this.send({ type: "StartupMessage", params });
    const seen: BackendMessage[] = [];
    for (;;) {
      const m = await this.recv();
      seen.push(m);
      if (m.type === "AuthenticationCleartextPassword") {
        this.send({ type: "PasswordMessage", password: password ?? "" });
      }
      if (m.type === "ReadyForQuery" || m.type === "ErrorResponse") return seen;
    }
  }

  close(): void {
    this.socket?.end();
  }
}

/** Concatenate chunks. */
export function concatBytes(parts: Uint8Array[]): Uint8Array {
  return Buffer.concat(parts);
}

/** Read a whole stream. */
export async function readAll(stream: ReadableStream<Uint8Array>): Promise<Uint8Array> {
  const parts: Uint8Array[] = [];
  for await (const c of stream) parts.push(c);
  return concatBytes(parts);
}
