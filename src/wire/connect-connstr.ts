// Connecting by a pageserver connection string (URL or keyword/value form), as
// both the basebackup and the LSN lease do: the string's user, database,
// password and startup options, with the caller's overrides on top.
import { parsePageserverConnstr } from "../spec/connstr.ts";
import { connect, type PgClient } from "./client.ts";

export interface ConnstrConnectOptions {
  /** Replaces the string's password (the storage token is the pageserver's JWT). */
  password?: string | null | undefined;
  /** Startup parameters over the string's own `options` / `application_name`. */
  params?: Record<string, string>;
  signal?: AbortSignal;
  connectTimeoutMs?: number;
}

export function connectConnstr(
  connstr: string,
  opts: ConnstrConnectOptions = {},
): Promise<PgClient> {
  const conn = parsePageserverConnstr(connstr);
  const user = conn.user ?? "no_user";
  const params: Record<string, string> = {};
  if (conn.options !== undefined) params.options = conn.options;
  const appName = conn.extra.application_name;
  if (appName !== undefined) params.application_name = appName;
  Object.assign(params, opts.params);
  const password = opts.password ?? conn.password;
  return connect({
    host: conn.host,
    port: conn.port,
    user,
    database: conn.dbname ?? user,
    ...(password === undefined ? {} : { password }),
    params,
    signal: opts.signal,
    connectTimeoutMs: opts.connectTimeoutMs,
  });
}
