// Command line of compute_ctl. The flag table is upstream's (same long/short names,
// value names, defaults and env), written as a citty definition. citty's own parser
// is permissive (unknown flags pass, `--no-x` is special, a missing value becomes
// ""), so tokens are scanned here, strictly and in clap's way, from the same table.
import type { BooleanArgDef, EnumArgDef, StringArgDef } from "citty";
import { defineCommand } from "citty";
import { ComputeCtlError, errorMessage, UsageError } from "./errors.ts";
import { connectionTarget } from "./spec/compute-connstr.ts";

const PROGRAM = "compute_ctl";
const DESCRIPTION = "Postgres compute supervisor (compute_ctl drop-in)";

/** How a flag's raw value is checked and converted. */
type Kind = "string" | "port" | "seconds" | "bool" | "switch";

type FlagDef = (StringArgDef | BooleanArgDef | EnumArgDef) & {
  kind: Kind;
  /** Environment variable read when the flag is absent (clap's `env`). */
  env?: string;
};

// Keys are the long names. `valueHint` is clap's value name (`<DATADIR>`); when it is
// absent the name is derived from the key, as clap derives it from the field name.
const FLAGS = {
  pgbin: {
    type: "string",
    kind: "string",
    alias: "b",
    env: "POSTGRES_PATH",
    default: "postgres",
    description: "Path of the postgres binary; pg_ctl, initdb, pg_config are found beside it",
  },
  "remote-ext-base-url": {
    type: "string",
    kind: "string",
    alias: "r",
    description: "Base URL of the remote extension storage",
  },
  "external-http-port": {
    type: "string",
    kind: "port",
    default: "3080",
    description: "Port of the external HTTP server (control plane, metrics)",
  },
  "internal-http-port": {
    type: "string",
    kind: "port",
    default: "3081",
    description: "Port of the internal HTTP server (neon extension, local_proxy)",
  },
  "http-port": {
    type: "string",
    kind: "port",
    description: "Hadron: external port; internal is this + 1 (only with --lakebase-mode true)",
  },
  pgdata: {
    type: "string",
    kind: "string",
    alias: "D",
    valueHint: "DATADIR",
    required: true,
    description: "Postgres data directory (wiped on start)",
  },
  connstr: {
    type: "string",
    kind: "string",
    alias: "C",
    valueHint: "DATABASE_URL",
    required: true,
    description: "URL of the local Postgres, e.g. postgresql://cloud_admin@127.0.0.1/postgres",
  },
  "privileged-role-name": {
    type: "string",
    kind: "string",
    default: "neon_superuser",
    description: "Name of the privileged role (lowercase letters and underscores)",
  },
  cgroup: {
    type: "string",
    kind: "string",
    default: "neon-postgres",
    description: "cgroup handed to the vm-monitor",
  },
  "filecache-connstr": {
    type: "string",
    kind: "string",
    default:
      "host=localhost port=5432 dbname=postgres user=cloud_admin sslmode=disable application_name=vm-monitor",
    description: "Connection string the vm-monitor uses for the file cache",
  },
  "vm-monitor-addr": {
    type: "string",
    kind: "string",
    default: "0.0.0.0:10301",
    description: "Listen address of the vm-monitor",
  },
  "resize-swap-on-bind": {
    type: "boolean",
    kind: "switch",
    default: false,
    description: "Resize swap when the spec sets swap_size_bytes",
  },
  "set-disk-quota-for-fs": {
    type: "string",
    kind: "string",
    description: "Mountpoint whose quota is set when the spec sets disk_quota_bytes",
  },
  config: {
    type: "string",
    kind: "string",
    alias: "c",
    description: "JSON file with a ComputeConfig ({spec, compute_ctl_config})",
  },
  "compute-id": {
    type: "string",
    kind: "string",
    alias: "i",
    required: true,
    description: "Compute identifier",
  },
  "control-plane-uri": {
    type: "string",
    kind: "string",
    alias: "p",
    valueHint: "CONTROL_PLANE_API_BASE_URL",
    description: "Base URL of the control plane to fetch the config from",
  },
  "installed-extensions-collection-interval": {
    type: "string",
    kind: "seconds",
    default: "3600",
    description: "Initial interval of the installed-extensions collection, in seconds",
  },
  dev: {
    type: "boolean",
    kind: "switch",
    default: false,
    description: "Development mode: leave pgbouncer and local_proxy alone on exit signals",
  },
  "pg-init-timeout": {
    type: "string",
    kind: "seconds",
    description: "Lakebase: seconds to wait for Postgres to start (effective default 60)",
  },
  // Ours: the internal server has no authorization, so by default it answers on
  // loopback only (upstream binds [::]); `--internal-http-host ::` restores that.
  "internal-http-host": {
    type: "string",
    kind: "string",
    default: "localhost",
    valueHint: "ADDR",
    description:
      "Ours: address of the internal HTTP server; 'localhost' = 127.0.0.1 and ::1, '::' = every interface (upstream)",
  },
  // Ours, not upstream's: when compute_ctl runs as root, postgres and the tools
  // next to it run as this user (postgres refuses to run as root).
  "pg-user": {
    type: "string",
    kind: "string",
    default: "postgres",
    valueHint: "USER",
    description: "Ours: user that runs postgres when compute_ctl runs as root (ignored otherwise)",
  },
  "lakebase-mode": {
    type: "enum",
    kind: "bool",
    options: ["true", "false"],
    default: "false",
    description: "Databricks/Hadron behaviour; takes a value: true or false",
  },
} satisfies Record<string, FlagDef>;

