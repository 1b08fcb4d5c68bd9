// A push parser for a tar byte stream: feed it chunks of any size, it calls the sink
// for each entry and hands over file data as views into those chunks, so nothing
// but a header block and small meta entries is ever copied or kept.

import {
  applyExtensions,
  BLOCK_SIZE,
  isZeroBlock,
  type PaxAttributes,
  parseHeader,
  parseLongName,
  parsePax,
  TarError,
  type TarHeader,
} from "./tar-header.ts";

/** A header with pax and GNU long-name extensions applied; `offset` is where it starts. */
export interface TarEntry extends TarHeader {
  offset: number;
}

export interface TarSink {
  /** A new entry. Its data, if any, follows through `data`, then `entryEnd`. */
  entry(entry: TarEntry): void;
  /** The next piece of the current entry's data. Valid only during the call. */
  data(chunk: Uint8Array): void;
  entryEnd(): void;
}

/** Meta entries (pax, long names) are buffered whole; a bigger one is not a real archive. */
const MAX_META_SIZE = 1 << 20;

// Parser states: reading a header block, file data, a meta entry, or bytes to skip.
const State = { Header: 0, Data: 1, Meta: 2, Skip: 3 } as const;
type State = (typeof State)[keyof typeof State];

export class TarReader {
  private state: State = State.Header;
  private readonly headerBuf = new Uint8Array(BLOCK_SIZE);
  private headerFill = 0;
  /** Bytes left in the current data, meta or skip section. */
  private remaining = 0;
  /** Padding to skip after the current entry's data. */
  private padding = 0;
  private meta: { type: TarHeader["type"]; buf: Uint8Array; fill: number } | undefined;
  private pax: PaxAttributes | undefined;
  private longName: string | undefined;
  private longLink: string | undefined;
  private current: TarEntry | undefined;
  /** What the skipped section belongs to, for truncation messages. */
  private skipping = "";
  private pos = 0;

  constructor(private readonly sink: TarSink) {}

  /** Bytes consumed so far. */
  get offset(): number {
    return this.pos;
  }

  push(chunk: Uint8Array): void {
    const n = chunk.byteLength;
    let i = 0;
    while (i < n) {
      switch (this.state) {
        case State.Header: {
          if (this.headerFill === 0 && n - i >= BLOCK_SIZE) {
            const block = chunk.subarray(i, i + BLOCK_SIZE);
            i += BLOCK_SIZE;
            this.header(block);
          } else {
            const take = Math.min(BLOCK_SIZE - this.headerFill, n - i);
            this.headerBuf.set(chunk.subarray(i, i + take), this.headerFill);
            this.headerFill += take;
            i += take;
            if (this.headerFill === BLOCK_SIZE) {
              this.headerFill = 0;
              this.header(this.headerBuf);
            }
          }
          break;
        }
        case State.Data: {
          const take = Math.min(this.remaining, n - i);
          this.sink.data(chunk.subarray(i, i + take));
          i += take;
          this.pos += take;
          this.remaining -= take;
          if (this.remaining === 0) this.endData();
          break;
        }
        case State.Meta: {
          const meta = this.meta;
          if (meta === undefined) throw new Error("tar reader: meta state without a buffer");
          const take = Math.min(this.remaining, n - i);
          meta.buf.set(chunk.subarray(i, i + take), meta.fill);
          meta.fill += take;
          i += take;
          this.pos += take;
          this.remaining -= take;
          if (this.remaining === 0) this.endMeta(meta);
          break;
        }
        case State.Skip: {
          const take = Math.min(this.remaining, n - i);
          i += take;
          this.pos += take;
          this.remaining -= take;
          if (this.remaining === 0) this.skip();
          break;
        }
      }
    }
  }

  /**
   * The stream has ended. Fine between entries (with or without end-of-archive
   * blocks); anywhere else the archive was cut short.
   */
  end(): void {
    const at = `at byte ${this.pos + this.headerFill}`;
    switch (this.state) {
      case State.Header:
        if (this.headerFill > 0) {
          throw new TarError(`truncated tar archive: ends inside a header block ${at}`);
        }
        if (this.pax !== undefined || this.longName !== undefined || this.longLink !== undefined) {
          throw new TarError(`truncated tar archive: ends after an extended header ${at}`);
        }
        return;
      case State.Data: {
        const e = this.current;
        const got = e === undefined ? 0 : e.size - this.remaining;
        throw new TarError(
          `truncated tar archive: ends inside the data of '${e?.name}' (${got} of ${e?.size} bytes) ${at}`,
        );
      }
      case State.Meta:
        throw new TarError(`truncated tar archive: ends inside an extended header ${at}`);
      case State.Skip:
        throw new TarError(`truncated tar archive: ends inside ${this.skipping} ${at}`);
    }
  }

  private header(block: Uint8Array): void {
    const offset = this.pos;
    this.pos += BLOCK_SIZE;
    // Ignore-zeros: end-of-archive blocks may be followed by more entries (or nothing).
    if (isZeroBlock(block)) return;
    const h = parseHeader(block, offset);
    const padding = (BLOCK_SIZE - (h.size % BLOCK_SIZE)) % BLOCK_SIZE;
    switch (h.type) {
      case "pax":
      case "gnu-longname":
      case "gnu-longlink":
        if (h.size > MAX_META_SIZE) {
          throw new TarError(
            `tar extended header at byte ${offset} is too large (${h.size} bytes)`,
          );
        }
        this.meta = { type: h.type, buf: new Uint8Array(h.size), fill: 0 };
        this.padding = padding;
        this.remaining = h.size;
        if (h.size === 0) this.endMeta(this.meta);
        else this.state = State.Meta;
        return;
      case "pax-global":
        // Global defaults are not used by the writers we meet; skip them.
        this.startSkip(h.size + padding, "a pax global header");
        return;
      case "gnu-sparse":
        throw new TarError(`unsupported GNU sparse file in tar archive: '${h.name}'`);
    }
    const full = applyExtensions(h, {
      pax: this.pax,
      longName: this.longName,
      longLink: this.longLink,
    });
    if (this.pax?.sparse)
      throw new TarError(`unsupported pax sparse file in tar archive: '${full.name}'`);
    this.pax = undefined;
    this.longName = undefined;
    this.longLink = undefined;
    const entry: TarEntry = { ...full, offset };
    this.current = entry;
    this.padding = (BLOCK_SIZE - (entry.size % BLOCK_SIZE)) % BLOCK_SIZE;
    this.remaining = entry.size;
    this.sink.entry(entry);
    if (entry.size === 0) this.endData();
    else this.state = State.Data;
  }

  private endData(): void {
    this.sink.entryEnd();
    this.startSkip(this.padding, `the padding after '${this.current?.name}'`);
  }

  private endMeta(meta: { type: TarHeader["type"]; buf: Uint8Array }): void {
    this.meta = undefined;
    if (meta.type === "pax") this.pax = { ...this.pax, ...parsePax(meta.buf) };
    else if (meta.type === "gnu-longname") this.longName = parseLongName(meta.buf);
    else this.longLink = parseLongName(meta.buf);
    this.startSkip(this.padding, "the padding of an extended header");
  }

  private startSkip(bytes: number, what: string): void {
    this.remaining = bytes;
    this.skipping = what;
    if (bytes === 0) this.skip();
    else this.state = State.Skip;
  }

  private skip(): void {
    this.state = State.Header;
  }
}
