// Small helpers shared by the benchmarks: percentiles, a free port, markdown
// tables, temp dirs that are removed on exit (also on Ctrl-C), peak RSS.
import { chmodSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { computeArgv } from "../src/testing/specs.ts";

export const ROOT = new URL("..", import.meta.url).pathname;
/** The built binary; COMPUTE_CTL_BINARY points elsewhere (as for the process-level tests). */
export const BINARY = process.env.COMPUTE_CTL_BINARY ?? join(ROOT, "dist", "compute_ctl");

/** The newest PostgreSQL bin directory under /usr/lib/postgresql. */
export { findTestPgBinDir as pgBinDir } from "../src/testing/pg.ts";

export async function freePort(): Promise<number> {
  const s = Bun.listen({ hostname: "127.0.0.1", port: 0, socket: { data() {} } });
  const p = s.port;
  s.stop(true);
  return p;
}

/** Nearest-rank percentile; NaN for no samples. */
export function pct(xs: readonly number[], p: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))] ?? Number.NaN;
}

/** The middle value (mean of the two middle ones for an even count). */
export function median(xs: readonly number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  if (s.length === 0) return Number.NaN;
  return s.length % 2 ? (s[m] ?? Number.NaN) : ((s[m - 1] ?? 0) + (s[m] ?? 0)) / 2;
}

export const fmt = (n: number, digits = 1): string => (Number.isNaN(n) ? "—" : n.toFixed(digits));

/** A markdown table, as printed lines. */
export function table(header: string[], rows: string[][]): string {
  const line = (cells: string[]) => `| ${cells.join(" | ")} |`;
  return [line(header), line(header.map(() => "---")), ...rows.map(line)].join("\n");
}

// Run on normal exit and on SIGINT/SIGTERM, last registered first.
const cleanups: (() => void)[] = [];
// Commands started by `run`: killed before any cleanup, if we are interrupted.
const running = new Set<{ kill(signal?: number | NodeJS.Signals): void }>();
let cleaned = false;

/** Runs the registered cleanups once; each one must be synchronous. */
function cleanupNow(): void {
  if (cleaned) return;
  cleaned = true;
  for (const p of running) p.kill("SIGKILL");
  for (const fn of cleanups.reverse()) {
    try {
      fn();
    } catch (e) {
      console.error(`cleanup: ${String(e)}`);
    }
  }
}

export function onCleanup(fn: () => void): void {
  cleanups.push(fn);
}

process.on("exit", cleanupNow);
for (const sig of ["SIGINT", "SIGTERM"] as const) {
  process.on(sig, () => {
    cleanupNow();
    process.exit(130);
  });
}

/**
 * A fresh directory under `parent` (default the OS temp dir), mode 0755 so the
 * postgres user can traverse it, removed at exit.
 */
