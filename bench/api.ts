// The upstream API latency test (test_compute_ctl_api_latencies) against the
// built binary, then the same routes under load. Ours: a running primary (dev
// stand-ins, real postgres, an Ed25519 JWT on every request, its log in a file).
// Baseline, in the same run: a bare Bun.serve in its own process answering the
// exact bytes and headers our /status and /metrics.json answered, so both pay
// the same HTTP cost.
//
//   sequential   N times, one keep-alive client (fetch): GET /status then GET
//                /metrics.json, each timed through the JSON decode as upstream's
//                requests.Session; the servers take turns in blocks of 500.
//   concurrent   wrk -t2 -c64 per route, ours then the baseline, each while a
//                loop POSTs /configure to ours back to back (work_mem 8MB/7MB
//                alternating): the same machine load beside either server. The
//                same pair again without the loop. Each run is `rounds` slices
//                of `seconds`, the order rotated each round.
//   --breakdown  three more computes, same spec, to split our overhead: no JWT
//                check (INSTANCE_ID set: upstream's bypass), no access log
//                (RUST_LOG=warn), neither. Measured like ours, without the loop.
//
//   bun run build && bun bench/api.ts [requests] [seconds] [rounds] [--breakdown]
//     [--configure-every=MS]
//   (default 10000 5 2, a /configure every 40 ms: 10 s of wrk per run)

import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import type { Subprocess } from "bun";
import { startDevEnvironment } from "../src/dev/environment.ts";
import { resolveRunAs } from "../src/process/user.ts";
import { bearer, makeTestKeys } from "../src/testing/jwt.ts";
import { loopbackPostgresConf, minimalSpecJson } from "../src/testing/specs.ts";
import {
  BINARY,
  fmt,
  freePort,
  machineBusySeconds,
  median,
  onCleanup,
  pct,
  pgBinDir,
  postmasterPids,
  prepareCompute,
  processCpuSeconds,
  processRss,
  runWrk,
  table,
  tempWorkDir,
  until,
  type WrkResult,
  wrkPath,
} from "./lib.ts";

const args = process.argv.slice(2);
const breakdown = args.includes("--breakdown");
const paceArg = args.find((a) => a.startsWith("--configure-every="));
/** Start a /configure every this many ms (0: back to back). */
const CONFIGURE_EVERY_MS = paceArg === undefined ? 40 : Number(paceArg.split("=")[1]);
const positional = args.filter((a) => !a.startsWith("--"));
const N = Number(positional[0] ?? 10_000);
const SECONDS = Number(positional[1] ?? 5);
const ROUNDS = Number(positional[2] ?? 2);
if (
  !Number.isInteger(N) ||
  N < 100 ||
  !(SECONDS >= 1) ||
  !Number.isInteger(ROUNDS) ||
  ROUNDS < 1 ||
  !(CONFIGURE_EVERY_MS >= 0)
) {
  console.error(
    "usage: bun bench/api.ts [requests ≥ 100] [seconds ≥ 1] [rounds ≥ 1] [--breakdown] [--configure-every=MS ≥ 0]",
  );
  process.exit(2);
}
const BLOCK = Math.min(500, N);
const WARMUP = 1000;
const CONNECTIONS = 64;
const THREADS = 2;
const ROUTES = ["/status", "/metrics.json"] as const;
type RoutePath = (typeof ROUTES)[number];
const now = () => performance.now();

/** The 1-minute load average: other work on the machine skews every absolute figure. */
const loadAvg = () => readFileSync("/proc/loadavg", "utf8").split(" ")[0] ?? "?";
const loadAtStart = loadAvg();
// 2 changes our postgresql.conf (dynamic_shared_memory_type = mmap, in /dev/shm).
const overcommit = readFileSync("/proc/sys/vm/overcommit_memory", "utf8").trim();
const keys = await makeTestKeys();
const auth = bearer(await keys.sign({ compute_id: "bench" }));
const pgbinDir = pgBinDir();
const work = tempWorkDir("bench-api-");
// One set of stand-ins serves every compute: they only matter at start-up.
const env = await startDevEnvironment({ pgBinDir: pgbinDir, workDir: work, runAs: resolveRunAs() });

