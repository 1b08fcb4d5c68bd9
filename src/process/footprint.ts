// Giving memory back while the compute is idle. A running compute_ctl keeps
// ~47 MiB of the Bun executable's pages resident that only start-up touched
// (spawn, zlib for the basebackup, WebCrypto, the JIT tiers), plus a heap full
// of code compiled for start-up. Both are cheap to get back when needed: code
// pages are clean file pages, re-read on the next fault; JavaScript recompiles
// from the bytecode embedded in the executable. See docs/PERFORMANCE.md
// "Memory footprint" for what each part measured.

import { closeSync, openSync, readFileSync, readSync, statSync } from "node:fs";
import { type FfiResult, failure, lastErrno, tryLibc } from "./libc.ts";

/** madvise(2) advice values (Linux, all architectures). */
export const MADV_RANDOM = 1;
/** Reclaim now (Linux ≥ 5.4); clean file pages are dropped, not written. */
export const MADV_PAGEOUT = 21;

/** Half-open [start, end) of a mapping. */
export interface AddressRange {
  start: bigint;
  end: bigint;
}

export interface ExecutableMapping extends AddressRange {
  /** A private writable mapping (.data): it may hold our own copy-on-write pages. */
  writable: boolean;
}

/**
 * Pure: the mappings of the file with this inode in a /proc/PID/maps text.
 * Matched by inode rather than path: the path reads "(deleted)" once the
 * binary on disk was replaced, and Bun may be started through a symlink.
 */
export function executableMappings(maps: string, inode: number): ExecutableMapping[] {
  const out: ExecutableMapping[] = [];
  if (inode === 0) return out;
  for (const line of maps.split("\n")) {
    const m = /^([0-9a-f]+)-([0-9a-f]+) (\S{4}) \S+ \S+ (\d+)/.exec(line);
    if (!m || Number(m[4]) !== inode) continue;
    out.push({
      start: BigInt(`0x${m[1]}`),
      end: BigInt(`0x${m[2]}`),
      writable: m[3]?.[1] === "w",
    });
  }
  return out;
}

const PM_PRESENT = 1n << 63n;
const PM_FILE = 1n << 61n;

/**
 * Pure: from /proc/PID/pagemap entries of pages starting at `start`, the runs
 * of resident pages that are still the file's (not copied on write). In a
 * writable mapping only those are paged out: a copied page is our data, and
 * with swap MADV_PAGEOUT would write it there.
 */
export function filePageRuns(
  entries: BigUint64Array,
  start: bigint,
  pageSize: number,
): AddressRange[] {
  const out: AddressRange[] = [];
  const size = BigInt(pageSize);
  let runStart = -1;
  for (let i = 0; i <= entries.length; i++) {
    const e = i < entries.length ? (entries[i] as bigint) : 0n;
    const take = (e & PM_PRESENT) !== 0n && (e & PM_FILE) !== 0n;
    if (take && runStart < 0) runStart = i;
    if (!take && runStart >= 0) {
      out.push({ start: start + BigInt(runStart) * size, end: start + BigInt(i) * size });
      runStart = -1;
    }
  }
  return out;
}

/** Pure: `ranges` cut into pieces of at most `maxBytes` (a multiple of the page size). */
export function chunkRanges(ranges: readonly AddressRange[], maxBytes: number): AddressRange[] {
  const step = BigInt(maxBytes);
  const out: AddressRange[] = [];
  for (const r of ranges) {
    for (let s = r.start; s < r.end; s += step) {
      out.push({ start: s, end: s + step < r.end ? s + step : r.end });
    }
  }
  return out;
}

export interface ResidentMemory {
  /** VmRSS, bytes. */
  rss: number;
  /** RssFile (file-backed pages, mostly the executable), bytes. */
  file: number;
  /** RssAnon (heaps, stacks, JIT code), bytes. */
  anon: number;
}

/** Pure: the resident-set lines of a /proc/PID/status text. */
export function parseResidentMemory(status: string): ResidentMemory {
  const kb = (name: string) => {
    const m = new RegExp(`^${name}:\\s+(\\d+) kB`, "m").exec(status);
    return m ? Number(m[1]) * 1024 : 0;
  };
  return { rss: kb("VmRSS"), file: kb("RssFile"), anon: kb("RssAnon") };
}

