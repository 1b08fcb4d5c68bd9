import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import * as fs from "node:fs";
import * as path from "node:path";
import {
  buildSourceTree,
  gnuTar,
  header,
  IS_ROOT,
  paxEntry,
  removeTree,
  tempDir,
} from "./tar-fixtures.ts";
import {
  applyExtensions,
  isZeroBlock,
  parseHeader,
  parseLongName,
  parsePax,
  parsePaxRecords,
  readNumber,
  TarError,
  type TarHeader,
} from "./tar-header.ts";
import { type TarEntry, TarReader } from "./tar-reader.ts";

const enc = new TextEncoder();

describe("parseHeader on hand-built headers", () => {
  const cases: Array<[string, Parameters<typeof header>[0], Partial<TarHeader>]> = [
    [
      "plain ustar file",
      { name: "a/b", mode: 0o600, uid: 101, gid: 104, size: 1234, mtime: 1_700_000_000 },
      {
        name: "a/b",
        mode: 0o600,
        uid: 101,
        gid: 104,
        size: 1234,
        mtime: 1_700_000_000,
        type: "file",
      },
    ],
    ["ustar prefix is joined", { name: "file", prefix: "some/dir" }, { name: "some/dir/file" }],
    [
      "GNU magic has no prefix field (old GNU keeps times there)",
      { name: "file", prefix: "ignored", magic: "gnu" },
      { name: "file" },
    ],
    ["v7 header without magic", { name: "v7file", magic: "v7" }, { name: "v7file", type: "file" }],
    [
      "old-style regular file with trailing slash is a directory",
      { name: "d/", typeflag: "\0", magic: "v7" },
      { type: "directory" },
    ],
    [
      "typeflag 0 with trailing slash stays a file",
      { name: "f/", typeflag: "0" },
      { type: "file" },
    ],
    ["contiguous file", { name: "c", typeflag: "7" }, { type: "file" }],
    [
      "hard link",
      { name: "h", typeflag: "1", linkname: "a/b" },
      { type: "hardlink", linkname: "a/b" },
    ],
    [
      "symlink",
      { name: "s", typeflag: "2", linkname: "/dev/shm" },
      { type: "symlink", linkname: "/dev/shm" },
    ],
    ["directory", { name: "d/", typeflag: "5", mode: 0o700 }, { type: "directory", mode: 0o700 }],
    ["char device", { name: "c", typeflag: "3" }, { type: "chardev" }],
    ["block device", { name: "b", typeflag: "4" }, { type: "blockdev" }],
    ["fifo", { name: "f", typeflag: "6" }, { type: "fifo" }],
    ["pax", { name: "x", typeflag: "x" }, { type: "pax" }],
    ["pax global", { name: "g", typeflag: "g" }, { type: "pax-global" }],
    ["GNU long name", { name: "././@LongLink", typeflag: "L" }, { type: "gnu-longname" }],
    ["GNU long link", { name: "././@LongLink", typeflag: "K" }, { type: "gnu-longlink" }],
    ["GNU sparse", { name: "s", typeflag: "S" }, { type: "gnu-sparse" }],
    ["GNU dumpdir is a directory", { name: "d", typeflag: "D" }, { type: "directory" }],
    ["unknown typeflag", { name: "u", typeflag: "Z" }, { type: "unknown", typeflag: "Z" }],
    [
      "mode keeps high bits (masked at extraction)",
      { name: "m", mode: 0o104755 },
      { mode: 0o104755 },
    ],
    [
      "base-256 size beyond the 11 octal digits (8 GiB)",
      { name: "huge", raw: [[124, [0x80, 0, 0, 0, 0, 0, 0, 0x02, 0, 0, 0, 0x05]]] },
      { size: 2 ** 33 + 5 },
    ],
    [
      "base-256 uid and gid",
      {
        name: "ids",
        raw: [
          [108, [0x80, 0, 0, 0, 0, 0x3d, 0x09, 0x00]],
          [116, [0x80, 0, 0, 0, 0, 0x3d, 0x09, 0x01]],
        ],
      },
      { uid: 4_000_000, gid: 4_000_001 },
    ],
    [
      "base-256 negative mtime",
      {
        name: "old",
        raw: [[136, [0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xed, 0x30, 0x08, 0x81]]],
      },
      { mtime: -315_619_199 },
    ],
  ];
  for (const [label, spec, expected] of cases) {
    test(label, () => {
      expect(parseHeader(header(spec))).toMatchObject(expected);
    });
  }

  test("octal fields padded with spaces and NULs", () => {
    const b = header({ name: "x" });
    b.set(enc.encode("  755 \0\0"), 100);
    expect(readNumber(b, 100, 8, "mode")).toBe(0o755);
    b.set(enc.encode("\0\0\0\0\0\0\0\0"), 100);
    expect(readNumber(b, 100, 8, "mode")).toBe(0);
  });

  test("a bad octal digit is an error naming the field", () => {
    const b = new Uint8Array(512);
    b.set(enc.encode("0009\0"), 124);
    expect(() => readNumber(b, 124, 12, "size")).toThrow(
      "invalid octal digit in tar header field size",
    );
  });

  test("checksum mismatch is an error with the offset", () => {
    const b = header({ name: "x", checksum: 1 });
    expect(() => parseHeader(b, 1536)).toThrow(TarError);
    expect(() => parseHeader(b, 1536)).toThrow(
      /invalid tar header at byte 1536: checksum mismatch \(stored 1, computed \d+\)/,
    );
  });

  test("a signed-byte checksum (old writers) is accepted", () => {
    const b = header({ name: "caf\u00e9" });
    let signed = 0;
    for (let i = 0; i < 512; i++) {
      const x = i >= 148 && i < 156 ? 0x20 : (b[i] ?? 0);
      signed += x >= 0x80 ? x - 0x100 : x;
    }
    b.set(enc.encode(`${signed.toString(8).padStart(6, "0")}\0 `), 148);
    expect(parseHeader(b).name).toBe("caf\u00e9");
  });

  test("a short block is a truncation error", () => {
    expect(() => parseHeader(new Uint8Array(100), 0)).toThrow("truncated tar archive");
  });

  test("isZeroBlock", () => {
    expect(isZeroBlock(new Uint8Array(512))).toBe(true);
    const b = new Uint8Array(512);
    b[511] = 1;
    expect(isZeroBlock(b)).toBe(false);
  });
});

