// Postgres v3 wire protocol: pure encoders/decoders for both directions and a
// streaming frame splitter. No I/O here, so the client, the dev stand-in servers and
// the tests share one codec. Reference: PostgreSQL docs, "Message Formats".

export const PROTOCOL_VERSION_3 = 196608; // 3.0
export const SSL_REQUEST_CODE = 80877103;
export const GSSENC_REQUEST_CODE = 80877104;
export const CANCEL_REQUEST_CODE = 80877102;

/** Frames larger than this are treated as garbage rather than allocated. */
export const MAX_FRAME_BYTES = 1 << 30;

/** A malformed message: the stream cannot be trusted past this point. */
export class ProtocolError extends Error {
  override readonly name = "ProtocolError";
}

// ---------------------------------------------------------------------------
// Message types

/** ErrorResponse / NoticeResponse fields; `severity`, `code` and `message` are always sent. */
export interface NoticeFields {
  severity: string;
  severityNonLocalized?: string;
  code: string;
  message: string;
  detail?: string;
  hint?: string;
  position?: string;
  internalPosition?: string;
  internalQuery?: string;
  where?: string;
  schema?: string;
  table?: string;
  column?: string;
  dataType?: string;
  constraint?: string;
  file?: string;
  line?: string;
  routine?: string;
}

type NoticeKey = keyof NoticeFields;

// Wire field code for each key, in the order the server usually sends them.
const NOTICE_FIELD_CODES: ReadonlyArray<readonly [string, NoticeKey]> = [
  ["S", "severity"],
  ["V", "severityNonLocalized"],
  ["C", "code"],
  ["M", "message"],
  ["D", "detail"],
  ["H", "hint"],
  ["P", "position"],
  ["p", "internalPosition"],
  ["q", "internalQuery"],
  ["W", "where"],
  ["s", "schema"],
  ["t", "table"],
  ["c", "column"],
  ["d", "dataType"],
  ["n", "constraint"],
  ["F", "file"],
  ["L", "line"],
  ["R", "routine"],
];
const NOTICE_KEY_BY_CODE = new Map<number, NoticeKey>(
  NOTICE_FIELD_CODES.map(([c, k]) => [c.charCodeAt(0), k]),
);

export interface FieldDescription {
  name: string;
  tableOid: number;
  columnAttr: number;
  typeOid: number;
  typeSize: number;
  typeModifier: number;
  format: number;
}

/** A text column as the pageserver and safekeepers describe theirs. */
export function textField(name: string): FieldDescription {
  return {
    name,
    tableOid: 0,
    columnAttr: 0,
    typeOid: 25,
    typeSize: -1,
    typeModifier: -1,
    format: 0,
  };
}

/** A column value: decoders produce bytes; encoders also take strings (UTF-8). */
export type WireValue = Uint8Array | string | null;

export type TransactionStatus = "I" | "T" | "E";

export type BackendMessage =
  | { type: "AuthenticationOk" }
  | { type: "AuthenticationCleartextPassword" }
  | { type: "AuthenticationMD5Password"; salt: Uint8Array }
  | { type: "AuthenticationSASL"; mechanisms: string[] }
  | { type: "AuthenticationSASLContinue"; data: Uint8Array }
  | { type: "AuthenticationSASLFinal"; data: Uint8Array }
  | { type: "ParameterStatus"; name: string; value: string }
  | { type: "BackendKeyData"; pid: number; secret: number }
  | { type: "ReadyForQuery"; status: TransactionStatus }
  | { type: "RowDescription"; fields: FieldDescription[] }
  | { type: "DataRow"; values: WireValue[] }
  | { type: "CommandComplete"; tag: string }
  | { type: "EmptyQueryResponse" }
  | { type: "ErrorResponse"; fields: NoticeFields }
  | { type: "NoticeResponse"; fields: NoticeFields }
  | { type: "CopyInResponse"; format: number; columnFormats: number[] }
  | { type: "CopyOutResponse"; format: number; columnFormats: number[] }
  | { type: "CopyData"; data: Uint8Array }
  | { type: "CopyDone" }
  | { type: "ParseComplete" }
  | { type: "BindComplete" }
  | { type: "CloseComplete" }
  | { type: "NoData" }
  | { type: "PortalSuspended" }
  | { type: "ParameterDescription"; typeOids: number[] }
  | { type: "NotificationResponse"; pid: number; channel: string; payload: string }
  | { type: "Unknown"; code: number; body: Uint8Array };

