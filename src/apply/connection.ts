// compute_ctl's own SQL connections (upstream-api.md §3.2): the --connstr
// URL with server options prepended that neutralise per-database and per-role
// settings (read-only defaults, search_path, statement_timeout, pgaudit), and
// an application_name per purpose.

import postgres, { type Sql } from "postgres";
import { ConfigError } from "../errors.ts";
import type { Logger } from "../log.ts";

/** Upstream's prepended `options`, in its order. */
export const SERVER_OPTIONS =
  "-c role=cloud_admin -c default_transaction_read_only=off -c search_path='' -c statement_timeout=0 -c pgaudit.log=none";

/**
 * The apply connections also switch off the neon extension's DDL forwarding
 * (upstream runs `SET neon.forward_ddl = false` after connecting; as a startup
 * option it costs no round trip, and a vanilla server keeps it as a placeholder).
 */
export const MAINTENANCE_OPTIONS = `${SERVER_OPTIONS} -c neon.forward_ddl=false`;

export interface ConnectionTarget {
  host: string;
  port: number;
  user: string;
  password: string | undefined;
  /** The URL's database: the system database of the apply. */
  database: string;
  /** `options` from the URL's query string, kept after ours. */
  urlOptions: string;
}

function decode(part: string, what: string, secret = false): string {
  try {
    return decodeURIComponent(part);
  } catch {
    const shown = secret ? "" : ` ${JSON.stringify(part)}`;
    throw new ConfigError(`--connstr: bad percent-encoding in the ${what}${shown}`);
  }
}

/**
 * Query parameters of --connstr we act on. `application_name` is replaced per
 * connection purpose, as upstream; `sslmode` is accepted because compute_ctl
 * only ever talks to its own postgres, over loopback or a socket, without TLS.
 */
const URL_PARAMS = new Set([
  "host",
  "port",
  "user",
  "dbname",
  "options",
  "application_name",
  "sslmode",
]);

/** Reads --connstr (a postgres:// URL, as upstream's clap type requires). */
export function connectionTarget(connstr: URL): ConnectionTarget {
  if (!/^postgres(ql)?:$/.test(connstr.protocol)) {
    throw new ConfigError(`--connstr must be a postgres:// URL, got ${connstr.protocol}//`);
  }
  const q = connstr.searchParams;
  for (const key of q.keys()) {
    if (!URL_PARAMS.has(key)) {
      throw new ConfigError(`--connstr: query parameter "${key}" is not supported`);
    }
  }
  const sslmode = q.get("sslmode");
  if (sslmode !== null && sslmode !== "disable" && sslmode !== "prefer" && sslmode !== "allow") {
    throw new ConfigError(
      `--connstr: sslmode=${sslmode} is not supported (compute_ctl does not use TLS to its postgres)`,
    );
  }
  const user = q.get("user") ?? (decode(connstr.username, "user name") || "cloud_admin");
  const path = q.get("dbname") ?? decode(connstr.pathname.replace(/^\//, ""), "database name");
  // A socket directory comes as `?host=/dir` or percent-encoded in the authority.
  const host = q.get("host") ?? decode(connstr.hostname.replace(/^\[(.*)\]$/, "$1"), "host");
  const portText = q.get("port") ?? connstr.port;
  const port = portText === "" ? 5432 : Number(portText);
  if (!Number.isInteger(port) || port < 1 || port > 65535) {
    throw new ConfigError(`--connstr: invalid port ${JSON.stringify(portText)}`);
  }
  return {
    host: host || "localhost",
    port,
    user,
    password: connstr.password === "" ? undefined : decode(connstr.password, "password", true),
    database: path || user,
    urlOptions: q.get("options") ?? "",
  };
}

export interface OpenOptions {
  database?: string;
  applicationName: string;
  /** Default SERVER_OPTIONS. */
  options?: string;
  log: Logger;
  connectTimeoutSeconds?: number;
}

/** One connection (`max: 1`): statements issued together are pipelined on it, in order. */
export function openConnection(target: ConnectionTarget, o: OpenOptions): Sql {
  const options = [o.options ?? SERVER_OPTIONS, target.urlOptions]
    .filter((s) => s !== "")
    .join(" ");
  return postgres({
    host: target.host,
    port: target.port,
    user: target.user,
    ...(target.password !== undefined ? { password: target.password } : {}),
    database: o.database ?? target.database,
    max: 1,
    // No type lookup query after connecting; we read text and booleans only.
    fetch_types: false,
    prepare: false,
    connect_timeout: o.connectTimeoutSeconds ?? 30,
    max_lifetime: null,
    onnotice: (n) => o.log.debug(`postgres notice: ${n.message}`),
    connection: { application_name: o.applicationName, options },
  });
}
