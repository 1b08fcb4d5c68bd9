// The client against tiny in-test servers built on our server-side codec: the cases a
// real Postgres will not produce on demand (errors after CopyDone, a socket closed
// mid-stream, odd framing, JWT-as-password auth).
import { afterEach, describe, expect, test } from "bun:test";
import type { Socket, TCPSocketListener } from "bun";
import { TimeoutError } from "../errors.ts";
import { COPY_HIGH_WATER_BYTES, connect, type PgClient, PgWireError } from "./client.ts";
import {
  type BackendMessage,
  decodeFrontend,
  encodeBackend,
  FrameSplitter,
  type FrontendMessage,
  textField,
} from "./protocol.ts";
import { SocketWriter } from "./socket-writer.ts";

/** Poll a condition until it holds or the deadline passes. */
async function waitFor(what: string, cond: () => boolean, ms = 5000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await Bun.sleep(2);
  }
}

/** One accepted connection, seen from the fake server's side. */
class FakeConn {
  readonly splitter = new FrameSplitter({ startup: true });
  readonly writer: SocketWriter;
  readonly inbox: FrontendMessage[] = [];
  private wake: (() => void) | null = null;
  isClosed = false;
  bytesFlushed = 0;

  constructor(readonly socket: Socket<FakeConn | undefined>) {
    this.writer = new SocketWriter(socket);
  }

  onData(chunk: Uint8Array): void {
    this.splitter.push(chunk);
    for (let f = this.splitter.next(); f; f = this.splitter.next()) {
      this.inbox.push(decodeFrontend(f));
    }
    this.wake?.();
  }

  onClose(): void {
    this.isClosed = true;
    this.writer.fail(new Error("closed"));
    this.wake?.();
  }

  async recv(): Promise<FrontendMessage> {
    for (;;) {
      const m = this.inbox.shift();
      if (m) return m;
      if (this.isClosed) throw new Error("client closed the connection");
      await new Promise<void>((r) => {
        this.wake = r;
      });
      this.wake = null;
    }
  }

  async expect<T extends FrontendMessage["type"]>(
    type: T,
  ): Promise<Extract<FrontendMessage, { type: T }>> {
    const m = await this.recv();
    if (m.type !== type) throw new Error(`expected ${type}, got ${m.type}`);
    return m as Extract<FrontendMessage, { type: T }>;
  }

  async sendRaw(bytes: Uint8Array): Promise<void> {
    this.writer.write(bytes);
    await this.writer.flushed();
    this.bytesFlushed += bytes.length;
  }

  send(...msgs: BackendMessage[]): Promise<void> {
    return this.sendRaw(encodeBackend(...msgs));
  }

  /** Startup as the pageserver does it with trust auth. */
  async trust(): Promise<Record<string, string>> {
    const { params } = await this.expect("StartupMessage");
    await this.send(
      { type: "AuthenticationOk" },
      { type: "ParameterStatus", name: "client_encoding", value: "UTF8" },
      { type: "ReadyForQuery", status: "I" },
    );
    return params;
  }

  /** Answer simple queries with one text row, until the client leaves. */
  async serveQueries(): Promise<void> {
    for (;;) {
      const m = await this.recv().catch(() => null);
      if (m === null || m.type === "Terminate") return;
      if (m.type !== "Query") throw new Error(`unexpected ${m.type}`);
      await this.send(
        { type: "RowDescription", fields: [textField("q")] },
        { type: "DataRow", values: [m.sql] },
        { type: "CommandComplete", tag: "SELECT 1" },
        { type: "ReadyForQuery", status: "I" },
      );
    }
  }
}

const servers: TCPSocketListener<FakeConn | undefined>[] = [];
const clients: PgClient[] = [];

afterEach(async () => {
  for (const c of clients.splice(0)) await c.close().catch(() => {});
  for (const s of servers.splice(0)) s.stop(true);
});

