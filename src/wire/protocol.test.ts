import { describe, expect, test } from "bun:test";
import {
  type BackendMessage,
  decodeBackend,
  decodeFrontend,
  encodeBackend,
  encodeFrontend,
  type Frame,
  FrameSplitter,
  type FrontendMessage,
  ProtocolError,
  parseSASLInitialResponse,
  textField,
} from "./protocol.ts";

// Byte strings written as hex plus quoted text, e.g. `52 00000008 "ab\0"`.
function hex(spec: string): Uint8Array {
  const out: number[] = [];
  for (const tok of spec.match(/"(?:[^"\\]|\\.)*"|[0-9a-fA-F]+/g) ?? []) {
    if (tok.startsWith('"')) {
      const s = tok.slice(1, -1).replaceAll("\\0", "\0");
      out.push(...new TextEncoder().encode(s));
    } else {
      for (let i = 0; i < tok.length; i += 2) out.push(Number.parseInt(tok.slice(i, i + 2), 16));
    }
  }
  return new Uint8Array(out);
}

const toHex = (b: Uint8Array): string => Buffer.from(b).toString("hex");

function splitAll(bytes: Uint8Array, opts: { startup?: boolean } = {}): Frame[] {
  const s = new FrameSplitter(opts);
  s.push(bytes);
  const out: Frame[] = [];
  for (let f = s.next(); f; f = s.next()) out.push(f);
  expect(s.buffered).toBe(0);
  return out;
}

const backendCases: Array<[string, BackendMessage, string]> = [
  ["AuthenticationOk", { type: "AuthenticationOk" }, "52 00000008 00000000"],
  ["cleartext password", { type: "AuthenticationCleartextPassword" }, "52 00000008 00000003"],
  [
    "md5 password",
    { type: "AuthenticationMD5Password", salt: hex("01020304") },
    "52 0000000c 00000005 01020304",
  ],
  [
    "SASL",
    { type: "AuthenticationSASL", mechanisms: ["SCRAM-SHA-256"] },
    '52 00000017 0000000a "SCRAM-SHA-256\\0" 00',
  ],
  [
    "SASLContinue",
    { type: "AuthenticationSASLContinue", data: hex('"r=ab"') },
    '52 0000000c 0000000b "r=ab"',
  ],
  [
    "SASLFinal",
    { type: "AuthenticationSASLFinal", data: hex('"v=x"') },
    '52 0000000b 0000000c "v=x"',
  ],
  [
    "ParameterStatus",
    { type: "ParameterStatus", name: "client_encoding", value: "UTF8" },
    '53 00000019 "client_encoding\\0UTF8\\0"',
  ],
  [
    "BackendKeyData",
    { type: "BackendKeyData", pid: 1234, secret: -2 },
    "4b 0000000c 000004d2 fffffffe",
  ],
  ["ReadyForQuery", { type: "ReadyForQuery", status: "I" }, "5a 00000005 49"],
  [
    "RowDescription",
    { type: "RowDescription", fields: [textField("a")] },
    '54 0000001a 0001 "a\\0" 00000000 0000 00000019 ffff ffffffff 0000',
  ],
  [
    "DataRow",
    { type: "DataRow", values: [hex('"x"'), null, new Uint8Array(0)] },
    "44 00000013 0003 00000001 78 ffffffff 00000000",
  ],
  ["CommandComplete", { type: "CommandComplete", tag: "SELECT 1" }, '43 0000000d "SELECT 1\\0"'],
  ["EmptyQueryResponse", { type: "EmptyQueryResponse" }, "49 00000004"],
  [
    "ErrorResponse",
    {
      type: "ErrorResponse",
      fields: { severity: "ERROR", code: "22012", message: "division by zero" },
    },
    '45 00000025 "S" "ERROR\\0" "C" "22012\\0" "M" "division by zero\\0" 00',
  ],
  [
    "ErrorResponse, every field",
    {
      type: "ErrorResponse",
      fields: {
        severity: "FEHLER",
        severityNonLocalized: "ERROR",
        code: "23505",
        message: "m",
        detail: "d",
        hint: "h",
        position: "1",
        internalPosition: "2",
        internalQuery: "q",
        where: "w",
        schema: "s",
        table: "t",
        column: "c",
        dataType: "dt",
        constraint: "n",
        file: "f.c",
        line: "9",
        routine: "r",
      },
    },
    '45 0000004b "SFEHLER\\0VERROR\\0C23505\\0Mm\\0Dd\\0Hh\\0P1\\0p2\\0qq\\0Ww\\0ss\\0tt\\0cc\\0ddt\\0nn\\0Ff.c\\0L9\\0Rr\\0" 00',
  ],
  [
    "NoticeResponse",
    { type: "NoticeResponse", fields: { severity: "NOTICE", code: "00000", message: "hi" } },
    '4e 00000018 "SNOTICE\\0C00000\\0Mhi\\0" 00',
  ],
  [
    "CopyOutResponse (pageserver's)",
    { type: "CopyOutResponse", format: 0, columnFormats: [] },
    "48 00000007 00 0000",
  ],
  [
    "CopyOutResponse, 2 columns",
    { type: "CopyOutResponse", format: 0, columnFormats: [0, 0] },
    "48 0000000b 00 0002 0000 0000",
  ],
  [
    "CopyInResponse",
    { type: "CopyInResponse", format: 1, columnFormats: [1] },
    "47 00000009 01 0001 0001",
  ],
  ["CopyData", { type: "CopyData", data: hex('"abc"') }, '64 00000007 "abc"'],
  ["CopyDone", { type: "CopyDone" }, "63 00000004"],
  ["ParseComplete", { type: "ParseComplete" }, "31 00000004"],
  ["BindComplete", { type: "BindComplete" }, "32 00000004"],
  ["CloseComplete", { type: "CloseComplete" }, "33 00000004"],
  ["NoData", { type: "NoData" }, "6e 00000004"],
  ["PortalSuspended", { type: "PortalSuspended" }, "73 00000004"],
  [
    "ParameterDescription",
    { type: "ParameterDescription", typeOids: [25, 4294967295] },
    "74 0000000e 0002 00000019 ffffffff",
  ],
  [
    "ParameterDescription, none",
    { type: "ParameterDescription", typeOids: [] },
    "74 00000006 0000",
  ],
  [
    "NotificationResponse",
    { type: "NotificationResponse", pid: 7, channel: "c", payload: "p" },
    '41 0000000c 00000007 "c\\0p\\0"',
  ],
];