export type FrontendMessage =
  | { type: "StartupMessage"; params: Record<string, string> }
  | { type: "SSLRequest" }
  | { type: "GSSENCRequest" }
  | { type: "CancelRequest"; pid: number; secret: number }
  // `p` is a password, a SASLInitialResponse or a SASLResponse depending on what the
  // server asked for; only the server knows, so the body is kept (see parseSASLInitialResponse).
  | { type: "PasswordMessage"; password: string; body?: Uint8Array }
  | { type: "SASLInitialResponse"; mechanism: string; data: Uint8Array | null }
  | { type: "SASLResponse"; data: Uint8Array }
  | { type: "Query"; sql: string }
  | { type: "Parse"; name: string; sql: string; paramTypes: number[] }
  | {
      type: "Bind";
      portal: string;
      statement: string;
      paramFormats: number[];
      params: WireValue[];
      resultFormats: number[];
    }
  | { type: "Describe"; kind: "S" | "P"; name: string }
  | { type: "Execute"; portal: string; maxRows: number }
  | { type: "Close"; kind: "S" | "P"; name: string }
  | { type: "Sync" }
  | { type: "Flush" }
  | { type: "Terminate" }
  | { type: "CopyData"; data: Uint8Array }
  | { type: "CopyDone" }
  | { type: "CopyFail"; message: string }
  | { type: "Unknown"; code: number; body: Uint8Array };

/** One message as cut from the stream: `code` is 0 for the untyped startup-phase messages. */
export interface Frame {
  code: number;
  body: Uint8Array;
}

// ---------------------------------------------------------------------------
// Encoding

const encoder = new TextEncoder();
const decoder = new TextDecoder("utf-8", { fatal: false });

/** Growable output buffer; each message is written once, in place. */
class Writer {
  private buf: Uint8Array;
  private view: DataView;
  private pos = 0;
  private frameStart = -1;

  constructor(size = 256) {
    this.buf = new Uint8Array(size);
    this.view = new DataView(this.buf.buffer);
  }

  private ensure(n: number): void {
    if (this.pos + n <= this.buf.length) return;
    let size = this.buf.length * 2;
    while (size < this.pos + n) size *= 2;
    const next = new Uint8Array(size);
    next.set(this.buf.subarray(0, this.pos));
    this.buf = next;
    this.view = new DataView(next.buffer);
  }

  /** Start a frame; `code` 0 writes an untyped (startup-phase) frame. */
  begin(code: number): this {
    if (code !== 0) this.u8(code);
    this.frameStart = this.pos;
    return this.i32(0);
  }

  end(): this {
    this.view.setInt32(this.frameStart, this.pos - this.frameStart);
    return this;
  }

  u8(v: number): this {
    this.ensure(1);
    this.buf[this.pos++] = v;
    return this;
  }

  i16(v: number): this {
    this.ensure(2);
    this.view.setInt16(this.pos, v);
    this.pos += 2;
    return this;
  }

  i32(v: number): this {
    this.ensure(4);
    this.view.setInt32(this.pos, v);
    this.pos += 4;
    return this;
  }

  bytes(b: Uint8Array): this {
    this.ensure(b.length);
    this.buf.set(b, this.pos);
    this.pos += b.length;
    return this;
  }

  str(s: string): this {
    // UTF-8 needs at most 3 bytes per UTF-16 unit.
    this.ensure(s.length * 3);
    this.pos += encoder.encodeInto(s, this.buf.subarray(this.pos)).written;
    return this;
  }

  cstr(s: string): this {
    if (s.includes("\0")) throw new ProtocolError("string contains a NUL byte");
    return this.str(s).u8(0);
  }

  /** Int32 length followed by the bytes, or -1 for NULL. */
  value(v: WireValue): this {
    if (v === null) return this.i32(-1);
    const b = typeof v === "string" ? encoder.encode(v) : v;
    return this.i32(b.length).bytes(b);
  }

  i16s(list: number[]): this {
    this.i16(list.length);
    for (const v of list) this.i16(v);
    return this;
  }