/** A server under test: one of our computes or the baseline. */
interface Server {
  name: string;
  origin: string;
  proc: Subprocess;
  pgdata?: string;
  pgPort?: number;
  log?: string;
}
const servers: Server[] = [];
onCleanup(() => {
  for (const s of servers) s.proc.kill("SIGKILL");
  const ours = (a: string) => servers.some((s) => s.pgdata === a);
  for (const pid of postmasterPids(ours)) process.kill(pid, "SIGQUIT");
  const deadline = now() + 5_000;
  while (postmasterPids(ours).length > 0 && now() < deadline) Bun.sleepSync(20);
});

function specFor(pgPort: number, workMem: string): Record<string, unknown> {
  return minimalSpecJson({
    skip_pg_catalog_updates: true,
    cluster: {
      roles: [],
      databases: [],
      postgresql_conf: loopbackPostgresConf(pgPort),
      settings: [{ name: "work_mem", value: workMem, vartype: "string" }],
    },
    mode: "Primary",
    ...env.storageSpec(),
  });
}

/** Starts the built binary on a fresh PGDATA, its stderr to a file; resolves once `running`. */
async function startOurs(name: string, extraEnv: Record<string, string> = {}): Promise<Server> {
  const dir = join(work, name.replace(/\W+/g, "-"));
  const log = `${dir}.log`;
  const { argv, pgdata, pgPort, ext } = await prepareCompute({
    base: dir,
    pgbin: env.pgbin.postgres,
    jwks: keys.jwks,
    specFor: (port) => specFor(port, "7MB"),
  });
  const proc = Bun.spawn([BINARY, ...argv], {
    stdin: "ignore",
    stdout: "ignore",
    stderr: Bun.file(log),
    env: { ...process.env, ...extraEnv },
  });
  const server: Server = { name, origin: `http://127.0.0.1:${ext}`, proc, pgdata, pgPort, log };
  servers.push(server);
  const tail = () => readFileSync(log, "utf8").split("\n").slice(-30).join("\n");
  const deadline = now() + 60_000;
  for (;;) {
    if (proc.exitCode !== null) throw new Error(`${name}: compute_ctl exited:\n${tail()}`);
    if (now() > deadline) throw new Error(`${name}: not running after 60 s:\n${tail()}`);
    const st = await fetch(`${server.origin}/status`, { headers: auth }).then(
      (r) => r.json() as Promise<{ status: string; error?: string }>,
      () => undefined, // not listening yet
    );
    if (st?.status === "running") return server;
    if (st?.status === "failed") throw new Error(`${name}: compute_ctl failed: ${st.error}`);
    await Bun.sleep(10);
  }
}

const ours = await startOurs("ours");
const oursPid = ours.proc.pid;
const extra: Server[] = [];
if (breakdown) {
  extra.push(await startOurs("ours, no JWT check", { INSTANCE_ID: "" }));
  extra.push(await startOurs("ours, no access log", { RUST_LOG: "warn" }));
  extra.push(await startOurs("ours, neither", { INSTANCE_ID: "", RUST_LOG: "warn" }));
}

// --- The baseline: our answers, captured, replayed by a bare Bun.serve in its own process.

interface Captured {
  status: number;
  headers: [string, string][];
  body: string; // base64
}
/** Headers Bun.serve writes itself on both sides. */
const TRANSPORT = new Set(["date", "content-length", "connection", "keep-alive"]);
async function capture(url: string): Promise<Captured> {
  const r = await fetch(url, { headers: auth });
  const body = await r.bytes();
  return {
    status: r.status,
    headers: [...r.headers].filter(([k]) => !TRANSPORT.has(k)),
    body: Buffer.from(body).toString("base64"),
  };
}
const captured: Record<string, Captured> = {};
for (const path of ROUTES) captured[path] = await capture(ours.origin + path);
const capturedPath = join(work, "captured.json");
writeFileSync(capturedPath, JSON.stringify(captured));
const baselineSrc = join(work, "baseline.ts");
writeFileSync(
  baselineSrc,
  `const answers = JSON.parse(await Bun.file(process.argv[3]).text());
for (const a of Object.values(answers)) a.bytes = Buffer.from(a.body, "base64");
Bun.serve({
  port: Number(process.argv[2]),
  hostname: "::",
  development: false,
  idleTimeout: 0,
  fetch(req) {
    const u = req.url;
    const a = answers[u.slice(u.indexOf("/", 8))];
    if (!a) return new Response(null, { status: 404 });
    return new Response(a.bytes, { status: a.status, headers: a.headers });
  },
});
console.log("listening");
`,
);
const basePort = await freePort();
const baselineProc = Bun.spawn([process.execPath, baselineSrc, String(basePort), capturedPath], {
  stdin: "ignore",
  stdout: "pipe",
  stderr: "inherit",
});
const base: Server = {
  name: "baseline",
  origin: `http://127.0.0.1:${basePort}`,
  proc: baselineProc,
};
servers.push(base);
{
  const reader = baselineProc.stdout.getReader();
  const { value } = await reader.read();
  reader.releaseLock();
  if (!new TextDecoder().decode(value).includes("listening")) throw new Error("baseline failed");
}

