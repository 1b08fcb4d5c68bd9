// Pure tar header decoding: one 512-byte block (ustar, GNU or v7), pax extended
// records and GNU long names. No I/O here; the streaming reader and the extractor
// build on these functions.

import { ComputeCtlError } from "../errors.ts";

export const BLOCK_SIZE = 512;

/** A malformed, truncated or unsafe tar archive. */
export class TarError extends ComputeCtlError {
  override readonly name = "TarError";
}

/** What an entry is, from its typeflag. Meta entries describe the entry after them. */
export type TarEntryType =
  | "file"
  | "hardlink"
  | "symlink"
  | "chardev"
  | "blockdev"
  | "directory"
  | "fifo"
  | "pax" // `x`: pax extended header for the next entry
  | "pax-global" // `g`: pax global header
  | "gnu-longname" // `L`
  | "gnu-longlink" // `K`
  | "gnu-sparse" // `S`: not supported
  | "unknown";

export interface TarHeader {
  /** Path as stored: `prefix/name` for ustar, `name` otherwise. */
  name: string;
  mode: number;
  uid: number;
  gid: number;
  /** Bytes of data that follow the header (before padding). */
  size: number;
  /** Seconds since the epoch; fractional only when it came from a pax record. */
  mtime: number;
  /** The raw typeflag character (`"\0"` for old-style regular files). */
  typeflag: string;
  type: TarEntryType;
  linkname: string;
  uname: string;
  gname: string;
}

/** The pax keys we honour for the next entry (`x`); others are ignored. */
export interface PaxAttributes {
  path?: string;
  linkpath?: string;
  size?: number;
  mtime?: number;
  uid?: number;
  gid?: number;
  uname?: string;
  gname?: string;
  /** True when the entry uses GNU pax sparse encoding, which we cannot extract. */
  sparse?: boolean;
}

const utf8 = new TextDecoder("utf-8");

/** True when the block is all zero bytes (an end-of-archive or padding block). */
export function isZeroBlock(block: Uint8Array): boolean {
  for (let i = 0; i < BLOCK_SIZE; i++) if (block[i] !== 0) return false;
  return true;
}

/** A NUL-terminated (or full-width) string field. */
export function readString(block: Uint8Array, offset: number, length: number): string {
  let end = offset;
  const limit = offset + length;
  while (end < limit && block[end] !== 0) end++;
  return utf8.decode(block.subarray(offset, end));
}

/**
 * A numeric field: octal ASCII (leading spaces or NULs, ended by space or NUL), or
 * GNU base-256 when the high bit of the first byte is set (big sizes, ids, and
 * negative mtimes).
 */
export function readNumber(
  block: Uint8Array,
  offset: number,
  length: number,
  field: string,
): number {
  const first = block[offset] ?? 0;
  if (first & 0x80) return readBase256(block, offset, length, field);
  let i = offset;
  const limit = offset + length;
  while (i < limit && (block[i] === 0x20 || block[i] === 0)) i++;
  let value = 0;
  for (; i < limit; i++) {
    const c = block[i] ?? 0;
    if (c === 0x20 || c === 0) break;
    if (c < 0x30 || c > 0x37) {
      throw new TarError(`invalid octal digit in tar header field ${field}`);
    }
    value = value * 8 + (c - 0x30);
  }
  if (!Number.isSafeInteger(value)) throw new TarError(`tar header field ${field} is too large`);
  return value;
}

function readBase256(block: Uint8Array, offset: number, length: number, field: string): number {
  const first = block[offset] ?? 0;
  // 0x80 marks a positive number; 0xff a negative one in two's complement.
  const negative = (first & 0x40) !== 0;
  let value = negative ? (first & 0x7f) - 0x80 : first & 0x7f;
  for (let i = offset + 1; i < offset + length; i++) {
    value = value * 256 + (block[i] ?? 0);
    if (!Number.isSafeInteger(value)) throw new TarError(`tar header field ${field} is too large`);
  }
  return value;
}

/**
 * The header checksum: the sum of all bytes with the checksum field read as spaces.
 * Some old writers summed signed bytes, so both sums are accepted.
 */
export function checksums(block: Uint8Array): { unsigned: number; signed: number } {
  let unsigned = 0;
  let signed = 0;
  for (let i = 0; i < BLOCK_SIZE; i++) {
    const b = i >= 148 && i < 156 ? 0x20 : (block[i] ?? 0);
    unsigned += b;
    signed += b >= 0x80 ? b - 0x100 : b;
  }
  return { unsigned, signed };
}

function typeOf(typeflag: string, name: string): TarEntryType {
  switch (typeflag) {
    case "\0":
      // Pre-POSIX archives mark directories only by a trailing slash.
      return name.endsWith("/") ? "directory" : "file";
    case "0":
    case "7": // contiguous file: a regular file everywhere that matters
      return "file";
    case "1":
      return "hardlink";
    case "2":
      return "symlink";
    case "3":
      return "chardev";
    case "4":
      return "blockdev";
    case "5":
    case "D": // GNU dumpdir: a directory followed by a listing we do not need
      return "directory";
    case "6":
      return "fifo";
    case "x":
    case "X": // Solaris spelling of the same thing
      return "pax";
    case "g":
      return "pax-global";
    case "L":
      return "gnu-longname";
    case "K":
      return "gnu-longlink";
    case "S":
      return "gnu-sparse";
    default:
      return "unknown";
  }
}

