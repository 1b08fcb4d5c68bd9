// A streaming tar writer for the pageserver stand-in: walks a directory tree and
// emits GNU-format headers (what the pageserver's tar builder writes), file data and
// padding, pulled one chunk at a time so a large tree streams in bounded memory.
// Header encoding is pure; only `tarDirectory` touches the file system.

import { lstat, open, readdir, readlink } from "node:fs/promises";
import { join } from "node:path";

export const TAR_BLOCK = 512;

/** Output chunks are coalesced up to this size; file data is read in pieces of it. */
const CHUNK_BYTES = 64 * 1024;

export type TarEntryKind = "file" | "directory" | "symlink";

/** One entry's header fields. `size` is only meaningful for files. */
export interface TarEntryHeader {
  /** Path inside the archive, `/`-separated, no leading `/`. */
  name: string;
  kind: TarEntryKind;
  mode: number;
  uid: number;
  gid: number;
  size: number;
  /** Seconds since the epoch. */
  mtime: number;
  /** Symlink target. */
  linkname?: string;
}

const encoder = new TextEncoder();

function putBytes(block: Uint8Array, offset: number, length: number, bytes: Uint8Array): void {
  block.set(bytes.subarray(0, length), offset);
}

/**
 * A numeric field: zero-padded octal ended by NUL, or GNU base-256 (two's complement,
 * big-endian, high bit of the first byte set) when it does not fit or is negative:
 * files of 8 GiB and more, mtimes before 1970.
 */
function putNumber(block: Uint8Array, offset: number, length: number, value: number): void {
  if (!Number.isSafeInteger(value)) throw new RangeError(`tar header: bad number ${value}`);
  const octal = value.toString(8);
  if (value >= 0 && octal.length <= length - 1) {
    putBytes(block, offset, length, encoder.encode(`${octal.padStart(length - 1, "0")}\0`));
    return;
  }
  let v = BigInt.asUintN(8 * length, BigInt(value));
  for (let i = offset + length - 1; i >= offset; i--) {
    block[i] = Number(v & 0xffn);
    v >>= 8n;
  }
  block[offset] = (block[offset] ?? 0) | 0x80;
}

const TYPEFLAG: Record<TarEntryKind, string> = { file: "0", directory: "5", symlink: "2" };

/** One 512-byte GNU header (`ustar  \0` magic) with its checksum. */
function headerBlock(
  name: Uint8Array,
  typeflag: string,
  fields: { mode: number; uid: number; gid: number; size: number; mtime: number },
  linkname: Uint8Array,
): Uint8Array {
  const b = new Uint8Array(TAR_BLOCK);
  putBytes(b, 0, 100, name);
  putNumber(b, 100, 8, fields.mode & 0o7777);
  putNumber(b, 108, 8, fields.uid);
  putNumber(b, 116, 8, fields.gid);
  putNumber(b, 124, 12, fields.size);
  putNumber(b, 136, 12, Math.floor(fields.mtime));
  b[156] = typeflag.charCodeAt(0);
  putBytes(b, 157, 100, linkname);
  putBytes(b, 257, 8, encoder.encode("ustar  \0"));
  // The checksum is computed with its own field read as spaces.
  b.fill(0x20, 148, 156);
  let sum = 0;
  for (const x of b) sum += x;
  putBytes(b, 148, 8, encoder.encode(`${sum.toString(8).padStart(6, "0")}\0 `));
  return b;
}

function paddingFor(size: number): number {
  const rest = size % TAR_BLOCK;
  return rest === 0 ? 0 : TAR_BLOCK - rest;
}

/** A GNU `././@LongLink` entry (`L` for a name, `K` for a link target) and its data. */
function longLink(typeflag: "L" | "K", value: Uint8Array): Uint8Array {
  const size = value.length + 1; // GNU counts the terminating NUL
  const out = new Uint8Array(TAR_BLOCK + size + paddingFor(size));
  out.set(
    headerBlock(
      encoder.encode("././@LongLink"),
      typeflag,
      { mode: 0o644, uid: 0, gid: 0, size, mtime: 0 },
      new Uint8Array(0),
    ),
  );
  out.set(value, TAR_BLOCK);
  return out;
}

/**
 * The header blocks of one entry: a GNU long-name (and long-link) entry first when a
 * name or link target exceeds the 100-byte field, then the header itself.
 */
