// Test helpers for the tar code: hand-built headers, GNU tar runs, chunked streams
// and a tree comparison. Imported by tests only.

import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";

const encoder = new TextEncoder();

export interface HeaderSpec {
  name: string;
  mode?: number;
  uid?: number;
  gid?: number;
  size?: number;
  mtime?: number;
  typeflag?: string;
  linkname?: string;
  /** ustar prefix field (only meaningful with the POSIX magic). */
  prefix?: string;
  magic?: "ustar" | "gnu" | "v7";
  /** Override the computed checksum. */
  checksum?: number;
  /** Raw bytes to place at offsets after everything else (e.g. base-256 fields). */
  raw?: Array<[number, number[]]>;
}

function putString(block: Uint8Array, offset: number, length: number, value: string): void {
  const bytes = encoder.encode(value);
  if (bytes.byteLength > length) throw new Error(`test header: '${value}' does not fit`);
  block.set(bytes, offset);
}

function putOctal(block: Uint8Array, offset: number, length: number, value: number): void {
  putString(block, offset, length, `${value.toString(8).padStart(length - 1, "0")}\0`);
}

/** One 512-byte header, with a valid checksum unless told otherwise. */
export function header(spec: HeaderSpec): Uint8Array {
  const b = new Uint8Array(512);
  putString(b, 0, 100, spec.name);
  putOctal(b, 100, 8, spec.mode ?? (spec.typeflag === "5" ? 0o755 : 0o644));
  putOctal(b, 108, 8, spec.uid ?? 0);
  putOctal(b, 116, 8, spec.gid ?? 0);
  putOctal(b, 124, 12, spec.size ?? 0);
  putOctal(b, 136, 12, spec.mtime ?? 1_700_000_000);
  putString(b, 156, 1, spec.typeflag ?? "0");
  putString(b, 157, 100, spec.linkname ?? "");
  const magic = spec.magic ?? "ustar";
  if (magic === "ustar") putString(b, 257, 8, "ustar\x0000");
  else if (magic === "gnu") putString(b, 257, 8, "ustar  \0");
  if (spec.prefix !== undefined) putString(b, 345, 155, spec.prefix);
  for (const [offset, bytes] of spec.raw ?? []) b.set(bytes, offset);
  b.fill(0x20, 148, 156);
  let sum = 0;
  for (const x of b) sum += x;
  putString(b, 148, 8, `${(spec.checksum ?? sum).toString(8).padStart(6, "0")}\0 `);
  return b;
}

/** Data padded to a whole number of blocks. */
export function padded(data: Uint8Array | string): Uint8Array {
  const bytes = typeof data === "string" ? encoder.encode(data) : data;
  const out = new Uint8Array(Math.ceil(bytes.byteLength / 512) * 512);
  out.set(bytes);
  return out;
}

/** A header plus its padded data. */
export function entry(spec: HeaderSpec, data: Uint8Array | string = ""): Uint8Array {
  const bytes = typeof data === "string" ? encoder.encode(data) : data;
  return concat([header({ size: bytes.byteLength, ...spec }), padded(bytes)]);
}

/** A pax `x` header carrying `records`, for the entry after it. */
export function paxEntry(records: Record<string, string>): Uint8Array {
  let body = "";
  for (const [key, value] of Object.entries(records)) {
    const rest = encoder.encode(` ${key}=${value}\n`).byteLength;
    // The length counts its own digits: iterate to the fixed point.
    let len = rest + 1;
    while (len !== rest + String(len).length) len = rest + String(len).length;
    body += `${len} ${key}=${value}\n`;
  }
  return entry({ name: "PaxHeaders/x", typeflag: "x" }, body);
}

export function concat(parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.byteLength, 0));
  let off = 0;
  for (const p of parts) {
    out.set(p, off);
    off += p.byteLength;
  }
  return out;
}

/** Serve `bytes` as a stream cut into pieces of `size(i)` bytes. */
export function chunked(
  bytes: Uint8Array,
  size: number | ((i: number) => number),
): ReadableStream<Uint8Array> {
  let off = 0;
  let i = 0;
  return new ReadableStream<Uint8Array>(
    {
      pull(controller) {
        if (off >= bytes.byteLength) {
          controller.close();
          return;
        }
        const n = Math.max(1, typeof size === "number" ? size : size(i++));
        controller.enqueue(bytes.slice(off, off + n));
        off += n;
      },
    },
    { highWaterMark: 0 },
  );
}

/** A seeded generator of chunk sizes in [1, max]. */
export function randomSizes(seed: number, max: number): (i: number) => number {
  let s = seed >>> 0;
  return () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return 1 + (s % max);
  };
}

export function tempDir(label: string): string {
  const base = fs.existsSync("/dev/shm") ? "/dev/shm" : os.tmpdir();
  return fs.mkdtempSync(path.join(base, `cc-${label}-`));
}

/** Remove a temp tree, including read-only directories an unprivileged user cannot empty. */
export function removeTree(dir: string): void {
  const unlock = (p: string) => {
    const st = fs.lstatSync(p, { throwIfNoEntry: false });
    if (st === undefined || !st.isDirectory()) return;
    fs.chmodSync(p, 0o700);
    for (const name of fs.readdirSync(p)) unlock(path.join(p, name));
  };
  unlock(dir);
  fs.rmSync(dir, { recursive: true, force: true });
}

/** Run a command; throw with its stderr if it fails. */
export function run(cmd: string[], cwd?: string): string {
  const r = Bun.spawnSync(cmd, { cwd, stdout: "pipe", stderr: "pipe" });
  if (r.exitCode !== 0) {
    throw new Error(`${cmd.join(" ")} exited ${r.exitCode}: ${r.stderr.toString()}`);
  }
  return r.stdout.toString();
}