/**
 * Decode one header block. Throws `TarError` when the checksum does not match, which
 * is how garbage (a non-tar stream, a corrupted copy) is noticed. `offset` (the
 * block's position in the archive) only serves the error message.
 */
export function parseHeader(block: Uint8Array, offset = 0): TarHeader {
  if (block.byteLength < BLOCK_SIZE) {
    throw new TarError(`truncated tar archive: header at byte ${offset} is incomplete`);
  }
  const stored = readNumber(block, 148, 8, "chksum");
  const { unsigned, signed } = checksums(block);
  if (stored !== unsigned && stored !== signed) {
    throw new TarError(
      `invalid tar header at byte ${offset}: checksum mismatch (stored ${stored}, computed ${unsigned})`,
    );
  }
  let name = readString(block, 0, 100);
  // Only POSIX ustar ("ustar\0") has a prefix field; old GNU headers ("ustar  \0")
  // keep atime/ctime in the same bytes.
  const posix = readString(block, 257, 6) === "ustar" && block[262] === 0;
  if (posix) {
    const prefix = readString(block, 345, 155);
    if (prefix !== "") name = `${prefix}/${name}`;
  }
  const typeflag = String.fromCharCode(block[156] ?? 0);
  return {
    name,
    mode: readNumber(block, 100, 8, "mode"),
    uid: readNumber(block, 108, 8, "uid"),
    gid: readNumber(block, 116, 8, "gid"),
    size: readNumber(block, 124, 12, "size"),
    mtime: readNumber(block, 136, 12, "mtime"),
    typeflag,
    type: typeOf(typeflag, name),
    linkname: readString(block, 157, 100),
    uname: readString(block, 265, 32),
    gname: readString(block, 297, 32),
  };
}

/** The data of a GNU `L`/`K` entry: a NUL-terminated path. */
export function parseLongName(data: Uint8Array): string {
  const nul = data.indexOf(0);
  return utf8.decode(nul === -1 ? data : data.subarray(0, nul));
}

function paxInteger(key: string, value: string): number {
  if (!/^\d+$/.test(value)) throw new TarError(`invalid pax ${key} value '${value}'`);
  const n = Number(value);
  if (!Number.isSafeInteger(n)) throw new TarError(`pax ${key} value '${value}' is too large`);
  return n;
}

function paxTime(key: string, value: string): number {
  if (!/^-?\d+(\.\d+)?$/.test(value)) throw new TarError(`invalid pax ${key} value '${value}'`);
  return Number(value);
}

/**
 * Records of a pax extended header: `"<len> <key>=<value>\n"`, where `<len>` counts
 * the whole record in bytes. Values are UTF-8 and may contain `=` or newlines.
 */
export function parsePaxRecords(data: Uint8Array): Map<string, string> {
  const records = new Map<string, string>();
  let pos = 0;
  while (pos < data.byteLength) {
    // Writers pad with NULs to the block; nothing after that is a record.
    if (data[pos] === 0) break;
    let space = pos;
    while (space < data.byteLength && data[space] !== 0x20) space++;
    const lenText = utf8.decode(data.subarray(pos, space));
    const len = Number(lenText);
    if (!/^\d+$/.test(lenText) || len <= space - pos + 1 || pos + len > data.byteLength) {
      throw new TarError(`invalid pax extended header record at byte ${pos}`);
    }
    const end = pos + len;
    if (data[end - 1] !== 0x0a) {
      throw new TarError(`invalid pax extended header record at byte ${pos}: no newline`);
    }
    const record = data.subarray(space + 1, end - 1);
    const eq = record.indexOf(0x3d);
    if (eq <= 0) throw new TarError(`invalid pax extended header record at byte ${pos}: no key`);
    records.set(utf8.decode(record.subarray(0, eq)), utf8.decode(record.subarray(eq + 1)));
    pos = end;
  }
  return records;
}

/** The attributes of an `x` header that change how the next entry is extracted. */
export function parsePax(data: Uint8Array): PaxAttributes {
  const attrs: PaxAttributes = {};
  for (const [key, value] of parsePaxRecords(data)) {
    switch (key) {
      case "path":
        attrs.path = value;
        break;
      case "linkpath":
        attrs.linkpath = value;
        break;
      case "size":
        attrs.size = paxInteger(key, value);
        break;
      case "mtime":
        attrs.mtime = paxTime(key, value);
        break;
      case "uid":
        attrs.uid = paxInteger(key, value);
        break;
      case "gid":
        attrs.gid = paxInteger(key, value);
        break;
      case "uname":
        attrs.uname = value;
        break;
      case "gname":
        attrs.gname = value;
        break;
      default:
        if (key.startsWith("GNU.sparse.")) attrs.sparse = true;
    }
  }
  return attrs;
}

/** Overlay pax attributes and GNU long names on a header (pax wins over `L`/`K`). */
export function applyExtensions(
  header: TarHeader,
  ext: {
    pax?: PaxAttributes | undefined;
    longName?: string | undefined;
    longLink?: string | undefined;
  },
): TarHeader {
  const pax = ext.pax ?? {};
  const name = pax.path ?? ext.longName ?? header.name;
  return {
    ...header,
    name,
    type: typeOf(header.typeflag, name),
    linkname: pax.linkpath ?? ext.longLink ?? header.linkname,
    size: pax.size ?? header.size,
    mtime: pax.mtime ?? header.mtime,
    uid: pax.uid ?? header.uid,
    gid: pax.gid ?? header.gid,
    uname: pax.uname ?? header.uname,
    gname: pax.gname ?? header.gname,
  };
}
