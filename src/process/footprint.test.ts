import { describe, expect, test } from "bun:test";
import { statSync } from "node:fs";
import {
  chunkRanges,
  executableMappings,
  filePageRuns,
  pageOutExecutable,
  parseResidentMemory,
} from "./footprint.ts";

// A compiled compute_ctl's maps, abridged; inode 1234 is the executable.
const MAPS = `\
00200000-01838000 r--p 00000000 fd:01 1234                               /usr/local/bin/compute_ctl
01838000-06600000 r-xp 01637000 fd:01 1234                               /usr/local/bin/compute_ctl
06600000-0665e000 rw-p 063ff000 fd:01 1234                               /usr/local/bin/compute_ctl
0665e000-06b97000 rw-p 0645c000 fd:01 1234                               /usr/local/bin/compute_ctl (deleted)
06b97000-06c00000 r--p 06995000 fd:01 1234                               /usr/local/bin/compute_ctl (deleted)
06c00000-07000000 rw-p 00000000 00:00 0                                  [heap]
7f0000000000-7f0004000000 rw-p 00000000 00:00 0
7f1000000000-7f1000028000 r--p 00000000 fd:01 98765                      /usr/lib/x86_64-linux-gnu/libc.so.6
7f1000028000-7f10001bd000 r-xp 00028000 fd:01 98765                      /usr/lib/x86_64-linux-gnu/libc.so.6
7ffd00000000-7ffd00021000 rw-p 00000000 00:00 0                          [stack]
`;

describe("executableMappings", () => {
  test("every mapping of the executable, by inode, also once deleted on disk", () => {
    expect(executableMappings(MAPS, 1234)).toEqual([
      { start: 0x200000n, end: 0x1838000n, writable: false },
      { start: 0x1838000n, end: 0x6600000n, writable: false },
      { start: 0x6600000n, end: 0x665e000n, writable: true },
      { start: 0x665e000n, end: 0x6b97000n, writable: true },
      { start: 0x6b97000n, end: 0x6c00000n, writable: false },
    ]);
    expect(executableMappings(MAPS, 98765)).toHaveLength(2);
    // Anonymous mappings have inode 0: never taken.
    expect(executableMappings(MAPS, 0)).toEqual([]);
    expect(executableMappings("", 1234)).toEqual([]);
  });
});

test("filePageRuns keeps resident pages of the file, not copied or absent ones", () => {
  const present = 1n << 63n;
  const file = 1n << 61n;
  const pfn = 0x1234n; // other bits do not matter
  const entries = new BigUint64Array([
    present | file | pfn, // 0: the file's page
    present | file, // 1
    present | pfn, // 2: copied on write (anonymous): ours
    0n, // 3: not resident
    file, // 4: swapped-out or not present
    present | file, // 5
  ]);
  expect(filePageRuns(entries, 0x10000n, 4096)).toEqual([
    { start: 0x10000n, end: 0x12000n },
    { start: 0x15000n, end: 0x16000n },
  ]);
  expect(filePageRuns(new BigUint64Array(0), 0x10000n, 4096)).toEqual([]);
  expect(filePageRuns(new BigUint64Array([present | file]), 0n, 16384)).toEqual([
    { start: 0n, end: 0x4000n },
  ]);
});

test("chunkRanges cuts ranges at maxBytes and keeps every byte once", () => {
  const ranges = [
    { start: 0x1000n, end: 0x6000n },
    { start: 0x10000n, end: 0x12000n },
  ];
  expect(chunkRanges(ranges, 0x2000)).toEqual([
    { start: 0x1000n, end: 0x3000n },
    { start: 0x3000n, end: 0x5000n },
    { start: 0x5000n, end: 0x6000n },
    { start: 0x10000n, end: 0x12000n },
  ]);
  expect(chunkRanges([], 4096)).toEqual([]);
});

test("parseResidentMemory reads VmRSS, RssFile and RssAnon in bytes", () => {
  const status =
    "Name:\tcompute_ctl\nVmRSS:\t   64120 kB\nRssAnon:\t   16720 kB\nRssFile:\t   47400 kB\nRssShmem:\t       0 kB\n";
  expect(parseResidentMemory(status)).toEqual({
    rss: 64120 * 1024,
    anon: 16720 * 1024,
    file: 47400 * 1024,
  });
  expect(parseResidentMemory("Name:\tx\n")).toEqual({ rss: 0, anon: 0, file: 0 });
});

describe("pageOutExecutable (this process: the bun running the tests)", () => {
  test("advises the executable's mappings in chunks, with a turn between", async () => {
    const exe = statSync("/proc/self/exe").ino;
    const readOnly = executableMappings(await Bun.file("/proc/self/maps").text(), exe).filter(
      (m) => !m.writable,
    );
    const total = readOnly.reduce((n, r) => n + Number(r.end - r.start), 0);
    expect(total).toBeGreaterThan(0);
    let turns = 0;
    const r = await pageOutExecutable({
      chunkBytes: 8 * 1024 * 1024,
      yieldTurn: async () => {
        turns++;
      },
    });
    if (!r.ok) throw new Error(r.message);
    // All read-only mappings, plus the file's resident pages in .data (if any).
    expect(r.bytes).toBeGreaterThanOrEqual(total);
    expect(turns).toBeGreaterThanOrEqual(chunkRanges(readOnly, 8 * 1024 * 1024).length);
    // The code it paged out is faulted back in as it runs: still alive and well.
    expect(await Bun.$`echo still-running`.text()).toBe("still-running\n");
  });
});
