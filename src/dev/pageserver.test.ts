// The pageserver stand-in against three clients: ours (simple protocol), a raw
// exchange that replays rust-postgres's extended-protocol copy_out, and psql (libpq).
// Then every fault knob, auth, and flow control with a slow or stalled reader.
import { afterAll, afterEach, beforeAll, describe, expect, test } from "bun:test";
import * as fs from "node:fs";
import { join } from "node:path";
import { connect, type PgClient, PgWireError } from "../wire/client.ts";
import { gunzip } from "../wire/gunzip.ts";
import type { BackendMessage } from "../wire/protocol.ts";
import { diffTrees } from "../wire/tar-fixtures.ts";
import {
  type PageserverHandle,
  parsePageserverCommand,
  type RecordedRequest,
  startPageserver,
} from "./pageserver.ts";
import { QueryError } from "./pg-server.ts";
import { ensureTemplateCluster, type TemplateCluster } from "./template.ts";
import {
  concatBytes,
  PG_BIN,
  psql,
  RawClient,
  readAll,
  TENANT,
  TempDirs,
  TIMELINE,
  until,
} from "./testing.ts";

const tmp = new TempDirs();
let template: TemplateCluster;
let ps: PageserverHandle;
/** The gzip'd archive as our client received it, for byte-for-byte comparisons. */
let baseline: Uint8Array;
const servers: PageserverHandle[] = [];
const clients: PgClient[] = [];

const BB = `basebackup ${TENANT} ${TIMELINE} 0/16B5BA8 --gzip`;

function server(opts: Omit<Parameters<typeof startPageserver>[0], "template"> = {}) {
  const s = startPageserver({ template, ...opts });
  servers.push(s);
  return s;
}

async function client(s: PageserverHandle, extra: { password?: string } = {}): Promise<PgClient> {
  const c = await connect({
    host: "127.0.0.1",
    port: s.port,
    user: "no_user",
    params: { application_name: "compute_ctl", options: "-c neon.compute_mode=primary" },
    connectTimeoutMs: 5000,
    ...extra,
  });
  clients.push(c);
  return c;
}

/** Pipe a gzip'd tar stream into `tar -xzf -` and make the root match the template's. */
async function gnuExtract(stream: ReadableStream<Uint8Array>, dest: string): Promise<void> {
  const tar = Bun.spawn(["tar", "-xzf", "-", "-C", dest], { stdin: stream, stderr: "pipe" });
  const [code, err] = await Promise.all([tar.exited, new Response(tar.stderr).text()]);
  expect(err).toBe("");
  expect(code).toBe(0);
  const st = fs.statSync(template.dir);
  fs.chmodSync(dest, st.mode & 0o7777);
  fs.utimesSync(dest, st.atime, st.mtime);
}

function lastRequest(s: PageserverHandle): RecordedRequest {
  const r = s.requests[s.requests.length - 1];
  if (!r) throw new Error("no request recorded");
  return r;
}

/** Simple-protocol basebackup over a raw connection; returns what came back. */
async function rawBasebackup(
  s: PageserverHandle,
  query = BB,
): Promise<{ raw: RawClient; messages: BackendMessage[]; payload: Uint8Array }> {
  const raw = await RawClient.connect(s.port);
  await raw.startup({ user: "no_user", database: "no_user" });
  raw.send({ type: "Query", sql: query });
  const messages: BackendMessage[] = [];
  const data: Uint8Array[] = [];
  for (;;) {
    let m: BackendMessage;
    try {
      m = await raw.recv(20_000);
    } catch (e) {
      if (raw.closed) break;
      throw e;
    }
    if (m.type === "CopyData") data.push(m.data.slice());
    else messages.push(m);
    if (m.type === "ReadyForQuery") break;
  }
  return { raw, messages, payload: concatBytes(data) };
}

const types = (ms: BackendMessage[]) => ms.map((m) => m.type);

const unzip = (gz: Uint8Array) => readAll(gunzip(new Blob([gz]).stream()));

