// A safekeeper stand-in for compute_ctl's fast path (docs/upstream-clients.md §5.7):
// it answers `TIMELINE_STATUS` like `safekeeper/src/handler.rs` does, with the
// tenant and timeline taken from the startup `options`. The answer can be changed
// at run time: consistent LSNs (skip sync-safekeepers), no row (timeline missing),
// slow (past compute_ctl's 100 ms budget), an error, or refused connections.

import { isHexId } from "../spec/ids.ts";
import { formatLsn, type Lsn, tryParseLsn } from "../spec/lsn.ts";
import { textField } from "../wire/protocol.ts";
import {
  type BackendConnection,
  type BackendServer,
  delay,
  listenBackend,
  QueryError,
  type QueryProtocol,
  SQLSTATE_INVALID_AUTHORIZATION,
} from "./pg-server.ts";

export type SafekeeperAnswer =
  | { flushLsn: string | Lsn; commitLsn: string | Lsn }
  /** RowDescription and no row: the timeline does not exist here. */
  | "missing"
  /** Close every connection right after accept. */
  | "refuse"
  /** ErrorResponse with this message. */
  | { error: string }
  | { delayMs: number; answer: SafekeeperAnswer };

export interface SafekeeperRequest {
  connectionId: number;
  startup: Record<string, string>;
  /** Verbatim, e.g. `-c timeline_id=<tl> tenant_id=<t>`. */
  options: string | undefined;
  tenantId: string | undefined;
  timelineId: string | undefined;
  password: string | undefined;
  command: string;
  protocol: QueryProtocol;
}

export interface SafekeeperOptions {
  port?: number;
  host?: string;
  answer: SafekeeperAnswer;
  /** Require this cleartext password (compute_ctl sends storage_auth_token). */
  auth?: { password: string };
}

export interface SafekeeperHandle {
  readonly port: number;
  /** `host:port`, the form `safekeeper_connstrings` entries take. */
  readonly connstring: string;
  /** `postgresql://no_user@host:port`, what compute_ctl connects to. */
  readonly url: string;
  readonly requests: SafekeeperRequest[];
  /** Connections accepted, refused ones included. */
  readonly accepted: () => number;
  setAnswer(answer: SafekeeperAnswer): void;
  close(): Promise<void>;
}

/** The safekeeper's display of an LSN: `X/Y` in upper-case hex. */
function lsnText(v: string | Lsn): string {
  const lsn = typeof v === "bigint" ? v : tryParseLsn(v);
  if (lsn === undefined) throw new Error(`safekeeper stand-in: bad LSN ${String(v)}`);
  return formatLsn(lsn);
}

/** tenant_id/timeline_id (and the legacy z-prefixed names) from the `options` words. */
function idsFromOptions(options: string | undefined): {
  tenantId?: string;
  timelineId?: string;
  error?: string;
} {
  const out: { tenantId?: string; timelineId?: string; error?: string } = {};
  for (const word of (options ?? "").split(/\s+/)) {
    const eq = word.indexOf("=");
    if (eq < 0) continue;
    const key = word.slice(0, eq);
    const value = word.slice(eq + 1);
    const isTenant = key === "tenant_id" || key === "ztenantid";
    const isTimeline = key === "timeline_id" || key === "ztimelineid";
    if (!isTenant && !isTimeline) continue;
    if (!isHexId(value)) {
      out.error ??= `Failed to parse ${value} as ${isTenant ? "tenant" : "timeline"} id`;
      continue;
    }
    if (isTenant) out.tenantId = value.toLowerCase();
    else out.timelineId = value.toLowerCase();
  }
  return out;
}

const KNOWN_COMMANDS = ["START_WAL_PUSH", "START_REPLICATION", "IDENTIFY_SYSTEM"];

function tenantClaim(password: string | undefined): { scope: string; tenantId?: string } | null {
  const payload = password?.split(".")[1];
  if (password?.split(".").length !== 3 || payload === undefined) return null;
  try {
    const o = JSON.parse(Buffer.from(payload, "base64url").toString("utf8")) as Record<
      string,
      unknown
    >;
    if (typeof o.scope !== "string") return null;
    return {
      scope: o.scope,
      ...(typeof o.tenant_id === "string" ? { tenantId: o.tenant_id.toLowerCase() } : {}),
    };
  } catch {
    return null;
  }
}

export function startSafekeeper(opts: SafekeeperOptions): SafekeeperHandle {
  const host = opts.host ?? "127.0.0.1";
  let answer = opts.answer;
  let accepted = 0;
  const requests: SafekeeperRequest[] = [];

  const respond = async (send: BackendConnection, a: SafekeeperAnswer): Promise<void> => {
    if (a === "refuse") {
      // Set while this connection was already open: drop it.
      send.destroy();
      return;
    }
    if (a === "missing") {
      send.send(
        { type: "RowDescription", fields: [textField("flush_lsn"), textField("commit_lsn")] },
        { type: "CommandComplete", tag: "TIMELINE_STATUS" },
      );
      return;
    }
    if ("delayMs" in a) {
      await delay(a.delayMs, send.signal);
      return respond(send, a.answer);
    }
    if ("error" in a) throw new QueryError(a.error);
    send.send(
      { type: "RowDescription", fields: [textField("flush_lsn"), textField("commit_lsn")] },
      { type: "DataRow", values: [lsnText(a.flushLsn), lsnText(a.commitLsn)] },
      { type: "CommandComplete", tag: "TIMELINE_STATUS" },
    );
  };

  const server: BackendServer = listenBackend({
    host,
    port: opts.port ?? 0,
    hooks: {
      onAccept() {
        accepted++;
        return answer === "refuse" ? "close" : "accept";
      },
      onStartup(conn) {
        const ids = idsFromOptions(conn.startup.options);
        return ids.error === undefined ? undefined : new QueryError(ids.error);
      },
      expectedPassword: () => opts.auth?.password,
      async query(conn, sql, protocol) {
        const ids = idsFromOptions(conn.startup.options);
        requests.push({
          connectionId: conn.id,
          startup: conn.startup,
          options: conn.startup.options,
          tenantId: ids.tenantId,
          timelineId: ids.timelineId,
          password: conn.password,
          command: sql,
          protocol,
        });
        // psycopg2 sends this on connect; the safekeeper plays along.
        if (sql.toLowerCase().startsWith("set datestyle to ")) {
          conn.send({ type: "CommandComplete", tag: "SELECT 1" });
          return;
        }
        const known = sql.startsWith("TIMELINE_STATUS");
        if (!known && !KNOWN_COMMANDS.some((c) => sql.startsWith(c))) {
          throw new QueryError(`unsupported command ${sql}`);
        }
        if (ids.tenantId === undefined) throw new QueryError("tenantid is required");
        if (ids.timelineId === undefined) throw new QueryError("timelineid is required");
        const claim = opts.auth ? tenantClaim(conn.password) : null;
        if (claim && claim.scope === "tenant" && claim.tenantId !== ids.tenantId) {
          throw new QueryError("Tenant id mismatch. Permission denied", {
            code: SQLSTATE_INVALID_AUTHORIZATION,
          });
        }
        if (!known) {
          throw new QueryError(`${sql.split(" ")[0]} is not served by the safekeeper stand-in`);
        }
        await respond(conn, answer);
      },
    },
  });

  return {
    port: server.port,
    connstring: `${host}:${server.port}`,
    url: `postgresql://no_user@${host}:${server.port}`,
    requests,
    accepted: () => accepted,
    setAnswer(a) {
      answer = a;
    },
    close: () => server.close(),
  };
}
