// The server half of the page-service/safekeeper libpq protocol, shared by the
// pageserver and safekeeper stand-ins. It follows Neon's `postgres_backend` rather
// than PostgreSQL: SSL/GSS requests get 'N'; trust or a cleartext password (a JWT);
// simple Query answered then ReadyForQuery; the extended protocol is stateless
// (Parse remembers the text, Describe says "no params, no data", Execute runs the
// text, only Sync sends ReadyForQuery, nothing is skipped after an error).

import type { Socket, TCPSocketListener } from "bun";
import {
  type BackendMessage,
  decodeFrontend,
  encodeBackend,
  FrameSplitter,
  type FrontendMessage,
} from "../wire/protocol.ts";
import { SocketWriter } from "../wire/socket-writer.ts";

/** SQLSTATE postgres_backend gives any handler failure. */
export const SQLSTATE_INTERNAL_ERROR = "XX000";
export const SQLSTATE_INVALID_AUTHORIZATION = "28000";

/**
 * A failure answered with an ErrorResponse. Like an anyhow error with context:
 * the simple protocol sends `message: cause` (`{:#}`), Execute only `message`.
 */
export class QueryError extends Error {
  override readonly name = "QueryError";
  readonly code: string;
  readonly causeText: string | undefined;

  constructor(message: string, opts: { cause?: string; code?: string } = {}) {
    super(message);
    this.causeText = opts.cause;
    this.code = opts.code ?? SQLSTATE_INTERNAL_ERROR;
  }

  get fullMessage(): string {
    return this.causeText === undefined ? this.message : `${this.message}: ${this.causeText}`;
  }
}

/** The connection went away (or a fault closed it) while a command ran. */
export class ConnectionGone extends Error {
  override readonly name = "ConnectionGone";
}

export type QueryProtocol = "simple" | "extended";

/** What a handler may do when a connection arrives. */
export type AcceptDecision = "accept" | "close" | "fatal";

export interface BackendHooks {
  onAccept?(conn: BackendConnection): AcceptDecision;
  /** Every StartupMessage, refused or not (for recording). */
  onStartupPacket?(conn: BackendConnection): void;
  /** Startup params arrived; a QueryError refuses the connection. */
  onStartup?(conn: BackendConnection): QueryError | undefined;
  /** When this returns a string, a cleartext password is required and must equal it. */
  expectedPassword?(): string | undefined;
  /** Extra check of a correct password (e.g. JWT claims). */
  onAuthenticated?(conn: BackendConnection): QueryError | undefined;
  /** Run one command; throw QueryError to answer with an ErrorResponse. */
  query(conn: BackendConnection, sql: string, protocol: QueryProtocol): Promise<void>;
}

type Phase = "startup" | "password" | "ready" | "closed";

const CLIENT_ENCODING: BackendMessage = {
  type: "ParameterStatus",
  name: "client_encoding",
  value: "UTF8",
};

export class BackendConnection {
  readonly id: number;
  startup: Record<string, string> = {};
  password: string | undefined;
  private readonly writer: SocketWriter;
  private readonly splitter = new FrameSplitter({ startup: true });
  private readonly inbox: FrontendMessage[] = [];
  private wake: (() => void) | null = null;
  private readonly abort = new AbortController();
  private phase: Phase = "startup";
  private unnamedQuery = "";
  /** Set by onAccept "fatal": answer the startup packet with a FATAL and close. */
  refuseWithFatal = false;

  constructor(
    id: number,
    private readonly socket: Socket<BackendConnection | undefined>,
    private readonly hooks: BackendHooks,
  ) {
    this.id = id;
    this.writer = new SocketWriter(socket);
  }

  /** Aborted when the connection closes. */
  get signal(): AbortSignal {
    return this.abort.signal;
  }

  get closed(): boolean {
    return this.phase === "closed";
  }

  /** Queue messages; they go out in order, after anything queued before. */
  send(...msgs: BackendMessage[]): void {
    if (this.closed) return;
    this.writer.write(encodeBackend(...msgs));
  }