// Same status, body length and header names on both sides.
for (const path of ROUTES) {
  const [a, b] = [await capture(ours.origin + path), await capture(base.origin + path)];
  const names = (c: Captured) => c.headers.map(([k]) => k).join(",");
  if (a.body.length !== b.body.length || names(a) !== names(b) || a.status !== b.status) {
    throw new Error(
      `baseline answers ${path} differently: ${JSON.stringify({ ours: a, base: b })}`,
    );
  }
}

// compute_ctl's own background work (monitor, ...), to read the CPU figures against.
const idle0 = processCpuSeconds(oursPid);
await Bun.sleep(3000);
const idleCpuMsPerS = ((processCpuSeconds(oursPid) - idle0) / 3) * 1000;
const rssStart = processRss(oursPid);

// --- Sequential: upstream's loop, the servers taking turns in blocks.

interface SeqSide {
  server: Server;
  lat: Record<RoutePath, number[]>;
  errors: number;
  cpu: number;
}
const seqSides: SeqSide[] = [ours, base, ...extra].map((server) => ({
  server,
  lat: { "/status": [], "/metrics.json": [] },
  errors: 0,
  cpu: 0,
}));

async function timedGet(side: SeqSide, path: RoutePath, keep: boolean): Promise<void> {
  const t0 = now();
  const r = await fetch(side.server.origin + path, { headers: auth });
  await r.json();
  const dt = now() - t0;
  if (!r.ok) side.errors++;
  if (keep) side.lat[path].push(dt);
}
async function block(side: SeqSide, iterations: number, keep = true): Promise<void> {
  const cpu0 = processCpuSeconds(side.server.proc.pid);
  for (let i = 0; i < iterations; i++) {
    await timedGet(side, "/status", keep);
    await timedGet(side, "/metrics.json", keep);
  }
  if (keep) side.cpu += processCpuSeconds(side.server.proc.pid) - cpu0;
}

for (const side of seqSides) await block(side, WARMUP, false);
for (let b = 0; b * BLOCK < N; b++) {
  const n = Math.min(BLOCK, N - b * BLOCK);
  // Rotate who goes first, so a burst of noise does not always hit the same side.
  for (let k = 0; k < seqSides.length; k++) {
    const side = seqSides[(b + k) % seqSides.length];
    if (side) await block(side, n);
  }
}
const rssAfterSeq = processRss(oursPid);

// --- Concurrent: wrk, ours under a /configure loop.

/** work_mem of the last /configure any loop sent. */
let lastWorkMem = "7MB";

interface ConfigureLoop {
  done: number;
  lat: number[];
  failures: string[];
}
/**
 * POSTs /configure to ours (work_mem 8MB, 7MB, ...) until `stop` is called, one
 * starting every CONFIGURE_EVERY_MS (or at once when the last one took longer):
 * a fixed pace puts the same load beside either server under wrk, where a
 * back-to-back loop would slow down with the server it shares the CPUs with.
 */