describe("pax records and GNU long names", () => {
  test("records, including values with '=', spaces and newlines", () => {
    const data = paxEntry({ path: "a=b c", comment: "two\nlines", mtime: "1700000000.5" }).subarray(
      512,
    );
    expect(parsePaxRecords(data)).toEqual(
      new Map([
        ["path", "a=b c"],
        ["comment", "two\nlines"],
        ["mtime", "1700000000.5"],
      ]),
    );
  });

  test("typed attributes, unknown keys ignored, sparse flagged", () => {
    const data = paxEntry({
      path: "p",
      linkpath: "l",
      size: "8589934597",
      mtime: "-315619199.75",
      uid: "4000000",
      gid: "4000001",
      uname: "u",
      gname: "g",
      atime: "1",
      "SCHILY.xattr.user.x": "y",
    }).subarray(512);
    expect(parsePax(data)).toEqual({
      path: "p",
      linkpath: "l",
      size: 8_589_934_597,
      mtime: -315_619_199.75,
      uid: 4_000_000,
      gid: 4_000_001,
      uname: "u",
      gname: "g",
    });
    expect(parsePax(paxEntry({ "GNU.sparse.major": "1" }).subarray(512)).sparse).toBe(true);
  });

  const bad: Array<[string, string]> = [
    ["length past the end", "99 path=x\n"],
    ["no newline at the stated length", "10 path=xy"],
    ["no key", "7 =abc\n"],
    ["non-numeric length", "x path=y\n"],
  ];
  for (const [label, text] of bad) {
    test(`malformed record: ${label}`, () => {
      expect(() => parsePaxRecords(enc.encode(text))).toThrow("invalid pax extended header record");
    });
  }

  test("bad numeric values", () => {
    expect(() => parsePax(paxEntry({ size: "12x" }).subarray(512))).toThrow(
      "invalid pax size value '12x'",
    );
    expect(() => parsePax(paxEntry({ mtime: "soon" }).subarray(512))).toThrow("invalid pax mtime");
  });

  test("long names stop at NUL", () => {
    expect(parseLongName(enc.encode("abc\0\0\0"))).toBe("abc");
    expect(parseLongName(enc.encode("abc"))).toBe("abc");
  });

  test("pax wins over GNU long names, which win over the header", () => {
    const h = parseHeader(header({ name: "short", typeflag: "2", linkname: "t" }));
    expect(applyExtensions(h, { longName: "L", longLink: "K" })).toMatchObject({
      name: "L",
      linkname: "K",
    });
    expect(
      applyExtensions(h, {
        pax: { path: "P", linkpath: "LP", size: 3, mtime: 1.5 },
        longName: "L",
        longLink: "K",
      }),
    ).toMatchObject({ name: "P", linkname: "LP", size: 3, mtime: 1.5 });
  });
});