beforeAll(async () => {
  template = await ensureTemplateCluster({ pgBinDir: PG_BIN, cacheDir: tmp.make("cache") });
  ps = server();
  const c = await client(ps);
  baseline = await readAll(await c.copyOut(BB));
  await c.close();
}, 60_000);

afterEach(async () => {
  ps.setFaults({});
  for (const c of clients.splice(0)) await c.close().catch(() => {});
});

afterAll(async () => {
  for (const s of servers) await s.close();
  tmp.cleanup();
});

describe("basebackup with three independent clients", () => {
  test("our client (simple protocol): GNU tar unpacks a copy of the template", async () => {
    const c = await client(ps);
    const dest = tmp.make("ours");
    await gnuExtract(await c.copyOut(BB), dest);
    expect(diffTrees(template.dir, dest, 1_000_000_000n)).toEqual([]);
    expect(fs.existsSync(join(dest, "postgresql.conf"))).toBe(false);
    const r = lastRequest(ps);
    expect(r.protocol).toBe("simple");
    expect(r.applicationName).toBe("compute_ctl");
    expect(r.options).toBe("-c neon.compute_mode=primary");
    expect(r.startup.user).toBe("no_user");
    expect(r.parsed).toEqual({
      kind: "basebackup",
      tenantId: TENANT,
      timelineId: TIMELINE,
      lsn: "0/16B5BA8",
      gzip: true,
      replica: false,
    });
    expect(r.result).toEqual({ outcome: "ok", copyBytes: baseline.length });
  });

  test("rust-postgres's copy_out sequence (Parse/Describe/Sync, Bind/Execute/Sync, Close)", async () => {
    const raw = await RawClient.connect(ps.port);
    const hello = await raw.startup({
      user: "no_user",
      database: "no_user",
      client_encoding: "UTF8",
      application_name: "compute_ctl",
      options: "-c neon.compute_mode=static",
    });
    expect(hello).toEqual([
      { type: "AuthenticationOk" },
      { type: "ParameterStatus", name: "client_encoding", value: "UTF8" },
      { type: "ParameterStatus", name: "integer_datetimes", value: "on" },
      { type: "ParameterStatus", name: "server_version", value: "14.1" },
      { type: "ReadyForQuery", status: "I" },
    ]);
    const q = `basebackup ${TENANT} ${TIMELINE} 0/16B5BA8 --gzip --replica`;
    raw.send(
      { type: "Parse", name: "s0", sql: q, paramTypes: [] },
      { type: "Describe", kind: "S", name: "s0" },
      { type: "Sync" },
    );
    await raw.expect("ParseComplete");
    expect(await raw.expect("ParameterDescription")).toEqual({
      type: "ParameterDescription",
      typeOids: [],
    });
    await raw.expect("NoData");
    await raw.expect("ReadyForQuery");
    raw.send(
      {
        type: "Bind",
        portal: "",
        statement: "s0",
        paramFormats: [],
        params: [],
        resultFormats: [],
      },
      { type: "Execute", portal: "", maxRows: 0 },
      { type: "Sync" },
    );
    await raw.expect("BindComplete");
    expect(await raw.expect("CopyOutResponse")).toEqual({
      type: "CopyOutResponse",
      format: 0,
      columnFormats: [],
    });
    const data: Uint8Array[] = [];
    let m = await raw.recv();
    while (m.type === "CopyData") {
      data.push(m.data.slice());
      m = await raw.recv();
    }
    expect(m.type).toBe("CopyDone");
    expect(await raw.expect("CommandComplete")).toEqual({
      type: "CommandComplete",
      tag: "SELECT 1",
    });
    await raw.expect("ReadyForQuery");
    expect(concatBytes(data)).toEqual(baseline);
    raw.send({ type: "Close", kind: "S", name: "s0" }, { type: "Sync" });
    await raw.expect("CloseComplete");
    await raw.expect("ReadyForQuery");
    raw.send({ type: "Terminate" });
    await raw.waitClosed();
    const r = lastRequest(ps);
    expect(r.protocol).toBe("extended");
    expect(r.command).toBe(q);
    expect(r.options).toBe("-c neon.compute_mode=static");
    expect(r.parsed).toMatchObject({ replica: true, gzip: true, lsn: "0/16B5BA8" });
  });

  test("psql (libpq) writes the CopyOut to stdout, byte for byte the same archive", async () => {
    const r = await psql(ps.url, BB);
    expect(r.stderr).toBe("");
    expect(r.code).toBe(0);
    expect(r.stdout).toEqual(baseline);
    expect(lastRequest(ps).applicationName).toBe("psql");
    const dest = tmp.make("psql");
    await gnuExtract(new Blob([r.stdout]).stream(), dest);
    expect(diffTrees(template.dir, dest, 1_000_000_000n)).toEqual([]);
  });

  test("without --gzip the payload is the plain tar", async () => {
    const c = await client(ps);
    const plain = await readAll(await c.copyOut(`basebackup ${TENANT} ${TIMELINE}`));
    expect(plain).toEqual(await unzip(baseline));
    expect(plain.length % 512).toBe(0);
  });

  test("fullbackup is served uncompressed too", async () => {
    const c = await client(ps);
    const full = await readAll(
      await c.copyOut(`fullbackup ${TENANT} ${TIMELINE} 0/16B5BA8 0/16B5B70`),
    );
    expect(full.subarray(257, 265)).toEqual(new TextEncoder().encode("ustar  \0"));
    expect(lastRequest(ps).parsed).toMatchObject({ kind: "fullbackup", prevLsn: "0/16B5B70" });
  });
});

