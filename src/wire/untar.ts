// Streaming tar extraction into a directory (the basebackup into PGDATA).
//
// The byte stream is parsed as it arrives and file data is written straight from
// the incoming chunks with synchronous fs calls: each call is short, the parser
// stays a plain synchronous state machine, and memory stays bounded by one chunk.

import * as fs from "node:fs";
import * as path from "node:path";
import { errorMessage } from "../errors.ts";
import { TarError } from "./tar-header.ts";
import { type TarEntry, TarReader, type TarSink } from "./tar-reader.ts";

export interface ExtractOptions {
  /**
   * Ownership of what is extracted: a fixed uid/gid for every entry (and for
   * parent directories we create), `"preserve"` for the ids in the headers, or
   * undefined to leave files owned by the extracting user.
   */
  chown?: { uid: number; gid: number } | "preserve" | undefined;
  signal?: AbortSignal;
}

export interface ExtractResult {
  /** Entries extracted or skipped, not counting pax and GNU long-name headers. */
  entries: number;
  /** Bytes of regular-file content written. */
  bytes: number;
}

/**
 * Extract an (uncompressed) tar stream into `destDir`, creating it if needed.
 * Accepts archives without end-of-archive blocks and zero blocks between entries;
 * rejects truncated archives, paths that leave `destDir`, and writes through
 * symlinks. Existing files are replaced.
 */
export async function extractTar(
  stream: ReadableStream<Uint8Array>,
  destDir: string,
  opts: ExtractOptions = {},
): Promise<ExtractResult> {
  const { signal } = opts;
  signal?.throwIfAborted();
  const root = path.resolve(destDir);
  fs.mkdirSync(root, { recursive: true });
  const extractor = new Extractor(root, opts.chown);
  const parser = new TarReader(extractor);
  const reader = stream.getReader();
  // Cancelling stops the producer too (the gunzip and the connection behind it).
  const onAbort = () => {
    reader.cancel(signal?.reason).catch(() => {});
  };
  signal?.addEventListener("abort", onAbort, { once: true });
  try {
    for (;;) {
      const { done, value } = await reader.read();
      signal?.throwIfAborted();
      if (done) break;
      parser.push(value);
    }
    parser.end();
    extractor.finish();
    return { entries: extractor.entries, bytes: extractor.bytes };
  } catch (err) {
    reader.cancel(err).catch(() => {});
    throw err;
  } finally {
    signal?.removeEventListener("abort", onAbort);
    extractor.close();
    reader.releaseLock();
  }
}

interface DirAttrs {
  mode: number;
  mtime: number;
  uid: number;
  gid: number;
}

const { O_WRONLY, O_CREAT, O_EXCL } = fs.constants;

function errCode(err: unknown): string | undefined {
  return (err as NodeJS.ErrnoException | undefined)?.code;
}

/** Bun's utimes family mistakes negative numeric times for "now"; a Date is exact to 1 ms. */
function fsTime(seconds: number): number | Date {
  return seconds < 0 ? new Date(seconds * 1000) : seconds;
}

/** `name` as a relative path inside the destination, or a `TarError` if it leaves it. */
export function safeRelativePath(name: string): string {
  if (name.startsWith("/")) {
    throw new TarError(`tar entry '${name}' has an absolute path; refusing to extract it`);
  }
  const parts: string[] = [];
  for (const part of name.split("/")) {
    if (part === "" || part === ".") continue;
    if (part === "..") {
      throw new TarError(`tar entry '${name}' escapes the destination directory ('..')`);
    }
    parts.push(part);
  }
  return parts.join("/");
}

function parentOf(rel: string): string {
  const slash = rel.lastIndexOf("/");
  return slash === -1 ? "" : rel.slice(0, slash);
}

class Extractor implements TarSink {
  entries = 0;
  bytes = 0;
  /** Relative paths known to be real directories (not symlinks) that we created or checked. */
  private readonly verified = new Set<string>([""]);
  /** Directory modes and mtimes, applied at the end so later entries cannot disturb them. */
  private readonly dirs = new Map<string, DirAttrs>();
  private fd = -1;
  private current: TarEntry | undefined;
  private readonly now = Date.now() / 1000;

