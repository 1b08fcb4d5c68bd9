import { describe, expect, test } from "bun:test";
import { concat, entry, header, paxEntry } from "./tar-fixtures.ts";
import { TarError } from "./tar-header.ts";
import { TarReader } from "./tar-reader.ts";

interface Seen {
  name: string;
  type: string;
  data: string;
}

/** Run the reader over `archive` cut into `pieces`, collecting entries and their data. */
function read(archive: Uint8Array, pieces: number[] = [archive.byteLength]): Seen[] {
  const seen: Seen[] = [];
  const dec = new TextDecoder();
  let open = false;
  const reader = new TarReader({
    entry: (e) => {
      expect(open).toBe(false);
      open = true;
      seen.push({ name: e.name, type: e.type, data: "" });
    },
    data: (chunk) => {
      const last = seen.at(-1);
      if (last) last.data += dec.decode(chunk);
    },
    entryEnd: () => {
      expect(open).toBe(true);
      open = false;
    },
  });
  let off = 0;
  for (const n of pieces) {
    reader.push(archive.subarray(off, off + n));
    off += n;
  }
  reader.push(archive.subarray(off));
  reader.end();
  expect(reader.offset).toBe(archive.byteLength);
  return seen;
}

const longName = `${"d".repeat(120)}/file`;
const parts = [
  entry({ name: "dir/", typeflag: "5" }),
  entry({ name: "dir/a" }, "x".repeat(700)),
  new Uint8Array(512), // a lone zero block between entries
  paxEntry({ path: "pax-named", mtime: "1.25" }),
  entry({ name: "ignored" }, "pax body"),
  entry({ name: "././@LongLink", typeflag: "L" }, `${longName}\0`),
  entry({ name: "trunc" }, "long"),
  entry({ name: "././@LongLink", typeflag: "K" }, "target-of-link\0"),
  entry({ name: "link", typeflag: "2" }),
  entry({ name: "weird", typeflag: "Z" }, "skipped data"),
  entry({ name: "empty-last" }),
];
const archive = concat(parts);
const expected: Seen[] = [
  { name: "dir/", type: "directory", data: "" },
  { name: "dir/a", type: "file", data: "x".repeat(700) },
  { name: "pax-named", type: "file", data: "pax body" },
  { name: longName, type: "file", data: "long" },
  { name: "link", type: "symlink", data: "" },
  { name: "weird", type: "unknown", data: "skipped data" },
  { name: "empty-last", type: "file", data: "" },
];

describe("TarReader", () => {
  test("entries, extensions, zero blocks and unknown types in one push", () => {
    expect(read(archive)).toEqual(expected);
  });

  test("any split into two pieces gives the same entries", () => {
    for (let cut = 0; cut <= archive.byteLength; cut += 37) {
      expect(read(archive, [cut])).toEqual(expected);
    }
  });

  test("1-byte pieces", () => {
    expect(read(archive, new Array(archive.byteLength).fill(1))).toEqual(expected);
  });

  test("end-of-archive blocks and more zero blocks after them are fine", () => {
    expect(read(concat([archive, new Uint8Array(512 * 20)]))).toEqual(expected);
  });

  test("entries after end-of-archive blocks are still read (ignore zeros)", () => {
    const twice = concat([archive, new Uint8Array(1024), entry({ name: "after" }, "more")]);
    expect(read(twice).map((e) => e.name)).toEqual([...expected.map((e) => e.name), "after"]);
  });

  // Every prefix of the archive either ends on an entry boundary (fine) or is
  // reported as truncated: the property that stops a cut-off basebackup from
  // passing as complete.
  test("every cut is either an entry boundary or a truncation error", () => {
    const boundaries = new Set<number>([0]);
    let off = 0;
    for (const [i, p] of parts.entries()) {
      off += p.byteLength;
      // Meta entries (pax, L, K at indexes 3, 5, 7) need the entry after them.
      if (![3, 5, 7].includes(i)) boundaries.add(off);
    }
    let ok = 0;
    for (let cut = 0; cut <= archive.byteLength; cut++) {
      const reader = new TarReader({ entry: () => {}, data: () => {}, entryEnd: () => {} });
      reader.push(archive.subarray(0, cut));
      if (boundaries.has(cut)) {
        reader.end();
        ok++;
      } else {
        expect(() => reader.end()).toThrow(/^truncated tar archive: /);
      }
    }
    expect(ok).toBe(boundaries.size);
  });

  test("truncation messages say where", () => {
    const cutIn = (n: number) => {
      const reader = new TarReader({ entry: () => {}, data: () => {}, entryEnd: () => {} });
      reader.push(archive.subarray(0, n));
      return () => reader.end();
    };
    expect(cutIn(100)).toThrow("truncated tar archive: ends inside a header block at byte 100");
    expect(cutIn(512 + 512 + 300)).toThrow("ends inside the data of 'dir/a' (300 of 700 bytes)");
    expect(cutIn(512 + 512 + 800)).toThrow("ends inside the padding after 'dir/a'");
    const paxEnd = parts.slice(0, 4).reduce((n, p) => n + p.byteLength, 0);
    expect(cutIn(paxEnd)).toThrow("ends after an extended header");
    expect(cutIn(paxEnd - 512 + 10)).toThrow("ends inside an extended header");
  });

  test("a corrupted header is an error, not a skipped entry", () => {
    const bad = archive.slice();
    bad[1024 + 700 + 10] = 0x55; // padding content is not looked at
    expect(read(bad)).toEqual(expected);
    bad[512] = 0x41; // the name of 'dir/a'
    expect(() => read(bad)).toThrow(/invalid tar header at byte 512: checksum mismatch/);
  });

  test("pax global headers are skipped", () => {
    const g = entry({ name: "global", typeflag: "g" }, "30 path=should-not-apply-here\n");
    expect(read(concat([g, entry({ name: "f" }, "x")])).map((e) => e.name)).toEqual(["f"]);
  });

  test("sparse files are refused", () => {
    expect(() => read(entry({ name: "s", typeflag: "S" }))).toThrow(
      "unsupported GNU sparse file in tar archive: 's'",
    );
    const pax = concat([
      paxEntry({ "GNU.sparse.major": "1", "GNU.sparse.name": "real" }),
      entry({ name: "s" }),
    ]);
    expect(() => read(pax)).toThrow("unsupported pax sparse file");
  });

  test("oversized meta entries are refused", () => {
    const h = header({ name: "././@LongLink", typeflag: "L", size: 2 << 20 });
    expect(() => read(h)).toThrow(TarError);
  });
});
