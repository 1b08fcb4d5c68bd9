import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import * as fs from "node:fs";
import * as path from "node:path";
import {
  buildSourceTree,
  chunked,
  concat,
  describeTree,
  diffTrees,
  entry,
  gnuExtract,
  gnuTar,
  header,
  IS_ROOT,
  paxEntry,
  randomSizes,
  removeTree,
  run,
  tempDir,
} from "./tar-fixtures.ts";
import { TarError } from "./tar-header.ts";
import { type ExtractOptions, extractTar, safeRelativePath } from "./untar.ts";

let work = "";
let counter = 0;
beforeAll(() => {
  work = tempDir("untar");
});
afterAll(() => {
  removeTree(work);
});

/** A fresh, not yet existing destination directory. */
function dest(): string {
  return path.join(work, `out-${++counter}`);
}

function extract(
  archive: Uint8Array,
  to: string,
  opts?: ExtractOptions,
  size: number | ((i: number) => number) = 65536,
) {
  return extractTar(chunked(archive, size), to, opts);
}

const preserve: ExtractOptions = IS_ROOT ? { chown: "preserve" } : {};

/** Strip the trailing zero blocks GNU tar writes (end-of-archive plus record padding). */
function withoutTrailingZeros(archive: Uint8Array): Uint8Array {
  let end = archive.byteLength;
  while (end >= 512 && archive.subarray(end - 512, end).every((b) => b === 0)) end -= 512;
  return archive.subarray(0, end);
}

describe("extractTar matches GNU tar's extraction", () => {
  const formats: Array<[string, string[]]> = [
    ["gnu", []],
    ["pax", []],
    ["oldgnu", []],
    ["ustar", ["long", "long-link", "old"]],
  ];
  const archives = new Map<string, { bytes: Uint8Array; ref: string; file: string }>();
  beforeAll(() => {
    const src = path.join(work, "src");
    fs.mkdirSync(src);
    buildSourceTree(src);
    for (const [format, exclude] of formats) {
      const file = path.join(work, `${format}.tar`);
      const bytes = gnuTar(src, file, format, exclude);
      const ref = path.join(work, `ref-${format}`);
      gnuExtract(file, ref);
      archives.set(format, { bytes, ref, file });
    }
  });

  function get(format: string) {
    const a = archives.get(format);
    if (a === undefined) throw new Error(`no archive for ${format}`);
    return a;
  }

  const chunkings: Array<[string, number | ((i: number) => number)]> = [
    ["1-byte chunks", 1],
    ["511-byte chunks", 511],
    ["513-byte chunks", 513],
    ["64 KiB chunks", 65536],
    ["random chunks", randomSizes(42, 3000)],
  ];
  for (const [format] of formats) {
    for (const [label, size] of chunkings) {
      test(`--format=${format}, ${label}`, async () => {
        const a = get(format);
        const out = dest();
        const result = await extract(a.bytes, out, preserve, size);
        expect(diffTrees(a.ref, out)).toEqual([]);
        // 'hard' is a link, devices none: every other path is one entry.
        const paths = run(["tar", "-tf", a.file]).trim().split("\n");
        expect(result.entries).toBe(paths.length);
        let bytes = 0;
        for (const [rel, info] of describeTree(a.ref)) {
          if (info.type === "file" && (info.linkGroup ?? rel) === rel) bytes += info.size;
        }
        expect(result.bytes).toBe(bytes);
      });
    }
  }

  test("the comparison notices a difference", async () => {
    const a = get("gnu");
    const out = dest();
    await extract(a.bytes, out, preserve);
    fs.chmodSync(path.join(out, "dir0700/secret"), 0o644);
    fs.writeFileSync(path.join(out, "big"), "changed");
    fs.utimesSync(path.join(out, "empty"), 1, 1);
    const paths = new Set(diffTrees(a.ref, out).map((d) => d.slice(0, d.indexOf(":"))));
    expect([...paths].sort()).toEqual(["big", "dir0700/secret", "empty"]);
  });

  test("without end-of-archive blocks (the pageserver's layout), a 0-byte file last", async () => {
    const a = get("gnu");
    const bare = withoutTrailingZeros(a.bytes);
    expect(bare.byteLength).toBeLessThan(a.bytes.byteLength);
    // The last entry is the empty file: the archive ends right after its header.
    const out = dest();
    await extract(bare, out, preserve, 513);
    expect(diffTrees(a.ref, out)).toEqual([]);
    expect(fs.statSync(path.join(out, "zzz-empty")).size).toBe(0);
  });

  test("archives concatenated after end-of-archive blocks are read on (ignore zeros)", async () => {
    const a = get("pax");
    const extra = entry({ name: "extra", mode: 0o600 }, "after the end blocks\n");
    const both = concat([a.bytes, extra]);
    const both_file = path.join(work, "both.tar");
    fs.writeFileSync(both_file, both);
    const ref = dest();
    fs.mkdirSync(ref);
    run(["tar", "-xipf", both_file, "-C", ref]);
    const out = dest();
    await extract(both, out, preserve);
    expect(diffTrees(ref, out)).toEqual([]);
    expect(fs.readFileSync(path.join(out, "extra"), "utf8")).toBe("after the end blocks\n");
  });

  test("a truncated archive is an error", async () => {
    const a = get("gnu");
    // Find the data of 'big' and cut in the middle of it.
    const text = new TextDecoder("latin1").decode(a.bytes);
    const at = text.indexOf("./big\0");
    expect(at).toBeGreaterThan(0);
    const cut = a.bytes.subarray(0, at + 512 + 50_000);
    await expect(extract(cut, dest(), preserve, 511)).rejects.toThrow(
      "truncated tar archive: ends inside the data of './big' (50000 of 100003 bytes)",
    );
    await expect(extract(a.bytes.subarray(0, at + 200), dest())).rejects.toThrow(
      "truncated tar archive: ends inside a header block",
    );
  });
});