  result(): Uint8Array {
    return this.buf.subarray(0, this.pos);
  }
}

const ch = (c: string): number => c.charCodeAt(0);

function writeNotice(w: Writer, fields: NoticeFields): void {
  for (const [code, key] of NOTICE_FIELD_CODES) {
    const v = fields[key];
    if (v !== undefined) w.u8(ch(code)).cstr(v);
  }
  w.u8(0);
}

function writeBackend(w: Writer, m: BackendMessage): void {
  switch (m.type) {
    case "AuthenticationOk":
      w.begin(ch("R")).i32(0);
      break;
    case "AuthenticationCleartextPassword":
      w.begin(ch("R")).i32(3);
      break;
    case "AuthenticationMD5Password":
      if (m.salt.length !== 4) throw new ProtocolError("MD5 salt must be 4 bytes");
      w.begin(ch("R")).i32(5).bytes(m.salt);
      break;
    case "AuthenticationSASL":
      w.begin(ch("R")).i32(10);
      for (const mech of m.mechanisms) w.cstr(mech);
      w.u8(0);
      break;
    case "AuthenticationSASLContinue":
      w.begin(ch("R")).i32(11).bytes(m.data);
      break;
    case "AuthenticationSASLFinal":
      w.begin(ch("R")).i32(12).bytes(m.data);
      break;
    case "ParameterStatus":
      w.begin(ch("S")).cstr(m.name).cstr(m.value);
      break;
    case "BackendKeyData":
      w.begin(ch("K")).i32(m.pid).i32(m.secret);
      break;
    case "ReadyForQuery":
      w.begin(ch("Z")).u8(ch(m.status));
      break;
    case "RowDescription":
      w.begin(ch("T")).i16(m.fields.length);
      for (const f of m.fields) {
        w.cstr(f.name).i32(f.tableOid).i16(f.columnAttr).i32(f.typeOid);
        w.i16(f.typeSize).i32(f.typeModifier).i16(f.format);
      }
      break;
    case "DataRow":
      w.begin(ch("D")).i16(m.values.length);
      for (const v of m.values) w.value(v);
      break;
    case "CommandComplete":
      w.begin(ch("C")).cstr(m.tag);
      break;
    case "EmptyQueryResponse":
      w.begin(ch("I"));
      break;
    case "ErrorResponse":
      w.begin(ch("E"));
      writeNotice(w, m.fields);
      break;
    case "NoticeResponse":
      w.begin(ch("N"));
      writeNotice(w, m.fields);
      break;
    case "CopyInResponse":
      w.begin(ch("G")).u8(m.format).i16s(m.columnFormats);
      break;
    case "CopyOutResponse":
      w.begin(ch("H")).u8(m.format).i16s(m.columnFormats);
      break;
    case "CopyData":
      w.begin(ch("d")).bytes(m.data);
      break;
    case "CopyDone":
      w.begin(ch("c"));
      break;
    case "ParseComplete":
      w.begin(ch("1"));
      break;
    case "BindComplete":
      w.begin(ch("2"));
      break;
    case "CloseComplete":
      w.begin(ch("3"));
      break;
    case "NoData":
      w.begin(ch("n"));
      break;
    case "PortalSuspended":
      w.begin(ch("s"));
      break;
    case "ParameterDescription":
      w.begin(ch("t")).i16(m.typeOids.length);
      for (const oid of m.typeOids) w.i32(oid);
      break;
    case "NotificationResponse":
      w.begin(ch("A")).i32(m.pid).cstr(m.channel).cstr(m.payload);
      break;
    case "Unknown":
      w.begin(m.code).bytes(m.body);
      break;
  }
  w.end();
}

