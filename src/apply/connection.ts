// compute_ctl's own SQL connections (upstream-api.md §3.2): the --connstr
// URL with server options prepended that neutralise per-database and per-role
// settings (read-only defaults, search_path, statement_timeout, pgaudit), and
// an application_name per purpose.

import postgres, { type Sql } from "postgres";
import type { Logger } from "../log.ts";
import type { ConnectionTarget } from "../spec/compute-connstr.ts";

/** Upstream's prepended `options`, in its order. */
export const SERVER_OPTIONS =
  "-c role=cloud_admin -c default_transaction_read_only=off -c search_path='' -c statement_timeout=0 -c pgaudit.log=none";

/**
 * The apply connections also switch off the neon extension's DDL forwarding
 * (upstream runs `SET neon.forward_ddl = false` after connecting; as a startup
 * option it costs no round trip, and a vanilla server keeps it as a placeholder).
 */
export const MAINTENANCE_OPTIONS = `${SERVER_OPTIONS} -c neon.forward_ddl=false`;

export { type ConnectionTarget, connectionTarget } from "../spec/compute-connstr.ts";

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
