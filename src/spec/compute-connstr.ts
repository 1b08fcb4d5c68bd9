// --connstr, the URL of compute_ctl's own postgres (upstream's clap `Url`):
// host or socket directory, port, user, database and the libpq query
// parameters we honour. Pure, so the CLI can refuse a bad one at start and the
// SQL connections (apply/connection.ts) read the same result.
import { ConfigError } from "../errors.ts";

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