function writeFrontend(w: Writer, m: FrontendMessage): void {
  switch (m.type) {
    case "StartupMessage":
      w.begin(0).i32(PROTOCOL_VERSION_3);
      for (const [k, v] of Object.entries(m.params)) w.cstr(k).cstr(v);
      w.u8(0);
      break;
    case "SSLRequest":
      w.begin(0).i32(SSL_REQUEST_CODE);
      break;
    case "GSSENCRequest":
      w.begin(0).i32(GSSENC_REQUEST_CODE);
      break;
    case "CancelRequest":
      w.begin(0).i32(CANCEL_REQUEST_CODE).i32(m.pid).i32(m.secret);
      break;
    case "PasswordMessage":
      w.begin(ch("p")).cstr(m.password);
      break;
    case "SASLInitialResponse":
      w.begin(ch("p")).cstr(m.mechanism).value(m.data);
      break;
    case "SASLResponse":
      w.begin(ch("p")).bytes(m.data);
      break;
    case "Query":
      w.begin(ch("Q")).cstr(m.sql);
      break;
    case "Parse":
      w.begin(ch("P")).cstr(m.name).cstr(m.sql).i16(m.paramTypes.length);
      for (const oid of m.paramTypes) w.i32(oid);
      break;
    case "Bind":
      w.begin(ch("B")).cstr(m.portal).cstr(m.statement).i16s(m.paramFormats);
      w.i16(m.params.length);
      for (const v of m.params) w.value(v);
      w.i16s(m.resultFormats);
      break;
    case "Describe":
      w.begin(ch("D")).u8(ch(m.kind)).cstr(m.name);
      break;
    case "Execute":
      w.begin(ch("E")).cstr(m.portal).i32(m.maxRows);
      break;
    case "Close":
      w.begin(ch("C")).u8(ch(m.kind)).cstr(m.name);
      break;
    case "Sync":
      w.begin(ch("S"));
      break;
    case "Flush":
      w.begin(ch("H"));
      break;
    case "Terminate":
      w.begin(ch("X"));
      break;
    case "CopyData":
      w.begin(ch("d")).bytes(m.data);
      break;
    case "CopyDone":
      w.begin(ch("c"));
      break;
    case "CopyFail":
      w.begin(ch("f")).cstr(m.message);
      break;
    case "Unknown":
      w.begin(m.code).bytes(m.body);
      break;
  }
  w.end();
}

function frameSize(m: { type: string; data?: Uint8Array | null }): number {
  return 64 + (m.type === "CopyData" && m.data ? m.data.length : 0);
}

/** Encode backend messages (server → client) into one buffer, ready for a single write. */
export function encodeBackend(...msgs: BackendMessage[]): Uint8Array {
  const w = new Writer(msgs.reduce((n, m) => n + frameSize(m), 0));
  for (const m of msgs) writeBackend(w, m);
  return w.result();
}

/** Encode frontend messages (client → server) into one buffer, ready for a single write. */
export function encodeFrontend(...msgs: FrontendMessage[]): Uint8Array {
  const w = new Writer(msgs.reduce((n, m) => n + frameSize(m), 0));
  for (const m of msgs) writeFrontend(w, m);
  return w.result();
}

// ---------------------------------------------------------------------------
// Decoding

class Reader {
  private pos = 0;
  private readonly view: DataView;

  constructor(private readonly buf: Uint8Array) {
    this.view = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  }

  private need(n: number): void {
    if (this.pos + n > this.buf.length) throw new ProtocolError("message body too short");
  }

  get remaining(): number {
    return this.buf.length - this.pos;
  }

  u8(): number {
    this.need(1);
    return this.view.getUint8(this.pos++);
  }

  i16(): number {
    this.need(2);
    const v = this.view.getInt16(this.pos);
    this.pos += 2;
    return v;
  }

  i32(): number {
    this.need(4);
    const v = this.view.getInt32(this.pos);
    this.pos += 4;
    return v;
  }

  bytes(n: number): Uint8Array {
    if (n < 0) throw new ProtocolError("negative length");
    this.need(n);
    const b = this.buf.subarray(this.pos, this.pos + n);
    this.pos += n;
    return b;
  }

  rest(): Uint8Array {
    return this.bytes(this.remaining);
  }

  cstr(): string {
    const end = this.buf.indexOf(0, this.pos);
    if (end < 0) throw new ProtocolError("unterminated string");
    const s = decoder.decode(this.buf.subarray(this.pos, end));
    this.pos = end + 1;
    return s;
  }

  value(): Uint8Array | null {
    const n = this.i32();
    return n === -1 ? null : this.bytes(n);
  }

  i16s(): number[] {
    const n = this.i16();
    const out: number[] = [];
    for (let i = 0; i < n; i++) out.push(this.i16());
    return out;
  }