  /** Write and wait until the kernel took it all: this is the backpressure point. */
  async writeAll(bytes: Uint8Array): Promise<void> {
    if (this.closed) throw new ConnectionGone("connection closed");
    try {
      if (!this.writer.write(bytes)) await this.writer.flushed();
    } catch (err) {
      throw new ConnectionGone("connection closed", { cause: err });
    }
  }

  /** Flush what is queued, then close our side (the client sees EOF). */
  async end(): Promise<void> {
    if (this.closed) return;
    try {
      await this.writer.flushed();
    } catch {
      // Already gone.
    }
    this.socket.end();
    this.onClose();
  }

  /** Drop the connection now. */
  destroy(): void {
    if (this.closed) return;
    this.socket.terminate();
    this.onClose();
  }

  onData(chunk: Uint8Array): void {
    if (this.closed) return;
    try {
      this.splitter.push(chunk);
      for (let f = this.splitter.next(); f !== undefined; f = this.splitter.next()) {
        this.inbox.push(decodeFrontend(f));
      }
    } catch {
      // A framing error: like postgres_backend, just drop the connection.
      this.destroy();
    }
    this.wakeUp();
  }

  onDrain(): void {
    this.writer.drain();
  }

  onClose(): void {
    if (this.phase === "closed") return;
    this.phase = "closed";
    this.writer.fail(new ConnectionGone("connection closed"));
    this.abort.abort(new ConnectionGone("connection closed"));
    this.wakeUp();
  }

  private wakeUp(): void {
    const w = this.wake;
    this.wake = null;
    w?.();
  }

  private async next(): Promise<FrontendMessage | undefined> {
    for (;;) {
      if (this.closed) return undefined;
      const m = this.inbox.shift();
      if (m) return m;
      await new Promise<void>((resolve) => {
        this.wake = resolve;
      });
    }
  }

  /** Serve messages one at a time until the connection closes. */
  async run(): Promise<void> {
    try {
      for (let m = await this.next(); m !== undefined; m = await this.next()) {
        await this.handle(m);
      }
    } catch (err) {
      if (!(err instanceof ConnectionGone)) this.destroy();
    } finally {
      this.destroy();
    }
  }

  private async fail(err: QueryError, severity = "ERROR"): Promise<void> {
    this.send({
      type: "ErrorResponse",
      fields: { severity, code: err.code, message: err.message },
    });
    await this.end();
  }

  private async handle(m: FrontendMessage): Promise<void> {
    switch (this.phase) {
      case "startup":
        return this.handleStartup(m);
      case "password":
        return this.handlePassword(m);
      case "ready":
        return this.handleReady(m);
      case "closed":
        return;
    }
  }

  private async handleStartup(m: FrontendMessage): Promise<void> {
    switch (m.type) {
      case "SSLRequest":
      case "GSSENCRequest":
        // No TLS configured: a single 'N', then the client may send a StartupMessage.
        await this.writeAll(new Uint8Array([0x4e]));
        return;
      case "StartupMessage": {
        this.startup = m.params;
        this.hooks.onStartupPacket?.(this);
        if (this.refuseWithFatal) {
          return this.fail(
            new QueryError("the stand-in refuses this connection (injected fault)", {
              code: "57P03",
            }),
            "FATAL",
          );
        }
        const err = this.hooks.onStartup?.(this);
        if (err) return this.fail(err);
        if (this.hooks.expectedPassword?.() !== undefined) {
          this.phase = "password";
          this.send({ type: "AuthenticationCleartextPassword" });
          return;
        }
        this.phase = "ready";
        this.send(
          { type: "AuthenticationOk" },
          CLIENT_ENCODING,
          { type: "ParameterStatus", name: "integer_datetimes", value: "on" },
          // Some drivers insist on a server_version; postgres_backend claims 14.1.
          { type: "ParameterStatus", name: "server_version", value: "14.1" },
          { type: "ReadyForQuery", status: "I" },
        );
        return;
      }
      default:
        // CancelRequest, or a typed message before startup: close without a word.
        this.destroy();
    }
  }

