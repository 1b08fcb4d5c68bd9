// A pageserver stand-in on loopback: the page-service libpq port as compute_ctl uses
// it (docs/upstream-clients.md §5). `basebackup` streams a gzip'd tar of a template
// data directory (no end-of-archive blocks, like the real one); `lease lsn` answers
// a lease; everything else is parsed with the real grammar and error texts. Fault
// knobs cover the failures compute_ctl's retry loop must survive.

import { isHexId } from "../spec/ids.ts";
import { formatLsn, tryParseLsn } from "../spec/lsn.ts";
import { textField } from "../wire/protocol.ts";
import {
  type BackendConnection,
  type BackendServer,
  ConnectionGone,
  delay,
  listenBackend,
  QueryError,
  type QueryProtocol,
  SQLSTATE_INVALID_AUTHORIZATION,
  sendCopyData,
} from "./pg-server.ts";
import { gzip, streamFrom, tarDirectory } from "./tar-writer.ts";

export interface PageserverFaults {
  /** CopyData payload size; default 8192 (the pageserver's BufWriter). */
  chunkSize?: number;
  /** Wait this long before answering each command. */
  delayMs?: number;
  /** ErrorResponse after this many CopyData payload bytes (no CopyDone). */
  errorMidStream?: number;
  /** ErrorResponse after the whole archive, before CopyDone. */
  errorAfterTar?: boolean;
  /** Close the connection after this many CopyData payload bytes. */
  closeMidStream?: number;
  /** Answer basebackup with this error before streaming (e.g. "timeline is archived"). */
  errorBeforeStream?: string;
  /** Refuse the next N connections (counted from when this is set). */
  refuseConnections?: number;
  /** How to refuse: close right after accept (default) or a FATAL after startup. */
  refuseWith?: "close" | "fatal";
  /** Append the end-of-archive blocks a real pageserver leaves out. */
  endOfArchive?: boolean;
  /** Answer `lease lsn` with NULL (the LSN is behind the GC cutoff). */
  refuseLease?: boolean;
}

export interface BasebackupCommand {
  kind: "basebackup" | "fullbackup";
  tenantId: string;
  timelineId: string;
  /** Absent for `latest` or no LSN. */
  lsn?: string;
  /** fullbackup only. */
  prevLsn?: string;
  gzip: boolean;
  replica: boolean;
}

export interface LeaseLsnCommand {
  kind: "lease_lsn";
  /** As sent: the tenant hex, or `<tenant>-<NNCC>` for a shard. */
  tenantShardId: string;
  tenantId: string;
  timelineId: string;
  lsn: string;
}

export type PageserverCommand =
  | BasebackupCommand
  | LeaseLsnCommand
  | { kind: "pagestream"; version: 2 | 3; tenantId: string; timelineId: string }
  | { kind: "set" };

export interface RecordedRequest {
  connectionId: number;
  /** Every startup parameter (`user`, `database`, `application_name`, `options`, ...). */
  startup: Record<string, string>;
  applicationName: string | undefined;
  options: string | undefined;
  /** The cleartext password (JWT) the client sent, when auth is on. */
  password: string | undefined;
  command: string;
  protocol: QueryProtocol;
  /** Undefined when the text did not parse. */
  parsed: PageserverCommand | undefined;
  /** Filled in once the answer is complete. */
  result?: {
    outcome: "ok" | "error" | "closed";
    error?: string;
    /** CopyData payload bytes sent. */
    copyBytes: number;
  };
}

export interface RecordedConnection {
  id: number;
  startup: Record<string, string>;
  password: string | undefined;
  refused: boolean;
}