  done(): void {
    if (this.remaining !== 0) throw new ProtocolError("trailing bytes in message");
  }
}

function readNotice(r: Reader): NoticeFields {
  const out: NoticeFields = { severity: "", code: "", message: "" };
  for (;;) {
    const code = r.u8();
    if (code === 0) break;
    const value = r.cstr();
    // Unknown field types must be ignored (the protocol may add more).
    const key = NOTICE_KEY_BY_CODE.get(code);
    if (key !== undefined) out[key] = value;
  }
  return out;
}

function readAuth(r: Reader): BackendMessage {
  const kind = r.i32();
  switch (kind) {
    case 0:
      return { type: "AuthenticationOk" };
    case 3:
      return { type: "AuthenticationCleartextPassword" };
    case 5:
      return { type: "AuthenticationMD5Password", salt: r.bytes(4) };
    case 10: {
      const mechanisms: string[] = [];
      for (let m = r.cstr(); m !== ""; m = r.cstr()) mechanisms.push(m);
      return { type: "AuthenticationSASL", mechanisms };
    }
    case 11:
      return { type: "AuthenticationSASLContinue", data: r.rest() };
    case 12:
      return { type: "AuthenticationSASLFinal", data: r.rest() };
    default:
      // Kerberos, SCM, GSS, SSPI: not supported; the caller reports it.
      return { type: "Unknown", code: ch("R"), body: new Uint8Array(0) };
  }
}

/** Decode a frame sent by a server. CopyData payloads are views, not copies. */
export function decodeBackend(frame: Frame): BackendMessage {
  const { code, body } = frame;
  const r = new Reader(body);
  let m: BackendMessage;
  switch (String.fromCharCode(code)) {
    case "d":
      return { type: "CopyData", data: body };
    case "R":
      m = readAuth(r);
      if (m.type === "Unknown") return { type: "Unknown", code, body };
      break;
    case "S":
      m = { type: "ParameterStatus", name: r.cstr(), value: r.cstr() };
      break;
    case "K":
      m = { type: "BackendKeyData", pid: r.i32(), secret: r.i32() };
      break;
    case "Z": {
      const s = String.fromCharCode(r.u8());
      if (s !== "I" && s !== "T" && s !== "E")
        throw new ProtocolError(`bad transaction status ${s}`);
      m = { type: "ReadyForQuery", status: s };
      break;
    }
    case "T": {
      const n = r.i16();
      const fields: FieldDescription[] = [];
      for (let i = 0; i < n; i++) {
        fields.push({
          name: r.cstr(),
          tableOid: r.i32(),
          columnAttr: r.i16(),
          typeOid: r.i32(),
          typeSize: r.i16(),
          typeModifier: r.i32(),
          format: r.i16(),
        });
      }
      m = { type: "RowDescription", fields };
      break;
    }
    case "D": {
      const n = r.i16();
      const values: WireValue[] = [];
      for (let i = 0; i < n; i++) values.push(r.value());
      m = { type: "DataRow", values };
      break;
    }
    case "C":
      m = { type: "CommandComplete", tag: r.cstr() };
      break;
    case "I":
      m = { type: "EmptyQueryResponse" };
      break;
    case "E":
      m = { type: "ErrorResponse", fields: readNotice(r) };
      break;
    case "N":
      m = { type: "NoticeResponse", fields: readNotice(r) };
      break;
    case "G":
      m = { type: "CopyInResponse", format: r.u8(), columnFormats: r.i16s() };
      break;
    case "H":
      m = { type: "CopyOutResponse", format: r.u8(), columnFormats: r.i16s() };
      break;
    case "c":
      m = { type: "CopyDone" };
      break;
    case "1":
      m = { type: "ParseComplete" };
      break;
    case "2":
      m = { type: "BindComplete" };
      break;
    case "3":
      m = { type: "CloseComplete" };
      break;
    case "n":
      m = { type: "NoData" };
      break;
    case "s":
      m = { type: "PortalSuspended" };
      break;
    case "t": {
      const n = r.i16();
      const typeOids: number[] = [];
      for (let i = 0; i < n; i++) typeOids.push(r.i32() >>> 0);
      m = { type: "ParameterDescription", typeOids };
      break;
    }
    case "A":
      m = { type: "NotificationResponse", pid: r.i32(), channel: r.cstr(), payload: r.cstr() };
      break;
    default:
      return { type: "Unknown", code, body };
  }
  r.done();
  return m;
}