export function tempWorkDir(prefix: string, parent = tmpdir()): string {
  const dir = mkdtempSync(join(parent, prefix));
  chmodSync(dir, 0o755);
  onCleanup(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/** The file system type of the mount holding `dir`, e.g. ext4 or tmpfs. */
export function fsType(dir: string): string {
  const p = Bun.spawnSync(["findmnt", "-n", "-o", "FSTYPE", "-T", dir]);
  // An over-mounted path lists every layer, the visible one last.
  return p.stdout.toString().trim().split("\n").at(-1) || "unknown";
}

/** Runs a command to completion; throws with its stderr on a non-zero exit. */
export async function run(
  cmd: string[],
  opts: { uid?: number; gid?: number; env?: Record<string, string> } = {},
): Promise<void> {
  const p = Bun.spawn(cmd, {
    stdin: "ignore",
    stdout: "ignore",
    stderr: "pipe",
    ...(opts.env ? { env: opts.env } : {}),
    ...(opts.uid !== undefined ? { uid: opts.uid } : {}),
    ...(opts.gid !== undefined ? { gid: opts.gid } : {}),
  });
  running.add(p);
  const [err, code] = await Promise.all([new Response(p.stderr).text(), p.exited]);
  running.delete(p);
  if (code !== 0) throw new Error(`${cmd.join(" ")} exited ${code}: ${err.trim()}`);
}

/** Resets this process's peak RSS (VmHWM), so a later read covers only what follows. */
export function resetPeakRss(): boolean {
  try {
    writeFileSync("/proc/self/clear_refs", "5");
    return true;
  } catch {
    return false;
  }
}

/** This process's peak RSS in bytes since start or the last reset. */
export function peakRss(): number {
  const m = /VmHWM:\s+(\d+) kB/.exec(readFileSync("/proc/self/status", "utf8"));
  return m?.[1] ? Number(m[1]) * 1024 : Number.NaN;
}

export { postmasterPids } from "../src/testing/procs.ts";

/** Polls `fn` every `everyMs` until it returns true; throws after `timeoutMs`. */
export async function until(
  what: string,
  fn: () => boolean,
  timeoutMs = 15_000,
  everyMs = 10,
): Promise<void> {
  const deadline = performance.now() + timeoutMs;
  while (!fn()) {
    if (performance.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await Bun.sleep(everyMs);
  }
}

const clkTck = Number(Bun.spawnSync(["getconf", "CLK_TCK"]).stdout.toString().trim()) || 100;

/** CPU seconds all CPUs spent busy (not idle or iowait) since boot, from /proc/stat. */
export function machineBusySeconds(): number {
  const cpu = readFileSync("/proc/stat", "utf8").split("\n")[0]?.trim().split(/\s+/) ?? [];
  const t = cpu.slice(1).map(Number);
  const total = t.reduce((a, b) => a + b, 0);
  return (total - (t[3] ?? 0) - (t[4] ?? 0)) / clkTck;
}

/** User + system CPU seconds of process `pid` so far (0 once it is gone). */
export function processCpuSeconds(pid: number): number {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    const f = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    return (Number(f[11]) + Number(f[12])) / clkTck;
  } catch {
    return 0;
  }
}

/** VmRSS (resident now) and VmHWM (peak) of process `pid`, in bytes; NaN once it is gone. */
export function processRss(pid: number): { rss: number; peak: number } {
  let text = "";
  try {
    text = readFileSync(`/proc/${pid}/status`, "utf8");
  } catch {
    // gone
  }
  const kb = (key: string) => {
    const m = new RegExp(`${key}:\\s+(\\d+) kB`).exec(text);
    return m?.[1] ? Number(m[1]) * 1024 : Number.NaN;
  };
  return { rss: kb("VmRSS"), peak: kb("VmHWM") };
}

/** What one wrk run reports (latencies in µs). */
export interface WrkResult {
  requests: number;
  seconds: number;
  rps: number;
  p50us: number;
  p99us: number;
  maxUs: number;
  /** Responses with status ≥ 400 (wrk's "Non-2xx or 3xx responses"). */
  httpErrors: number;
  /** connect + read + write + timeout errors. */
  socketErrors: number;
}

// wrk's own summary as one JSON line, after its human report.
const WRK_DONE = `done = function(s, latency, requests)
  io.write(string.format('WRK_JSON {"requests":%d,"duration_us":%d,"p50":%d,"p99":%d,"max":%d,"status":%d,"socket":%d}\\n',
    s.requests, s.duration, latency:percentile(50), latency:percentile(99), latency.max,
    s.errors.status, s.errors.connect + s.errors.read + s.errors.write + s.errors.timeout))
end
`;

/** The wrk binary on PATH, or undefined (`apt-get install -y wrk`). */
export const wrkPath = (): string | undefined => Bun.which("wrk") ?? undefined;

/** One closed-loop wrk run against `url`; throws if wrk fails or prints no summary. */
export async function runWrk(
  url: string,
  opts: { connections: number; threads: number; seconds: number; headers?: Record<string, string> },
): Promise<WrkResult> {
  const wrk = wrkPath();
  if (!wrk) throw new Error("wrk is not installed");
  const script = join(tmpdir(), `bench-wrk-${process.pid}.lua`);
  writeFileSync(script, WRK_DONE);
  const cmd = [
    wrk,
    `-t${opts.threads}`,
    `-c${opts.connections}`,
    `-d${opts.seconds}s`,
    "--timeout",
    "5s",
    "-s",
    script,
    ...Object.entries(opts.headers ?? {}).flatMap(([k, v]) => ["-H", `${k}: ${v}`]),
    url,
  ];
  const p = Bun.spawn(cmd, { stdin: "ignore", stdout: "pipe", stderr: "pipe" });
  running.add(p);
  const [out, err, code] = await Promise.all([
    new Response(p.stdout).text(),
    new Response(p.stderr).text(),
    p.exited,
  ]);
  running.delete(p);
  rmSync(script, { force: true });
  const line = out.split("\n").find((l) => l.startsWith("WRK_JSON "));
  if (code !== 0 || !line) throw new Error(`wrk exited ${code}: ${err.trim() || out.trim()}`);
  const j = JSON.parse(line.slice("WRK_JSON ".length)) as Record<string, number>;
  const seconds = (j.duration_us ?? 0) / 1e6;
  const requests = j.requests ?? 0;
  return {
    requests,
    seconds,
    rps: requests / seconds,
    p50us: j.p50 ?? Number.NaN,
    p99us: j.p99 ?? Number.NaN,
    maxUs: j.max ?? Number.NaN,
    httpErrors: j.status ?? 0,
    socketErrors: j.socket ?? 0,
  };
}

/** What one benchmark compute is started with. */
export interface BenchCompute {
  argv: string[];
  pgdata: string;
  pgPort: number;
  /** External (JWT) and internal HTTP ports. */
  ext: number;
  int: number;
  config: string;
}

/**
 * Ports, PGDATA and a `-c` file (the spec `specFor(pgPort)` plus `jwks`) for a
 * compute named `base` (a path prefix), and the built binary's argv for it.
 */
export async function prepareCompute(o: {
  base: string;
  pgbin: string;
  jwks: unknown;
  specFor: (pgPort: number) => Record<string, unknown>;
}): Promise<BenchCompute> {
  const [pgPort, ext, int] = [await freePort(), await freePort(), await freePort()];
  const pgdata = `${o.base}-pgdata`;
  const config = `${o.base}-config.json`;
  writeFileSync(
    config,
    JSON.stringify({ spec: o.specFor(pgPort), compute_ctl_config: { jwks: o.jwks } }),
  );
  const argv = computeArgv({
    pgdata,
    pgPort,
    computeId: "bench",
    pgbin: o.pgbin,
    config,
    externalPort: ext,
    internalPort: int,
  });
  return { argv, pgdata, pgPort, ext, int, config };
}