export interface PageserverOptions {
  /** The data directory to serve (see ensureTemplateCluster). */
  template: { dir: string };
  port?: number;
  host?: string;
  /** Require this cleartext password (compute_ctl sends storage_auth_token as one). */
  auth?: { password: string };
  faults?: PageserverFaults;
  /** Bytes to send as the CopyData payload instead of the template's archive. */
  archiveOverride?: (cmd: BasebackupCommand) => ReadableStream<Uint8Array>;
  /** When set, other ids get the pageserver's "not found" errors. */
  tenantId?: string;
  timelineId?: string;
  /** How long a lease lasts (the pageserver's default lsn_lease_length: 10 min). */
  leaseLengthMs?: number;
  /** Owner written in the tar headers: the pageserver writes 0/0. */
  archiveOwner?: { uid: number; gid: number } | "preserve";
}

export interface PageserverHandle {
  readonly port: number;
  /** `postgres://no_user@127.0.0.1:<port>`, as neon_local writes it. */
  readonly url: string;
  readonly requests: RecordedRequest[];
  readonly connections: RecordedConnection[];
  setFaults(faults: PageserverFaults): void;
  close(): Promise<void>;
}

const DEFAULT_CHUNK = 8192;
const DEFAULT_LEASE_MS = 10 * 60 * 1000;
/** Never shipped: compute_ctl writes them, or they belong to a running server. */
const NOT_SHIPPED = new Set([
  "postgresql.conf",
  "standby.signal",
  "recovery.signal",
  "postmaster.pid",
  "postmaster.opts",
]);

// ---------------------------------------------------------------------------
// Parsing: the grammar and error texts of the page service.

/** Why a string is not a 32-hex-digit id, in the words of Rust's `hex` crate. */
function hexIdProblem(text: string): string {
  if (text.length % 2 !== 0) return "Odd number of digits";
  if (text.length !== 32) return "Invalid string length";
  const at = text.search(/[^0-9A-Fa-f]/);
  return `Invalid character '${text[at] ?? "?"}' at position ${at}`;
}

function parseId(kind: "tenant" | "timeline", text: string): string {
  if (!isHexId(text)) {
    throw new QueryError(`Failed to parse ${kind} id from ${text}`, { cause: hexIdProblem(text) });
  }
  return text.toLowerCase();
}

function parseLsnParam(text: string, label = "lsn"): string {
  const lsn = tryParseLsn(text);
  if (lsn === undefined) {
    throw new QueryError(`Failed to parse ${label} from ${text}`, { cause: "LsnParseError" });
  }
  return formatLsn(lsn);
}

/** `<tenant>` or `<tenant>-<shard number><shard count>` (2 hex digits each). */
function parseTenantShardId(text: string): { tenantShardId: string; tenantId: string } {
  const m = /^([0-9A-Fa-f]{32})(?:-([0-9A-Fa-f]{4}))?$/.exec(text);
  if (!m?.[1]) {
    throw new QueryError(`Failed to parse tenant id from ${text}`, {
      cause: hexIdProblem(text.split("-")[0] ?? text),
    });
  }
  return { tenantShardId: text.toLowerCase(), tenantId: m[1].toLowerCase() };
}

function parseBasebackup(args: string): BasebackupCommand {
  const p = args.split(/\s+/).filter((s) => s !== "");
  if (p.length < 2) {
    throw new QueryError(`invalid number of parameters for basebackup command: ${args}`);
  }
  const tenantId = parseId("tenant", p[0] ?? "");
  const timelineId = parseId("timeline", p[1] ?? "");
  let lsn: string | undefined;
  let flagsFrom = 2;
  const third = p[2];
  if (third === "latest") flagsFrom = 3;
  else if (third !== undefined && !third.startsWith("--")) {
    lsn = parseLsnParam(third);
    flagsFrom = 3;
  }
  let gzipFlag = false;
  let replica = false;
  for (const flag of p.slice(flagsFrom)) {
    if (flag === "--gzip" || flag === "--replica") {
      const seen = flag === "--gzip" ? gzipFlag : replica;
      if (seen) throw new QueryError(`duplicate parameter for basebackup command: ${flag}`);
      if (flag === "--gzip") gzipFlag = true;
      else replica = true;
    } else {
      throw new QueryError(`invalid parameter for basebackup command: ${flag}`);
    }
  }
  return {
    kind: "basebackup",
    tenantId,
    timelineId,
    ...(lsn === undefined ? {} : { lsn }),
    gzip: gzipFlag,
    replica,
  };
}

