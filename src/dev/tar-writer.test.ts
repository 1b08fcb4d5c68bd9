// The tar writer against GNU tar (the reference reader) and against the project's own
// streaming extractor; header encoding checked field by field with the decoder.
import { afterAll, describe, expect, test } from "bun:test";
import * as fs from "node:fs";
import { join } from "node:path";
import { gunzip } from "../wire/gunzip.ts";
import { buildSourceTree, diffTrees, IS_ROOT } from "../wire/tar-fixtures.ts";
import { parseHeader, parseLongName, readNumber } from "../wire/tar-header.ts";
import { extractTar } from "../wire/untar.ts";
import {
  encodeTarHeader,
  endOfArchive,
  gzip,
  TAR_BLOCK,
  type TarEntryHeader,
  tarDirectory,
} from "./tar-writer.ts";
import { readAll, runCmd, TempDirs } from "./testing.ts";

const tmp = new TempDirs();
afterAll(() => tmp.cleanup());

/** A source tree without hard links (the writer stores each path as its own file). */
function sourceTree(): string {
  const root = join(tmp.make("src"), "root");
  fs.mkdirSync(root);
  buildSourceTree(root);
  fs.unlinkSync(join(root, "hard"));
  // A file that is exactly one block, one of one block plus a byte, and a nested empty dir.
  fs.writeFileSync(join(root, "block"), new Uint8Array(TAR_BLOCK).fill(1));
  fs.writeFileSync(join(root, "block+1"), new Uint8Array(TAR_BLOCK + 1).fill(2));
  fs.mkdirSync(join(root, "d1/d2/d3"), { recursive: true });
  return root;
}

/** Give the extraction root the source root's mode and mtime: the archive has no "." entry. */
function alignRoot(src: string, dest: string): void {
  const st = fs.statSync(src);
  fs.chmodSync(dest, st.mode & 0o7777);
  fs.utimesSync(dest, st.atime, st.mtime);
}

// Header mtimes are whole seconds.
const SECOND_NS = 1_000_000_000n;

describe("tarDirectory", () => {
  for (const withEnd of [false, true]) {
    test(`GNU tar -xzf extracts it identically (end-of-archive blocks: ${withEnd})`, async () => {
      const src = sourceTree();
      const archive = join(tmp.make("gz"), "a.tar.gz");
      const bytes = await readAll(gzip(tarDirectory(src, { endOfArchive: withEnd })));
      fs.writeFileSync(archive, bytes);
      const dest = tmp.make("x");
      // No --ignore-zeros: GNU tar must accept the archive as it is.
      const r = await runCmd(["tar", "-xzf", archive, "-C", dest]);
      // The 1960 file draws a warning from GNU tar itself; nothing else may.
      const warnings = r.stderr.split("\n").filter((l) => l && !l.includes("implausibly old"));
      expect(warnings).toEqual([]);
      expect(r.code).toBe(0);
      alignRoot(src, dest);
      expect(diffTrees(src, dest, SECOND_NS)).toEqual([]);
    });
  }

  test("ends with two zero blocks only when asked", async () => {
    const src = sourceTree();
    const plain = await readAll(tarDirectory(src, { endOfArchive: false }));
    const ended = await readAll(tarDirectory(src));
    expect(ended.length).toBe(plain.length + 2 * TAR_BLOCK);
    expect(ended.subarray(plain.length)).toEqual(endOfArchive());
    expect(ended.subarray(0, plain.length)).toEqual(plain);
    // The last block of a non-terminated archive is data or a header, never padding zeros only.
    expect(plain.length % TAR_BLOCK).toBe(0);
  });

  test("our streaming extractor agrees with GNU tar", async () => {
    const src = sourceTree();
    const dest = tmp.make("ours");
    const stream = gunzip(gzip(tarDirectory(src, { endOfArchive: false })));
    await extractTar(stream, dest, IS_ROOT ? { chown: "preserve" } : {});
    alignRoot(src, dest);
    expect(diffTrees(src, dest, SECOND_NS)).toEqual([]);
  });

  test("owner, mtime and exclude options", async () => {
    const src = sourceTree();
    const tar = await readAll(
      tarDirectory(src, {
        endOfArchive: false,
        owner: { uid: 0, gid: 0 },
        mtime: 1_234_567_890,
        exclude: (rel) => rel === "big" || rel === "long",
      }),
    );
    const names: string[] = [];
    let longName: string | undefined;
    for (let at = 0; at < tar.length; ) {
      const h = parseHeader(tar.subarray(at, at + TAR_BLOCK), at);
      const dataBlocks = Math.ceil(h.size / TAR_BLOCK);
      if (h.typeflag === "L" || h.typeflag === "K") {
        const data = tar.subarray(at + TAR_BLOCK, at + TAR_BLOCK + h.size);
        if (h.typeflag === "L") longName = parseLongName(data);
      } else {
        names.push(longName ?? h.name);
        longName = undefined;
        expect([h.uid, h.gid, h.mtime]).toEqual([0, 0, 1_234_567_890]);
      }
      at += TAR_BLOCK * (1 + dataBlocks);
    }
    expect(names).not.toContain("big");
    expect(names.some((n) => n === "long" || n.startsWith("long/"))).toBe(false);
    expect(names).toContain("long-link");
    expect(names).toContain("dir0700/secret");
    expect(names).toContain("d1/d2/d3");
  });

  test("a FIFO is refused, not silently skipped", async () => {
    const src = tmp.make("fifo");
    const r = await runCmd(["mkfifo", join(src, "pipe")]);
    expect(r.code).toBe(0);
    await expect(readAll(tarDirectory(src))).rejects.toThrow(/not a file, directory or symlink/);
  });

  test("reads lazily: a cancelled stream stops after the first chunk", async () => {
    const src = tmp.make("lazy");
    fs.writeFileSync(join(src, "huge"), new Uint8Array(8 << 20));
    const reader = tarDirectory(src).getReader();
    const first = await reader.read();
    expect(first.done).toBe(false);
    expect(first.value?.length ?? 0).toBeLessThan(1 << 20);
    await reader.cancel();
  });
});

