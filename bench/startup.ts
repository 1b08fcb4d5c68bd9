// Cold start of a Primary: exec of the built binary until /status says `running`,
// against the dev stand-ins (fresh stand-ins, ports and PGDATA each run), with its
// phase metrics. Baseline in the same run, interleaved: what any supervisor must
// at least do — GNU `tar -xzf` of the same archive, the same postgresql.conf,
// `chown -R`, `pg_ctl start -w`.
//
//   bun run build && bun bench/startup.ts [runs]
//   BENCH_TMPDIR=/dev/shm bun bench/startup.ts [runs]   # PGDATA on tmpfs instead

import { copyFileSync, mkdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { type DevEnvironment, startDevEnvironment } from "../src/dev/environment.ts";
import { identityEnv, resolveRunAs } from "../src/process/user.ts";
import { postmasterPidSaysReady } from "../src/startup/postgres.ts";
import { bearer, makeTestKeys } from "../src/testing/jwt.ts";
import { loopbackPostgresConf, minimalSpecJson } from "../src/testing/specs.ts";
import { connect } from "../src/wire/client.ts";
import { gunzip } from "../src/wire/gunzip.ts";
import { type Started, startBinary } from "../test/helpers/binary.ts";
import {
  BINARY,
  fmt,
  freePort,
  fsType,
  onCleanup,
  pct,
  pgBinDir,
  postmasterPids,
  prepareCompute,
  run,
  table,
  tempWorkDir,
  until,
} from "./lib.ts";

// The API is behind the JWT check, as in production: one key, one token for all runs.
const keys = await makeTestKeys();
const auth = bearer(await keys.sign({ compute_id: "bench" }));

const runs = Number(process.argv[2] ?? 20);
const parent = process.env.BENCH_TMPDIR ?? tmpdir();
const pgbin = pgBinDir();
const runAs = resolveRunAs();
const asPostgres = runAs
  ? { uid: runAs.uid, gid: runAs.gid, env: { PATH: "/usr/bin:/bin", ...identityEnv(runAs) } }
  : {};
const work = tempWorkDir("bench-startup-", parent);
const archivePath = join(work, "basebackup.tar.gz");
const confPath = join(work, "compute_ctl-postgresql.conf");

// On Ctrl-C: stop whatever is running before the work dir goes.
let current: Started | undefined;
onCleanup(() => {
  current?.proc.kill("SIGKILL");
  const ours = (a: string) => a.startsWith(`${work}/`);
  for (const pid of postmasterPids(ours)) process.kill(pid, "SIGQUIT");
  const deadline = performance.now() + 5_000;
  while (postmasterPids(ours).length > 0 && performance.now() < deadline) Bun.sleepSync(20);
});

const now = () => performance.now();
const readyIn = (pgdata: string): boolean => {
  try {
    return postmasterPidSaysReady(readFileSync(join(pgdata, "postmaster.pid"), "utf8"));
  } catch {
    return false;
  }
};

/** One basebackup from the stand-in, gzip bytes kept; ms from connect to the end. */
async function fetchArchive(env: DevEnvironment): Promise<{ ms: number; bytes: Uint8Array }> {
  const t0 = now();
  const c = await connect({ host: "127.0.0.1", port: env.pageserver.port, user: "no_user" });
  try {
    const copy = await c.copyOut(
      `basebackup ${env.tenantId} ${env.timelineId} ${env.template.checkpointLsn} --gzip`,
    );
    const bytes = await new Response(copy).bytes();
    return { ms: now() - t0, bytes };
  } finally {
    await c.close();
  }
}

const METRICS = [
  "sync_sk_check_ms",
  "sync_safekeepers_ms",
  "pageserver_connect_micros",
  "basebackup_ms",
  "start_postgres_ms",
  "config_ms",
  "total_startup_ms",
] as const;

interface OursSample {
  metrics: Record<string, number>;
  /** ms from exec. */
  firstStatus: number;
  pgReady: number;
  running: number;
  /** The stand-in's first basebackup (it gzips the template then) and a replay. */
  coldFetch: number;
  warmFetch: number;
}

let seq = 0;

async function oneOurs(): Promise<OursSample> {
  const env = await startDevEnvironment({ pgBinDir: pgbin, workDir: work, runAs });
  const pgdata = join(work, `c${seq++}-pgdata`);
  let child: Started | undefined;
  try {
    // Prime the stand-in: its first request gzips the template, later ones replay it.
    const cold = await fetchArchive(env);
    const warm = await fetchArchive(env);
    if (statSync(archivePath, { throwIfNoEntry: false }) === undefined)
      writeFileSync(archivePath, cold.bytes);
    const { argv, ext } = await prepareCompute({
      base: pgdata.replace(/-pgdata$/, ""),
      pgbin: env.pgbin.postgres,
      jwks: keys.jwks,
      specFor: (port) =>
        minimalSpecJson({
          skip_pg_catalog_updates: true,
          cluster: { roles: [], databases: [], postgresql_conf: loopbackPostgresConf(port) },
          mode: "Primary",
          ...env.storageSpec(),
        }),
    });
    const status = `http://127.0.0.1:${ext}/status`;
    const t0 = now();
    child = startBinary(argv);
    current = child;
    let firstStatus = Number.NaN;
    let pgReady = Number.NaN;
    let running = Number.NaN;
    while (Number.isNaN(running)) {
      if (now() - t0 > 60_000) throw new Error("compute_ctl not running after 60 s");
      if (child.proc.exitCode !== null)
        throw new Error(`compute_ctl exited: ${child.stderr().slice(-2000)}`);
      if (Number.isNaN(pgReady) && readyIn(pgdata)) pgReady = now() - t0;
      const st = await fetch(status, { headers: auth }).then(
        (r) => r.json() as Promise<{ status: string; error?: string }>,
        () => undefined, // not listening yet
      );
      if (st) {
        if (Number.isNaN(firstStatus)) firstStatus = now() - t0;
        if (st.status === "running") running = now() - t0;
        else if (st.status === "failed") throw new Error(`compute_ctl failed: ${st.error}`);
      }
      if (Number.isNaN(running)) await Bun.sleep(2);
    }
    if (Number.isNaN(pgReady)) pgReady = running;
    const metrics = (await (
      await fetch(`http://127.0.0.1:${ext}/metrics.json`, { headers: auth })
    ).json()) as Record<string, number>;
    if (statSync(confPath, { throwIfNoEntry: false }) === undefined)
      copyFileSync(join(pgdata, "postgresql.conf"), confPath);
    return { metrics, firstStatus, pgReady, running, coldFetch: cold.ms, warmFetch: warm.ms };
  } finally {
    if (child) await child.stop("SIGTERM");
    current = undefined;
    await env.close();
    await until(
      "compute_ctl's postgres to exit",
      () => postmasterPids((a) => a === pgdata).length === 0,
    );
    rmSync(pgdata, { recursive: true, force: true });
  }
}

interface BaseSample {
  tar: number;
  prep: number;
  pgCtl: number;
  /** ms from pg_ctl exec. */
  pgReady: number;
  total: number;
}

async function oneBaseline(): Promise<BaseSample> {
  const dir = join(work, `base-${seq++}`);
  const port = await freePort();
  const pgCtl = join(pgbin, "pg_ctl");
  mkdirSync(dir, { mode: 0o700 });
  let started = false;
  try {
    const t0 = now();
    await run(["tar", "-xzf", archivePath, "-C", dir]);
    const t1 = now();
    copyFileSync(confPath, join(dir, "postgresql.conf"));
    if (runAs) await run(["chown", "-R", `${runAs.uid}:${runAs.gid}`, dir]);
    const t2 = now();
    started = true;
    const opts = `-c listen_addresses=127.0.0.1 -p ${port}`;
    const log = join(dir, "pg_ctl.log");
    const p = Bun.spawn([pgCtl, "start", "-w", "-D", dir, "-l", log, "-o", opts], {
      stdin: "ignore",
      stdout: "ignore",
      stderr: "ignore",
      ...asPostgres,
    });
    let pgReady = Number.NaN;
    while (p.exitCode === null) {
      if (Number.isNaN(pgReady) && readyIn(dir)) pgReady = now() - t2;
      await Promise.race([Bun.sleep(2), p.exited]);
    }
    const t3 = now();
    if (p.exitCode !== 0) throw new Error(`pg_ctl start failed: ${readFileSync(log, "utf8")}`);
    if (Number.isNaN(pgReady)) pgReady = t3 - t2;
    return { tar: t1 - t0, prep: t2 - t1, pgCtl: t3 - t2, pgReady, total: t3 - t0 };
  } finally {
    if (started) await run([pgCtl, "stop", "-m", "immediate", "-w", "-D", dir], asPostgres);
    await until("baseline postgres to exit", () => postmasterPids((a) => a === dir).length === 0);
    rmSync(dir, { recursive: true, force: true });
  }
}

/** The floor any extractor pays here: creating `n` empty files in a fresh directory. */
function createFiles(n: number): number {
  const dir = join(work, `files-${seq++}`);
  mkdirSync(dir);
  const t0 = now();
  for (let i = 0; i < n; i++) writeFileSync(join(dir, String(i)), "");
  const ms = now() - t0;
  rmSync(dir, { recursive: true, force: true });
  return ms;
}

// Warm-up (also captures the archive and compute_ctl's postgresql.conf), then interleave.
await oneOurs();
await oneBaseline();
const ours: OursSample[] = [];
const base: BaseSample[] = [];
for (let i = 0; i < runs; i++) {
  ours.push(await oneOurs());
  base.push(await oneBaseline());
}

const archive = readFileSync(archivePath);
const entries = (await new Response(Bun.spawn(["tar", "-tzf", archivePath]).stdout).text())
  .trim()
  .split("\n").length;
const rawBytes = Bun.gunzipSync(archive).length;
const fileFloor = [createFiles(entries), createFiles(entries), createFiles(entries)];
// How much of tar -xzf and of basebackup_ms is decompression alone.
const gnuGunzip: number[] = [];
const ourGunzip: number[] = [];
for (let i = 0; i < 5; i++) {
  let t0 = now();
  await run(["gzip", "-dc", archivePath]);
  gnuGunzip.push(now() - t0);
  t0 = now();
  for await (const _ of gunzip(Bun.file(archivePath).stream())) {
    // discard
  }
  ourGunzip.push(now() - t0);
}

const m = (k: string) => ours.map((s) => s.metrics[k] ?? Number.NaN);
const col = (xs: number[]) => [fmt(pct(xs, 50)), fmt(pct(xs, 90))];
const rows: [string, number[]][] = [
  ["compute_ctl: exec → first /status answer", ours.map((s) => s.firstStatus)],
  ...METRICS.map((k): [string, number[]] =>
    k === "pageserver_connect_micros"
      ? ["compute_ctl: pageserver_connect_micros (as ms)", m(k).map((v) => v / 1000)]
      : [`compute_ctl: ${k}`, m(k)],
  ),
  ["compute_ctl: exec → postmaster.pid ready", ours.map((s) => s.pgReady)],
  ["**compute_ctl: exec → running (wall)**", ours.map((s) => s.running)],
  ["baseline: tar -xzf", base.map((s) => s.tar)],
  ["baseline: postgresql.conf + chown -R", base.map((s) => s.prep)],
  ["baseline: pg_ctl start -w", base.map((s) => s.pgCtl)],
  ["baseline: pg_ctl exec → postmaster.pid ready", base.map((s) => s.pgReady)],
  ["**baseline: total**", base.map((s) => s.total)],
  [
    "stand-in: replay of the primed archive (connect → copyOut → discard)",
    ours.map((s) => s.warmFetch),
  ],
  [`file system: create ${entries} empty files (3 runs)`, fileFloor],
  ["gzip -dc of the archive > /dev/null (5 runs)", gnuGunzip],
  ["our gunzip (DecompressionStream) of the archive, discarded (5 runs)", ourGunzip],
];

const p50 = (xs: number[]) => pct(xs, 50);
const wall = p50(ours.map((s) => s.running));
const baseTotal = p50(base.map((s) => s.total));
const overhead = wall - baseTotal;
const bb = p50(m("basebackup_ms"));
const tar = p50(base.map((s) => s.tar));
const sp = p50(m("start_postgres_ms"));
const pgc = p50(base.map((s) => s.pgCtl));
const oursTail = p50(ours.map((s) => s.running - s.pgReady));
const baseTail = p50(base.map((s) => s.pgCtl - s.pgReady));

console.log(
  `binary: ${BINARY}; ${runs} runs each, interleaved; PGDATA under ${parent} (${fsType(parent)})`,
);
console.log(
  `archive: ${(archive.length / 1e6).toFixed(1)} MB gzip, ${(rawBytes / 1e6).toFixed(1)} MB tar, ${entries} entries`,
);
console.log(
  table(
    ["step", "p50 ms", "p90 ms"],
    rows.map(([name, xs]) => [name, ...col(xs)]),
  ),
);
console.log(
  `\ncompute_ctl overhead = total − baseline at p50: ${fmt(wall)} − ${fmt(baseTotal)} = ${fmt(overhead)} ms (target ≤ 15 ms)`,
);
const outside = wall - bb - (baseTotal - tar);
console.log(
  `outside the archive step: (wall − basebackup_ms) − (baseline − tar -xzf) = ${fmt(outside)} ms`,
);
console.log(`
Where it goes (p50s):
- before the basebackup: ${fmt(p50(ours.map((s) => s.running - (s.metrics.total_startup_ms ?? 0))))} ms from exec until compute_ctl's own clock starts (wall − total_startup_ms: process start, module load, CLI and config parse), ${fmt(p50(ours.map((s) => s.firstStatus)))} ms to the first /status answer (first-status.ts measures that for an empty compute); sync_sk_check ${fmt(p50(m("sync_sk_check_ms")))} ms, sync_safekeepers ${fmt(p50(m("sync_safekeepers_ms")))} ms${p50(m("sync_safekeepers_ms")) === 0 ? " (the stand-ins agree, so the fast path skips it)" : ""}.
- basebackup_ms − tar -xzf: ${fmt(bb - tar)} ms. Decompression alone: gzip -dc ${fmt(p50(gnuGunzip))} ms, our gunzip ${fmt(p50(ourGunzip))} ms; the stand-in's replay of the archive over loopback alone ${fmt(p50(ours.map((s) => s.warmFetch)))} ms (it shares this process with the /status polling); creating the ${entries} files alone ${fmt(p50(fileFloor))} ms.
- start_postgres_ms − pg_ctl start -w: ${fmt(sp - pgc)} ms. compute_ctl wakes on inotify when postmaster.pid changes (polling every 100 ms only as a backstop); pg_ctl polls every 100 ms (WAITS_PER_SEC=10) and rounds up to its next tick: from postmaster.pid "ready" to running ${fmt(oursTail)} ms for compute_ctl (config_ms ${fmt(p50(m("config_ms")))}), to pg_ctl's exit ${fmt(baseTail)} ms.
- stand-in: its first basebackup request gzips the template (${fmt(p50(ours.map((s) => s.coldFetch)))} ms cold vs ${fmt(p50(ours.map((s) => s.warmFetch)))} ms replayed); every run primes it before the exec, so that is not counted.`);