function parseFullbackup(args: string): BasebackupCommand {
  const p = args.split(/\s+/).filter((s) => s !== "");
  // Upstream reuses the basebackup wording here.
  if (p.length < 2 || p.length > 4) {
    throw new QueryError(`invalid number of parameters for basebackup command: ${args}`);
  }
  const tenantId = parseId("tenant", p[0] ?? "");
  const timelineId = parseId("timeline", p[1] ?? "");
  const lsn = p[2] === undefined ? undefined : parseLsnParam(p[2], "Lsn");
  const prevLsn = p[3] === undefined ? undefined : parseLsnParam(p[3], "Lsn");
  return {
    kind: "fullbackup",
    tenantId,
    timelineId,
    ...(lsn === undefined ? {} : { lsn }),
    ...(prevLsn === undefined ? {} : { prevLsn }),
    gzip: false,
    replica: false,
  };
}

function parseLease(args: string): LeaseLsnCommand {
  const p = args.split(/\s+/).filter((s) => s !== "");
  if (p.length !== 3) {
    throw new QueryError(`invalid number of parameters for lease lsn command: ${args}`);
  }
  const { tenantShardId, tenantId } = parseTenantShardId(p[0] ?? "");
  const timelineId = parseId("timeline", p[1] ?? "");
  const lsn = parseLsnParam(p[2] ?? "");
  return { kind: "lease_lsn", tenantShardId, tenantId, timelineId, lsn };
}

/** Parse one page-service command as the pageserver does; throws QueryError. */
export function parsePageserverCommand(text: string): PageserverCommand {
  const query = text.trim();
  const space = query.indexOf(" ");
  if (space < 0) throw new QueryError(`cannot parse query: ${query}`);
  const cmd = query.slice(0, space);
  const rest = query.slice(space + 1);
  switch (cmd.toLowerCase()) {
    case "basebackup":
      return parseBasebackup(rest);
    case "fullbackup":
      return parseFullbackup(rest);
    case "pagestream_v2":
    case "pagestream_v3": {
      const p = rest.split(/\s+/).filter((s) => s !== "");
      if (p.length !== 2) {
        throw new QueryError(`invalid number of parameters for pagestream command: ${rest}`);
      }
      return {
        kind: "pagestream",
        version: cmd.toLowerCase() === "pagestream_v2" ? 2 : 3,
        tenantId: parseId("tenant", p[0] ?? ""),
        timelineId: parseId("timeline", p[1] ?? ""),
      };
    }
    case "lease": {
      const sp = rest.indexOf(" ");
      if (sp < 0 || rest.slice(0, sp).toLowerCase() !== "lsn") {
        throw new QueryError(`invalid lease command: ${cmd}`);
      }
      return parseLease(rest.slice(sp + 1));
    }
    case "set":
      return { kind: "set" };
    default:
      throw new QueryError(`unsupported command ${cmd} in ${query}`);
  }
}

// ---------------------------------------------------------------------------
// Auth: a JWT's claims, when the password is one (not verified: a stand-in).

interface Claims {
  tenantId: string | null;
  scope: string;
}

function decodeClaims(token: string): Claims | undefined {
  const parts = token.split(".");
  if (parts.length !== 3 || parts[1] === undefined) return undefined;
  try {
    const json: unknown = JSON.parse(Buffer.from(parts[1], "base64url").toString("utf8"));
    if (typeof json !== "object" || json === null) return undefined;
    const o = json as Record<string, unknown>;
    if (typeof o.scope !== "string") return undefined;
    return { scope: o.scope, tenantId: typeof o.tenant_id === "string" ? o.tenant_id : null };
  } catch {
    return undefined;
  }
}