const frontendCases: Array<[string, FrontendMessage, string]> = [
  [
    "StartupMessage",
    { type: "StartupMessage", params: { user: "u", options: "-c a=b" } },
    '0000001f 00030000 "user\\0u\\0options\\0-c a=b\\0" 00',
  ],
  ["SSLRequest", { type: "SSLRequest" }, "00000008 04d2162f"],
  ["GSSENCRequest", { type: "GSSENCRequest" }, "00000008 04d21630"],
  [
    "CancelRequest",
    { type: "CancelRequest", pid: 5, secret: 6 },
    "00000010 04d2162e 00000005 00000006",
  ],
  ["PasswordMessage", { type: "PasswordMessage", password: "pw" }, '70 00000007 "pw\\0"'],
  ["Query", { type: "Query", sql: "select 1" }, '51 0000000d "select 1\\0"'],
  [
    "Parse",
    { type: "Parse", name: "", sql: "select $1", paramTypes: [25] },
    '50 00000015 00 "select $1\\0" 0001 00000019',
  ],
  [
    "Bind",
    {
      type: "Bind",
      portal: "",
      statement: "s",
      paramFormats: [0],
      params: [hex('"v"'), null],
      resultFormats: [],
    },
    '42 00000018 00 "s\\0" 0001 0000 0002 00000001 76 ffffffff 0000',
  ],
  ["Describe portal", { type: "Describe", kind: "P", name: "" }, "44 00000006 50 00"],
  ["Describe statement", { type: "Describe", kind: "S", name: "s" }, '44 00000007 53 "s\\0"'],
  ["Execute", { type: "Execute", portal: "", maxRows: 0 }, "45 00000009 00 00000000"],
  ["Close", { type: "Close", kind: "S", name: "s1" }, '43 00000008 53 "s1\\0"'],
  ["Sync", { type: "Sync" }, "53 00000004"],
  ["Flush", { type: "Flush" }, "48 00000004"],
  ["Terminate", { type: "Terminate" }, "58 00000004"],
  ["CopyData", { type: "CopyData", data: hex("00ff") }, "64 00000006 00ff"],
  ["CopyDone", { type: "CopyDone" }, "63 00000004"],
  ["CopyFail", { type: "CopyFail", message: "no" }, '66 00000007 "no\\0"'],
];