  constructor(
    private readonly root: string,
    private readonly chown: ExtractOptions["chown"],
  ) {}

  entry(e: TarEntry): void {
    this.entries++;
    this.current = e;
    try {
      this.create(e);
    } catch (err) {
      throw this.wrap(e, err);
    }
  }

  data(chunk: Uint8Array): void {
    if (this.fd < 0) return;
    try {
      let off = 0;
      while (off < chunk.byteLength) {
        off += fs.writeSync(this.fd, chunk, off, chunk.byteLength - off);
      }
      this.bytes += chunk.byteLength;
    } catch (err) {
      throw this.wrap(this.current, err);
    }
  }

  entryEnd(): void {
    const e = this.current;
    if (this.fd < 0 || e === undefined) return;
    const fd = this.fd;
    this.fd = -1;
    try {
      const owner = this.owner(e);
      // chown first: it may clear mode bits that chmod then sets.
      if (owner !== undefined) fs.fchownSync(fd, owner.uid, owner.gid);
      fs.fchmodSync(fd, e.mode & 0o777);
      fs.futimesSync(fd, this.now, fsTime(e.mtime));
    } catch (err) {
      throw this.wrap(e, err);
    } finally {
      fs.closeSync(fd);
    }
  }

  /** After the last entry: directory modes, owners and mtimes. */
  finish(): void {
    for (const [rel, attrs] of this.dirs) {
      const abs = this.abs(rel);
      try {
        const owner = this.owner(attrs);
        if (owner !== undefined) fs.lchownSync(abs, owner.uid, owner.gid);
        fs.chmodSync(abs, attrs.mode & 0o777);
        fs.lutimesSync(abs, this.now, fsTime(attrs.mtime));
      } catch (err) {
        throw new TarError(`cannot set attributes of directory '${rel}': ${errorMessage(err)}`, {
          cause: err,
        });
      }
    }
  }

  /** Release the open file, if an error stopped us in the middle of one. */
  close(): void {
    if (this.fd >= 0) fs.closeSync(this.fd);
    this.fd = -1;
  }

  private create(e: TarEntry): void {
    const rel = safeRelativePath(e.name);
    if (rel === "" && e.type !== "directory") {
      throw new TarError(`tar entry '${e.name}' has an empty path`);
    }
    switch (e.type) {
      case "directory":
        if (rel !== "") {
          this.ensureParents(rel, e.name);
          this.mkdir(rel);
        }
        this.dirs.set(rel, { mode: e.mode, mtime: e.mtime, uid: e.uid, gid: e.gid });
        return;
      case "file": {
        this.ensureParents(rel, e.name);
        const abs = this.abs(rel);
        this.fd = this.replacing(rel, () => fs.openSync(abs, O_WRONLY | O_CREAT | O_EXCL, 0o600));
        return;
      }
      case "symlink": {
        this.ensureParents(rel, e.name);
        const abs = this.abs(rel);
        // The target is stored as is: PGDATA may hold absolute links (pg_dynshmem).
        this.replacing(rel, () => fs.symlinkSync(e.linkname, abs));
        const owner = this.owner(e);
        if (owner !== undefined) fs.lchownSync(abs, owner.uid, owner.gid);
        fs.lutimesSync(abs, this.now, fsTime(e.mtime));
        return;
      }
      case "hardlink": {
        const target = safeRelativePath(e.linkname);
        if (target === "") throw new TarError(`hard link '${e.name}' has an empty target`);
        // Linking to itself would delete the file it names.
        if (target === rel) return;
        this.checkParents(target, e.name);
        this.ensureParents(rel, e.name);
        const abs = this.abs(rel);
        // The link shares the target's inode, owner, mode and mtime: nothing else to set.
        this.replacing(rel, () => fs.linkSync(this.abs(target), abs));
        return;
      }
      default:
        // Devices, FIFOs and unknown types do not belong in a PGDATA: skip them.
        return;
    }
  }