describe("extractTar builds what the headers say", () => {
  test("modes are masked to 0o777 and applied despite the umask", async () => {
    const out = dest();
    const archive = concat([
      entry({ name: "setuid", mode: 0o4777 }, "x"),
      entry({ name: "private", mode: 0o600 }, "y"),
      entry({ name: "ro-dir/", typeflag: "5", mode: 0o555 }),
      entry({ name: "ro-dir/inside", mode: 0o400 }, "z"),
      entry({ name: "group-dir/", typeflag: "5", mode: 0o2775 }),
    ]);
    const old = process.umask(0o077);
    try {
      await extract(archive, out);
    } finally {
      process.umask(old);
    }
    const mode = (p: string) => fs.statSync(path.join(out, p)).mode & 0o7777;
    expect(mode("setuid")).toBe(0o777);
    expect(mode("private")).toBe(0o600);
    expect(mode("ro-dir")).toBe(0o555);
    expect(mode("ro-dir/inside")).toBe(0o400);
    expect(mode("group-dir")).toBe(0o775);
  });

  test("missing parent directories are created; their listed mode and mtime are applied later", async () => {
    const out = dest();
    const archive = concat([
      entry({ name: "pg_wal/archive_status/", typeflag: "5", mode: 0o700, mtime: 1000 }),
      entry({ name: "a/b/c.txt", mtime: 2000 }, "deep"),
      entry({ name: "a/", typeflag: "5", mode: 0o750, mtime: 3000 }),
    ]);
    await extract(archive, out);
    expect(fs.readFileSync(path.join(out, "a/b/c.txt"), "utf8")).toBe("deep");
    expect(fs.statSync(path.join(out, "pg_wal")).isDirectory()).toBe(true);
    const a = fs.statSync(path.join(out, "a"));
    expect([a.mode & 0o777, a.mtimeMs]).toEqual([0o750, 3_000_000]);
    expect(fs.statSync(path.join(out, "pg_wal/archive_status")).mtimeMs).toBe(1_000_000);
    expect(fs.statSync(path.join(out, "a/b/c.txt")).mtimeMs).toBe(2_000_000);
  });

  test("pax: long path, fractional and negative mtimes, size from the record", async () => {
    const out = dest();
    const long = `${"x".repeat(200)}/${"y".repeat(200)}`;
    const archive = concat([
      paxEntry({ path: long, mtime: "1700000000.5" }),
      entry({ name: "short" }, "pax path"),
      paxEntry({ mtime: "-315619199.75" }),
      entry({ name: "old" }, "1960"),
      // The header says 0 bytes; the pax size wins.
      paxEntry({ size: "5" }),
      entry({ name: "sized", size: 0 }, "12345"),
    ]);
    await extract(archive, out, {}, 100);
    const st = fs.statSync(path.join(out, long), { bigint: true });
    expect(st.mtimeNs).toBe(1_700_000_000_500_000_000n);
    expect(fs.existsSync(path.join(out, "short"))).toBe(false);
    expect(fs.statSync(path.join(out, "old"), { bigint: true }).mtimeNs).toBe(
      -315_619_199_750_000_000n,
    );
    expect(fs.readFileSync(path.join(out, "sized"), "utf8")).toBe("12345");
  });

  test("unknown types, devices and FIFOs are skipped with their data", async () => {
    const out = dest();
    const archive = concat([
      entry({ name: "weird", typeflag: "Z" }, "q".repeat(1000)),
      entry({ name: "dev", typeflag: "3" }),
      entry({ name: "fifo", typeflag: "6" }),
      entry({ name: "after" }, "still here"),
    ]);
    const r = await extract(archive, out, {}, 7);
    expect(fs.readdirSync(out)).toEqual(["after"]);
    expect(fs.readFileSync(path.join(out, "after"), "utf8")).toBe("still here");
    expect(r).toEqual({ entries: 4, bytes: 10 });
  });

  test("existing files, links and empty directories are replaced, never written through", async () => {
    const out = dest();
    const outside = path.join(work, `outside-${++counter}`);
    fs.mkdirSync(outside);
    fs.writeFileSync(path.join(outside, "target"), "outside");
    fs.mkdirSync(out);
    fs.symlinkSync(path.join(outside, "target"), path.join(out, "was-symlink"));
    fs.linkSync(path.join(outside, "target"), path.join(out, "was-hardlink"));
    fs.writeFileSync(path.join(out, "was-long"), "a much longer old content");
    fs.mkdirSync(path.join(out, "was-dir"));
    fs.symlinkSync(outside, path.join(out, "dir-was-symlink"));
    const archive = concat([
      entry({ name: "was-symlink" }, "new"),
      entry({ name: "was-hardlink" }, "new"),
      entry({ name: "was-long" }, "short"),
      entry({ name: "was-dir", typeflag: "2", linkname: "/somewhere" }),
      entry({ name: "dir-was-symlink/", typeflag: "5" }),
      entry({ name: "dir-was-symlink/f" }, "inside"),
    ]);
    await extract(archive, out);
    expect(fs.readFileSync(path.join(outside, "target"), "utf8")).toBe("outside");
    expect(fs.readdirSync(outside)).toEqual(["target"]);
    for (const f of ["was-symlink", "was-hardlink"]) {
      expect(fs.lstatSync(path.join(out, f)).isFile()).toBe(true);
      expect(fs.readFileSync(path.join(out, f), "utf8")).toBe("new");
    }
    expect(fs.readFileSync(path.join(out, "was-long"), "utf8")).toBe("short");
    expect(fs.readlinkSync(path.join(out, "was-dir"))).toBe("/somewhere");
    expect(fs.lstatSync(path.join(out, "dir-was-symlink")).isDirectory()).toBe(true);
    expect(fs.readFileSync(path.join(out, "dir-was-symlink/f"), "utf8")).toBe("inside");
  });

  test("extracting the same archive twice (a basebackup retry) gives the same tree", async () => {
    const out = dest();
    const archive = concat([
      entry({ name: "d/", typeflag: "5", mode: 0o700 }),
      entry({ name: "d/f", mode: 0o600 }, "data"),
      entry({ name: "d/h", typeflag: "1", linkname: "d/f" }),
      entry({ name: "pg_dynshmem", typeflag: "2", linkname: "/dev/shm/" }),
    ]);
    await extract(archive, out);
    const first = path.join(work, `first-${++counter}`);
    fs.cpSync(out, first, { recursive: true, verbatimSymlinks: true, preserveTimestamps: true });
    await extract(archive, out);
    expect(fs.statSync(path.join(out, "d/h")).ino).toBe(fs.statSync(path.join(out, "d/f")).ino);
    expect(fs.readlinkSync(path.join(out, "pg_dynshmem"))).toBe("/dev/shm/");
    expect(fs.readFileSync(path.join(out, "d/f"), "utf8")).toBe("data");
  });

  test("a non-empty directory is not replaced by a file", async () => {
    const archive = concat([
      entry({ name: "d/", typeflag: "5" }),
      entry({ name: "d/f" }, "x"),
      entry({ name: "d" }, "y"),
    ]);
    await expect(extract(archive, dest())).rejects.toThrow(
      /cannot extract tar entry 'd': .*ENOTEMPTY/,
    );
  });

  test("a hard link to a missing target names the entry", async () => {
    const archive = entry({ name: "h", typeflag: "1", linkname: "nowhere" });
    await expect(extract(archive, dest())).rejects.toThrow(
      /cannot extract tar entry 'h': .*ENOENT/,
    );
  });
});