describe("backend messages", () => {
  for (const [name, msg, bytes] of backendCases) {
    test(`${name} encodes to ${bytes}`, () => {
      expect(toHex(encodeBackend(msg))).toBe(toHex(hex(bytes)));
    });
    test(`${name} decodes back`, () => {
      const [frame, ...rest] = splitAll(hex(bytes));
      expect(rest).toHaveLength(0);
      expect(frame && decodeBackend(frame)).toEqual(msg);
    });
  }

  test("several messages encode into one buffer in order", () => {
    const msgs: BackendMessage[] = [
      { type: "AuthenticationOk" },
      { type: "ParameterStatus", name: "a", value: "b" },
      { type: "ReadyForQuery", status: "I" },
    ];
    expect(splitAll(encodeBackend(...msgs)).map(decodeBackend)).toEqual(msgs);
  });

  test("DataRow accepts strings when encoding", () => {
    const b = encodeBackend({ type: "DataRow", values: ["0/16B5A50", null] });
    expect(toHex(b)).toBe(toHex(hex('44 00000017 0002 00000009 "0/16B5A50" ffffffff')));
  });

  test("unknown error fields are skipped, unknown message types kept raw", () => {
    const err = hex('45 00000016 "Z" "zz\\0" "SERROR\\0" "C1\\0" "Mm\\0" 00');
    expect(splitAll(err).map(decodeBackend)).toEqual([
      { type: "ErrorResponse", fields: { severity: "ERROR", code: "1", message: "m" } },
    ]);
    expect(splitAll(hex("7a 00000005 01")).map(decodeBackend)).toEqual([
      { type: "Unknown", code: 0x7a, body: hex("01") },
    ]);
  });

  test("an unsupported authentication method decodes as Unknown", () => {
    const [m] = splitAll(hex("52 00000008 00000007")).map(decodeBackend);
    expect(m?.type).toBe("Unknown");
  });

  test.each([
    ["truncated body", "5a 00000004"],
    ["trailing bytes", "5a 00000006 4900"],
    ["bad transaction status", "5a 00000005 58"],
    ["unterminated string", '43 00000005 "S"'],
  ])("%s is a ProtocolError", (_name, bytes) => {
    const [frame] = splitAll(hex(bytes));
    expect(() => frame && decodeBackend(frame)).toThrow(ProtocolError);
  });

  test("strings with NUL cannot be encoded", () => {
    expect(() => encodeBackend({ type: "CommandComplete", tag: "a\0b" })).toThrow(ProtocolError);
  });
});

describe("frontend messages", () => {
  for (const [name, msg, bytes] of frontendCases) {
    const untyped = ["StartupMessage", "SSLRequest", "GSSENCRequest", "CancelRequest"].includes(
      msg.type,
    );
    test(`${name} encodes to ${bytes}`, () => {
      expect(toHex(encodeFrontend(msg))).toBe(toHex(hex(bytes)));
    });
    test(`${name} decodes back`, () => {
      const [frame] = splitAll(hex(bytes), { startup: untyped });
      const got = frame && decodeFrontend(frame);
      // A decoded `p` also carries its raw body.
      const comparable =
        got?.type === "PasswordMessage" ? { type: got.type, password: got.password } : got;
      expect(comparable).toEqual(msg);
    });
  }

  test("SASL messages share `p`; the server re-reads the body", () => {
    const initial = encodeFrontend({
      type: "SASLInitialResponse",
      mechanism: "SCRAM-SHA-256",
      data: hex('"n,,n=,r=abc"'),
    });
    expect(toHex(initial)).toBe(
      toHex(hex('70 00000021 "SCRAM-SHA-256\\0" 0000000b "n,,n=,r=abc"')),
    );
    const [frame] = splitAll(initial);
    const m = frame && decodeFrontend(frame);
    expect(m?.type).toBe("PasswordMessage");
    const body = m?.type === "PasswordMessage" ? m.body : undefined;
    expect(body && parseSASLInitialResponse(body)).toEqual({
      mechanism: "SCRAM-SHA-256",
      data: hex('"n,,n=,r=abc"'),
    });
    expect(toHex(encodeFrontend({ type: "SASLResponse", data: hex('"c=biws"') }))).toBe(
      toHex(hex('70 0000000a "c=biws"')),
    );
  });

  test("an unknown protocol version is a ProtocolError", () => {
    const [frame] = splitAll(hex("00000008 00020000"), { startup: true });
    expect(() => frame && decodeFrontend(frame)).toThrow(ProtocolError);
  });
});