type FlagName = keyof typeof FLAGS;

/** The flag table as a citty command, for tooling and for subcommands built with citty. */
export const computeCtlCommand = defineCommand({
  meta: { name: PROGRAM, description: DESCRIPTION },
  args: FLAGS,
});

// Pairs clap rejects when both are given on the command line (defaults don't count).
const CONFLICTS: ReadonlyArray<readonly [FlagName, FlagName]> = [
  ["config", "control-plane-uri"],
  ["http-port", "external-http-port"],
  ["http-port", "internal-http-port"],
];

export interface CliOptions {
  pgbin: string;
  /** Rust `Path::parent` of pgbin: "" for a bare name (tools then come from PATH). */
  pgBinDir: string;
  /** Normalised: exactly one trailing `/`. */
  remoteExtBaseUrl?: string;
  /** Resolved ports (after `--http-port` in lakebase mode). */
  externalHttpPort: number;
  internalHttpPort: number;
  /** As given; only used when `lakebaseMode` is true. */
  httpPort?: number;
  pgdata: string;
  connstr: URL;
  /** `--connstr` exactly as given (URL serialisation may differ). */
  connstrRaw: string;
  privilegedRoleName: string;
  cgroup: string;
  filecacheConnstr: string;
  vmMonitorAddr: string;
  resizeSwapOnBind: boolean;
  setDiskQuotaForFs?: string;
  config?: string;
  computeId: string;
  controlPlaneUri?: string;
  /** Seconds. */
  installedExtensionsCollectionInterval: number;
  dev: boolean;
  /** Seconds. */
  pgInitTimeout?: number;
  lakebaseMode: boolean;
  /** Ours: the user postgres runs as when we are root. */
  pgUser: string;
  /** Ours: where the internal server listens ("localhost" means 127.0.0.1 and ::1). */
  internalHttpHost: string;
}

export type CliResult =
  | { kind: "run"; options: CliOptions }
  | { kind: "help"; text: string }
  | { kind: "version" }
  | { kind: "dev"; options: DevOptions };

/** `compute_ctl dev`: the whole pipeline on this machine, against loopback stand-ins. */
export interface DevOptions {
  /** Directory of the PostgreSQL binaries, or the postgres binary; found when absent. */
  pgbin?: string;
  /** Work directory: PGDATA, template cache, config; must be traversable by the postgres user. */
  dataDir: string;
  pgPort: number;
  externalHttpPort: number;
  internalHttpPort: number;
  /** A ComputeSpec JSON file; default: the bundled examples/spec.json. */
  spec?: string;
}

type Env = Record<string, string | undefined>;

/**
 * Our extra subcommands, chosen by the first argv word. The bare invocation (flags
 * only) is upstream's CLI and must stay exactly compatible; a subcommand gets the rest
 * of argv and returns its own result (add a `CliResult` variant with it). Upstream has
 * no positionals, so no valid upstream argv can start with a word.
 */
