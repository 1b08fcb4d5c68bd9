// Idle RSS of a running primary (the built binary, dev stand-ins, real
// postgres): with the idle trim (src/background/footprint-trim.ts, ours) and
// without it (COMPUTE_CTL_TRIM_INTERVAL_MS=0: the baseline), in the same run.
//
// Each compute in turn (two processes mapping one executable would share its
// pages, and shared pages are not paged out): start, wait for `running`,
// sample VmRSS every second for `idle` seconds; then API load (wrk -t2 -c16
// GET /status with a JWT for `load` seconds, or a fetch loop without wrk);
// then `idle` seconds again. "Idle" is the median and the maximum over the
// last third of each idle window (by then both trims of the default policy,
// ~20 s and ~80 s after `running`, are done).
//
//   bun run build && bun bench/idle-rss.ts [idle-seconds] [load-seconds]
//   (default 150 20: ~11 minutes)

import { readFileSync } from "node:fs";
import { join } from "node:path";
import { startDevEnvironment } from "../src/dev/environment.ts";
import { resolveRunAs } from "../src/process/user.ts";
import { bearer, makeTestKeys } from "../src/testing/jwt.ts";
import { loopbackPostgresConf, minimalSpecJson } from "../src/testing/specs.ts";
import {
  BINARY,
  fmt,
  median,
  onCleanup,
  pgBinDir,
  postmasterPids,
  prepareCompute,
  processRss,
  runWrk,
  table,
  tempWorkDir,
  wrkPath,
} from "./lib.ts";

const positional = process.argv.slice(2);
const IDLE_S = Number(positional[0] ?? 150);
const LOAD_S = Number(positional[1] ?? 20);
if (!(IDLE_S >= 30) || !(LOAD_S >= 1)) {
  console.error("usage: bun bench/idle-rss.ts [idle-seconds ≥ 30] [load-seconds ≥ 1]");
  process.exit(2);
}
const MiB = 1024 * 1024;
const mib = (b: number) => fmt(b / MiB);

const keys = await makeTestKeys();
const auth = bearer(await keys.sign({ compute_id: "bench" }));
const work = tempWorkDir("bench-idle-rss-");
const env = await startDevEnvironment({
  pgBinDir: pgBinDir(),
  workDir: work,
  runAs: resolveRunAs(),
});
const pgdatas: string[] = [];
const procs: Bun.Subprocess[] = [];
onCleanup(() => {
  for (const p of procs) p.kill("SIGKILL");
  const ours = (a: string) => pgdatas.includes(a);
  for (const pid of postmasterPids(ours)) process.kill(pid, "SIGQUIT");
});

interface Run {
  name: string;
  running: number;
  idle: number[];
  afterLoad: number;
  idleAfterLoad: number[];
  /** One GET /status right after each idle window, ms (what paged-out code costs a request). */
  firstRequestMs: number[];
  requests: number;
  trims: string[];
}

/** VmRSS every second for `seconds`; returns the samples of the last third. */
async function sampleIdle(pid: number, seconds: number): Promise<number[]> {
  const samples: number[] = [];
  const t0 = performance.now();
  for (let i = 1; i <= seconds; i++) {
    await Bun.sleep(Math.max(0, t0 + i * 1000 - performance.now()));
    samples.push(processRss(pid).rss);
  }
  return samples.slice(Math.floor((samples.length * 2) / 3));
}

async function timedStatus(origin: string): Promise<number> {
  const t0 = performance.now();
  const r = await fetch(`${origin}/status`, { headers: auth });
  await r.arrayBuffer();
  if (!r.ok) throw new Error(`/status answered ${r.status}`);
  return performance.now() - t0;
}

async function load(origin: string, seconds: number): Promise<number> {
  if (wrkPath()) {
    const r = await runWrk(`${origin}/status`, {
      headers: auth,
      seconds,
      connections: 16,
      threads: 2,
    });
    return r.requests;
  }
  let n = 0;
  const end = performance.now() + seconds * 1000;
  while (performance.now() < end) {
    await fetch(`${origin}/status`, { headers: auth }).then((r) => r.arrayBuffer());
    n++;
  }
  return n;
}