function startConfigureLoop(): { stop(): Promise<ConfigureLoop> } {
  const out: ConfigureLoop = { done: 0, lat: [], failures: [] };
  const bodies = ["8MB", "7MB"].map((m) =>
    JSON.stringify({ spec: specFor(ours.pgPort ?? 0, m), compute_ctl_config: { jwks: keys.jwks } }),
  );
  let stopping = false;
  const started = now();
  const loop = (async () => {
    while (!stopping) {
      const due = started + out.done * CONFIGURE_EVERY_MS;
      if (due > now()) await Bun.sleep(due - now());
      if (stopping) break;
      const t0 = now();
      lastWorkMem = out.done % 2 === 0 ? "8MB" : "7MB";
      try {
        const r = await fetch(`${ours.origin}/configure`, {
          method: "POST",
          headers: { ...auth, "content-type": "application/json" },
          body: bodies[out.done % 2],
          signal: AbortSignal.timeout(30_000),
        });
        const text = await r.text();
        if (!r.ok) out.failures.push(`${r.status} ${text.slice(0, 200)}`);
      } catch (e) {
        out.failures.push(String(e));
      }
      out.lat.push(now() - t0);
      out.done++;
    }
  })();
  return {
    stop: async () => {
      stopping = true;
      await loop;
      return out;
    },
  };
}

interface Variant {
  label: string;
  server: Server;
  withLoop: boolean;
  /** Its place in the verdict: a pair measured under the same machine load. */
  role?: "ours" | "baseline" | "ours-quiet" | "baseline-quiet";
}
// The /configure loop runs against ours in both rows of the target pair: the
// loop (compute_ctl applying the spec, postgres reloading) takes a large share of
// the two vCPUs, so the baseline is measured beside the same load. The pair
// without the loop is printed too.
const variants: Variant[] = [
  { label: "ours + /configure loop", server: ours, withLoop: true, role: "ours" },
  {
    label: "baseline + /configure loop (to ours)",
    server: base,
    withLoop: true,
    role: "baseline",
  },
  { label: "ours, no loop", server: ours, withLoop: false, role: "ours-quiet" },
  { label: "baseline, no loop", server: base, withLoop: false, role: "baseline-quiet" },
  ...extra.map((server) => ({ label: `breakdown: ${server.name}`, server, withLoop: false })),
];

interface Slice {
  wrk: WrkResult;
  cpu: number;
  busy: number;
  wall: number;
  loop?: ConfigureLoop;
}
async function slice(v: Variant, path: RoutePath): Promise<Slice> {
  const pid = v.server.proc.pid;
  const loop = v.withLoop ? startConfigureLoop() : undefined;
  const cpu0 = processCpuSeconds(pid);
  const busy0 = machineBusySeconds();
  const t0 = now();
  const wrk = await runWrk(v.server.origin + path, {
    connections: CONNECTIONS,
    threads: THREADS,
    seconds: SECONDS,
    headers: auth,
  });
  const s: Slice = {
    wrk,
    cpu: processCpuSeconds(pid) - cpu0,
    busy: machineBusySeconds() - busy0,
    wall: (now() - t0) / 1000,
  };
  if (loop) s.loop = await loop.stop();
  return s;
}

const haveWrk = wrkPath() !== undefined;
const slices = new Map<string, Slice[]>(); // `${path} ${label}`
if (haveWrk) {
  for (const path of ROUTES) {
    for (let round = 0; round < ROUNDS; round++) {
      for (let k = 0; k < variants.length; k++) {
        const v = variants[(round + k) % variants.length];
        if (!v) continue;
        const key = `${path} ${v.label}`;
        slices.set(key, [...(slices.get(key) ?? []), await slice(v, path)]);
      }
    }
  }
}

interface LoadRow {
  variant: Variant;
  path: RoutePath;
  rps: number;
  p50us: number;
  p99us: number;
  httpErrors: number;
  socketErrors: number;
  cpuPerReqUs: number;
  busyCpus: number;
  configures: number;
  configureP50: number;
  configureFailures: string[];
}
const loadRows: LoadRow[] = [];
for (const path of ROUTES) {
  for (const variant of variants) {
    const ss = slices.get(`${path} ${variant.label}`) ?? [];
    if (ss.length === 0) continue;
    const sum = (f: (s: Slice) => number) => ss.reduce((a, s) => a + f(s), 0);
    const requests = sum((s) => s.wrk.requests);
    const loops = ss.flatMap((s) => (s.loop ? [s.loop] : []));
    loadRows.push({
      variant,
      path,
      rps: requests / sum((s) => s.wrk.seconds),
      p50us: median(ss.map((s) => s.wrk.p50us)),
      p99us: median(ss.map((s) => s.wrk.p99us)),
      httpErrors: sum((s) => s.wrk.httpErrors),
      socketErrors: sum((s) => s.wrk.socketErrors),
      cpuPerReqUs: (sum((s) => s.cpu) / requests) * 1e6,
      busyCpus: sum((s) => s.busy) / sum((s) => s.wall),
      configures: loops.reduce((a, l) => a + l.done, 0),
      configureP50: pct(
        loops.flatMap((l) => l.lat),
        50,
      ),
      configureFailures: loops.flatMap((l) => l.failures),
    });
  }
}