interface Subcommand {
  description: string;
  parse(argv: string[], env: Env): CliResult;
}
const DEV_FLAGS: Record<string, { value: string; help: string; default?: string }> = {
  pgbin: {
    value: "PATH",
    help: "PostgreSQL bin directory or postgres binary (default: found on PATH or in /usr/lib/postgresql)",
  },
  "data-dir": {
    value: "DIR",
    help: "Work directory for PGDATA, config and the template cache",
    default: "/tmp/compute-ctl-dev",
  },
  "pg-port": { value: "PORT", help: "Port postgres listens on (127.0.0.1)", default: "55433" },
  "external-http-port": { value: "PORT", help: "External HTTP port", default: "3080" },
  "internal-http-port": { value: "PORT", help: "Internal HTTP port", default: "3081" },
  spec: {
    value: "FILE",
    help: "ComputeSpec JSON to start from (default: the bundled examples/spec.json)",
  },
};

function devHelp(): string {
  const lines = [
    "Runs the whole compute_ctl pipeline on this machine: stand-in pageserver and",
    "safekeepers on loopback, a real postgres, the HTTP API. Ctrl-C stops everything.",
    "",
    `Usage: ${PROGRAM} dev [OPTIONS]`,
    "",
    "Options:",
  ];
  for (const [name, f] of Object.entries(DEV_FLAGS)) {
    lines.push(`      --${name} <${f.value}>`, `${INDENT}${f.help}`);
    if (f.default !== undefined) lines.push(`${INDENT}[default: ${f.default}]`);
    lines.push("");
  }
  lines.push("  -h, --help", `${INDENT}Print help`);
  return `${lines.join("\n")}\n`;
}

function parseDev(argv: string[]): CliResult {
  const given = new Map<string, string>();
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i] as string;
    if (arg === "-h" || arg === "--help") return { kind: "help", text: devHelp() };
    const m = /^--([a-z-]+)(?:=(.*))?$/s.exec(arg);
    const name = m?.[1];
    if (name === undefined || !Object.hasOwn(DEV_FLAGS, name))
      throw new UsageError(`unexpected argument '${arg}' found`);
    if (given.has(name))
      throw new UsageError(`the argument '--${name}' cannot be used multiple times`);
    const value = m?.[2] ?? argv[++i];
    if (value === undefined)
      throw new UsageError(`a value is required for '--${name}' but none was supplied`);
    given.set(name, value);
  }
  const port = (name: "pg-port" | "external-http-port" | "internal-http-port") => {
    const v = given.get(name) ?? DEV_FLAGS[name]?.default ?? "";
    const n = /^[0-9]+$/.test(v) ? Number(v) : Number.NaN;
    if (!Number.isInteger(n) || n > 65535) {
      throw new UsageError(`--${name}: invalid value '${v}' (expected a port number 0-65535)`);
    }
    return n;
  };
  return {
    kind: "dev",
    options: {
      pgbin: given.get("pgbin"),
      dataDir: given.get("data-dir") ?? "/tmp/compute-ctl-dev",
      pgPort: port("pg-port"),
      externalHttpPort: port("external-http-port"),
      internalHttpPort: port("internal-http-port"),
      spec: given.get("spec"),
    },
  };
}

const SUBCOMMANDS: Record<string, Subcommand> = {
  dev: {
    description: "Run the whole pipeline on this machine against loopback stand-ins (ours)",
    parse: (argv) => parseDev(argv),
  },
};

/**
 * Parses argv without the program name (`process.argv.slice(2)`). Throws `UsageError`
 * (exit 2); the caller prints the message and `usageText()`.
 */
export function parseCli(argv: string[], env: Env): CliResult {
  const first = argv[0];
  if (first !== undefined && !first.startsWith("-")) {
    const sub = Object.hasOwn(SUBCOMMANDS, first) ? SUBCOMMANDS[first] : undefined;
    if (sub === undefined) throw new UsageError(`unexpected argument '${first}' found`);
    return sub.parse(argv.slice(1), env);
  }
  const scanned = scan(argv);
  if (scanned === "help") return { kind: "help", text: helpText(env) };
  if (scanned === "version") return { kind: "version" };
  return { kind: "run", options: resolve(scanned, env) };
}

type Given = Map<FlagName, string | true>;

const LONG = new Map<string, FlagName>();
const SHORT = new Map<string, FlagName>();
for (const name of Object.keys(FLAGS) as FlagName[]) {
  LONG.set(name, name);
  const def: FlagDef = FLAGS[name];
  if (typeof def.alias === "string") SHORT.set(def.alias, name);
}