/** The pageserver's per-command permission check (`check_permission`). */
function checkPermission(claims: Claims | undefined, tenantId: string): void {
  if (!claims || claims.scope === "pageserverapi") return;
  if (claims.scope !== "tenant") {
    throw new QueryError(`JWT scope '${claims.scope}' is ineligible for Pageserver auth`, {
      code: SQLSTATE_INVALID_AUTHORIZATION,
    });
  }
  if (claims.tenantId?.toLowerCase() !== tenantId) {
    throw new QueryError("Tenant id mismatch. Permission denied", {
      code: SQLSTATE_INVALID_AUTHORIZATION,
    });
  }
}

// ---------------------------------------------------------------------------
// The server.

/** Serves `chunks` (held in memory) as a stream. */
function replay(chunks: Uint8Array[]): ReadableStream<Uint8Array> {
  return streamFrom(
    (async function* () {
      yield* chunks;
    })(),
  );
}

async function collect(stream: ReadableStream<Uint8Array>): Promise<Uint8Array[]> {
  const out: Uint8Array[] = [];
  for await (const c of stream) out.push(c);
  return out;
}

export function startPageserver(opts: PageserverOptions): PageserverHandle {
  const host = opts.host ?? "127.0.0.1";
  let faults: PageserverFaults = { ...opts.faults };
  let refused = 0;
  const requests: RecordedRequest[] = [];
  const connections: RecordedConnection[] = [];
  const claimsByConn = new Map<number, Claims | undefined>();
  // The template is small and fixed: build each variant once, then replay it.
  const archives = new Map<string, Promise<Uint8Array[]>>();

  const templateArchive = (cmd: BasebackupCommand): Promise<Uint8Array[]> => {
    const withEnd = faults.endOfArchive ?? false;
    const key = `${cmd.gzip}/${withEnd}`;
    let a = archives.get(key);
    if (!a) {
      const owner = opts.archiveOwner ?? { uid: 0, gid: 0 };
      const tar = tarDirectory(opts.template.dir, {
        endOfArchive: withEnd,
        ...(owner === "preserve" ? {} : { owner }),
        exclude: (rel) => NOT_SHIPPED.has(rel),
      });
      a = collect(cmd.gzip ? gzip(tar) : tar);
      a.catch(() => archives.delete(key));
      archives.set(key, a);
    }
    return a;
  };

  const checkTarget = (tenantId: string, timelineId: string): void => {
    if (opts.tenantId !== undefined && opts.tenantId.toLowerCase() !== tenantId) {
      throw new QueryError(`Tenant ${tenantId} not found`);
    }
    if (opts.timelineId !== undefined && opts.timelineId.toLowerCase() !== timelineId) {
      throw new QueryError(`Timeline ${tenantId}/${timelineId} was not found`);
    }
  };

  /** Streams the archive, reporting the CopyData payload bytes taken so far to `progress`. */
  const basebackup = async (
    conn: BackendConnection,
    cmd: BasebackupCommand,
    progress: (bytes: number) => void,
  ): Promise<void> => {
    const f = faults;
    if (f.errorBeforeStream !== undefined) throw new QueryError(f.errorBeforeStream);
    let source: ReadableStream<Uint8Array>;
    try {
      source = opts.archiveOverride
        ? opts.archiveOverride(cmd)
        : replay(await templateArchive(cmd));
    } catch (err) {
      // Answer with an error the client can log, not a dropped connection.
      throw new QueryError("failed to build the basebackup archive", {
        cause: err instanceof Error ? err.message : String(err),
      });
    }
    conn.send({ type: "CopyOutResponse", format: 0, columnFormats: [] });
    const closeAt = f.closeMidStream ?? Number.POSITIVE_INFINITY;
    const errorAt = f.errorMidStream ?? Number.POSITIVE_INFINITY;
    const limit = Math.min(closeAt, errorAt);
    const sent = await sendCopyData(conn, source, {
      chunkSize: f.chunkSize ?? DEFAULT_CHUNK,
      ...(Number.isFinite(limit) ? { limit } : {}),
      onProgress: progress,
    });
    // A limit beyond the archive's end still fires, after the last byte.
    if (Number.isFinite(closeAt) && closeAt <= errorAt) {
      await conn.end();
      throw new ConnectionGone(`closed after ${sent.bytes} bytes (injected fault)`);
    }
    if (Number.isFinite(errorAt)) {
      throw new QueryError("failed to send basebackup tarball", {
        cause: `injected fault after ${sent.bytes} bytes`,
      });
    }
    if (f.errorAfterTar) {
      throw new QueryError("failed to send basebackup tarball", {
        cause: "injected fault after the archive",
      });
    }
    conn.send({ type: "CopyDone" }, { type: "CommandComplete", tag: "SELECT 1" });
  };

  const leaseLsn = (conn: BackendConnection): void => {
    const validUntil = faults.refuseLease
      ? null
      : String(Date.now() + (opts.leaseLengthMs ?? DEFAULT_LEASE_MS));
    conn.send(
      { type: "RowDescription", fields: [textField("valid_until")] },
      { type: "DataRow", values: [validUntil] },
      { type: "CommandComplete", tag: "SELECT 1" },
    );
  };

  const server: BackendServer = listenBackend({
    host,
    port: opts.port ?? 0,
    hooks: {
      onAccept(conn) {
        const limit = faults.refuseConnections ?? 0;
        if (refused >= limit) return "accept";
        refused++;
        connections.push({ id: conn.id, startup: {}, password: undefined, refused: true });
        return faults.refuseWith === "fatal" ? "fatal" : "close";
      },
      onStartupPacket(conn) {
        const known = connections.find((c) => c.id === conn.id);
        if (known) known.startup = conn.startup;
        else
          connections.push({
            id: conn.id,
            startup: conn.startup,
            password: undefined,
            refused: false,
          });
      },
      expectedPassword: () => opts.auth?.password,
      onAuthenticated(conn) {
        const rec = connections.find((c) => c.id === conn.id);
        if (rec) rec.password = conn.password;
        const claims = conn.password === undefined ? undefined : decodeClaims(conn.password);
        if (claims?.scope === "tenant" && claims.tenantId === null) {
          return new QueryError("jwt token scope is Tenant, but tenant id is missing", {
            code: SQLSTATE_INVALID_AUTHORIZATION,
          });
        }
        claimsByConn.set(conn.id, claims);
        return undefined;
      },
      async query(conn, sql, protocol) {
        const rec: RecordedRequest = {
          connectionId: conn.id,
          startup: conn.startup,
          applicationName: conn.startup.application_name,
          options: conn.startup.options,
          password: conn.password,
          command: sql,
          protocol,
          parsed: undefined,
        };
        requests.push(rec);
        let copyBytes = 0;
        try {
          const cmd = parsePageserverCommand(sql);
          rec.parsed = cmd;
          if (faults.delayMs) await delay(faults.delayMs, conn.signal);
          const claims = claimsByConn.get(conn.id);
          switch (cmd.kind) {
            case "set":
              conn.send({ type: "CommandComplete", tag: "SELECT 1" });
              break;
            case "pagestream":
              checkPermission(claims, cmd.tenantId);
              throw new QueryError("pagestream is not served by the pageserver stand-in");
            case "lease_lsn":
              checkPermission(claims, cmd.tenantId);
              checkTarget(cmd.tenantId, cmd.timelineId);
              leaseLsn(conn);
              break;
            default:
              checkPermission(claims, cmd.tenantId);
              checkTarget(cmd.tenantId, cmd.timelineId);
              await basebackup(conn, cmd, (n) => {
                copyBytes = n;
              });
          }
          rec.result = { outcome: "ok", copyBytes };
        } catch (err) {
          rec.result =
            err instanceof QueryError
              ? { outcome: "error", error: err.fullMessage, copyBytes }
              : {
                  outcome: "closed",
                  error: err instanceof Error ? err.message : String(err),
                  copyBytes,
                };
          throw err;
        }
      },
    },
  });

  return {
    port: server.port,
    url: `postgres://no_user@${host}:${server.port}`,
    requests,
    connections,
    setFaults(f) {
      faults = { ...f };
      refused = 0;
    },
    close: () => server.close(),
  };
}