  private async handlePassword(m: FrontendMessage): Promise<void> {
    if (m.type !== "PasswordMessage") {
      this.destroy();
      return;
    }
    this.password = m.password;
    const expected = this.hooks.expectedPassword?.();
    if (expected !== undefined && m.password !== expected) {
      return this.fail(
        new QueryError("password authentication failed: the token was not accepted", {
          code: SQLSTATE_INVALID_AUTHORIZATION,
        }),
      );
    }
    const err = this.hooks.onAuthenticated?.(this);
    if (err) return this.fail(err);
    this.phase = "ready";
    this.send({ type: "AuthenticationOk" }, CLIENT_ENCODING, {
      type: "ReadyForQuery",
      status: "I",
    });
  }

  private async runQuery(sql: string, protocol: QueryProtocol): Promise<void> {
    try {
      await this.hooks.query(this, sql, protocol);
    } catch (err) {
      if (!(err instanceof QueryError)) throw err;
      const message = protocol === "simple" ? err.fullMessage : err.message;
      this.send({
        type: "ErrorResponse",
        fields: { severity: "ERROR", code: err.code, message },
      });
    }
  }

  private async handleReady(m: FrontendMessage): Promise<void> {
    switch (m.type) {
      case "Query":
        await this.runQuery(m.sql, "simple");
        this.send({ type: "ReadyForQuery", status: "I" });
        return;
      case "Parse":
        // Remembered whatever the statement name: there is only "the" query.
        this.unnamedQuery = m.sql;
        this.send({ type: "ParseComplete" });
        return;
      case "Describe":
        this.send({ type: "ParameterDescription", typeOids: [] }, { type: "NoData" });
        return;
      case "Bind":
        this.send({ type: "BindComplete" });
        return;
      case "Close":
        this.send({ type: "CloseComplete" });
        return;
      case "Execute":
        // No ReadyForQuery here: the client's Sync asks for it.
        return this.runQuery(this.unnamedQuery, "extended");
      case "Sync":
        this.send({ type: "ReadyForQuery", status: "I" });
        return;
      case "Flush":
        return;
      case "Terminate":
        return this.end();
      default:
        // COPY messages, a second password, unknown tags: a protocol violation.
        this.destroy();
    }
  }
}

export interface BackendServer {
  readonly port: number;
  readonly host: string;
  close(): Promise<void>;
}

/** Listen on host:port (0 = any free port) and serve each connection with `hooks`. */
export function listenBackend(opts: {
  host: string;
  port: number;
  hooks: BackendHooks;
}): BackendServer {
  let nextId = 1;
  const live = new Set<BackendConnection>();
  const loops = new Set<Promise<void>>();
  const listener: TCPSocketListener<BackendConnection | undefined> = Bun.listen<
    BackendConnection | undefined
  >({
    hostname: opts.host,
    port: opts.port,
    socket: {
      open(socket) {
        const conn = new BackendConnection(nextId++, socket, opts.hooks);
        const decision = opts.hooks.onAccept?.(conn) ?? "accept";
        if (decision === "close") {
          socket.end();
          return;
        }
        conn.refuseWithFatal = decision === "fatal";
        socket.data = conn;
        live.add(conn);
        const loop = conn.run().finally(() => {
          live.delete(conn);
          loops.delete(loop);
        });
        loops.add(loop);
      },
      data(socket, chunk) {
        socket.data?.onData(chunk);
      },
      drain(socket) {
        socket.data?.onDrain();
      },
      close(socket) {
        socket.data?.onClose();
      },
      end(socket) {
        // The client half-closed: it will send nothing more, so we are done too.
        socket.data?.onClose();
        socket.end();
      },
      error(socket) {
        socket.data?.destroy();
      },
    },
  });
  let closing: Promise<void> | undefined;
  return {
    port: listener.port,
    host: opts.host,
    close() {
      closing ??= (async () => {
        listener.stop(true);
        for (const c of live) c.destroy();
        await Promise.allSettled([...loops]);
      })();
      return closing;
    },
  };
}