/** Walks argv in order, as clap does: the first error or help/version wins. */
function scan(argv: string[]): Given | "help" | "version" {
  const given: Given = new Map();
  for (let i = 0; i < argv.length; i++) {
    const token = argv[i] ?? "";
    if (token === "--") {
      // Everything after `--` is positional, and we take none.
      const next = argv[i + 1];
      if (next !== undefined) throw new UsageError(`unexpected argument '${next}' found`);
      break;
    }
    let name: FlagName | undefined;
    let inline: string | undefined;
    if (token.startsWith("--")) {
      const eq = token.indexOf("=");
      const long = eq < 0 ? token.slice(2) : token.slice(2, eq);
      if (long === "help") return "help";
      if (long === "version") return "version";
      name = LONG.get(long);
      if (name === undefined) throw new UsageError(`unexpected argument '--${long}' found`);
      if (eq >= 0) inline = token.slice(eq + 1);
    } else if (token.startsWith("-") && token.length > 1) {
      const short = token.slice(1, 2);
      if (short === "h") return "help";
      if (short === "V") return "version";
      name = SHORT.get(short);
      if (name === undefined) throw new UsageError(`unexpected argument '-${short}' found`);
      // `-Ddir` and `-D=dir` both carry the value inline, as in clap.
      const rest = token.slice(2);
      if (rest !== "") inline = rest.startsWith("=") ? rest.slice(1) : rest;
    } else {
      throw new UsageError(`unexpected argument '${token}' found`);
    }

    const def: FlagDef = FLAGS[name];
    let value: string | true;
    if (def.kind === "switch") {
      if (inline !== undefined) {
        throw new UsageError(
          `unexpected value '${inline}' for '--${name}' found; no more were expected`,
        );
      }
      value = true;
    } else if (inline !== undefined) {
      value = inline;
    } else {
      // clap never takes a dash-led token as a separate value (`-` alone is fine).
      const next = argv[i + 1];
      if (next === undefined || (next.startsWith("-") && next !== "-")) {
        throw new UsageError(`a value is required for '${display(name)}' but none was supplied`);
      }
      value = next;
      i++;
    }
    // clap's ArgAction::Set/SetTrue refuse a second occurrence (no args_override_self
    // upstream), so repeating any flag, switches included, is an error, not last-wins.
    if (given.has(name)) {
      throw new UsageError(`the argument '${display(name)}' cannot be used multiple times`);
    }
    if (value !== true) checkValue(name, def.kind, value);
    given.set(name, value);
  }
  return given;
}

/** Value checks clap does while parsing (value parsers), in argv order. */
function checkValue(name: FlagName, kind: Kind, value: string): void {
  if (kind === "port") parsePort(name, value);
  else if (kind === "seconds") parseSeconds(name, value);
  else if (kind === "bool") parseBool(name, value);
  else if (name === "privileged-role-name") checkRoleName(value);
  else if (name === "remote-ext-base-url") normaliseRemoteExtBaseUrl(value);
}