export interface NodeInfo {
  type: "file" | "directory" | "symlink" | "other";
  mode: number;
  uid: number;
  gid: number;
  size: number;
  mtimeNs: bigint;
  target?: string;
  /** Index of the first path sharing this inode, for hard links. */
  linkGroup?: string;
}

/** Every path below `root` (and `root` itself as "."), described by lstat. */
export function describeTree(root: string): Map<string, NodeInfo> {
  const out = new Map<string, NodeInfo>();
  const inodes = new Map<bigint, string>();
  const visit = (rel: string) => {
    const abs = rel === "." ? root : path.join(root, rel);
    const st = fs.lstatSync(abs, { bigint: true });
    const type = st.isFile()
      ? "file"
      : st.isDirectory()
        ? "directory"
        : st.isSymbolicLink()
          ? "symlink"
          : "other";
    const info: NodeInfo = {
      type,
      mode: Number(st.mode & 0o7777n),
      uid: Number(st.uid),
      gid: Number(st.gid),
      size: type === "directory" ? 0 : Number(st.size),
      mtimeNs: st.mtimeNs,
    };
    if (type === "symlink") info.target = fs.readlinkSync(abs);
    if (type === "file" && st.nlink > 1n) {
      const first = inodes.get(st.ino) ?? rel;
      inodes.set(st.ino, first);
      info.linkGroup = first;
    }
    out.set(rel, info);
    if (type === "directory") {
      for (const name of fs.readdirSync(abs).sort()) visit(rel === "." ? name : `${rel}/${name}`);
    }
  };
  visit(".");
  return out;
}

/**
 * Differences between two trees: metadata, symlink targets, hard-link groups and
 * file contents. mtimes may differ by `mtimeSlackNs` (our fractional times pass
 * through a double).
 */
export function diffTrees(expected: string, actual: string, mtimeSlackNs = 1000n): string[] {
  const a = describeTree(expected);
  const b = describeTree(actual);
  const diffs: string[] = [];
  for (const rel of new Set([...a.keys(), ...b.keys()])) {
    const x = a.get(rel);
    const y = b.get(rel);
    if (x === undefined || y === undefined) {
      diffs.push(`${rel}: only in ${x === undefined ? "actual" : "expected"}`);
      continue;
    }
    const { mtimeNs: mx, ...restX } = x;
    const { mtimeNs: my, ...restY } = y;
    if (JSON.stringify(restX) !== JSON.stringify(restY)) {
      diffs.push(`${rel}: ${JSON.stringify(restX)} != ${JSON.stringify(restY)}`);
    }
    const d = mx > my ? mx - my : my - mx;
    if (d > mtimeSlackNs) diffs.push(`${rel}: mtime ${mx} != ${my}`);
    if (x.type === "file" && y.type === "file") {
      const cx = fs.readFileSync(path.join(expected, rel));
      const cy = fs.readFileSync(path.join(actual, rel));
      if (!cx.equals(cy)) diffs.push(`${rel}: content differs`);
    }
  }
  return diffs;
}

export const IS_ROOT = process.getuid?.() === 0;

/**
 * A tree with what a PGDATA (and a hostile archive author) can throw at us:
 * long names and link targets, 0-byte files, private modes, foreign owners,
 * absolute and relative symlinks, a hard link, sub-second and pre-1970 mtimes.
 */
export function buildSourceTree(root: string): void {
  const at = (rel: string) => path.join(root, rel);
  const file = (rel: string, data: string | Uint8Array, mode = 0o644) => {
    fs.mkdirSync(path.dirname(at(rel)), { recursive: true });
    fs.writeFileSync(at(rel), data);
    fs.chmodSync(at(rel), mode);
  };
  fs.mkdirSync(at("dir0700"), { mode: 0o700 });
  fs.chmodSync(at("dir0700"), 0o700);
  file("dir0700/secret", "secret data\n", 0o600);
  file("empty", "");
  file("owned", "owned by 101:104\n", 0o640);
  if (IS_ROOT) fs.chownSync(at("owned"), 101, 104);
  file(`long/${"a".repeat(60)}/${"b".repeat(120)}`, "a name over 100 bytes\n");
  file(`deep/${"p".repeat(90)}/${"q".repeat(90)}`, "fits ustar prefix + name\n");
  fs.symlinkSync("/dev/shm", at("abs-link"));
  fs.symlinkSync("dir0700/secret", at("rel-link"));
  fs.symlinkSync(`../${"t".repeat(150)}`, at("long-link"));
  fs.linkSync(at("owned"), at("hard"));
  const big = new Uint8Array(100_003);
  crypto.getRandomValues(big);
  file("big", big);
  file("aligned", new Uint8Array(4096).fill(7));
  file("frac", "sub-second mtime\n");
  run(["/usr/bin/touch", "-d", "@1700000000.123456789", at("frac")]);
  file("old", "from 1960\n");
  run(["/usr/bin/touch", "-d", "@-315619199.75", at("old")]);
  file("zzz-empty", "");
  fs.chmodSync(root, 0o750);
}

/** Archive `root` with GNU tar in `format`, entries sorted, `exclude` left out. */
export function gnuTar(
  root: string,
  out: string,
  format: string,
  exclude: string[] = [],
): Uint8Array {
  const excludes = exclude.map((e) => `--exclude=./${e}`);
  run(["tar", `--format=${format}`, "--sort=name", ...excludes, "-C", root, "-cf", out, "."]);
  return new Uint8Array(fs.readFileSync(out));
}

/** GNU tar's own extraction, the reference: modes, owners (as root) and mtimes kept. */
export function gnuExtract(archive: string, dest: string): void {
  fs.mkdirSync(dest, { recursive: true });
  run(["tar", "-xpf", archive, "-C", dest]);
}