async function measure(name: string, extraEnv: Record<string, string>): Promise<Run> {
  const dir = join(work, name.replace(/\W+/g, "-"));
  const log = `${dir}.log`;
  const { argv, pgdata, ext } = await prepareCompute({
    base: dir,
    pgbin: env.pgbin.postgres,
    jwks: keys.jwks,
    specFor: (pgPort) =>
      minimalSpecJson({
        skip_pg_catalog_updates: true,
        cluster: {
          roles: [],
          databases: [],
          postgresql_conf: loopbackPostgresConf(pgPort),
          settings: [{ name: "work_mem", value: "7MB", vartype: "string" }],
        },
        mode: "Primary",
        ...env.storageSpec(),
      }),
  });
  pgdatas.push(pgdata);
  const proc = Bun.spawn([BINARY, ...argv], {
    stdin: "ignore",
    stdout: "ignore",
    stderr: Bun.file(log),
    env: { ...process.env, ...extraEnv },
  });
  procs.push(proc);
  const origin = `http://127.0.0.1:${ext}`;
  const deadline = performance.now() + 60_000;
  for (;;) {
    if (proc.exitCode !== null || performance.now() > deadline) {
      throw new Error(`${name}: not running:\n${readFileSync(log, "utf8").slice(-3000)}`);
    }
    const st = await fetch(`${origin}/status`, { headers: auth }).then(
      (r) => r.json() as Promise<{ status: string }>,
      () => undefined,
    );
    if (st?.status === "running") break;
    await Bun.sleep(10);
  }
  const running = processRss(proc.pid).rss;
  console.error(`${name}: running at ${mib(running)} MiB; idle ${IDLE_S} s`);
  const idle = await sampleIdle(proc.pid, IDLE_S);
  const firstRequestMs = [await timedStatus(origin)];
  const requests = await load(origin, LOAD_S);
  const afterLoad = processRss(proc.pid).rss;
  console.error(`${name}: ${requests} requests, ${mib(afterLoad)} MiB; idle ${IDLE_S} s`);
  const idleAfterLoad = await sampleIdle(proc.pid, IDLE_S);
  firstRequestMs.push(await timedStatus(origin));
  proc.kill("SIGTERM");
  await proc.exited;
  const trims = readFileSync(log, "utf8")
    .split("\n")
    .filter((l) => l.includes("released memory"));
  return { name, running, idle, afterLoad, idleAfterLoad, firstRequestMs, requests, trims };
}

const loadavg = () => readFileSync("/proc/loadavg", "utf8").split(" ")[0];
const load0 = loadavg();
const baseline = await measure("trim off (baseline)", { COMPUTE_CTL_TRIM_INTERVAL_MS: "0" });
const ours = await measure("idle trim (ours)", {});
await env.close();

const row = (r: Run) => [
  r.name,
  mib(r.running),
  `${mib(median(r.idle))} (max ${mib(Math.max(...r.idle))})`,
  mib(r.afterLoad),
  `${mib(median(r.idleAfterLoad))} (max ${mib(Math.max(...r.idleAfterLoad))})`,
  r.firstRequestMs.map((ms) => fmt(ms)).join(", "),
];
console.log(`
Idle RSS of a running primary (VmRSS, MiB; idle = median and max over the last ${Math.round(IDLE_S / 3)} s of ${IDLE_S} s idle;
load = wrk -c16 GET /status for ${LOAD_S} s; load average ${load0} → ${loadavg()})

${table(
  [
    "compute_ctl",
    "running",
    "idle",
    "after load",
    "idle after load",
    "first /status after idle (ms)",
  ],
  [row(baseline), row(ours)],
)}

ratio ours/baseline: idle ${fmt(median(ours.idle) / median(baseline.idle), 2)}×, idle after load ${fmt(median(ours.idleAfterLoad) / median(baseline.idleAfterLoad), 2)}×
idle max (ours): ${fmt(Math.max(...ours.idle, ...ours.idleAfterLoad) / 1e6)} MB (target ≤ 40 MB)
requests: ${baseline.requests} (baseline), ${ours.requests} (ours)
trims (ours):
${ours.trims.map((l) => `  ${l.replace(/^.*?INFO\s+/, "")}`).join("\n")}`);