/** Listen on a free port; `script` runs once per accepted connection. */
function fakeServer(script: (c: FakeConn) => Promise<void>) {
  const conns: FakeConn[] = [];
  const failures: unknown[] = [];
  const server = Bun.listen<FakeConn | undefined>({
    hostname: "127.0.0.1",
    port: 0,
    socket: {
      open(s) {
        const c = new FakeConn(s);
        s.data = c;
        conns.push(c);
        script(c).catch((e) => {
          if (!c.isClosed) failures.push(e);
        });
      },
      data: (s, d) => s.data?.onData(d),
      drain: (s) => s.data?.writer.drain(),
      close: (s) => s.data?.onClose(),
    },
  });
  servers.push(server);
  return { port: server.port, conns, failures };
}

async function client(port: number, extra: Partial<Parameters<typeof connect>[0]> = {}) {
  const c = await connect({ host: "127.0.0.1", port, user: "no_user", ...extra });
  clients.push(c);
  return c;
}

/** Read a stream to its end; returns the chunks and the error it ended with, if any. */
async function drain(stream: ReadableStream<Uint8Array>) {
  const chunks: Uint8Array[] = [];
  try {
    for await (const chunk of stream) chunks.push(chunk);
    return { chunks, bytes: Buffer.concat(chunks), error: undefined };
  } catch (error) {
    return { chunks, bytes: Buffer.concat(chunks), error };
  }
}

function payload(n: number, seed = 1): Uint8Array {
  return new Uint8Array(n).map((_, i) => (i * 31 + seed) % 256);
}

const copyStart: BackendMessage = { type: "CopyOutResponse", format: 0, columnFormats: [] };
const copyEnd: BackendMessage[] = [
  { type: "CopyDone" },
  { type: "CommandComplete", tag: "SELECT 1" },
  { type: "ReadyForQuery", status: "I" },
];

describe("startup and auth", () => {
  test("safekeeper-style: startup params verbatim, JWT as cleartext password, TIMELINE_STATUS", async () => {
    let seen: { params: Record<string, string>; password: string } | undefined;
    const { port } = fakeServer(async (c) => {
      const { params } = await c.expect("StartupMessage");
      await c.send({ type: "AuthenticationCleartextPassword" });
      const { password } = await c.expect("PasswordMessage");
      seen = { params, password };
      await c.send({ type: "AuthenticationOk" }, { type: "ReadyForQuery", status: "I" });
      const q = await c.expect("Query");
      expect(q.sql).toBe("TIMELINE_STATUS");
      await c.send(
        { type: "RowDescription", fields: [textField("flush_lsn"), textField("commit_lsn")] },
        { type: "DataRow", values: ["0/169AD58", "0/169AD58"] },
        { type: "CommandComplete", tag: "TIMELINE_STATUS" },
        { type: "ReadyForQuery", status: "I" },
      );
      await c.serveQueries();
    });
    const options =
      "-c timeline_id=de200bd42b49cc1814412c7e592dd6e9 tenant_id=9ef87a5bf0d92544f6fafeeb3239695c";
    const c = await client(port, { password: "eyJ.jwt.sig", params: { options } });
    expect(seen).toEqual({
      params: { user: "no_user", database: "no_user", client_encoding: "UTF8", options },
      password: "eyJ.jwt.sig",
    });
    expect(await c.simpleQuery("TIMELINE_STATUS")).toEqual([
      {
        command: "TIMELINE_STATUS",
        columns: ["flush_lsn", "commit_lsn"],
        rows: [["0/169AD58", "0/169AD58"]],
      },
    ]);
  });

  test("an auth ErrorResponse rejects connect with its SQLSTATE and severity", async () => {
    const { port } = fakeServer(async (c) => {
      await c.expect("StartupMessage");
      await c.send({ type: "AuthenticationCleartextPassword" });
      await c.expect("PasswordMessage");
      await c.send({
        type: "ErrorResponse",
        fields: {
          severity: "FATAL",
          code: "28000",
          message: "Tenant id mismatch. Permission denied",
        },
      });
      c.socket.end();
    });
    const err = await client(port, { password: "bad" }).catch((e) => e);
    expect(err).toBeInstanceOf(PgWireError);
    expect(err).toMatchObject({
      code: "28000",
      severity: "FATAL",
      message: "Tenant id mismatch. Permission denied",
      fromServer: true,
    });
  });

  test("a password request without a password fails locally", async () => {
    const { port } = fakeServer(async (c) => {
      await c.expect("StartupMessage");
      await c.send({ type: "AuthenticationCleartextPassword" });
      await c.recv();
    });
    const err = await client(port).catch((e) => e);
    expect(err).toMatchObject({ code: "28000", fromServer: false });
  });

  test("connectTimeoutMs bounds a server that never answers", async () => {
    const { port } = fakeServer(async (c) => {
      await c.expect("StartupMessage");
    });
    const t0 = performance.now();
    const err = await client(port, { connectTimeoutMs: 100 }).catch((e) => e);
    expect(err).toBeInstanceOf(TimeoutError);
    expect(performance.now() - t0).toBeLessThan(2000);
  });

  test("an aborted signal rejects with its reason", async () => {
    const { port } = fakeServer(async (c) => {
      await c.expect("StartupMessage");
    });
    const ac = new AbortController();
    const reason = new Error("stop");
    const pending = client(port, { signal: ac.signal });
    ac.abort(reason);
    expect(await pending.catch((e) => e)).toBe(reason);
  });

  test("a refused connection is 08001", async () => {
    const { port } = fakeServer(async () => {});
    servers.pop()?.stop(true);
    const err = await client(port).catch((e) => e);
    expect(err).toMatchObject({ code: "08001", fromServer: false });
  });
});