/** Sleep that ends early (rejecting with ConnectionGone) when `signal` aborts. */
export function delay(ms: number, signal: AbortSignal): Promise<void> {
  if (signal.aborted) return Promise.reject(new ConnectionGone("connection closed"));
  return new Promise((resolve, reject) => {
    const onAbort = () => {
      clearTimeout(timer);
      reject(new ConnectionGone("connection closed"));
    };
    const timer = setTimeout(() => {
      signal.removeEventListener("abort", onAbort);
      resolve();
    }, ms);
    signal.addEventListener("abort", onAbort, { once: true });
  });
}

const BATCH_BYTES = 64 * 1024;

/**
 * Frames a byte stream as CopyData messages of exactly `chunkSize` payload bytes
 * (the last may be shorter) and writes them in batches, waiting for the socket to
 * drain before pulling more: a slow client stops the producer. Stops pulling after
 * `limit` payload bytes when given. The source is cancelled on early exit.
 */
export async function sendCopyData(
  conn: BackendConnection,
  source: ReadableStream<Uint8Array>,
  opts: { chunkSize: number; limit?: number; onProgress?: (bytes: number) => void },
): Promise<{ bytes: number; reachedLimit: boolean }> {
  const chunkSize = Math.max(1, Math.floor(opts.chunkSize));
  const limit = opts.limit ?? Number.POSITIVE_INFINITY;
  let batch = new Uint8Array(BATCH_BYTES);
  let pos = 0;
  const partial = new Uint8Array(Math.min(chunkSize, 1 << 24));
  let fill = 0;
  let bytes = 0;

  const flushBatch = async (): Promise<void> => {
    if (pos === 0) return;
    const out = batch.subarray(0, pos);
    // A new buffer: the writer may keep a reference to the old one until drain.
    batch = new Uint8Array(BATCH_BYTES);
    pos = 0;
    await conn.writeAll(out);
  };

  const frame = async (src: Uint8Array, at: number, len: number): Promise<void> => {
    if (5 + len > BATCH_BYTES) {
      await flushBatch();
      const head = new Uint8Array(5);
      head[0] = 0x64;
      new DataView(head.buffer).setInt32(1, len + 4);
      await conn.writeAll(head);
      await conn.writeAll(src.slice(at, at + len));
      return;
    }
    if (pos + 5 + len > BATCH_BYTES) await flushBatch();
    batch[pos] = 0x64; // 'd'
    const n = len + 4;
    batch[pos + 1] = n >>> 24;
    batch[pos + 2] = (n >>> 16) & 0xff;
    batch[pos + 3] = (n >>> 8) & 0xff;
    batch[pos + 4] = n & 0xff;
    pos += 5;
    if (len <= 32) for (let i = 0; i < len; i++) batch[pos + i] = src[at + i] ?? 0;
    else batch.set(src.subarray(at, at + len), pos);
    pos += len;
  };

  const reader = source.getReader();
  let finished = false;
  try {
    while (bytes < limit) {
      const r = await reader.read();
      if (r.done) {
        finished = true;
        break;
      }
      const p = r.value;
      const take = Math.min(p.length, limit - bytes);
      let off = 0;
      while (off < take) {
        if (fill === 0 && take - off >= chunkSize && chunkSize <= BATCH_BYTES) {
          await frame(p, off, chunkSize);
          off += chunkSize;
          continue;
        }
        const n = Math.min(chunkSize - fill, take - off, partial.length - fill);
        partial.set(p.subarray(off, off + n), fill);
        fill += n;
        off += n;
        if (fill === chunkSize || fill === partial.length) {
          await frame(partial, 0, fill);
          fill = 0;
        }
      }
      bytes += take;
      opts.onProgress?.(bytes);
    }
    if (fill > 0) await frame(partial, 0, fill);
    fill = 0;
    await flushBatch();
    return { bytes, reachedLimit: bytes >= limit };
  } finally {
    if (!finished) await reader.cancel().catch(() => {});
    reader.releaseLock();
  }
}