function resolve(given: Given, env: Env): CliOptions {
  // Conflicts before missing-required, as clap validates; first given flag is named first.
  for (const name of given.keys()) {
    for (const [a, b] of CONFLICTS) {
      const other = name === a ? b : name === b ? a : undefined;
      if (other !== undefined && given.has(other)) {
        throw new UsageError(
          `the argument '${display(name)}' cannot be used with '${display(other)}'`,
        );
      }
    }
  }
  const missing = (Object.keys(FLAGS) as FlagName[]).filter((name) => {
    const def: FlagDef = FLAGS[name];
    return def.required === true && !given.has(name);
  });
  if (missing.length > 0) {
    const list = missing.map((name) => `  ${display(name)}`).join("\n");
    throw new UsageError(`the following required arguments were not provided:\n${list}`);
  }

  const str = (name: FlagName): string | undefined => {
    const v = given.get(name);
    if (typeof v === "string") return v;
    const def: FlagDef = FLAGS[name];
    // clap takes a set env var even when it is empty.
    if (def.env !== undefined && env[def.env] !== undefined) return env[def.env];
    return typeof def.default === "string" ? def.default : undefined;
  };
  const req = (name: FlagName): string => str(name) ?? "";
  const opt = <T>(name: FlagName, parse: (name: FlagName, v: string) => T): T | undefined => {
    const v = str(name);
    return v === undefined ? undefined : parse(name, v);
  };

  const config = str("config");
  const controlPlaneUri = str("control-plane-uri");
  // Upstream panics here (exit 101) after it has started logging; we refuse it as a
  // usage error (exit 2) so the operator gets a message instead of a backtrace.
  if (config === undefined && controlPlaneUri === undefined) {
    throw new UsageError("either --config or --control-plane-uri must be given");
  }

  // Upstream checks this in main (exit 1), after clap; we reject it at parse time.
  const connstrRaw = req("connstr");
  let connstr: URL;
  try {
    connstr = new URL(connstrRaw);
  } catch {
    throw invalid("connstr", connstrRaw, "cannot parse connstr as a URL");
  }
  try {
    // Ours: what the SQL connections will read of it, checked now rather than at apply time.
    connectionTarget(connstr);
  } catch (e) {
    throw new UsageError(errorMessage(e));
  }

  const lakebaseMode = parseBool("lakebase-mode", req("lakebase-mode"));
  const httpPort = opt("http-port", parsePort);
  let externalHttpPort = parsePort("external-http-port", req("external-http-port"));
  let internalHttpPort = parsePort("internal-http-port", req("internal-http-port"));
  // `--http-port` is honoured only in lakebase mode and silently ignored otherwise.
  if (lakebaseMode && httpPort !== undefined) {
    if (httpPort === 65535) {
      throw invalid("http-port", String(httpPort), "the internal port http-port + 1 exceeds 65535");
    }
    externalHttpPort = httpPort;
    internalHttpPort = httpPort + 1;
  }

  const pgbin = req("pgbin");
  return {
    pgbin,
    pgBinDir: parentDir(pgbin),
    remoteExtBaseUrl: opt("remote-ext-base-url", (_, v) => normaliseRemoteExtBaseUrl(v)),
    externalHttpPort,
    internalHttpPort,
    httpPort,
    pgdata: req("pgdata"),
    connstr,
    connstrRaw,
    privilegedRoleName: req("privileged-role-name"),
    cgroup: req("cgroup"),
    filecacheConnstr: req("filecache-connstr"),
    vmMonitorAddr: req("vm-monitor-addr"),
    resizeSwapOnBind: given.has("resize-swap-on-bind"),
    setDiskQuotaForFs: str("set-disk-quota-for-fs"),
    config,
    computeId: req("compute-id"),
    controlPlaneUri,
    installedExtensionsCollectionInterval: parseSeconds(
      "installed-extensions-collection-interval",
      req("installed-extensions-collection-interval"),
    ),
    dev: given.has("dev"),
    pgInitTimeout: opt("pg-init-timeout", parseSeconds),
    lakebaseMode,
    pgUser: req("pg-user"),
    internalHttpHost: req("internal-http-host"),
  };
}

function invalid(name: FlagName, value: string, reason: string): UsageError {
  return new UsageError(`--${name}: invalid value '${value}' (${reason})`);
}

// Rust parses integers with an optional leading `+`.
const UNSIGNED = /^\+?[0-9]+$/;

function parsePort(name: FlagName, value: string): number {
  const n = UNSIGNED.test(value) ? Number(value) : Number.NaN;
  if (!Number.isInteger(n) || n > 65535) {
    throw invalid(name, value, "expected a port number 0-65535");
  }
  return n;
}

const U64_MAX = 2n ** 64n - 1n;

/** u64 seconds as upstream accepts them; above 2^53 the number is not exact. */
function parseSeconds(name: FlagName, value: string): number {
  if (!UNSIGNED.test(value) || BigInt(value.replace("+", "")) > U64_MAX) {
    throw invalid(name, value, "expected a whole number of seconds");
  }
  return Number(value.replace("+", ""));
}

function parseBool(name: FlagName, value: string): boolean {
  if (value === "true") return true;
  if (value === "false") return false;
  throw invalid(name, value, "possible values: true, false");
}

function checkRoleName(value: string): void {
  if (!/^[a-z_]+$/.test(value)) {
    throw invalid(
      "privileged-role-name",
      value,
      "--privileged-role-name can only contain lowercase letters and underscores",
    );
  }
}