// --- After the run: state, memory, what postgres has, the logs.

const rssEnd = processRss(oursPid);
const loadAtEnd = loadAvg();
const finalStatus = (await (await fetch(`${ours.origin}/status`, { headers: auth })).json()) as {
  status: string;
};
const psql = Bun.spawnSync(
  [
    join(pgbinDir, "psql"),
    "-XAtq",
    "-h",
    "127.0.0.1",
    "-p",
    String(ours.pgPort),
    "-U",
    "cloud_admin",
    "-d",
    "postgres",
    "-c",
    "SHOW work_mem",
  ],
  { timeout: 10_000 },
);
const workMem =
  psql.exitCode === 0
    ? psql.stdout.toString().trim()
    : `unknown (psql exited ${psql.exitCode}: ${psql.stderr.toString().trim()})`;
const oursLog = readFileSync(ours.log ?? "", "utf8").split("\n");
const problems = oursLog.filter((l) => / (ERROR|WARN) /.test(l));

const exitCodes: string[] = [];
for (const s of servers) {
  s.proc.kill("SIGTERM");
  exitCodes.push(`${s.name} ${await s.proc.exited}`);
}
await env.close();
await until(
  "our computes' postgres to exit",
  () => postmasterPids((a) => servers.some((s) => s.pgdata === a)).length === 0,
);

// --- Report.

const ms = (us: number) => fmt(us / 1000, 2);
const mib = (b: number) => fmt(b / 2 ** 20, 1);
const pass = (ok: boolean) => (ok ? "pass" : "**fail**");
const ratio = (a: number, b: number) => `${(a / b).toFixed(2)}×`;
const [oursSeq, baseSeq] = seqSides as [SeqSide, SeqSide];

console.log(
  `binary: ${BINARY}; sequential: ${N} iterations per server (GET /status + GET /metrics.json, JWT on each), blocks of ${BLOCK} in turn, after ${WARMUP} warm-up iterations; ${
    haveWrk
      ? `concurrent: wrk -t${THREADS} -c${CONNECTIONS}, ${ROUNDS} × ${SECONDS} s per run, order rotated, /configure loop ${CONFIGURE_EVERY_MS > 0 ? `one every ${CONFIGURE_EVERY_MS} ms` : "back to back"}`
      : "concurrent: skipped, wrk is not installed (apt-get install -y wrk)"
  }; load average ${loadAtStart} at the start, ${loadAtEnd} at the end (${navigator.hardwareConcurrency} CPUs); vm.overcommit_memory=${overcommit}`,
);
console.log("\nSequential, one keep-alive client (ms, fetch → JSON decoded):\n");
console.log(
  table(
    ["server", "route", "p50", "p99", "p99.9", "max", "server CPU µs/req"],
    ROUTES.flatMap((path) =>
      seqSides.map((s) => [
        s.server.name,
        path,
        fmt(pct(s.lat[path], 50), 3),
        fmt(pct(s.lat[path], 99), 3),
        fmt(pct(s.lat[path], 99.9), 3),
        fmt(Math.max(...s.lat[path]), 2),
        fmt((s.cpu / (2 * N)) * 1e6, 0),
      ]),
    ),
  ),
);
console.log(
  `errors: ${seqSides.map((s) => `${s.server.name} ${s.errors}`).join(", ")}; compute_ctl idle CPU ${fmt(idleCpuMsPerS, 1)} ms/s (in the CPU column)`,
);