  private abs(rel: string): string {
    return rel === "" ? this.root : `${this.root}/${rel}`;
  }

  private owner(attrs: { uid: number; gid: number }): { uid: number; gid: number } | undefined {
    if (this.chown === "preserve") return { uid: attrs.uid, gid: attrs.gid };
    return this.chown;
  }

  /**
   * Make sure every parent of `rel` is a real directory, creating missing ones.
   * An existing symlink on the way is refused: writing through it could land
   * outside the destination.
   */
  private ensureParents(rel: string, name: string): void {
    const parent = parentOf(rel);
    if (this.verified.has(parent)) return;
    let prefix = "";
    for (const part of parent.split("/")) {
      prefix = prefix === "" ? part : `${prefix}/${part}`;
      if (this.verified.has(prefix)) continue;
      const abs = this.abs(prefix);
      const st = fs.lstatSync(abs, { throwIfNoEntry: false });
      if (st === undefined) {
        fs.mkdirSync(abs, 0o755);
        if (this.chown !== undefined && this.chown !== "preserve") {
          fs.lchownSync(abs, this.chown.uid, this.chown.gid);
        }
      } else if (st.isSymbolicLink()) {
        throw new TarError(
          `refusing to extract tar entry '${name}': '${prefix}' is a symlink and writing through it could leave the destination directory`,
        );
      } else if (!st.isDirectory()) {
        throw new TarError(`cannot extract tar entry '${name}': '${prefix}' is not a directory`);
      }
      this.verified.add(prefix);
    }
  }

  /** Like `ensureParents`, for a hard link target: check only, create nothing. */
  private checkParents(rel: string, name: string): void {
    const parent = parentOf(rel);
    if (this.verified.has(parent)) return;
    let prefix = "";
    for (const part of parent.split("/")) {
      prefix = prefix === "" ? part : `${prefix}/${part}`;
      if (this.verified.has(prefix)) continue;
      const st = fs.lstatSync(this.abs(prefix), { throwIfNoEntry: false });
      if (st === undefined || !st.isDirectory()) {
        throw new TarError(
          `refusing to extract hard link '${name}': '${prefix}' is not a directory inside the destination`,
        );
      }
      this.verified.add(prefix);
    }
  }

  private mkdir(rel: string): void {
    const abs = this.abs(rel);
    try {
      // Owner-writable until `finish` sets the final mode, so entries can go inside.
      fs.mkdirSync(abs, 0o700);
    } catch (err) {
      if (errCode(err) !== "EEXIST") throw err;
      const st = fs.lstatSync(abs);
      if (!st.isDirectory()) {
        this.remove(rel);
        fs.mkdirSync(abs, 0o700);
      }
    }
    this.verified.add(rel);
  }

  /** Run a create call; if the path exists, remove what is there and retry once. */
  private replacing<T>(rel: string, create: () => T): T {
    try {
      return create();
    } catch (err) {
      if (errCode(err) !== "EEXIST") throw err;
    }
    this.remove(rel);
    return create();
  }

  /** Remove a file, link or empty directory so an entry can take its place. */
  private remove(rel: string): void {
    const abs = this.abs(rel);
    try {
      fs.unlinkSync(abs);
    } catch (err) {
      const code = errCode(err);
      if (code !== "EISDIR" && code !== "EPERM") throw err;
      fs.rmdirSync(abs);
    }
    if (this.verified.delete(rel) || this.dirs.has(rel)) {
      for (const set of [this.verified, this.dirs]) {
        for (const key of set.keys()) {
          if (key === rel || key.startsWith(`${rel}/`)) set.delete(key);
        }
      }
    }
  }

  private wrap(e: TarEntry | undefined, err: unknown): Error {
    if (err instanceof TarError) return err;
    return new TarError(`cannot extract tar entry '${e?.name}': ${errorMessage(err)}`, {
      cause: err,
    });
  }
}