describe("FrameSplitter", () => {
  const big = new Uint8Array(200_000).map((_, i) => i % 251);
  const stream = encodeBackend(
    { type: "CopyOutResponse", format: 0, columnFormats: [] },
    { type: "CopyData", data: hex('"a"') },
    { type: "CopyData", data: big },
    { type: "CopyData", data: new Uint8Array(0) },
    { type: "CopyDone" },
    { type: "CommandComplete", tag: "COPY 3" },
    { type: "ReadyForQuery", status: "I" },
  );
  const expected = splitAll(stream).map(decodeBackend);

  function feed(chunks: Uint8Array[], s = new FrameSplitter()): Frame[] {
    const out: Frame[] = [];
    for (const c of chunks) {
      s.push(c);
      for (let f = s.next(); f; f = s.next()) out.push(f);
    }
    expect(s.buffered).toBe(0);
    return out;
  }

  test("one chunk: every frame is a view of it (no copy)", () => {
    const frames = splitAll(stream);
    expect(frames).toHaveLength(7);
    for (const f of frames) expect(f.body.buffer).toBe(stream.buffer);
    expect(frames.map(decodeBackend)).toEqual(expected);
  });

  test("1-byte chunks: same messages; split frames are copied once into exact-size buffers", () => {
    const chunks = Array.from(stream, (b) => Uint8Array.of(b));
    const frames = feed(chunks);
    expect(frames.map(decodeBackend)).toEqual(expected);
    for (const f of frames) {
      if (f.body.length > 0) expect(f.body.buffer.byteLength).toBe(f.body.length);
    }
  });

  test("random chunk sizes, including chunks pushed before the previous one is read", () => {
    let seed = 42;
    const rand = () => {
      seed = (seed * 1103515245 + 12345) % 2 ** 31;
      return seed / 2 ** 31;
    };
    for (let round = 0; round < 20; round++) {
      const chunks: Uint8Array[] = [];
      for (let at = 0; at < stream.length; ) {
        const n = 1 + Math.floor(rand() * (round % 2 ? 70_000 : 9));
        chunks.push(stream.subarray(at, at + n));
        at += n;
      }
      // Push pairs of chunks before draining.
      const s = new FrameSplitter();
      const out: Frame[] = [];
      for (let i = 0; i < chunks.length; i += 2) {
        s.push(chunks[i] ?? new Uint8Array(0));
        s.push(chunks[i + 1] ?? new Uint8Array(0));
        for (let f = s.next(); f; f = s.next()) out.push(f);
      }
      expect(out.map(decodeBackend)).toEqual(expected);
    }
  });

  test("a large frame split in two is not copied more than once", () => {
    const at = 20 + 100_000; // inside the big CopyData
    const frames = feed([stream.subarray(0, at), stream.subarray(at)]);
    const bigFrame = frames[2];
    expect(bigFrame?.body.length).toBe(big.length);
    expect(bigFrame?.body.buffer.byteLength).toBe(big.length);
    // Frames wholly inside the second chunk are still views.
    expect(frames[4]?.body.buffer).toBe(stream.buffer);
  });

  test("startup mode: SSLRequest, StartupMessage, then typed frames", () => {
    const bytes = encodeFrontend(
      { type: "SSLRequest" },
      { type: "StartupMessage", params: { user: "no_user", application_name: "compute_ctl" } },
      { type: "PasswordMessage", password: "jwt" },
      { type: "Query", sql: "basebackup t l --gzip" },
    );
    const frames = feed(
      Array.from(bytes, (b) => Uint8Array.of(b)),
      new FrameSplitter({ startup: true }),
    );
    expect(frames.map((f) => f.code)).toEqual([0, 0, 0x70, 0x51]);
    const msgs = frames.map(decodeFrontend);
    expect(msgs[1]).toEqual({
      type: "StartupMessage",
      params: { user: "no_user", application_name: "compute_ctl" },
    });
    expect(msgs[3]).toEqual({ type: "Query", sql: "basebackup t l --gzip" });
  });

  test.each([
    ["length below 4", "5a 00000003"],
    ["length above the limit", "64 7fffffff"],
  ])("%s is a ProtocolError", (_name, bytes) => {
    const s = new FrameSplitter();
    s.push(hex(bytes));
    expect(() => s.next()).toThrow(ProtocolError);
  });

  test("an incomplete frame waits for more bytes", () => {
    const s = new FrameSplitter();
    s.push(hex("64 00000008 6162"));
    expect(s.next()).toBeUndefined();
    expect(s.buffered).toBe(7);
    s.push(hex("6364"));
    expect(s.next()?.body).toEqual(hex('"abcd"'));
  });
});
