// Helpers for process-level tests of the built binary (dist/compute_ctl).
// The test command builds it first; run `bun run build` before `bun test test/`.
import { existsSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Subprocess } from "bun";
import { until } from "../../src/testing/until.ts";

export const REPO = new URL("../..", import.meta.url).pathname;
export const BINARY = process.env.COMPUTE_CTL_BINARY ?? join(REPO, "dist", "compute_ctl");
export const FIXTURES = join(REPO, "..", "shared", "fixtures", "neon");

export function requireBinary(): string {
  if (!existsSync(BINARY)) throw new Error(`${BINARY} is missing: run 'bun run build' first`);
  return BINARY;
}

export interface RunResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs the binary to completion; kills it at the deadline (a hang is a failure). */
export async function runBinary(
  args: string[],
  opts: { env?: Record<string, string>; timeoutMs?: number } = {},
): Promise<RunResult> {
  const proc = Bun.spawn([requireBinary(), ...args], {
    stdout: "pipe",
    stderr: "pipe",
    env: { ...process.env, ...opts.env },
    timeout: opts.timeoutMs ?? 10_000,
    killSignal: "SIGKILL",
  });
  const [stdout, stderr, code] = await Promise.all([
    new Response(proc.stdout).text(),
    new Response(proc.stderr).text(),
    proc.exited,
  ]);
  return { code, stdout, stderr };
}

export interface Started {
  proc: Subprocess<"ignore", "pipe", "pipe">;
  stderr: () => string;
  stop(signal?: NodeJS.Signals): Promise<number>;
}

/** Starts the binary; `prefix` wraps it (e.g. `unshare --pid --fork` to make it PID 1). */
export function startBinary(
  args: string[],
  env: Record<string, string> = {},
  prefix: string[] = [],
): Started {
  const proc = Bun.spawn([...prefix, requireBinary(), ...args], {
    stdin: "ignore",
    stdout: "pipe",
    stderr: "pipe",
    env: { ...process.env, ...env },
  });
  let err = "";
  void (async () => {
    const dec = new TextDecoder();
    for await (const chunk of proc.stderr) err += dec.decode(chunk, { stream: true });
  })();
  return {
    proc,
    stderr: () => err,
    async stop(signal: NodeJS.Signals = "SIGTERM") {
      if (proc.exitCode === null && proc.signalCode === null) proc.kill(signal);
      const killer = setTimeout(() => proc.kill("SIGKILL"), 10_000);
      const code = await proc.exited;
      clearTimeout(killer);
      return code;
    },
  };
}

/** Polls until `fn` returns a value (not undefined), or throws at the deadline. */
export function waitUntil<T>(
  what: string,
  fn: () => Promise<T | undefined> | T | undefined,
  timeoutMs = 10_000,
): Promise<T> {
  return until(what, fn, { timeoutMs, intervalMs: 20, retryErrors: true });
}

/** Ports handed out in this process: the kernel may offer a just-released one again. */
const handedOut = new Set<number>();

/** A free port, never one this process was given before (e.g. postgres's and the API's). */
export async function freePort(): Promise<number> {
  for (;;) {
    const s = Bun.listen({ hostname: "127.0.0.1", port: 0, socket: { data() {} } });
    const port = s.port;
    s.stop(true);
    if (!handedOut.has(port)) {
      handedOut.add(port);
      return port;
    }
  }
}

export function tempDir(prefix = "compute-ctl-test-"): { dir: string; cleanup: () => void } {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  return { dir, cleanup: () => rmSync(dir, { recursive: true, force: true }) };
}

export function writeJson(path: string, value: unknown): string {
  writeFileSync(path, JSON.stringify(value));
  return path;
}