function decodeUntyped(body: Uint8Array): FrontendMessage {
  const r = new Reader(body);
  const version = r.i32();
  let m: FrontendMessage;
  switch (version) {
    case SSL_REQUEST_CODE:
      m = { type: "SSLRequest" };
      break;
    case GSSENC_REQUEST_CODE:
      m = { type: "GSSENCRequest" };
      break;
    case CANCEL_REQUEST_CODE:
      m = { type: "CancelRequest", pid: r.i32(), secret: r.i32() };
      break;
    case PROTOCOL_VERSION_3: {
      const params: Record<string, string> = {};
      for (let k = r.cstr(); k !== ""; k = r.cstr()) params[k] = r.cstr();
      m = { type: "StartupMessage", params };
      break;
    }
    default:
      throw new ProtocolError(`unsupported protocol version ${version >>> 16}.${version & 0xffff}`);
  }
  r.done();
  return m;
}

/**
 * Decode a frame sent by a client. `p` decodes as a PasswordMessage carrying the raw
 * body too; a server doing SASL re-reads it with parseSASLInitialResponse/SASLResponse.
 */
export function decodeFrontend(frame: Frame): FrontendMessage {
  const { code, body } = frame;
  if (code === 0) return decodeUntyped(body);
  const r = new Reader(body);
  let m: FrontendMessage;
  switch (String.fromCharCode(code)) {
    case "d":
      return { type: "CopyData", data: body };
    case "p": {
      const end = body.indexOf(0);
      const password = decoder.decode(end < 0 ? body : body.subarray(0, end));
      return { type: "PasswordMessage", password, body };
    }
    case "Q":
      m = { type: "Query", sql: r.cstr() };
      break;
    case "P": {
      const name = r.cstr();
      const sql = r.cstr();
      const n = r.i16();
      const paramTypes: number[] = [];
      for (let i = 0; i < n; i++) paramTypes.push(r.i32() >>> 0);
      m = { type: "Parse", name, sql, paramTypes };
      break;
    }
    case "B": {
      const portal = r.cstr();
      const statement = r.cstr();
      const paramFormats = r.i16s();
      const n = r.i16();
      const params: WireValue[] = [];
      for (let i = 0; i < n; i++) params.push(r.value());
      m = { type: "Bind", portal, statement, paramFormats, params, resultFormats: r.i16s() };
      break;
    }
    case "D":
    case "C": {
      const kind = String.fromCharCode(r.u8());
      if (kind !== "S" && kind !== "P") throw new ProtocolError(`bad describe/close kind ${kind}`);
      m = { type: code === ch("D") ? "Describe" : "Close", kind, name: r.cstr() };
      break;
    }
    case "E":
      m = { type: "Execute", portal: r.cstr(), maxRows: r.i32() };
      break;
    case "S":
      m = { type: "Sync" };
      break;
    case "H":
      m = { type: "Flush" };
      break;
    case "X":
      m = { type: "Terminate" };
      break;
    case "c":
      m = { type: "CopyDone" };
      break;
    case "f":
      m = { type: "CopyFail", message: r.cstr() };
      break;
    default:
      return { type: "Unknown", code, body };
  }
  r.done();
  return m;
}

/** Re-read a `p` body as the first SASL message (mechanism + optional initial data). */
export function parseSASLInitialResponse(body: Uint8Array): {
  mechanism: string;
  data: Uint8Array | null;
} {
  const r = new Reader(body);
  const mechanism = r.cstr();
  const data = r.value();
  r.done();
  return { mechanism, data };
}

export function utf8(bytes: Uint8Array): string {
  return decoder.decode(bytes);
}

// ---------------------------------------------------------------------------
// Frame splitting

const EMPTY = new Uint8Array(0);

/**
 * Cuts a byte stream into frames at any chunk boundary. A frame that lies inside one
 * chunk is returned as a view of it (no copy); a frame split across chunks is copied
 * once into a buffer of its exact size, so a large CopyData costs one copy at most.
 *
 * `startup: true` is for servers: frames are untyped (code 0) until a StartupMessage,
 * since SSLRequest/GSSENCRequest precede it with the same shape.
 */