/** Exactly one trailing `/`, so relative paths join under it; no query allowed. */
export function normaliseRemoteExtBaseUrl(value: string): string {
  const withSlash = `${value.replace(/\/+$/, "")}/`;
  let url: URL;
  try {
    url = new URL(withSlash);
  } catch {
    throw invalid("remote-ext-base-url", value, "cannot parse as a URL");
  }
  if (url.searchParams.size > 0) {
    throw invalid(
      "remote-ext-base-url",
      value,
      "parameters detected in remote extensions base URL",
    );
  }
  return url.href;
}

// --- Paths derived from --pgbin (upstream derives each one its own way) ---

/** Rust's `Path::parent`: "" for a bare file name, "/" for a file in the root. */
function parentDir(path: string): string {
  const trimmed = path.replace(/\/+$/, "");
  const slash = trimmed.lastIndexOf("/");
  if (slash < 0) return "";
  const dir = trimmed.slice(0, slash).replace(/\/+$/, "");
  return dir === "" ? "/" : dir;
}

function joinPath(dir: string, file: string): string {
  if (dir === "") return file;
  return dir.endsWith("/") ? `${dir}${file}` : `${dir}/${file}`;
}

/**
 * pgbin minus its trailing `postgres`, plus `/pg_config`, by plain string concatenation
 * (so `/usr/bin/postgres` gives `/usr/bin//pg_config`, and `postgres` gives `/pg_config`).
 */
export function pgConfigPath(pgbin: string): string {
  if (!pgbin.endsWith("postgres")) throw new ComputeCtlError("bad pgbin");
  return `${pgbin.slice(0, -"postgres".length)}/pg_config`;
}

/** pgbin split on `/`, last part dropped, rejoined, plus `/pg_isready`. */
export function pgIsreadyPath(pgbin: string): string {
  return `${pgbin.split("/").slice(0, -1).join("/")}/pg_isready`;
}

export function pgCtlPath(pgbin: string): string {
  return joinPath(parentDir(pgbin), "pg_ctl");
}

export function initdbPath(pgbin: string): string {
  return joinPath(parentDir(pgbin), "initdb");
}

// --- Help and usage text, rendered from the flag table ---

function valueName(name: FlagName): string {
  const def: FlagDef = FLAGS[name];
  return def.valueHint ?? name.toUpperCase().replaceAll("-", "_");
}

/** `--pgdata <DATADIR>`, `--dev`: how clap names an argument in its messages. */
function display(name: FlagName): string {
  const def: FlagDef = FLAGS[name];
  return def.kind === "switch" ? `--${name}` : `--${name} <${valueName(name)}>`;
}

function usageLine(): string {
  const required = (Object.keys(FLAGS) as FlagName[])
    .filter((name) => {
      const def: FlagDef = FLAGS[name];
      return def.required === true;
    })
    .map(display);
  return `Usage: ${PROGRAM} [OPTIONS] ${required.join(" ")}`;
}

/** What clap prints under a usage error. */
export function usageText(): string {
  return `${usageLine()}\n\nFor more information, try '--help'.\n`;
}

const INDENT = " ".repeat(10);

/** Full `--help` text in clap's long layout; env-backed flags show their current value. */
export function helpText(env: Env = {}): string {
  const lines = [DESCRIPTION, "", usageLine(), ""];
  const subs = Object.entries(SUBCOMMANDS);
  if (subs.length > 0) {
    lines.push("Commands:");
    for (const [name, sub] of subs) lines.push(`  ${name}`, `${INDENT}${sub.description}`, "");
  }
  lines.push("Options:");
  for (const name of Object.keys(FLAGS) as FlagName[]) {
    const def: FlagDef = FLAGS[name];
    const short = typeof def.alias === "string" ? `-${def.alias}, ` : "    ";
    lines.push(`  ${short}${display(name)}`, `${INDENT}${def.description ?? ""}`);
    if (def.kind === "bool") lines.push(`${INDENT}[possible values: true, false]`);
    if (def.env !== undefined) lines.push(`${INDENT}[env: ${def.env}=${env[def.env] ?? ""}]`);
    if (typeof def.default === "string") lines.push(`${INDENT}[default: ${def.default}]`);
    lines.push("");
  }
  lines.push(
    "  -h, --help",
    `${INDENT}Print help`,
    "",
    "  -V, --version",
    `${INDENT}Print version`,
  );
  return `${lines.join("\n")}\n`;
}
