// Pageserver connection strings. Specs carry them in two libpq spellings: the
// URL form (`postgres://no_user@host:6400`, what neon_local and the control
// plane send) and the keyword/value form (`host=127.0.0.1 port=6400`, old
// fixtures and the `neon.pageserver_connstring` GUC). `grpc://` URLs are
// accepted too, with an explicit port.
import { ConfigError } from "../errors.ts";

export interface PageserverConnParams {
  protocol: "libpq" | "grpc";
  host: string;
  port: number;
  user?: string;
  password?: string;
  dbname?: string;
  options?: string;
  /** Every other keyword / query parameter, decoded. */
  extra: Record<string, string>;
}

const LIBPQ_DEFAULT_PORT = 5432;
const URL_FORM = /^(postgres|postgresql|grpc):\/\//i;

function fail(connstr: string, reason: string): never {
  throw new ConfigError(
    `invalid pageserver connection string ${JSON.stringify(connstr)}: ${reason}`,
  );
}

function decode(connstr: string, text: string): string {
  try {
    return decodeURIComponent(text);
  } catch {
    return fail(connstr, `bad percent-encoding in ${JSON.stringify(text)}`);
  }
}

/** libpq keyword/value syntax: `k=v`, `k = 'quoted \' value'`, backslash escapes. */
export function parseKeywordValueConninfo(connstr: string): Map<string, string> {
  const out = new Map<string, string>();
  const isSpace = (ch: string | undefined) => ch !== undefined && /\s/.test(ch);
  let i = 0;
  const n = connstr.length;
  for (;;) {
    while (i < n && isSpace(connstr[i])) i++;
    if (i >= n) return out;
    const keyStart = i;
    while (i < n && connstr[i] !== "=" && !isSpace(connstr[i])) i++;
    const key = connstr.slice(keyStart, i);
    while (i < n && isSpace(connstr[i])) i++;
    if (connstr[i] !== "=") fail(connstr, `missing "=" after "${key}"`);
    i++;
    while (i < n && isSpace(connstr[i])) i++;
    let value = "";
    if (connstr[i] === "'") {
      i++;
      for (;;) {
        const ch = connstr[i];
        if (ch === undefined) fail(connstr, "unterminated quoted string");
        i++;
        if (ch === "'") break;
        if (ch === "\\" && i < n) {
          value += connstr[i];
          i++;
        } else {
          value += ch;
        }
      }
    } else {
      while (i < n && !isSpace(connstr[i])) {
        const ch = connstr[i];
        if (ch === "\\" && i + 1 < n) {
          value += connstr[i + 1];
          i += 2;
        } else {
          value += ch;
          i++;
        }
      }
    }
    out.set(key, value);
  }
}

function parseUrlConninfo(connstr: string): { scheme: string; params: Map<string, string> } {
  let url: URL;
  try {
    url = new URL(connstr);
  } catch {
    return fail(connstr, "not a valid URL");
  }
  const params = new Map<string, string>();
  const host = url.hostname.replace(/^\[(.*)\]$/, "$1");
  if (host !== "") params.set("host", decode(connstr, host));
  if (url.port !== "") params.set("port", url.port);
  if (url.username !== "") params.set("user", decode(connstr, url.username));
  if (url.password !== "") params.set("password", decode(connstr, url.password));
  const dbname = url.pathname.replace(/^\//, "");
  if (dbname !== "") params.set("dbname", decode(connstr, dbname));
  // Not URLSearchParams: libpq does not turn `+` into a space.
  for (const pair of url.search.replace(/^\?/, "").split("&")) {
    if (pair === "") continue;
    const eq = pair.indexOf("=");
    if (eq < 0) fail(connstr, `query parameter ${JSON.stringify(pair)} has no "="`);
    params.set(decode(connstr, pair.slice(0, eq)), decode(connstr, pair.slice(eq + 1)));
  }
  return { scheme: url.protocol.replace(/:$/, "").toLowerCase(), params };
}

/** Host, port and credentials of a pageserver connection string (either form). */
export function parsePageserverConnstr(connstr: string): PageserverConnParams {
  const trimmed = connstr.trim();
  let protocol: "libpq" | "grpc" = "libpq";
  let params: Map<string, string>;
  if (URL_FORM.test(trimmed)) {
    const parsed = parseUrlConninfo(trimmed);
    if (parsed.scheme === "grpc") protocol = "grpc";
    params = parsed.params;
  } else if (/^[a-z][a-z0-9+.-]*:\/\//i.test(trimmed)) {
    return fail(connstr, "unsupported URL scheme");
  } else {
    params = parseKeywordValueConninfo(trimmed);
  }

  const host = params.get("host");
  if (host === undefined || host === "") fail(connstr, "no host");
  const portText = params.get("port");
  let port: number;
  if (portText === undefined || portText === "") {
    if (protocol === "grpc") fail(connstr, "no port");
    port = LIBPQ_DEFAULT_PORT;
  } else {
    port = /^\d+$/.test(portText) ? Number(portText) : Number.NaN;
    if (!(port >= 1 && port <= 65535)) fail(connstr, `invalid port ${JSON.stringify(portText)}`);
  }

  const result: PageserverConnParams = { protocol, host, port, extra: {} };
  for (const [key, value] of params) {
    switch (key) {
      case "host":
      case "port":
        break;
      case "user":
      case "password":
      case "dbname":
      case "options":
        result[key] = value;
        break;
      default:
        result.extra[key] = value;
    }
  }
  return result;
}