export class FrameSplitter {
  private chunks: Uint8Array[] = [];
  private chunk: Uint8Array = EMPTY;
  private pos = 0;
  private readonly head = new Uint8Array(5);
  private headLen = 0;
  private body: Uint8Array | null = null;
  private bodyFill = 0;
  private code = 0;
  private untyped: boolean;
  private readonly maxFrameBytes: number;

  constructor(opts: { startup?: boolean; maxFrameBytes?: number } = {}) {
    this.untyped = opts.startup ?? false;
    this.maxFrameBytes = opts.maxFrameBytes ?? MAX_FRAME_BYTES;
  }

  push(chunk: Uint8Array): void {
    if (chunk.length === 0) return;
    if (this.pos >= this.chunk.length) {
      this.chunk = chunk;
      this.pos = 0;
    } else {
      this.chunks.push(chunk);
    }
  }

  /** Bytes held for an incomplete frame plus unread chunks. */
  get buffered(): number {
    let n = this.chunk.length - this.pos + this.headLen;
    if (this.body) n += this.bodyFill + (this.untyped ? 4 : 5);
    for (const c of this.chunks) n += c.length;
    return n;
  }

  private available(): number {
    while (this.pos >= this.chunk.length) {
      const next = this.chunks.shift();
      if (next === undefined) return 0;
      this.chunk = next;
      this.pos = 0;
    }
    return this.chunk.length - this.pos;
  }

  /** The next complete frame, or undefined when more bytes are needed. */
  next(): Frame | undefined {
    const headSize = this.untyped ? 4 : 5;
    if (this.body === null) {
      let avail = this.available();
      let head: Uint8Array;
      let headAt: number;
      if (this.headLen === 0 && avail >= headSize) {
        head = this.chunk;
        headAt = this.pos;
        this.pos += headSize;
      } else {
        while (this.headLen < headSize && avail > 0) {
          const n = Math.min(headSize - this.headLen, avail);
          this.head.set(this.chunk.subarray(this.pos, this.pos + n), this.headLen);
          this.headLen += n;
          this.pos += n;
          avail = this.available();
        }
        if (this.headLen < headSize) return undefined;
        head = this.head;
        headAt = 0;
        this.headLen = 0;
      }
      this.code = this.untyped ? 0 : (head[headAt] ?? 0);
      const lenAt = headAt + headSize - 4;
      const len =
        (((head[lenAt] ?? 0) << 24) |
          ((head[lenAt + 1] ?? 0) << 16) |
          ((head[lenAt + 2] ?? 0) << 8) |
          (head[lenAt + 3] ?? 0)) >>>
        0;
      if (len < 4 || len > this.maxFrameBytes) {
        throw new ProtocolError(`invalid message length ${len}`);
      }
      const bodyLen = len - 4;
      if (this.available() >= bodyLen) {
        const body = this.chunk.subarray(this.pos, this.pos + bodyLen);
        this.pos += bodyLen;
        return this.emit(body);
      }
      this.body = new Uint8Array(bodyLen);
      this.bodyFill = 0;
    }
    const body = this.body;
    let avail = this.available();
    while (this.bodyFill < body.length && avail > 0) {
      const n = Math.min(body.length - this.bodyFill, avail);
      body.set(this.chunk.subarray(this.pos, this.pos + n), this.bodyFill);
      this.bodyFill += n;
      this.pos += n;
      avail = this.available();
    }
    if (this.bodyFill < body.length) return undefined;
    this.body = null;
    this.bodyFill = 0;
    return this.emit(body);
  }

  private emit(body: Uint8Array): Frame {
    const code = this.code;
    if (this.untyped && body.length >= 4) {
      const version =
        ((body[0] ?? 0) << 24) | ((body[1] ?? 0) << 16) | ((body[2] ?? 0) << 8) | (body[3] ?? 0);
      // Only SSL/GSS negotiation is followed by another untyped frame.
      if (version !== SSL_REQUEST_CODE && version !== GSSENC_REQUEST_CODE) this.untyped = false;
    }
    return { code, body };
  }
}