describe.if(IS_ROOT)("extractTar ownership (root)", () => {
  const archive = concat([
    entry({ name: "dir/", typeflag: "5", uid: 101, gid: 104, mode: 0o700 }),
    entry({ name: "dir/f", uid: 101, gid: 104, mode: 0o600 }, "x"),
    entry({ name: "implicit/parent/f", uid: 7, gid: 8 }, "y"),
    entry({ name: "link", typeflag: "2", linkname: "/dev/shm", uid: 101, gid: 104 }),
    entry({ name: "hard", typeflag: "1", linkname: "dir/f" }),
  ]);
  const owner = (root: string, p: string) => {
    const st = fs.lstatSync(path.join(root, p));
    return [st.uid, st.gid];
  };

  test("'preserve' keeps the header ids", async () => {
    const out = dest();
    await extract(archive, out, { chown: "preserve" });
    expect(owner(out, "dir")).toEqual([101, 104]);
    expect(owner(out, "dir/f")).toEqual([101, 104]);
    expect(owner(out, "implicit/parent/f")).toEqual([7, 8]);
    expect(owner(out, "implicit")).toEqual([0, 0]);
    expect(owner(out, "link")).toEqual([101, 104]);
  });

  test("a fixed uid/gid is forced on every entry and on created parents", async () => {
    const out = dest();
    await extract(archive, out, { chown: { uid: 70, gid: 71 } });
    for (const p of [
      "dir",
      "dir/f",
      "implicit",
      "implicit/parent",
      "implicit/parent/f",
      "link",
      "hard",
    ]) {
      expect(owner(out, p)).toEqual([70, 71]);
    }
    // Modes survive the chown (which clears set-id bits).
    expect(fs.statSync(path.join(out, "dir/f")).mode & 0o777).toBe(0o600);
  });

  test("no option leaves the extracting user as owner", async () => {
    const out = dest();
    await extract(archive, out);
    expect(owner(out, "dir/f")).toEqual([0, 0]);
  });
});