describe("encodeTarHeader", () => {
  const base: TarEntryHeader = {
    name: "global/pg_control",
    kind: "file",
    mode: 0o600,
    uid: 101,
    gid: 104,
    size: 8192,
    mtime: 1_700_000_000,
  };

  test.each([
    ["file", base, "0"],
    ["directory", { ...base, name: "pg_wal/archive_status", kind: "directory", mode: 0o755 }, "5"],
    ["symlink", { ...base, name: "pg_dynshmem", kind: "symlink", linkname: "/dev/shm/" }, "2"],
  ] as const)("%s round-trips through the decoder", (_label, entry, typeflag) => {
    const block = encodeTarHeader(entry);
    expect(block.length).toBe(TAR_BLOCK);
    const h = parseHeader(block); // verifies the checksum
    expect(h.name).toBe(entry.name);
    expect(h.typeflag).toBe(typeflag);
    expect(h.mode).toBe(entry.mode);
    expect([h.uid, h.gid, h.mtime]).toEqual([entry.uid, entry.gid, entry.mtime]);
    expect(h.size).toBe(entry.kind === "file" ? entry.size : 0);
    expect(h.linkname).toBe(entry.linkname ?? "");
    // GNU magic, as the pageserver's Header::new_gnu() writes.
    expect(new TextDecoder().decode(block.subarray(257, 265))).toBe("ustar  \0");
  });

  test("names over 100 bytes get a GNU L entry; long link targets a K entry", () => {
    const name = `base/${"n".repeat(150)}`;
    const linkname = `/${"t".repeat(120)}`;
    const out = encodeTarHeader({ ...base, name, kind: "symlink", linkname });
    const k = parseHeader(out.subarray(0, TAR_BLOCK));
    expect(k.typeflag).toBe("K");
    const kData = TAR_BLOCK * Math.ceil(k.size / TAR_BLOCK);
    expect(parseLongName(out.subarray(TAR_BLOCK, TAR_BLOCK + k.size))).toBe(linkname);
    const lAt = TAR_BLOCK + kData;
    const l = parseHeader(out.subarray(lAt, lAt + TAR_BLOCK));
    expect(l.typeflag).toBe("L");
    expect(l.name).toBe("././@LongLink");
    expect(parseLongName(out.subarray(lAt + TAR_BLOCK, lAt + TAR_BLOCK + l.size))).toBe(name);
    const hAt = lAt + TAR_BLOCK + TAR_BLOCK * Math.ceil(l.size / TAR_BLOCK);
    expect(out.length).toBe(hAt + TAR_BLOCK);
    const h = parseHeader(out.subarray(hAt));
    expect(h.typeflag).toBe("2");
    expect(h.name).toBe(name.slice(0, 100));
  });

  test("sizes of 8 GiB and more use base-256; negative mtimes too", () => {
    const size = 2 ** 34 + 5;
    const block = encodeTarHeader({ ...base, size, mtime: -100 });
    expect(block[124]).toBe(0x80);
    expect(parseHeader(block).size).toBe(size);
    expect(block[136]).toBe(0xff);
    expect(readNumber(block, 124, 12, "size")).toBe(size);
  });

  test("a name of exactly 100 bytes fits without a long-name entry", () => {
    const name = "x".repeat(100);
    const block = encodeTarHeader({ ...base, name });
    expect(block.length).toBe(TAR_BLOCK);
    expect(parseHeader(block).name).toBe(name);
  });
});