describe("copyOut against a fake pageserver", () => {
  test("an ErrorResponse after CopyDone errors the stream after all the data", async () => {
    const data = payload(3 * 65536 + 5);
    const { port } = fakeServer(async (c) => {
      await c.trust();
      const q = await c.expect("Query");
      expect(q.sql).toBe("basebackup t l 0/16B5A50 --gzip");
      const frames: BackendMessage[] = [copyStart];
      for (let at = 0; at < data.length; at += 65536) {
        frames.push({ type: "CopyData", data: data.subarray(at, at + 65536) });
      }
      frames.push(
        { type: "CopyDone" },
        {
          type: "ErrorResponse",
          fields: {
            severity: "ERROR",
            code: "XX000",
            message: "late failure",
            detail: "after the tar",
          },
        },
        { type: "ReadyForQuery", status: "I" },
      );
      await c.send(...frames);
      await c.serveQueries();
    });
    const c = await client(port);
    const got = await drain(await c.copyOut("basebackup t l 0/16B5A50 --gzip"));
    expect(got.bytes.equals(data)).toBe(true);
    expect(got.error).toBeInstanceOf(PgWireError);
    expect(got.error).toMatchObject({
      code: "XX000",
      message: "late failure",
      detail: "after the tar",
    });
    // The connection is still usable.
    expect((await c.simpleQuery("select 1"))[0]?.rows).toEqual([["select 1"]]);
  });

  test("an ErrorResponse after CommandComplete is still an error", async () => {
    const { port } = fakeServer(async (c) => {
      await c.trust();
      await c.expect("Query");
      await c.send(
        copyStart,
        { type: "CopyData", data: payload(10) },
        { type: "CopyDone" },
        { type: "CommandComplete", tag: "SELECT 1" },
        { type: "ErrorResponse", fields: { severity: "ERROR", code: "XX000", message: "late" } },
        { type: "ReadyForQuery", status: "I" },
      );
    });
    const c = await client(port);
    const got = await drain(await c.copyOut("basebackup t l --gzip"));
    expect(got.bytes.length).toBe(10);
    expect(got.error).toMatchObject({ code: "XX000", message: "late" });
  });

  test("a socket closed mid-stream errors the stream (08006)", async () => {
    const { port } = fakeServer(async (c) => {
      await c.trust();
      await c.expect("Query");
      await c.send(copyStart, { type: "CopyData", data: payload(1000) });
      c.socket.end();
    });
    const c = await client(port);
    const got = await drain(await c.copyOut("basebackup t l --gzip"));
    expect(got.bytes.length).toBe(1000);
    expect(got.error).toMatchObject({ code: "08006", fromServer: false });
    expect(await c.simpleQuery("select 1").catch((e) => e)).toMatchObject({ code: "08003" });
  });

  test("a socket closed after CopyDone but before ReadyForQuery is an error too", async () => {
    const { port } = fakeServer(async (c) => {
      await c.trust();
      await c.expect("Query");
      await c.send(copyStart, { type: "CopyData", data: payload(5) }, { type: "CopyDone" });
      c.socket.end();
    });
    const c = await client(port);
    const got = await drain(await c.copyOut("basebackup t l --gzip"));
    expect(got.error).toMatchObject({ code: "08006" });
  });

  test("an ErrorResponse followed by a close reports the server's error", async () => {
    const { port } = fakeServer(async (c) => {
      await c.trust();
      await c.expect("Query");
      await c.send(
        copyStart,
        { type: "CopyData", data: payload(5) },
        {
          type: "ErrorResponse",
          fields: { severity: "FATAL", code: "57P01", message: "shutting down" },
        },
      );
      c.socket.end();
    });
    const c = await client(port);
    const got = await drain(await c.copyOut("basebackup t l --gzip"));
    expect(got.error).toMatchObject({ code: "57P01", severity: "FATAL" });
  });

  test("a close before CopyOutResponse rejects copyOut", async () => {
    const { port } = fakeServer(async (c) => {
      await c.trust();
      await c.expect("Query");
      c.socket.end();
    });
    const c = await client(port);
    expect(await c.copyOut("basebackup t l --gzip").catch((e) => e)).toMatchObject({
      code: "08006",
    });
  });

  test("an ErrorResponse before the copy rejects copyOut; the connection stays usable", async () => {
    const { port } = fakeServer(async (c) => {
      await c.trust();
      await c.expect("Query");
      await c.send(
        {
          type: "ErrorResponse",
          fields: { severity: "ERROR", code: "XX000", message: "timeline is archived" },
        },
        { type: "ReadyForQuery", status: "I" },
      );
      await c.serveQueries();
    });
    const c = await client(port);
    const err = await c.copyOut("basebackup t l --gzip").catch((e) => e);
    expect(err).toMatchObject({ code: "XX000", message: "timeline is archived" });
    expect((await c.simpleQuery("again"))[0]?.rows).toEqual([["again"]]);
  });

  test("CopyData frames with 1-byte payloads", async () => {
    const data = payload(5000, 7);
    const { port } = fakeServer(async (c) => {
      await c.trust();
      await c.expect("Query");
      const frames: BackendMessage[] = [copyStart];
      for (const b of data) frames.push({ type: "CopyData", data: Uint8Array.of(b) });
      await c.send(...frames, ...copyEnd);
    });
    const c = await client(port);
    const got = await drain(await c.copyOut("basebackup t l --gzip"));
    expect(got.error).toBeUndefined();
    expect(got.chunks.length).toBe(5000);
    expect(got.bytes.equals(data)).toBe(true);
  });

  test("the whole reply written one byte per write", async () => {
    const data = payload(3000, 3);
    const { port } = fakeServer(async (c) => {
      await c.trust();
      await c.expect("Query");
      const bytes = encodeBackend(
        copyStart,
        { type: "CopyData", data: data.subarray(0, 1000) },
        { type: "CopyData", data: data.subarray(1000) },
        ...copyEnd,
      );
      for (const b of bytes) await c.sendRaw(Uint8Array.of(b));
    });
    const c = await client(port);
    const got = await drain(await c.copyOut("basebackup t l --gzip"));
    expect(got.error).toBeUndefined();
    expect(got.bytes.equals(data)).toBe(true);
  });

  test("a slow reader pauses the socket; the server blocks; nothing is lost", async () => {
    const frame = payload(65536, 9);
    const frames = 512; // 32 MiB, more than loopback socket buffers hold
    const { port, conns } = fakeServer(async (c) => {
      await c.trust();
      await c.expect("Query");
      await c.send(copyStart);
      for (let i = 0; i < frames; i++) await c.send({ type: "CopyData", data: frame });
      await c.send(
        { type: "CopyDone" },
        { type: "ErrorResponse", fields: { severity: "ERROR", code: "XX000", message: "after" } },
        { type: "ReadyForQuery", status: "I" },
      );
    });
    const c = await client(port);
    const stream = await c.copyOut("basebackup t l --gzip");
    await waitFor("the client to pause", () => c.copyStats.paused);
    const server = conns[0];
    await waitFor("the server's writes to block", () => (server?.writer.bufferedBytes ?? 0) > 0);
    // Not synchronisation: a window in which a client that kept reading would take it all.
    for (let i = 0; i < 20; i++) await Bun.sleep(5);
    expect(server?.writer.bufferedBytes).toBeGreaterThan(0);
    expect(c.copyStats.bytes).toBeLessThan((frames * frame.length) / 2);
    expect(c.copyStats.bufferedBytes).toBeLessThan(COPY_HIGH_WATER_BYTES + 4 * 1024 * 1024);
    let total = 0;
    let error: unknown;
    try {
      for await (const chunk of stream) total += chunk.length;
    } catch (e) {
      error = e;
    }
    expect(total).toBe(frames * frame.length);
    expect(error).toMatchObject({ code: "XX000" });
    expect(c.copyStats.pauses).toBeGreaterThanOrEqual(1);
    expect(c.copyStats.maxBufferedBytes).toBeLessThan(COPY_HIGH_WATER_BYTES + 4 * 1024 * 1024);
  });

  test("cancelling the stream closes the connection", async () => {
    const { port, conns } = fakeServer(async (c) => {
      await c.trust();
      await c.expect("Query");
      await c.send(copyStart);
      for (;;) await c.send({ type: "CopyData", data: payload(65536) });
    });
    const c = await client(port);
    const reader = (await c.copyOut("basebackup t l --gzip")).getReader();
    expect((await reader.read()).done).toBe(false);
    await reader.cancel();
    await waitFor("the server to see the close", () => conns[0]?.isClosed === true);
  });

  test("a malformed frame is a protocol violation (08P01)", async () => {
    const { port } = fakeServer(async (c) => {
      await c.trust();
      await c.expect("Query");
      await c.sendRaw(Uint8Array.of(0x54, 0, 0, 0, 2));
    });
    const c = await client(port);
    expect(await c.simpleQuery("x").catch((e) => e)).toMatchObject({ code: "08P01" });
  });

  test("a query that is not a COPY is rejected and the connection stays usable", async () => {
    const { port } = fakeServer(async (c) => {
      await c.trust();
      await c.serveQueries();
    });
    const c = await client(port);
    expect(await c.copyOut("select 1").catch((e) => e)).toMatchObject({ code: "0A000" });
    expect((await c.simpleQuery("ok"))[0]?.rows).toEqual([["ok"]]);
  });

  test("timeoutMs bounds a copy that stalls", async () => {
    const { port } = fakeServer(async (c) => {
      await c.trust();
      await c.expect("Query");
      await c.send(copyStart, { type: "CopyData", data: payload(10) });
      await c.recv().catch(() => {});
    });
    const c = await client(port);
    const got = await drain(await c.copyOut("basebackup t l --gzip", { timeoutMs: 100 }));
    expect(got.error).toBeInstanceOf(TimeoutError);
  });
});