describe("extractTar refuses unsafe archives", () => {
  const outsideFile = () => {
    const outside = path.join(work, `outside-${++counter}`);
    fs.mkdirSync(outside);
    fs.writeFileSync(path.join(outside, "passwd"), "root:x:0:0\n");
    return outside;
  };

  test("safeRelativePath table", () => {
    const ok: Array<[string, string]> = [
      ["a/b", "a/b"],
      ["./a//b/", "a/b"],
      ["./", ""],
      ["a/./b", "a/b"],
      ["..a/b..", "..a/b.."],
    ];
    for (const [input, want] of ok) expect(safeRelativePath(input)).toBe(want);
    for (const bad of ["../x", "a/../../x", "a/..", ".."]) {
      expect(() => safeRelativePath(bad)).toThrow(
        `tar entry '${bad}' escapes the destination directory`,
      );
    }
    expect(() => safeRelativePath("/etc/passwd")).toThrow(
      "tar entry '/etc/passwd' has an absolute path",
    );
  });

  const traversals: Array<[string, Uint8Array, string]> = [
    [
      "'..' in a file name",
      entry({ name: "../evil" }, "x"),
      "tar entry '../evil' escapes the destination directory",
    ],
    ["'..' deeper down", entry({ name: "a/../../evil" }, "x"), "tar entry 'a/../../evil' escapes"],
    [
      "an absolute file name",
      entry({ name: "/tmp/evil" }, "x"),
      "tar entry '/tmp/evil' has an absolute path",
    ],
    [
      "'..' in a directory",
      entry({ name: "../evil/", typeflag: "5" }),
      "tar entry '../evil/' escapes",
    ],
    ["'..' in a symlink name", entry({ name: "../evil", typeflag: "2", linkname: "x" }), "escapes"],
    [
      "a hard link target with '..'",
      entry({ name: "h", typeflag: "1", linkname: "../evil" }),
      "'../evil' escapes",
    ],
    [
      "an absolute hard link target",
      entry({ name: "h", typeflag: "1", linkname: "/etc/passwd" }),
      "absolute path",
    ],
    [
      "a pax path with '..'",
      concat([paxEntry({ path: "../evil" }), entry({ name: "innocent" }, "x")]),
      "tar entry '../evil' escapes",
    ],
  ];
  for (const [label, archive, message] of traversals) {
    test(label, async () => {
      const parent = path.join(work, `trav-${++counter}`);
      const out = path.join(parent, "dest");
      await expect(extract(archive, out)).rejects.toThrow(message);
      await expect(extract(archive, path.join(parent, "again"))).rejects.toBeInstanceOf(TarError);
      expect(fs.existsSync(path.join(parent, "evil"))).toBe(false);
    });
  }

  const throughLinks: Array<[string, (outside: string) => Uint8Array, string]> = [
    [
      "a file below an absolute symlink",
      (o) =>
        concat([
          entry({ name: "a", typeflag: "2", linkname: o }),
          entry({ name: "a/passwd" }, "owned"),
        ]),
      "refusing to extract tar entry 'a/passwd': 'a' is a symlink",
    ],
    [
      "a file below a relative symlink to '..'",
      () =>
        concat([
          entry({ name: "up", typeflag: "2", linkname: ".." }),
          entry({ name: "up/evil" }, "x"),
        ]),
      "refusing to extract tar entry 'up/evil': 'up' is a symlink",
    ],
    [
      "a directory below a symlink, deeper down",
      (o) =>
        concat([
          entry({ name: "d/", typeflag: "5" }),
          entry({ name: "d/l", typeflag: "2", linkname: o }),
          entry({ name: "d/l/sub/", typeflag: "5" }),
        ]),
      "'d/l' is a symlink",
    ],
    [
      "a directory replaced by a symlink, then written into",
      (o) =>
        concat([
          entry({ name: "d/", typeflag: "5" }),
          entry({ name: "d", typeflag: "2", linkname: o }),
          entry({ name: "d/passwd" }, "owned"),
        ]),
      "'d' is a symlink",
    ],
    [
      "a hard link whose target path goes through a symlink",
      (o) =>
        concat([
          entry({ name: "s", typeflag: "2", linkname: o }),
          entry({ name: "h", typeflag: "1", linkname: "s/passwd" }),
        ]),
      "refusing to extract hard link 'h': 's' is not a directory inside the destination",
    ],
  ];
  for (const [label, make, message] of throughLinks) {
    test(label, async () => {
      const outside = outsideFile();
      const before = fs.statSync(path.join(outside, "passwd"));
      await expect(
        extract(make(outside), dest(), IS_ROOT ? { chown: { uid: 70, gid: 71 } } : {}),
      ).rejects.toThrow(message);
      expect(fs.readdirSync(outside)).toEqual(["passwd"]);
      const after = fs.statSync(path.join(outside, "passwd"));
      expect(fs.readFileSync(path.join(outside, "passwd"), "utf8")).toBe("root:x:0:0\n");
      expect([after.uid, after.gid, after.mode, after.nlink]).toEqual([
        before.uid,
        before.gid,
        before.mode,
        before.nlink,
      ]);
    });
  }

  test("a hard link to a symlink links the symlink, not what it points to", async () => {
    const outside = outsideFile();
    const out = dest();
    const archive = concat([
      entry({ name: "s", typeflag: "2", linkname: path.join(outside, "passwd") }),
      entry({ name: "h", typeflag: "1", linkname: "s" }),
    ]);
    await extract(archive, out, IS_ROOT ? { chown: { uid: 70, gid: 71 } } : {});
    expect(fs.lstatSync(path.join(out, "h")).isSymbolicLink()).toBe(true);
    const st = fs.statSync(path.join(outside, "passwd"));
    expect([st.nlink, st.uid]).toEqual([1, process.getuid?.() ?? st.uid]);
  });

  test("symlink targets may point anywhere (PGDATA links are kept as they are)", async () => {
    const out = dest();
    const archive = concat([
      entry({ name: "pg_dynshmem", typeflag: "2", linkname: "/dev/shm/" }),
      entry({ name: "up", typeflag: "2", linkname: "../../.." }),
    ]);
    await extract(archive, out);
    expect(fs.readlinkSync(path.join(out, "pg_dynshmem"))).toBe("/dev/shm/");
    expect(fs.readlinkSync(path.join(out, "up"))).toBe("../../..");
  });
});