describe("lease lsn", () => {
  test("psql gets valid_until as milliseconds since the epoch, ~10 minutes ahead", async () => {
    const before = Date.now();
    const r = await psql(ps.url, `lease lsn ${TENANT} ${TIMELINE} 0/16B5BA8 `);
    expect(r.stderr).toBe("");
    const ms = Number(r.text.trim());
    expect(ms).toBeGreaterThanOrEqual(before + 600_000);
    expect(ms).toBeLessThanOrEqual(Date.now() + 600_000);
  });

  test("our client sees one text column and CommandComplete SELECT 1; sharded ids work", async () => {
    const c = await client(ps);
    const [res] = await c.simpleQuery(`lease lsn ${TENANT}-0104 ${TIMELINE} 0/16B5BA8 `);
    expect(res?.columns).toEqual(["valid_until"]);
    expect(res?.command).toBe("SELECT 1");
    expect(res?.rows[0]?.[0]).toMatch(/^\d{13}$/);
    expect(lastRequest(ps).parsed).toEqual({
      kind: "lease_lsn",
      tenantShardId: `${TENANT}-0104`,
      tenantId: TENANT,
      timelineId: TIMELINE,
      lsn: "0/16B5BA8",
    });
  });

  test("a refused lease is a NULL", async () => {
    ps.setFaults({ refuseLease: true });
    const c = await client(ps);
    const [res] = await c.simpleQuery(`lease lsn ${TENANT} ${TIMELINE} 0/16B5BA8 `);
    expect(res?.rows).toEqual([[null]]);
  });
});

