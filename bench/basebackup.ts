// Ingest of a 1 GiB basebackup: the project's own pipeline (connect → copyOut →
// countBytes → gunzip → extractTar, as tryGetBasebackup runs it) from a pageserver
// stand-in serving a gzip'd tar compressed once beforehand. Baselines in the same
// run, interleaved: GNU `tar -xzf` of the same file, `gzip -dc` to /dev/null, and our
// gunzip alone (DecompressionStream) to nothing, the floor of any pipeline here.
//
//   bun bench/basebackup.ts [rounds]            (default 5)
//   BENCH_TMPDIR=/dev/shm bun bench/basebackup.ts   # data on tmpfs instead of /tmp's disk
import { randomBytes } from "node:crypto";
import { mkdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { startPageserver } from "../src/dev/pageserver.ts";
import { encodeTarHeader, gzip, streamFrom } from "../src/dev/tar-writer.ts";
import { resolveRunAs } from "../src/process/user.ts";
import { connect } from "../src/wire/client.ts";
import { countBytes, gunzip } from "../src/wire/gunzip.ts";
import { extractTar } from "../src/wire/untar.ts";
import {
  fmt,
  fsType,
  machineBusySeconds,
  median,
  onCleanup,
  peakRss,
  processCpuSeconds,
  resetPeakRss,
  run,
  table,
  tempWorkDir,
} from "./lib.ts";

// Child mode: the stand-in runs in its own process, as a real pageserver would,
// so it does not share our JS thread. It exits when our end of its stdin closes.
if (process.argv[2] === "--serve") {
  const file = process.argv[3] ?? "";
  const ps = startPageserver({
    template: { dir: "/nonexistent" },
    archiveOverride: () => Bun.file(file).stream(),
  });
  console.log(ps.port);
  for await (const _ of Bun.stdin.stream()) {
    // wait for EOF
  }
  await ps.close();
  process.exit(0);
}

const rounds = Number(process.argv[2] ?? 5);
const parent = process.env.BENCH_TMPDIR ?? tmpdir();
const runAs = resolveRunAs();
const owner = runAs ? { uid: runAs.uid, gid: runAs.gid } : undefined;
const work = tempWorkDir("bench-basebackup-", parent);
const archivePath = join(work, "basebackup.tar.gz");
const MiB = 1 << 20;
const now = () => performance.now();

// --- The archive: 900 MiB of heap-like pages, 124 MiB of random bytes, small files.

/** xorshift32: cheap, reproducible pseudo-random numbers. */
function rng(seed: number): () => number {
  let x = seed || 1;
  return () => {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    return x >>> 0;
  };
}

/**
 * 1 MiB of pgbench_accounts-like 8 KiB pages: 63 tuples of 128 bytes (header, a
 * sequential id, small ints, 16 random hex digits padded with spaces). Compresses
 * about 5×, between a fresh pgbench table and text.
 */
function heapBlock(seed: number): Uint8Array {
  const next = rng(seed);
  const b = new Uint8Array(MiB);
  const hex = "0123456789abcdef";
  let aid = seed * 8192;
  for (let page = 0; page < MiB; page += 8192) {
    const v = new DataView(b.buffer, page, 8192);
    v.setUint32(0, next()); // pd_lsn
    v.setUint16(12, 24 + 63 * 4); // pd_lower
    v.setUint16(14, 8192 - 63 * 128); // pd_upper
    for (let t = 0; t < 63; t++) {
      const at = 8192 - (t + 1) * 128;
      v.setUint32(24 + t * 4, (at << 17) | 128); // line pointer
      v.setUint32(at, 731 + (next() & 3)); // xmin
      v.setUint32(at + 24, aid++);
      v.setUint32(at + 28, 1 + (aid >> 17));
      v.setInt32(at + 32, (next() % 20001) - 10000);
      for (let i = 0; i < 16; i++) b[page + at + 36 + i] = hex.charCodeAt(next() & 15);
      b.fill(0x20, page + at + 52, page + at + 120);
    }
  }
  return b;
}

const counter = { bytes: 0, fileBytes: 0 };
const mtime = Math.floor(Date.now() / 1000);
const header = (name: string, size: number) => {
  counter.fileBytes += Math.max(size, 0);
  return encodeTarHeader({
    name,
    kind: size < 0 ? "directory" : "file",
    mode: 0o600,
    uid: 0,
    gid: 0,
    size: Math.max(size, 0),
    mtime,
  });
};

/** The tar stream, without end-of-archive blocks like the pageserver's; size counted. */
async function* tarChunks(counter: {
  bytes: number;
  fileBytes: number;
}): AsyncGenerator<Uint8Array> {
  const blocks = Array.from({ length: 64 }, (_, i) => heapBlock(i + 1));
  const pick = rng(7);
  const emit = (b: Uint8Array) => {
    counter.bytes += b.length;
    return b;
  };
  yield emit(header("base", -1));
  yield emit(header("base/16384", -1));
  for (let f = 0; f < 9; f++) {
    yield emit(header(`base/16384/${16400 + f}`, 100 * MiB));
    for (let i = 0; i < 100; i++) yield emit(blocks[pick() % blocks.length] ?? new Uint8Array(MiB));
    if (f === 4) {
      // Random data in the middle: incompressible, as already-compressed content is.
      for (let r = 0; r < 2; r++) {
        yield emit(header(`base/16384/${16500 + r}`, 62 * MiB));
        for (let i = 0; i < 62; i++) yield emit(randomBytes(MiB));
      }
    }
  }
  yield emit(header("base/16385", -1));
  for (let s = 0; s < 256; s++) {
    yield emit(header(`base/16385/${17000 + s}`, 8192));
    yield emit((blocks[s % blocks.length] ?? new Uint8Array(8192)).subarray(0, 8192));
  }
}

const tPrep = now();
{
  const sink = Bun.file(archivePath).writer();
  for await (const c of gzip(streamFrom(tarChunks(counter)))) sink.write(c);
  await sink.end();
}
const rawBytes = counter.bytes;
const gzBytes = Bun.file(archivePath).size;
const prepSeconds = (now() - tPrep) / 1000;

// --- The stand-in, in a child process.

const server = Bun.spawn([process.execPath, import.meta.path, "--serve", archivePath], {
  stdin: "pipe",
  stdout: "pipe",
  stderr: "inherit",
});
onCleanup(() => server.kill("SIGKILL"));
const port = await (async () => {
  const reader = server.stdout.getReader();
  const { value } = await reader.read();
  reader.releaseLock();
  const p = Number(new TextDecoder().decode(value).trim());
  if (!Number.isInteger(p) || p <= 0) throw new Error("the pageserver stand-in did not start");
  return p;
})();
const tenant = randomBytes(16).toString("hex");
const timeline = randomBytes(16).toString("hex");

// --- The contestants. Each returns seconds; extraction targets are fresh dirs.

let seq = 0;
const freshDir = () => {
  const d = join(work, `x-${seq++}`);
  mkdirSync(d, { mode: 0o700 });
  return d;
};
const peaks: number[] = [];

/** connect → copyOut → countBytes → gunzip; the caller consumes the stream. */
async function fetchGunzipped<T>(use: (tar: ReadableStream<Uint8Array>) => Promise<T>): Promise<T> {
  const client = await connect({ host: "127.0.0.1", port, user: "no_user" });
  let compressed = 0;
  try {
    const copy = await client.copyOut(`basebackup ${tenant} ${timeline} --gzip`);
    const counted = countBytes(copy, (_n, total) => {
      compressed = total;
    });
    const out = await use(gunzip(counted));
    if (compressed !== gzBytes) throw new Error(`got ${compressed} of ${gzBytes} gzip bytes`);
    return out;
  } finally {
    await client.close();
  }
}

const checkExtracted = (res: { bytes: number }) => {
  if (res.bytes !== counter.fileBytes)
    throw new Error(`extracted ${res.bytes} file bytes, expected ${counter.fileBytes}`);
};

async function ours(dir: string): Promise<number> {
  Bun.gc(true);
  const canReset = resetPeakRss();
  const t0 = now();
  checkExtracted(await fetchGunzipped((tar) => extractTar(tar, dir, { chown: owner })));
  const s = (now() - t0) / 1000;
  if (canReset) peaks.push(peakRss());
  return s;
}

/** Diagnostic: ours without the disk. */
async function oursDiscard(): Promise<number> {
  const t0 = now();
  const n = await fetchGunzipped(async (tar) => {
    let n = 0;
    for await (const c of tar) n += c.length;
    return n;
  });
  if (n !== rawBytes) throw new Error(`gunzip gave ${n} bytes, expected ${rawBytes}`);
  return (now() - t0) / 1000;
}

/** Diagnostic: ours without the network. */
async function oursFromFile(dir: string): Promise<number> {
  const t0 = now();
  checkExtracted(await extractTar(gunzip(Bun.file(archivePath).stream()), dir, { chown: owner }));
  return (now() - t0) / 1000;
}

async function gnuTar(dir: string): Promise<number> {
  const t0 = now();
  await run(["tar", "-xzf", archivePath, "-C", dir]);
  return (now() - t0) / 1000;
}

async function gzipAlone(): Promise<number> {
  const t0 = now();
  await run(["gzip", "-dc", archivePath]); // stdout is /dev/null
  return (now() - t0) / 1000;
}

async function ourGunzipAlone(): Promise<number> {
  const t0 = now();
  let n = 0;
  for await (const c of gunzip(Bun.file(archivePath).stream())) n += c.length;
  if (n !== rawBytes) throw new Error(`gunzip gave ${n} bytes, expected ${rawBytes}`);
  return (now() - t0) / 1000;
}

const contestants: {
  name: string;
  fn: (dir: string) => Promise<number>;
  extracts: boolean;
  inProcess: boolean;
}[] = [
  {
    name: "**ours: connect → copyOut → gunzip → extractTar**",
    fn: ours,
    extracts: true,
    inProcess: true,
  },
  { name: "GNU tar -xzf <file>", fn: gnuTar, extracts: true, inProcess: false },
  { name: "gzip -dc <file> > /dev/null", fn: gzipAlone, extracts: false, inProcess: false },
  {
    name: "our gunzip alone: file → DecompressionStream → discard",
    fn: ourGunzipAlone,
    extracts: false,
    inProcess: true,
  },
  {
    name: "diagnostic: ours without the disk (… → gunzip → discard)",
    fn: oursDiscard,
    extracts: false,
    inProcess: true,
  },
  {
    name: "diagnostic: ours without the network (file → gunzip → extractTar)",
    fn: oursFromFile,
    extracts: true,
    inProcess: true,
  },
];
interface Sample {
  s: number;
  /** CPU seconds: the whole machine, this process, the stand-in. */
  machine: number;
  self: number;
  server: number;
}
const samples = contestants.map(() => [] as Sample[]);

// Warm the page cache with the archive, then rotate the order each round.
await ourGunzipAlone();
for (let r = 0; r < rounds; r++) {
  for (let k = 0; k < contestants.length; k++) {
    const i = (r + k) % contestants.length;
    const c = contestants[i];
    if (!c) continue;
    const dir = c.extracts ? freshDir() : "";
    // Write back the previous step's data so it is not charged to this one.
    await run(["sync"]);
    const m0 = machineBusySeconds();
    const c0 = process.cpuUsage();
    const s0 = processCpuSeconds(server.pid);
    const s = await c.fn(dir);
    const self = process.cpuUsage(c0);
    samples[i]?.push({
      s,
      machine: machineBusySeconds() - m0,
      self: (self.user + self.system) / 1e6,
      server: processCpuSeconds(server.pid) - s0,
    });
    if (dir) rmSync(dir, { recursive: true, force: true });
  }
}
server.stdin.end();
await server.exited;

const MB = 1e6;
const med = (i: number, k: keyof Sample) => median((samples[i] ?? []).map((x) => x[k]));
const [oursS, tarS, gzS, floorS, noDiskS, noNetS] = [0, 1, 2, 3, 4, 5].map((i) => med(i, "s")) as [
  number,
  number,
  number,
  number,
  number,
  number,
];
const cores = (i: number) => med(i, "self") / med(i, "s");
console.log(
  `archive: ${fmt(rawBytes / MB, 0)} MB tar (${fmt(rawBytes / 2 ** 30, 2)} GiB: 900 MiB heap-like pages, 124 MiB random, 256 small files) → ${fmt(gzBytes / MB, 0)} MB gzip; built and compressed once in ${fmt(prepSeconds)} s`,
);
console.log(
  `${rounds} rounds, order rotated each round, medians; data under ${parent} (${fsType(parent)}); stand-in in a child process, 8 KiB CopyData frames; ours chowns to ${runAs ? runAs.name : "nobody (not root)"}, GNU tar as root restores the archive's 0:0`,
);
console.log(
  table(
    ["step", "median s", "MB/s (uncompressed)", "CPU s: machine / this process", "all rounds s"],
    contestants.map((c, i) => [
      c.name,
      fmt(med(i, "s"), 2),
      fmt(rawBytes / MB / med(i, "s"), 0),
      `${fmt(med(i, "machine"), 2)} / ${c.inProcess ? fmt(med(i, "self"), 2) : "—"}`,
      (samples[i] ?? []).map((x) => fmt(x.s, 2)).join(", "),
    ]),
  ),
);
console.log(`
ours vs GNU tar -xzf: ${fmt(tarS / oursS, 2)}× as fast (target ≥ 1.5×)
ours vs gzip -dc alone: ${fmt(oursS / gzS, 2)}× its time (target within 1.3×)
ours vs our gunzip alone: ${fmt(oursS / floorS, 2)}× its time. Over that floor the transfer alone adds ${fmt(noDiskS - floorS, 2)} s and the extraction alone ${fmt(noNetS - floorS, 2)} s; together they add ${fmt(oursS - floorS, 2)} s. During our ingest this process keeps ${fmt(cores(0), 2)} of the machine's 2 cores busy on average (gunzip alone: ${fmt(cores(3), 2)}; without the network: ${fmt(cores(5), 2)}) and the stand-in uses ${fmt(med(0, "server"), 2)} CPU s: the pipeline runs at about one core, it does not wait on the disk or the stand-in
peak RSS of this process during our ingest: median ${fmt(median(peaks) / MiB, 0)} MiB, max ${fmt(Math.max(...peaks) / MiB, 0)} MiB (VmHWM, reset before each ingest)`);