export function encodeTarHeader(entry: TarEntryHeader): Uint8Array {
  const name = encoder.encode(entry.name);
  const link = encoder.encode(entry.linkname ?? "");
  const parts: Uint8Array[] = [];
  if (link.length > 100) parts.push(longLink("K", link));
  if (name.length > 100) parts.push(longLink("L", name));
  const size = entry.kind === "file" ? entry.size : 0;
  parts.push(headerBlock(name, TYPEFLAG[entry.kind], { ...entry, size }, link));
  if (parts.length === 1 && parts[0] !== undefined) return parts[0];
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

/** Two zero blocks: the end-of-archive marker a real pageserver leaves out. */
export function endOfArchive(): Uint8Array {
  return new Uint8Array(2 * TAR_BLOCK);
}

export interface TarDirectoryOptions {
  /** Append the end-of-archive blocks (default true; the pageserver sends none). */
  endOfArchive?: boolean;
  /** Ownership written for every entry; default the ids from lstat. */
  owner?: { uid: number; gid: number };
  /** mtime (seconds) written for every entry; default the one from lstat. */
  mtime?: number;
  /** Leave out an entry (and, for a directory, all below it). `rel` uses `/`. */
  exclude?: (rel: string) => boolean;
}

/** Entries of `root` in archive order: depth first, names sorted, parents first. */
async function* walk(
  root: string,
  rel: string,
  opts: TarDirectoryOptions,
): AsyncGenerator<{ header: TarEntryHeader; path: string }> {
  const names = (await readdir(rel === "" ? root : join(root, rel))).sort();
  for (const n of names) {
    const entryRel = rel === "" ? n : `${rel}/${n}`;
    if (opts.exclude?.(entryRel)) continue;
    const path = join(root, entryRel);
    const st = await lstat(path);
    const base = {
      name: entryRel,
      mode: st.mode & 0o7777,
      uid: opts.owner?.uid ?? st.uid,
      gid: opts.owner?.gid ?? st.gid,
      mtime: opts.mtime ?? Math.floor(st.mtimeMs / 1000),
      size: 0,
    };
    if (st.isDirectory()) {
      yield { header: { ...base, kind: "directory" }, path };
      yield* walk(root, entryRel, opts);
    } else if (st.isFile()) {
      yield { header: { ...base, kind: "file", size: st.size }, path };
    } else if (st.isSymbolicLink()) {
      yield { header: { ...base, kind: "symlink", linkname: await readlink(path) }, path };
    } else {
      throw new Error(`tar: ${path} is not a file, directory or symlink`);
    }
  }
}

/** Collects small pieces into chunks of about CHUNK_BYTES. */
class Coalescer {
  private parts: Uint8Array[] = [];
  private size = 0;

  add(b: Uint8Array): Uint8Array | undefined {
    this.parts.push(b);
    this.size += b.length;
    return this.size >= CHUNK_BYTES ? this.take() : undefined;
  }

  take(): Uint8Array | undefined {
    if (this.size === 0) return undefined;
    const out =
      this.parts.length === 1 && this.parts[0] !== undefined
        ? this.parts[0]
        : Buffer.concat(this.parts, this.size);
    this.parts = [];
    this.size = 0;
    return out;
  }
}

async function* tarChunks(root: string, opts: TarDirectoryOptions): AsyncGenerator<Uint8Array> {
  const out = new Coalescer();
  const emit = function* (b: Uint8Array) {
    const chunk = out.add(b);
    if (chunk) yield chunk;
  };
  for await (const { header, path } of walk(root, "", opts)) {
    yield* emit(encodeTarHeader(header));
    if (header.kind !== "file" || header.size === 0) continue;
    const fh = await open(path, "r");
    try {
      let left = header.size;
      while (left > 0) {
        // A fresh buffer each time: the consumer may still hold the previous one.
        const buf = new Uint8Array(Math.min(CHUNK_BYTES, left));
        const { bytesRead } = await fh.read(buf, 0, buf.length, null);
        if (bytesRead === 0) throw new Error(`tar: ${path} shrank while being archived`);
        left -= bytesRead;
        yield* emit(buf.subarray(0, bytesRead));
      }
    } finally {
      await fh.close();
    }
    const pad = paddingFor(header.size);
    if (pad > 0) yield* emit(new Uint8Array(pad));
  }
  if (opts.endOfArchive ?? true) yield* emit(endOfArchive());
  const last = out.take();
  if (last) yield last;
}

/** Iterates `gen` on demand: nothing is read ahead of the consumer. */
export function streamFrom(gen: AsyncGenerator<Uint8Array>): ReadableStream<Uint8Array> {
  return new ReadableStream<Uint8Array>(
    {
      async pull(controller) {
        const r = await gen.next();
        if (r.done) controller.close();
        else controller.enqueue(r.value);
      },
      async cancel() {
        await gen.return(undefined);
      },
    },
    { highWaterMark: 0 },
  );
}

/** A tar stream of everything below `root` (not `root` itself). */
export function tarDirectory(
  root: string,
  opts: TarDirectoryOptions = {},
): ReadableStream<Uint8Array> {
  return streamFrom(tarChunks(root, opts));
}

/** Gzip a byte stream (the pageserver's `--gzip`). */
export function gzip(stream: ReadableStream<Uint8Array>): ReadableStream<Uint8Array> {
  // The typings want ArrayBuffer-backed chunks; any Uint8Array works at run time.
  const deflate = new CompressionStream("gzip") as unknown as ReadableWritablePair<
    Uint8Array,
    Uint8Array
  >;
  return stream.pipeThrough(deflate);
}