if (haveWrk) {
  console.log(
    `\nConcurrent, wrk -c${CONNECTIONS} (rps over all rounds; p50/p99: median of the rounds):\n`,
  );
  console.log(
    table(
      [
        "route",
        "run",
        "rps",
        "p50 ms",
        "p99 ms",
        "HTTP errors",
        "socket errors",
        "server CPU µs/req",
        "busy CPUs",
        "/configure done (p50 ms)",
      ],
      loadRows.map((r) => [
        r.path,
        r.variant.label,
        fmt(r.rps, 0),
        ms(r.p50us),
        ms(r.p99us),
        String(r.httpErrors),
        String(r.socketErrors),
        fmt(r.cpuPerReqUs, 0),
        fmt(r.busyCpus, 2),
        r.variant.withLoop ? `${r.configures} (${fmt(r.configureP50, 1)})` : "—",
      ]),
    ),
  );
  for (const r of loadRows)
    for (const f of r.configureFailures.slice(0, 3)) console.log(`/configure failed: ${f}`);
}

const verdict: string[][] = [];
for (const path of ROUTES) {
  const o = pct(oursSeq.lat[path], 99);
  const b = pct(baseSeq.lat[path], 99);
  verdict.push([
    `sequential ${path} p99 ms`,
    fmt(o, 3),
    fmt(b, 3),
    ratio(o, b),
    "≤ 1 ms",
    pass(o <= 1),
  ]);
}
if (haveWrk) {
  for (const path of ROUTES) {
    const row = (role: Variant["role"]) =>
      loadRows.find((r) => r.path === path && r.variant.role === role);
    const o = row("ours");
    const b = row("baseline");
    if (o && b) {
      verdict.push([
        `c${CONNECTIONS} ${path} rps, both under the /configure loop`,
        fmt(o.rps, 0),
        fmt(b.rps, 0),
        ratio(o.rps, b.rps),
        "≥ 0.80×",
        pass(o.rps >= 0.8 * b.rps),
      ]);
    }
    const oq = row("ours-quiet");
    const bq = row("baseline-quiet");
    if (oq && bq) {
      verdict.push([
        `c${CONNECTIONS} ${path} rps, both without the loop`,
        fmt(oq.rps, 0),
        fmt(bq.rps, 0),
        ratio(oq.rps, bq.rps),
        "(reported)",
        "—",
      ]);
    }
  }
} else {
  verdict.push(["c64 rps", "—", "—", "—", "≥ 0.80×", "skipped: wrk not installed"]);
}
const oursRows = loadRows.filter((r) => r.variant.server === ours);
const baseRows = loadRows.filter((r) => r.variant.server === base);
const oursErrors =
  oursSeq.errors +
  oursRows.reduce((a, r) => a + r.httpErrors + r.socketErrors, 0) +
  loadRows.reduce((a, r) => a + r.configureFailures.length, 0);
const baseErrors = baseSeq.errors + baseRows.reduce((a, r) => a + r.httpErrors + r.socketErrors, 0);
verdict.push([
  "error responses: GETs ≥ 400, socket errors, failed /configure",
  String(oursErrors),
  String(baseErrors),
  "—",
  "0",
  pass(oursErrors === 0),
]);
console.log("\n");
console.log(table(["check", "ours", "baseline", "ratio", "target", "result"], verdict));

const configures = loadRows.reduce((a, r) => a + r.configures, 0);
console.log(`
compute_ctl RSS (VmRSS): ${mib(rssStart.rss)} MiB running, before the first measured request; ${mib(rssAfterSeq.rss)} MiB after the sequential part; ${mib(rssEnd.rss)} MiB at the end; peak (VmHWM) ${mib(rssEnd.peak)} MiB.
/configure: ${configures} answered by ours during the loops; postgres's work_mem at the end ${workMem} (last one sent ${lastWorkMem}); final status ${finalStatus.status}.
exit codes on SIGTERM: ${exitCodes.join(", ")} (compute_ctl exits 1, as upstream).
ours' log: ${oursLog.length} lines, ${problems.length} ERROR/WARN${
  problems.length > 0
    ? `:\n${[...new Set(problems.map((l) => l.replace(/^\S+\s+/, "")))].slice(0, 10).join("\n")}`
    : ""
}`);