// Headers written by GNU tar itself, read back through the streaming reader and
// checked against what lstat says about the source files.
describe("headers generated by GNU tar", () => {
  let dir = "";
  let src = "";
  beforeAll(() => {
    dir = tempDir("tarhdr");
    src = path.join(dir, "src");
    fs.mkdirSync(src);
    buildSourceTree(src);
  });
  afterAll(() => {
    removeTree(dir);
  });

  function entriesOf(archive: Uint8Array): Map<string, TarEntry> {
    const out = new Map<string, TarEntry>();
    const reader = new TarReader({
      entry: (e) => {
        out.set(e.name.replace(/^\.\//, "").replace(/\/$/, "") || ".", e);
      },
      data: () => {},
      entryEnd: () => {},
    });
    reader.push(archive);
    reader.end();
    return out;
  }

  const formats: Array<[string, string[]]> = [
    ["gnu", []],
    ["oldgnu", []],
    ["pax", []],
    ["ustar", ["long", "long-link", "old"]],
    ["v7", ["long", "deep", "long-link", "old"]],
  ];
  for (const [format, exclude] of formats) {
    test(`--format=${format}`, () => {
      const entries = entriesOf(gnuTar(src, path.join(dir, `${format}.tar`), format, exclude));
      let checked = 0;
      const walk = (rel: string) => {
        if (exclude.some((e) => rel === e || rel.startsWith(`${e}/`))) return;
        const abs = rel === "." ? src : path.join(src, rel);
        const st = fs.lstatSync(abs);
        const e = entries.get(rel);
        if (e === undefined) throw new Error(`no entry for ${rel}`);
        expect(e.mode & 0o7777).toBe(st.mode & 0o7777);
        expect([e.uid, e.gid]).toEqual([st.uid, st.gid]);
        expect(Math.floor(e.mtime)).toBe(Math.floor(st.mtimeMs / 1000));
        if (st.isSymbolicLink()) {
          expect(e.type).toBe("symlink");
          expect(e.linkname).toBe(fs.readlinkSync(abs));
        } else if (st.isDirectory()) {
          expect(e.type).toBe("directory");
          for (const name of fs.readdirSync(abs)) walk(rel === "." ? name : `${rel}/${name}`);
        } else if (e.type === "hardlink") {
          expect(entries.get(e.linkname.replace(/^\.\//, ""))?.type).toBe("file");
        } else {
          expect(e.type).toBe("file");
          expect(e.size).toBe(st.size);
        }
        checked++;
      };
      walk(".");
      expect(checked).toBe(entries.size);
      // The names that need extensions really got them.
      if (!exclude.includes("long")) {
        expect(entries.has(`long/${"a".repeat(60)}/${"b".repeat(120)}`)).toBe(true);
        expect(entries.get("long-link")?.linkname).toBe(`../${"t".repeat(150)}`);
      }
      if (format === "pax") expect(entries.get("frac")?.mtime).toBeCloseTo(1700000000.123457, 6);
      if (!exclude.includes("old"))
        expect(Math.floor(entries.get("old")?.mtime ?? 0)).toBe(-315619200);
      if (IS_ROOT) expect(entries.get("owned")).toMatchObject({ uid: 101, gid: 104 });
      expect(entries.get("dir0700")?.mode).toBe(0o700);
      expect(entries.get("dir0700/secret")?.mode).toBe(0o600);
      expect(entries.get("zzz-empty")?.size).toBe(0);
    });
  }

  test("ids too large for octal: base-256 (gnu) and pax records", () => {
    for (const format of ["gnu", "pax"]) {
      const out = path.join(dir, `ids-${format}.tar`);
      fs.writeFileSync(path.join(dir, "idfile"), "x");
      const cmd = ["tar", `--format=${format}`, "--owner=big:4000000", "--group=grp:4000001"];
      const r = Bun.spawnSync([...cmd, "-C", dir, "-cf", out, "idfile"]);
      expect(r.exitCode).toBe(0);
      const entries = entriesOf(new Uint8Array(fs.readFileSync(out)));
      expect(entries.get("idfile")).toMatchObject({
        uid: 4_000_000,
        gid: 4_000_001,
        uname: "big",
        gname: "grp",
      });
    }
  });
});