describe("extractTar stream handling", () => {
  test("an error of the input stream rejects with that error", async () => {
    const boom = new Error("connection reset");
    let sent = false;
    const stream = new ReadableStream<Uint8Array>({
      pull(c) {
        if (!sent) {
          sent = true;
          c.enqueue(entry({ name: "f" }, "x"));
        } else c.error(boom);
      },
    });
    await expect(extractTar(stream, dest())).rejects.toBe(boom);
  });

  test("a tar error cancels the input stream with that error", async () => {
    let cancelled: unknown;
    const stream = new ReadableStream<Uint8Array>({
      pull(c) {
        c.enqueue(entry({ name: "../evil" }, "x"));
      },
      cancel(reason) {
        cancelled = reason;
      },
    });
    await expect(extractTar(stream, dest())).rejects.toThrow("escapes");
    expect(cancelled).toBeInstanceOf(TarError);
  });

  test("an abort stops a stalled extraction and cancels the input", async () => {
    const ac = new AbortController();
    let cancelled: unknown;
    let pulls = 0;
    const stream = new ReadableStream<Uint8Array>(
      {
        pull(c) {
          pulls++;
          // Half an entry, then nothing more: the read stays pending until the abort.
          if (pulls === 1) {
            c.enqueue(header({ name: "f", size: 1000 }));
            queueMicrotask(() => ac.abort(new Error("shutting down")));
          }
          return new Promise(() => {});
        },
        cancel(reason) {
          cancelled = reason;
        },
      },
      { highWaterMark: 0 },
    );
    await expect(extractTar(stream, dest(), { signal: ac.signal })).rejects.toThrow(
      "shutting down",
    );
    expect(cancelled).toBeInstanceOf(Error);
  });

  test("an already aborted signal rejects before reading", async () => {
    const ac = new AbortController();
    ac.abort(new Error("too late"));
    let pulled = false;
    const stream = new ReadableStream<Uint8Array>(
      {
        pull() {
          pulled = true;
        },
      },
      { highWaterMark: 0 },
    );
    await expect(extractTar(stream, dest(), { signal: ac.signal })).rejects.toThrow("too late");
    expect(pulled).toBe(false);
  });

  test("an empty stream is an empty archive", async () => {
    const out = dest();
    expect(await extract(new Uint8Array(0), out)).toEqual({ entries: 0, bytes: 0 });
    expect(fs.readdirSync(out)).toEqual([]);
  });
});