describe("errors, in the pageserver's words", () => {
  const T = TENANT;
  const TL = TIMELINE;
  test.each([
    [`basebackup ${T}`, `invalid number of parameters for basebackup command: ${T}`],
    [`basebackup ${T}x ${TL}`, `Failed to parse tenant id from ${T}x: Odd number of digits`],
    [
      `basebackup ${T} ${TL.slice(2)}`,
      `Failed to parse timeline id from ${TL.slice(2)}: Invalid string length`,
    ],
    [
      `basebackup ${T} zz${TL.slice(2)}`,
      `Failed to parse timeline id from zz${TL.slice(2)}: Invalid character 'z' at position 0`,
    ],
    [`basebackup ${T} ${TL} 0/ZZ --gzip`, "Failed to parse lsn from 0/ZZ: LsnParseError"],
    [`basebackup ${T} ${TL} --gzip --gzip`, "duplicate parameter for basebackup command: --gzip"],
    [`basebackup ${T} ${TL} 0/1 --full`, "invalid parameter for basebackup command: --full"],
    [
      `basebackup ${T} ${TL} --gzip 0/16B5BA8`,
      "invalid parameter for basebackup command: 0/16B5BA8",
    ],
    [
      `fullbackup ${T} ${TL} 0/1 0/2 0/3`,
      `invalid number of parameters for basebackup command: ${T} ${TL} 0/1 0/2 0/3`,
    ],
    [`lease lsn ${T} ${TL}`, `invalid number of parameters for lease lsn command: ${T} ${TL}`],
    [`lease ${T} ${TL} 0/1`, "invalid lease command: lease"],
    ["hello", "cannot parse query: hello"],
    ["hello world", "unsupported command hello in hello world"],
    [`pagestream_v2 ${T} ${TL}`, "pagestream is not served by the pageserver stand-in"],
  ])("psql: %s", async (query, message) => {
    const r = await psql(ps.url, query);
    expect(r.code).not.toBe(0);
    expect(r.stderr.trim()).toBe(`ERROR:  ${message}`);
  });

  test("SQLSTATE XX000; the connection stays usable after an error", async () => {
    const c = await client(ps);
    const err = await c.simpleQuery("basebackup nope nope").catch((e: unknown) => e);
    expect(err).toBeInstanceOf(PgWireError);
    expect((err as PgWireError).code).toBe("XX000");
    expect((err as PgWireError).severity).toBe("ERROR");
    const [set] = await c.simpleQuery("SET datestyle TO 'ISO'");
    expect(set?.command).toBe("SELECT 1");
  });

  test("extended protocol: Execute's error has no cause chain and no ReadyForQuery until Sync", async () => {
    const raw = await RawClient.connect(ps.port);
    await raw.startup({ user: "no_user" });
    raw.send(
      { type: "Parse", name: "", sql: `basebackup ${T}x ${TL}`, paramTypes: [] },
      { type: "Bind", portal: "", statement: "", paramFormats: [], params: [], resultFormats: [] },
      { type: "Execute", portal: "", maxRows: 0 },
    );
    await raw.expect("ParseComplete");
    await raw.expect("BindComplete");
    const e = await raw.expect("ErrorResponse");
    expect(e.fields).toEqual({
      severity: "ERROR",
      code: "XX000",
      message: `Failed to parse tenant id from ${T}x`,
    });
    // Unlike postgres, nothing is skipped after the error: the next Execute runs.
    raw.send(
      { type: "Parse", name: "", sql: "set x", paramTypes: [] },
      { type: "Execute", portal: "", maxRows: 0 },
      { type: "Sync" },
    );
    await raw.expect("ParseComplete");
    expect(await raw.expect("CommandComplete")).toEqual({
      type: "CommandComplete",
      tag: "SELECT 1",
    });
    await raw.expect("ReadyForQuery");
    raw.close();
  });

  test("a template that cannot be read is an ErrorResponse, not a dropped connection", async () => {
    const s = startPageserver({ template: { dir: join(tmp.make("gone"), "missing") } });
    servers.push(s);
    const r = await psql(s.url, BB);
    expect(r.stderr).toContain("ERROR:  failed to build the basebackup archive: ");
  });

  test("unknown tenant or timeline when the stand-in is told its ids", async () => {
    const s = server({ tenantId: TENANT, timelineId: TIMELINE });
    const other = "0".repeat(32);
    const a = await psql(s.url, `basebackup ${other} ${TIMELINE} --gzip`);
    expect(a.stderr).toContain(`ERROR:  Tenant ${other} not found`);
    const b = await psql(s.url, `basebackup ${TENANT} ${other} --gzip`);
    expect(b.stderr).toContain(`ERROR:  Timeline ${TENANT}/${other} was not found`);
    const ok = await psql(s.url, `lease lsn ${TENANT} ${TIMELINE} 0/1 `);
    expect(ok.code).toBe(0);
  });
});