export function residentMemory(pid: number | "self" = "self"): ResidentMemory {
  return parseResidentMemory(readFileSync(`/proc/${pid}/status`, "utf8"));
}

export type PageOutResult = (FfiResult & { ok: false }) | { ok: true; bytes: number };

export interface PageOutOptions {
  /** Bytes per madvise call; the event loop gets a turn between calls. */
  chunkBytes?: number;
  /** Between chunks (default: one event-loop turn). */
  yieldTurn?: () => Promise<void>;
}

const CHUNK_BYTES = 4 * 1024 * 1024;

/** The file-backed pages of a writable mapping, read from /proc/self/pagemap. */
function writableFilePages(pagemapFd: number, m: AddressRange, pageSize: number): AddressRange[] {
  const pages = Number((m.end - m.start) / BigInt(pageSize));
  const entries = new BigUint64Array(pages);
  const position = Number(m.start / BigInt(pageSize)) * 8;
  readSync(pagemapFd, entries, 0, entries.byteLength, position);
  return filePageRuns(entries, m.start, pageSize);
}

/** The file's own pages in the writable mappings; none when pagemap cannot be read. */
function fileOwnedData(mappings: readonly ExecutableMapping[], pageSize: number): AddressRange[] {
  let pagemap: number | undefined;
  try {
    pagemap = openSync("/proc/self/pagemap", "r");
    const fd = pagemap;
    return mappings.filter((m) => m.writable).flatMap((m) => writableFilePages(fd, m, pageSize));
  } catch {
    // A kernel that hides pagemap: the writable data stays, the code still goes.
    return [];
  } finally {
    if (pagemap !== undefined) closeSync(pagemap);
  }
}

/**
 * Pages out this process's executable (MADV_PAGEOUT): its code and read-only
 * data, and the file's own pages in its writable data. Then marks the
 * read-only part MADV_RANDOM, so that a page needed again is read alone
 * rather than with the 128 KiB of neighbours readahead would bring in.
 * One madvise covers at most 4 MiB (~10 ms here); the event loop gets a turn
 * between them.
 */
export async function pageOutExecutable(opts: PageOutOptions = {}): Promise<PageOutResult> {
  const l = tryLibc();
  if (!l.ok) return l;
  const { libc } = l;
  const mappings = executableMappings(
    readFileSync("/proc/self/maps", "utf8"),
    statSync("/proc/self/exe").ino,
  );
  if (mappings.length === 0) {
    return { ok: false, errno: 0, code: "ENOENT", message: "no mapping of /proc/self/exe found" };
  }
  const pageSize = libc.getpagesize();
  const readOnly = mappings.filter((m) => !m.writable);
  const data = fileOwnedData(mappings, pageSize);
  const yieldTurn = opts.yieldTurn ?? (() => new Promise<void>((r) => setImmediate(r)));
  let bytes = 0;
  for (const [ranges, random] of [
    [readOnly, true],
    [data, false],
  ] as const) {
    for (const c of chunkRanges(ranges, opts.chunkBytes ?? CHUNK_BYTES)) {
      const len = c.end - c.start;
      if (libc.madvise(c.start, len, MADV_PAGEOUT) !== 0) {
        return failure(lastErrno(libc), "madvise(MADV_PAGEOUT)");
      }
      if (random) libc.madvise(c.start, len, MADV_RANDOM);
      bytes += Number(len);
      await yieldTurn();
    }
  }
  return { ok: true, bytes };
}

/**
 * Drops all compiled JavaScript and collects the heap (JSC's
 * shrinkFootprintWhenIdle: it runs once no JavaScript is on the stack, so we
 * wait for the next turn). Functions recompile from the embedded bytecode.
 */
export async function releaseHeap(): Promise<void> {
  Bun.shrink();
  await new Promise<void>((r) => setTimeout(r, 0));
}

export interface TrimOutcome {
  before: ResidentMemory;
  after: ResidentMemory;
  /** Bytes of the executable advised out (mapped, not necessarily resident), or why not. */
  pagedOut: number | string;
  ms: number;
}

/** The heap first: its collection touches code that the page-out then takes too. */
export async function trimFootprint(): Promise<TrimOutcome> {
  const started = performance.now();
  const before = residentMemory();
  await releaseHeap();
  const paged = await pageOutExecutable();
  return {
    before,
    after: residentMemory(),
    pagedOut: paged.ok ? paged.bytes : paged.message,
    ms: performance.now() - started,
  };
}