describe("startup negotiation", () => {
  test("SSLRequest and GSSENCRequest are answered 'N', then startup proceeds", async () => {
    const raw = await RawClient.connect(ps.port);
    raw.send({ type: "SSLRequest" });
    expect(String.fromCharCode(await raw.readByte())).toBe("N");
    raw.send({ type: "GSSENCRequest" });
    expect(String.fromCharCode(await raw.readByte())).toBe("N");
    const hello = await raw.startup({ user: "no_user" });
    expect(hello.at(-1)).toEqual({ type: "ReadyForQuery", status: "I" });
    raw.close();
  });

  test("psql with sslmode=require is turned away; sslmode=prefer falls back to plain", async () => {
    const req = await psql(`${ps.url}?sslmode=require`, "set x");
    expect(req.code).not.toBe(0);
    expect(req.stderr).toContain("server does not support SSL");
    const pref = await psql(`${ps.url}?sslmode=prefer`, "set x");
    expect(pref.code).toBe(0);
  });

  test("a CancelRequest just closes the connection", async () => {
    const raw = await RawClient.connect(ps.port);
    raw.send({ type: "CancelRequest", pid: 1, secret: 2 });
    await raw.waitClosed();
  });
});

describe("auth: the JWT as a cleartext password", () => {
  const jwt = (claims: Record<string, unknown>) =>
    [
      Buffer.from(JSON.stringify({ alg: "EdDSA", typ: "JWT" })).toString("base64url"),
      Buffer.from(JSON.stringify(claims)).toString("base64url"),
      "c2lnbmF0dXJl",
    ].join(".");
  const token = jwt({ tenant_id: TENANT, scope: "tenant" });

  test("the right token: cleartext exchange, then only client_encoding is reported", async () => {
    const s = server({ auth: { password: token } });
    const raw = await RawClient.connect(s.port);
    const hello = await raw.startup({ user: "no_user" }, token);
    expect(hello).toEqual([
      { type: "AuthenticationCleartextPassword" },
      { type: "AuthenticationOk" },
      { type: "ParameterStatus", name: "client_encoding", value: "UTF8" },
      { type: "ReadyForQuery", status: "I" },
    ]);
    raw.close();
    const c = await client(s, { password: token });
    // Another server compresses anew, and CompressionStream's bytes depend on how its
    // input was chunked: compare the tar inside.
    expect(await readAll(gunzip(await c.copyOut(BB)))).toEqual(await unzip(baseline));
    expect(lastRequest(s).password).toBe(token);
    expect(s.connections.at(-1)?.password).toBe(token);
  });

  test("a wrong token: ErrorResponse 28000 and the connection is closed", async () => {
    const s = server({ auth: { password: token } });
    const raw = await RawClient.connect(s.port);
    const hello = await raw.startup({ user: "no_user" }, "not-the-token");
    const last = hello.at(-1);
    expect(last?.type).toBe("ErrorResponse");
    if (last?.type === "ErrorResponse") expect(last.fields.code).toBe("28000");
    await raw.waitClosed();
    const err = await client(s, { password: "wrong" }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(PgWireError);
    expect((err as PgWireError).code).toBe("28000");
  });

  test("psql: PGPASSWORD works; no password or a wrong one does not", async () => {
    const s = server({ auth: { password: token } });
    const ok = await psql(s.url, `lease lsn ${TENANT} ${TIMELINE} 0/1 `, token);
    expect(ok.stderr).toBe("");
    expect(ok.text.trim()).toMatch(/^\d{13}$/);
    const none = await psql(s.url, "set x");
    expect(none.code).not.toBe(0);
    expect(none.stderr).toContain("no password supplied");
    const bad = await psql(s.url, "set x", "wrong");
    expect(bad.code).not.toBe(0);
    expect(bad.stderr).toContain("password authentication failed");
  });

  test("claims are checked per command like check_permission", async () => {
    const s = server({ auth: { password: token } });
    const c = await client(s, { password: token });
    const other = "1".repeat(32);
    await expect(c.simpleQuery(`basebackup ${other} ${TIMELINE} --gzip`)).rejects.toThrow(
      "Tenant id mismatch. Permission denied",
    );
    const sk = jwt({ scope: "safekeeperdata" });
    const s2 = server({ auth: { password: sk } });
    const c2 = await client(s2, { password: sk });
    await expect(c2.simpleQuery(BB)).rejects.toThrow(
      "JWT scope 'safekeeperdata' is ineligible for Pageserver auth",
    );
    const noTenant = jwt({ scope: "tenant" });
    const s3 = server({ auth: { password: noTenant } });
    await expect(client(s3, { password: noTenant })).rejects.toThrow(
      "jwt token scope is Tenant, but tenant id is missing",
    );
  });
});

/** Deterministic bytes: position i holds i mod 251. */
function pattern(total: number, chunk = 64 * 1024): ReadableStream<Uint8Array> {
  const period = new Uint8Array(chunk + 251);
  for (let i = 0; i < period.length; i++) period[i] = i % 251;
  let sent = 0;
  return new ReadableStream<Uint8Array>(
    {
      pull(ctl) {
        if (sent >= total) return ctl.close();
        const n = Math.min(chunk, total - sent);
        const at = sent % 251;
        // A fresh copy each time: the consumer may hold on to it.
        ctl.enqueue(period.slice(at, at + n));
        sent += n;
      },
    },
    { highWaterMark: 0 },
  );
}

function isPattern(b: Uint8Array, total: number): boolean {
  if (b.length !== total) return false;
  for (let i = 0; i < b.length; i++) if (b[i] !== i % 251) return false;
  return true;
}

describe("fault knobs", () => {
  test("default CopyData size is 8192 (the pageserver's BufWriter)", async () => {
    const { raw, payload } = await rawBasebackup(ps);
    expect(payload).toEqual(baseline);
    expect(raw.copySizes.slice(0, -1).every((n) => n === 8192)).toBe(true);
    raw.close();
  });

  test.each([1, 7, 65537])(
    "chunkSize %p: every CopyData has exactly that size but the last",
    async (size) => {
      // 1- and 7-byte frames over the whole template would take seconds: use 200 kB.
      const s = size < 100 ? server({ archiveOverride: () => pattern(200_000, 4096) }) : ps;
      s.setFaults({ chunkSize: size });
      const { raw, messages, payload } = await rawBasebackup(s);
      if (size < 100) expect(isPattern(payload, 200_000)).toBe(true);
      else expect(payload).toEqual(baseline);
      const sizes = raw.copySizes;
      expect(sizes.slice(0, -1).every((n) => n === size)).toBe(true);
      expect(sizes.at(-1)).toBeLessThanOrEqual(size);
      expect(types(messages)).toEqual([
        "CopyOutResponse",
        "CopyDone",
        "CommandComplete",
        "ReadyForQuery",
      ]);
      raw.close();
    },
  );

  test("delayMs holds the answer back", async () => {
    ps.setFaults({ delayMs: 300 });
    const c = await client(ps);
    const t0 = performance.now();
    const stream = await c.copyOut(BB);
    expect(performance.now() - t0).toBeGreaterThanOrEqual(290);
    expect(await readAll(stream)).toEqual(baseline);
  });

  test("errorMidStream: exactly N bytes, ErrorResponse, ReadyForQuery; no CopyDone", async () => {
    ps.setFaults({ errorMidStream: 100_000, chunkSize: 7000 });
    const { raw, messages, payload } = await rawBasebackup(ps);
    expect(payload).toEqual(baseline.subarray(0, 100_000));
    expect(types(messages)).toEqual(["CopyOutResponse", "ErrorResponse", "ReadyForQuery"]);
    raw.close();
    // Our client surfaces it from the stream, after the bytes before it.
    const c = await client(ps);
    const got: Uint8Array[] = [];
    const err = await (async () => {
      for await (const b of await c.copyOut(BB)) got.push(b);
    })().catch((e: unknown) => e);
    expect(concatBytes(got).length).toBe(100_000);
    expect(err).toBeInstanceOf(PgWireError);
    expect((err as PgWireError).message).toBe(
      "failed to send basebackup tarball: injected fault after 100000 bytes",
    );
    ps.setFaults({});
    expect(await readAll(await c.copyOut(BB))).toEqual(baseline);
    expect(lastRequest(ps).result?.outcome).toBe("ok");
    expect(ps.requests.at(-2)?.result).toMatchObject({ outcome: "error", copyBytes: 100_000 });
  });

  test("errorAfterTar: the whole archive, then ErrorResponse instead of CopyDone", async () => {
    ps.setFaults({ errorAfterTar: true });
    const { raw, messages, payload } = await rawBasebackup(ps);
    expect(payload).toEqual(baseline);
    expect(types(messages)).toEqual(["CopyOutResponse", "ErrorResponse", "ReadyForQuery"]);
    raw.close();
  });

  test("closeMidStream: exactly N bytes, then the connection closes", async () => {
    ps.setFaults({ closeMidStream: 50_000 });
    const { raw, messages, payload } = await rawBasebackup(ps);
    expect(payload).toEqual(baseline.subarray(0, 50_000));
    expect(types(messages)).toEqual(["CopyOutResponse"]);
    expect(raw.closed).toBe(true);
    await until(
      "the request to be recorded as closed",
      () => lastRequest(ps).result?.outcome === "closed",
    );
  });

  test("errorBeforeStream: an ErrorResponse and no CopyOutResponse", async () => {
    ps.setFaults({ errorBeforeStream: "timeline is archived" });
    const r = await psql(ps.url, BB);
    expect(r.stderr.trim()).toBe("ERROR:  timeline is archived");
    expect(r.stdout.length).toBe(0);
  });

  test("refuseConnections (close): the first N connections fail, the next works", async () => {
    ps.setFaults({ refuseConnections: 2 });
    const before = ps.connections.length;
    for (let i = 0; i < 2; i++) {
      const err = await client(ps).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(PgWireError);
    }
    const c = await client(ps);
    expect(await readAll(await c.copyOut(BB))).toEqual(baseline);
    expect(ps.connections.slice(before).map((x) => x.refused)).toEqual([true, true, false]);
  });

  test("refuseConnections (fatal): a FATAL 57P03 after the startup packet", async () => {
    ps.setFaults({ refuseConnections: 1, refuseWith: "fatal" });
    const err = await client(ps).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(PgWireError);
    expect((err as PgWireError).severity).toBe("FATAL");
    expect((err as PgWireError).code).toBe("57P03");
    expect(ps.connections.find((x) => x.refused && x.startup.user === "no_user")).toBeDefined();
    const ok = await psql(ps.url, "set x");
    expect(ok.code).toBe(0);
  });

  test("endOfArchive adds the two zero blocks; by default there are none", async () => {
    const tail = (b: Uint8Array) => b.subarray(b.length - 1024);
    const plain = await unzip(baseline);
    expect(tail(plain).some((x) => x !== 0)).toBe(true);
    const s = server({ faults: { endOfArchive: true } });
    const c = await client(s);
    const ended = await readAll(gunzip(await c.copyOut(BB)));
    expect(ended.length).toBe(plain.length + 1024);
    expect(tail(ended).every((x) => x === 0)).toBe(true);
  });
});

describe("flow control", () => {
  test("a stalled reader stalls the producer (no unbounded buffering)", async () => {
    const total = 256 << 20;
    let pulled = 0;
    const s = server({
      archiveOverride: () => {
        const inner = pattern(total, 256 * 1024).getReader();
        return new ReadableStream<Uint8Array>(
          {
            async pull(ctl) {
              const r = await inner.read();
              if (r.done) return ctl.close();
              pulled += r.value.length;
              ctl.enqueue(r.value);
            },
          },
          { highWaterMark: 0 },
        );
      },
    });
    const c = await client(s);
    const reader = (await c.copyOut(BB)).getReader();
    const first = await reader.read();
    let received = first.value?.length ?? 0;
    // Stop reading. Wait until the producer either runs away or settles.
    let last = -1;
    let stableSince = performance.now();
    await until(
      "the producer to stop or run away",
      () => {
        if (pulled !== last) {
          last = pulled;
          stableSince = performance.now();
        }
        return pulled - received > 96 << 20 || performance.now() - stableSince > 300;
      },
      20_000,
    );
    // Kernel socket buffers (a few MiB each way) plus the client's 1 MiB high-water mark.
    expect(pulled - received).toBeLessThan(96 << 20);
    expect(c.copyStats.paused).toBe(true);
    for (;;) {
      const r = await reader.read();
      if (r.done) break;
      received += r.value.length;
    }
    expect(received).toBe(total);
    expect(pulled).toBe(total);
  }, 30_000);

  test("1 GiB streams with flat memory", async () => {
    const total = 1 << 30;
    const s = server({ archiveOverride: () => pattern(total, 1 << 20) });
    const c = await client(s);
    Bun.gc(true);
    const rss0 = process.memoryUsage().rss;
    let peak = rss0;
    let bytes = 0;
    let i = 0;
    for await (const b of await c.copyOut(BB)) {
      bytes += b.length;
      if ((i++ & 127) === 0) peak = Math.max(peak, process.memoryUsage().rss);
    }
    expect(bytes).toBe(total);
    expect(peak - rss0).toBeLessThan(256 << 20);
  }, 60_000);

  test("a client hanging up mid-stream is recorded, with the bytes it was sent", async () => {
    const s = server({ archiveOverride: () => pattern(64 << 20) });
    const c = await client(s);
    const reader = (await c.copyOut(BB)).getReader();
    await reader.read();
    await reader.cancel();
    const r = await until("the request to end", () => s.requests[0]?.result);
    expect(r.outcome).toBe("closed");
    expect(r.copyBytes).toBeGreaterThan(0);
    expect(r.copyBytes).toBeLessThan(64 << 20);
  });

  test("close() ends a stream in progress and cancels the producer", async () => {
    let cancelled = false;
    const s = startPageserver({
      template,
      archiveOverride: () =>
        new ReadableStream<Uint8Array>(
          {
            pull(ctl) {
              ctl.enqueue(new Uint8Array(64 * 1024));
            },
            cancel() {
              cancelled = true;
            },
          },
          { highWaterMark: 0 },
        ),
    });
    const c = await client(s);
    const reader = (await c.copyOut(BB)).getReader();
    await reader.read();
    await s.close();
    await until("the producer to be cancelled", () => cancelled);
    const err = await (async () => {
      for (;;) if ((await reader.read()).done) return undefined;
    })().catch((e: unknown) => e);
    expect(err).toBeInstanceOf(PgWireError);
  });
});

describe("parsePageserverCommand", () => {
  const T = TENANT;
  const TL = TIMELINE;
  test.each([
    [`basebackup ${T} ${TL}`, { lsn: undefined, gzip: false, replica: false }],
    [`basebackup ${T} ${TL} latest`, { lsn: undefined, gzip: false, replica: false }],
    [`basebackup ${T} ${TL} latest --gzip`, { lsn: undefined, gzip: true, replica: false }],
    [`basebackup ${T} ${TL} --replica --gzip`, { lsn: undefined, gzip: true, replica: true }],
    [
      `basebackup ${T} ${TL} 0/16abcde --gzip --replica`,
      { lsn: "0/16ABCDE", gzip: true, replica: true },
    ],
    [`  BASEBACKUP ${T.toUpperCase()}   ${TL}  1/0  `, { lsn: "1/0", gzip: false, replica: false }],
  ])("%s", (text, want) => {
    const cmd = parsePageserverCommand(text);
    expect(cmd.kind).toBe("basebackup");
    if (cmd.kind !== "basebackup") return;
    expect(cmd.tenantId).toBe(T);
    expect(cmd.timelineId).toBe(TL);
    expect({ lsn: cmd.lsn, gzip: cmd.gzip, replica: cmd.replica }).toEqual(want);
  });

  test.each([
    "",
    "basebackup",
    `basebackup ${T} ${TL} --gzip --replica --gzip`,
    `basebackup ${T} ${TL} latest 0/1`,
    `basebackup ${T} ${TL} 0/1/2`,
    `basebackup ${T} ${TL} 100000000/0`,
    `lease lsn ${T}-01 ${TL} 0/1`,
    `pagestream_v2 ${T}`,
  ])("rejects %p", (text) => {
    expect(() => parsePageserverCommand(text)).toThrow(QueryError);
  });

  test("set is accepted in any case and with anything after it", () => {
    expect(parsePageserverCommand("SET foo")).toEqual({ kind: "set" });
    expect(parsePageserverCommand("set a = b")).toEqual({ kind: "set" });
  });
});
