import { describe, expect, test } from "bun:test";
import {
  type CliOptions,
  computeCtlCommand,
  helpText,
  initdbPath,
  parseCli,
  pgConfigPath,
  pgCtlPath,
  pgIsreadyPath,
  usageText,
} from "./cli.ts";
import { ComputeCtlError, UsageError } from "./errors.ts";

const CONN = "postgresql://cloud_admin@127.0.0.1:55432/postgres";

// Required flags plus `-c`, keyed by the short name so a row can leave one out.
const BASE: Record<string, [string, string]> = {
  D: ["-D", "/pgdata"],
  C: ["-C", CONN],
  i: ["-i", "ep-1"],
  c: ["-c", "/cfg.json"],
};

function base(...omit: string[]): string[] {
  return Object.entries(BASE)
    .filter(([k]) => !omit.includes(k))
    .flatMap(([, pair]) => pair);
}

function run(argv: string[], env: Record<string, string | undefined> = {}): CliOptions {
  const result = parseCli(argv, env);
  if (result.kind !== "run") throw new Error(`expected run, got ${result.kind}`);
  return result.options;
}

function usageError(argv: string[], env: Record<string, string | undefined> = {}): UsageError {
  try {
    parseCli(argv, env);
  } catch (err) {
    if (err instanceof UsageError) return err;
    throw err;
  }
  throw new Error(`expected a UsageError for ${JSON.stringify(argv)}`);
}

describe("defaults", () => {
  test("minimal argv gets upstream defaults", () => {
    const { connstr, ...rest } = run(base());
    expect(connstr.href).toBe(CONN);
    expect(rest).toEqual({
      pgbin: "postgres",
      pgBinDir: "",
      remoteExtBaseUrl: undefined,
      externalHttpPort: 3080,
      internalHttpPort: 3081,
      httpPort: undefined,
      pgdata: "/pgdata",
      connstrRaw: CONN,
      privilegedRoleName: "neon_superuser",
      cgroup: "neon-postgres",
      filecacheConnstr:
        "host=localhost port=5432 dbname=postgres user=cloud_admin sslmode=disable application_name=vm-monitor",
      vmMonitorAddr: "0.0.0.0:10301",
      resizeSwapOnBind: false,
      setDiskQuotaForFs: undefined,
      config: "/cfg.json",
      computeId: "ep-1",
      controlPlaneUri: undefined,
      installedExtensionsCollectionInterval: 3600,
      dev: false,
      pgInitTimeout: undefined,
      lakebaseMode: false,
      pgUser: "postgres",
      internalHttpHost: "localhost",
    });
  });

  test.each([
    ["POSTGRES_PATH sets pgbin", [], { POSTGRES_PATH: "/env/bin/postgres" }, "/env/bin/postgres"],
    [
      "flag beats env",
      ["-b", "/flag/postgres"],
      { POSTGRES_PATH: "/env/postgres" },
      "/flag/postgres",
    ],
    ["empty env var is taken, as clap does", [], { POSTGRES_PATH: "" }, ""],
    ["unset env falls back to the default", [], { POSTGRES_PATH: undefined }, "postgres"],
  ] as const)("%s", (_, extra, env, pgbin) => {
    expect(run([...base(), ...extra], env).pgbin).toBe(pgbin);
  });
});

describe("every flag, long, short and = forms", () => {
  const rows: [string, string[], Partial<CliOptions>][] = [
    [
      "--pgbin",
      [...base(), "--pgbin", "/a/bin/postgres"],
      { pgbin: "/a/bin/postgres", pgBinDir: "/a/bin" },
    ],
    ["--pgbin=", [...base(), "--pgbin=/a/postgres"], { pgbin: "/a/postgres", pgBinDir: "/a" }],
    ["-b", [...base(), "-b", "/b/postgres"], { pgbin: "/b/postgres" }],
    ["-bVALUE", [...base(), "-b/b/postgres"], { pgbin: "/b/postgres" }],
    ["-b=VALUE", [...base(), "-b=/b/postgres"], { pgbin: "/b/postgres" }],
    [
      "--remote-ext-base-url",
      [...base(), "--remote-ext-base-url", "http://x/a"],
      { remoteExtBaseUrl: "http://x/a/" },
    ],
    ["-r", [...base(), "-r", "http://x"], { remoteExtBaseUrl: "http://x/" }],
    [
      "--external-http-port",
      [...base(), "--external-http-port", "5000"],
      { externalHttpPort: 5000, internalHttpPort: 3081 },
    ],
    ["--external-http-port=", [...base(), "--external-http-port=5001"], { externalHttpPort: 5001 }],
    [
      "--internal-http-port",
      [...base(), "--internal-http-port", "5002"],
      { externalHttpPort: 3080, internalHttpPort: 5002 },
    ],
    ["--internal-http-port=", [...base(), "--internal-http-port=5003"], { internalHttpPort: 5003 }],
    ["--http-port", [...base(), "--http-port", "7000"], { httpPort: 7000 }],
    ["--http-port=", [...base(), "--http-port=7001"], { httpPort: 7001 }],
    ["--pgdata", [...base("D"), "--pgdata", "/x"], { pgdata: "/x" }],
    ["--pgdata=", [...base("D"), "--pgdata=/x"], { pgdata: "/x" }],
    ["-D", [...base("D"), "-D", "/y"], { pgdata: "/y" }],
    ["-DVALUE", [...base("D"), "-D/z"], { pgdata: "/z" }],
    [
      "--connstr",
      [...base("C"), "--connstr", "postgresql://u@h/db"],
      { connstrRaw: "postgresql://u@h/db" },
    ],
    [
      "--connstr=",
      [...base("C"), "--connstr=postgresql://u@h:1/db"],
      { connstrRaw: "postgresql://u@h:1/db" },
    ],
    ["-C", [...base("C"), "-C", "postgres://h/d"], { connstrRaw: "postgres://h/d" }],
    [
      "--privileged-role-name",
      [...base(), "--privileged-role-name", "my_admin"],
      { privilegedRoleName: "my_admin" },
    ],
    [
      "--privileged-role-name=",
      [...base(), "--privileged-role-name=x"],
      { privilegedRoleName: "x" },
    ],
    ["--cgroup", [...base(), "--cgroup", "g1"], { cgroup: "g1" }],
    ["--cgroup=", [...base(), "--cgroup=g2"], { cgroup: "g2" }],
    [
      "--filecache-connstr",
      [...base(), "--filecache-connstr", "host=h"],
      { filecacheConnstr: "host=h" },
    ],
    [
      "--filecache-connstr=",
      [...base(), "--filecache-connstr=a=b c=d"],
      { filecacheConnstr: "a=b c=d" },
    ],
    [
      "--vm-monitor-addr",
      [...base(), "--vm-monitor-addr", "127.0.0.1:1"],
      { vmMonitorAddr: "127.0.0.1:1" },
    ],
    ["--vm-monitor-addr=", [...base(), "--vm-monitor-addr=[::]:2"], { vmMonitorAddr: "[::]:2" }],
    ["--resize-swap-on-bind", [...base(), "--resize-swap-on-bind"], { resizeSwapOnBind: true }],
    [
      "--set-disk-quota-for-fs",
      [...base(), "--set-disk-quota-for-fs", "/mnt"],
      { setDiskQuotaForFs: "/mnt" },
    ],
    [
      "--set-disk-quota-for-fs=",
      [...base(), "--set-disk-quota-for-fs=/m"],
      { setDiskQuotaForFs: "/m" },
    ],
    [
      "--config",
      [...base("c"), "--config", "/c.json"],
      { config: "/c.json", controlPlaneUri: undefined },
    ],
    ["--config=", [...base("c"), "--config=/d.json"], { config: "/d.json" }],
    ["-c", [...base("c"), "-c", "/e.json"], { config: "/e.json" }],
    ["--compute-id", [...base("i"), "--compute-id", "c-1"], { computeId: "c-1" }],
    ["--compute-id=", [...base("i"), "--compute-id=c-2"], { computeId: "c-2" }],
    ["-i", [...base("i"), "-i", "c-3"], { computeId: "c-3" }],
    [
      "--control-plane-uri",
      [...base("c"), "--control-plane-uri", "http://cp"],
      { controlPlaneUri: "http://cp", config: undefined },
    ],
    [
      "--control-plane-uri=",
      [...base("c"), "--control-plane-uri=http://cp:1"],
      { controlPlaneUri: "http://cp:1" },
    ],
    ["-p", [...base("c"), "-p", "http://cp/"], { controlPlaneUri: "http://cp/" }],
    [
      "--installed-extensions-collection-interval",
      [...base(), "--installed-extensions-collection-interval", "60"],
      { installedExtensionsCollectionInterval: 60 },
    ],
    [
      "--installed-extensions-collection-interval=",
      [...base(), "--installed-extensions-collection-interval=0"],
      { installedExtensionsCollectionInterval: 0 },
    ],
    ["--dev", [...base(), "--dev"], { dev: true }],
    ["--pg-init-timeout", [...base(), "--pg-init-timeout", "5"], { pgInitTimeout: 5 }],
    ["--pg-init-timeout=", [...base(), "--pg-init-timeout=+7"], { pgInitTimeout: 7 }],
    ["--pg-user (ours)", [...base(), "--pg-user", "pguser"], { pgUser: "pguser" }],
    [
      "--internal-http-host (ours)",
      [...base(), "--internal-http-host", "::"],
      { internalHttpHost: "::" },
    ],
    ["--lakebase-mode true", [...base(), "--lakebase-mode", "true"], { lakebaseMode: true }],
    ["--lakebase-mode false", [...base(), "--lakebase-mode", "false"], { lakebaseMode: false }],
    ["--lakebase-mode=true", [...base(), "--lakebase-mode=true"], { lakebaseMode: true }],
    [
      "flags after the required ones in any order",
      ["--dev", ...base(), "--cgroup", "z"],
      { dev: true, cgroup: "z" },
    ],
    ["a lone '-' is a value", [...base("D"), "-D", "-"], { pgdata: "-" }],
    ["dash-led value with =", [...base("D"), "--pgdata=-x"], { pgdata: "-x" }],
    ["empty value with =", [...base(), "--cgroup="], { cgroup: "" }],
    ["trailing --", [...base(), "--"], { pgdata: "/pgdata" }],
  ];
  test.each(rows)("%s", (_, argv, want) => {
    expect(run(argv)).toMatchObject(want);
  });

  test("table covers every flag of the command definition", () => {
    const names = Object.keys(computeCtlCommand.args ?? {});
    const covered = new Set(rows.map(([label]) => label.split(/[ =]/)[0]));
    for (const name of names) expect(covered.has(`--${name}`)).toBe(true);
    // Upstream's 20 flags plus our --pg-user and --internal-http-host.
    expect(names).toHaveLength(22);
  });
});

describe("numbers", () => {
  test.each([
    ["0", 0],
    ["65535", 65535],
    ["+80", 80],
    ["00080", 80],
  ])("port %p -> %p", (raw, want) => {
    expect(run([...base(), `--external-http-port=${raw}`]).externalHttpPort).toBe(want);
  });

  test("u64 max is accepted (upstream type), as an inexact number", () => {
    const opts = run([...base(), "--pg-init-timeout", "18446744073709551615"]);
    expect(opts.pgInitTimeout).toBe(2 ** 64);
  });
});

describe("--http-port resolution", () => {
  test.each([
    ["ignored without lakebase", ["--http-port", "7000"], 3080, 3081],
    [
      "ignored with lakebase false",
      ["--http-port", "7000", "--lakebase-mode", "false"],
      3080,
      3081,
    ],
    ["lakebase true: P and P+1", ["--http-port", "7000", "--lakebase-mode", "true"], 7000, 7001],
    ["lakebase true, order free", ["--lakebase-mode=true", "--http-port=0"], 0, 1],
    ["lakebase true without http-port", ["--lakebase-mode", "true"], 3080, 3081],
    [
      "explicit ports with lakebase",
      ["--lakebase-mode", "true", "--external-http-port", "1", "--internal-http-port", "2"],
      1,
      2,
    ],
  ] as const)("%s", (_, extra, ext, int) => {
    const opts = run([...base(), ...extra]);
    expect([opts.externalHttpPort, opts.internalHttpPort]).toEqual([ext, int]);
  });
});

describe("--remote-ext-base-url normalisation", () => {
  test.each([
    ["http://x//", "http://x/"],
    ["http://x/a", "http://x/a/"],
    ["http://x/a///", "http://x/a/"],
    ["http://x", "http://x/"],
    ["https://ext.example.com:8443/v1/", "https://ext.example.com:8443/v1/"],
  ])("%s -> %s", (raw, want) => {
    expect(run([...base(), "-r", raw]).remoteExtBaseUrl).toBe(want);
  });
});

describe("--connstr", () => {
  test("URL form keeps the raw string and a parsed URL", () => {
    const raw = "postgresql://cloud_admin@127.0.0.1/postgres?options=-c%20x%3Dy";
    const opts = run([...base("C"), "-C", raw]);
    expect(opts.connstrRaw).toBe(raw);
    expect(opts.connstr.hostname).toBe("127.0.0.1");
    expect(opts.connstr.username).toBe("cloud_admin");
    expect(opts.connstr.searchParams.get("options")).toBe("-c x=y");
  });
});

describe("usage errors", () => {
  const portFlags = ["--external-http-port", "--internal-http-port", "--http-port"];
  const secondsFlags = ["--installed-extensions-collection-interval", "--pg-init-timeout"];
  const role = "--privileged-role-name can only contain lowercase letters and underscores";
  const rows: [string, string[], string][] = [
    ["unknown long flag", [...base(), "--foo"], "unexpected argument '--foo' found"],
    ["unknown long flag with value", [...base(), "--foo=bar"], "unexpected argument '--foo' found"],
    ["unknown short flag", [...base(), "-x", "1"], "unexpected argument '-x' found"],
    [
      "removed --spec-path",
      [...base(), "--spec-path", "/s"],
      "unexpected argument '--spec-path' found",
    ],
    ["removed -S", [...base(), "-S", "/s"], "unexpected argument '-S' found"],
    [
      "citty's --no- prefix is not ours",
      [...base(), "--no-dev"],
      "unexpected argument '--no-dev' found",
    ],
    ["unknown first word", ["foo", ...base()], "unexpected argument 'foo' found"],
    ["stray positional", [...base(), "extra"], "unexpected argument 'extra' found"],
    ["positional after --", [...base(), "--", "x"], "unexpected argument 'x' found"],
    ["a lone -", [...base(), "-"], "unexpected argument '-' found"],
    [
      "inherited property name is no subcommand",
      ["constructor"],
      "unexpected argument 'constructor' found",
    ],
    [
      "missing -D",
      base("D"),
      "the following required arguments were not provided:\n  --pgdata <DATADIR>",
    ],
    [
      "missing -C",
      base("C"),
      "the following required arguments were not provided:\n  --connstr <DATABASE_URL>",
    ],
    [
      "missing -i",
      base("i"),
      "the following required arguments were not provided:\n  --compute-id <COMPUTE_ID>",
    ],
    ["missing -i with -p", [...base("i", "c"), "-p", "http://cp"], "--compute-id <COMPUTE_ID>"],
    [
      "missing all required",
      [],
      "the following required arguments were not provided:\n  --pgdata <DATADIR>\n  --connstr <DATABASE_URL>\n  --compute-id <COMPUTE_ID>",
    ],
    [
      "value missing at end",
      [...base("D"), "--pgdata"],
      "a value is required for '--pgdata <DATADIR>' but none was supplied",
    ],
    [
      "value missing before flag",
      [...base("D"), "-D", "-C", CONN],
      "a value is required for '--pgdata <DATADIR>' but none was supplied",
    ],
    [
      "value missing before --help",
      [...base(), "-b", "--help"],
      "a value is required for '--pgbin <PGBIN>' but none was supplied",
    ],
    [
      "bare --lakebase-mode at end",
      [...base(), "--lakebase-mode"],
      "a value is required for '--lakebase-mode <LAKEBASE_MODE>' but none was supplied",
    ],
    [
      "bare --lakebase-mode before flag",
      [...base(), "--lakebase-mode", "--dev"],
      "a value is required for '--lakebase-mode <LAKEBASE_MODE>'",
    ],
    [
      "--lakebase-mode yes",
      [...base(), "--lakebase-mode", "yes"],
      "--lakebase-mode: invalid value 'yes' (possible values: true, false)",
    ],
    [
      "--lakebase-mode=TRUE",
      [...base(), "--lakebase-mode=TRUE"],
      "--lakebase-mode: invalid value 'TRUE'",
    ],
    ["--lakebase-mode=1", [...base(), "--lakebase-mode=1"], "--lakebase-mode: invalid value '1'"],
    ["--lakebase-mode=", [...base(), "--lakebase-mode="], "--lakebase-mode: invalid value ''"],
    [
      "switch with a value",
      [...base(), "--dev=true"],
      "unexpected value 'true' for '--dev' found; no more were expected",
    ],
    [
      "switch with an empty value",
      [...base(), "--resize-swap-on-bind="],
      "unexpected value '' for '--resize-swap-on-bind' found",
    ],
    [
      "repeated value flag",
      [...base(), "--pgdata", "/other"],
      "the argument '--pgdata <DATADIR>' cannot be used multiple times",
    ],
    [
      "repeated via short and long",
      [...base(), "-b", "/a/postgres", "--pgbin=/b/postgres"],
      "the argument '--pgbin <PGBIN>' cannot be used multiple times",
    ],
    [
      "repeated switch",
      [...base(), "--dev", "--dev"],
      "the argument '--dev' cannot be used multiple times",
    ],
    [
      "repeated lakebase-mode",
      [...base(), "--lakebase-mode=true", "--lakebase-mode=true"],
      "the argument '--lakebase-mode <LAKEBASE_MODE>' cannot be used multiple times",
    ],
    [
      "-c with -p",
      [...base(), "-p", "http://cp"],
      "the argument '--config <CONFIG>' cannot be used with '--control-plane-uri <CONTROL_PLANE_API_BASE_URL>'",
    ],
    [
      "-p before -c",
      ["-p", "http://cp", ...base()],
      "the argument '--control-plane-uri <CONTROL_PLANE_API_BASE_URL>' cannot be used with '--config <CONFIG>'",
    ],
    [
      "conflict reported before missing required",
      ["-c", "/c", "-p", "http://cp"],
      "cannot be used with",
    ],
    [
      "--http-port with --external-http-port",
      [...base(), "--http-port", "1", "--external-http-port", "2"],
      "the argument '--http-port <HTTP_PORT>' cannot be used with '--external-http-port <EXTERNAL_HTTP_PORT>'",
    ],
    [
      "--http-port with --internal-http-port",
      [...base(), "--http-port", "1", "--internal-http-port", "2"],
      "the argument '--http-port <HTTP_PORT>' cannot be used with '--internal-http-port <INTERNAL_HTTP_PORT>'",
    ],
    [
      "--external-http-port before --http-port",
      [...base(), "--external-http-port=2", "--http-port=1"],
      "the argument '--external-http-port <EXTERNAL_HTTP_PORT>' cannot be used with '--http-port <HTTP_PORT>'",
    ],
    ["neither -c nor -p", base("c"), "either --config or --control-plane-uri must be given"],
    [
      "role name uppercase",
      [...base(), "--privileged-role-name", "Admin"],
      `--privileged-role-name: invalid value 'Admin' (${role})`,
    ],
    ["role name empty", [...base(), "--privileged-role-name="], role],
    ["role name dash", [...base(), "--privileged-role-name", "a-b"], role],
    ["role name digit", [...base(), "--privileged-role-name", "a1"], role],
    [
      "-r with a query",
      [...base(), "-r", "http://x/?a=1"],
      "--remote-ext-base-url: invalid value 'http://x/?a=1' (parameters detected in remote extensions base URL)",
    ],
    [
      "-r with a bare ?",
      [...base(), "-r", "http://x?"],
      "parameters detected in remote extensions base URL",
    ],
    [
      "-r not a URL",
      [...base(), "-r", "ext/bucket"],
      "--remote-ext-base-url: invalid value 'ext/bucket' (cannot parse as a URL)",
    ],
    [
      "connstr keyword/value form",
      [...base("C"), "-C", "host=localhost port=5432 user=cloud_admin"],
      "--connstr: invalid value 'host=localhost port=5432 user=cloud_admin' (cannot parse connstr as a URL)",
    ],
    ["connstr empty", [...base("C"), "--connstr="], "cannot parse connstr as a URL"],
    [
      "connstr with a libpq parameter compute_ctl does not honour",
      [
        ...base("C"),
        "-C",
        "postgresql://cloud_admin@localhost:55432/postgres?target_session_attrs=any",
      ],
      '--connstr: query parameter "target_session_attrs" is not supported',
    ],
    [
      "connstr that is not postgres://",
      [...base("C"), "-C", "http://cloud_admin@localhost:55432/postgres"],
      "--connstr must be a postgres:// URL, got http://",
    ],
    [
      "http-port 65535 in lakebase mode",
      [...base(), "--http-port", "65535", "--lakebase-mode", "true"],
      "--http-port: invalid value '65535'",
    ],
  ];
  for (const flag of portFlags) {
    for (const bad of ["abc", "65536", "-1", "", "1.5", " 80", "0x50", "1e3"]) {
      rows.push([
        `${flag}=${bad}`,
        [...base(), `${flag}=${bad}`],
        `${flag}: invalid value '${bad}' (expected a port number 0-65535)`,
      ]);
    }
  }
  for (const flag of secondsFlags) {
    for (const bad of ["abc", "-1", "", "1.5", "18446744073709551616"]) {
      rows.push([
        `${flag}=${bad}`,
        [...base(), `${flag}=${bad}`],
        `${flag}: invalid value '${bad}'`,
      ]);
    }
  }

  test.each(rows)("%s", (_, argv, message) => {
    const err = usageError(argv);
    expect(err.message).toContain(message);
    expect(err.exitCode).toBe(2);
  });

  test("first error in argv order wins", () => {
    expect(usageError(["--foo", "--external-http-port", "x"]).message).toContain("'--foo'");
    expect(usageError(["--external-http-port", "x", "--foo"]).message).toContain(
      "--external-http-port: invalid value 'x'",
    );
  });
});

describe("help and version", () => {
  test.each([
    ["--help", ["--help"]],
    ["-h", ["-h"]],
    ["help after flags", [...base(), "--help"]],
    ["help wins over missing required", ["--pgdata", "/x", "-h"]],
    ["help wins over later errors", ["--help", "--foo"]],
    ["help with a conflict", [...base(), "-p", "http://cp", "--help"]],
  ])("%s", (_, argv) => {
    expect(parseCli(argv, {}).kind).toBe("help");
  });

  test.each([
    ["--version", ["--version"]],
    ["-V", ["-V"]],
    ["with other flags", [...base(), "-V"]],
  ])("version: %s", (_, argv) => {
    expect(parseCli(argv, {})).toEqual({ kind: "version" });
  });

  test("an error before --help still wins", () => {
    expect(usageError(["--foo", "--help"]).message).toContain("'--foo'");
  });

  test("help lists every flag with short name, value name, default and env", () => {
    const result = parseCli(["--help"], { POSTGRES_PATH: "/env/postgres" });
    if (result.kind !== "help") throw new Error("expected help");
    const text = result.text;
    expect(text).toContain(
      "Usage: compute_ctl [OPTIONS] --pgdata <DATADIR> --connstr <DATABASE_URL> --compute-id <COMPUTE_ID>",
    );
    for (const line of [
      "-b, --pgbin <PGBIN>",
      "[env: POSTGRES_PATH=/env/postgres]",
      "[default: postgres]",
      "-r, --remote-ext-base-url <REMOTE_EXT_BASE_URL>",
      "    --external-http-port <EXTERNAL_HTTP_PORT>",
      "[default: 3080]",
      "    --internal-http-port <INTERNAL_HTTP_PORT>",
      "[default: 3081]",
      "    --http-port <HTTP_PORT>",
      "-D, --pgdata <DATADIR>",
      "-C, --connstr <DATABASE_URL>",
      "    --privileged-role-name <PRIVILEGED_ROLE_NAME>",
      "[default: neon_superuser]",
      "    --cgroup <CGROUP>",
      "[default: neon-postgres]",
      "    --filecache-connstr <FILECACHE_CONNSTR>",
      "[default: host=localhost port=5432 dbname=postgres user=cloud_admin sslmode=disable application_name=vm-monitor]",
      "    --vm-monitor-addr <VM_MONITOR_ADDR>",
      "[default: 0.0.0.0:10301]",
      "    --resize-swap-on-bind\n",
      "    --set-disk-quota-for-fs <SET_DISK_QUOTA_FOR_FS>",
      "-c, --config <CONFIG>",
      "-i, --compute-id <COMPUTE_ID>",
      "-p, --control-plane-uri <CONTROL_PLANE_API_BASE_URL>",
      "    --installed-extensions-collection-interval <INSTALLED_EXTENSIONS_COLLECTION_INTERVAL>",
      "[default: 3600]",
      "    --dev\n",
      "    --pg-init-timeout <PG_INIT_TIMEOUT>",
      "    --lakebase-mode <LAKEBASE_MODE>",
      "[possible values: true, false]",
      "[default: false]",
      "-h, --help",
      "-V, --version",
    ]) {
      expect(text).toContain(line);
    }
    expect(helpText()).toContain("[env: POSTGRES_PATH=]");
  });

  test("usageText is clap's short form", () => {
    expect(usageText()).toBe(
      "Usage: compute_ctl [OPTIONS] --pgdata <DATADIR> --connstr <DATABASE_URL> --compute-id <COMPUTE_ID>\n\nFor more information, try '--help'.\n",
    );
  });
});

describe("real argvs", () => {
  test("NeonVM guest command (debug_oom_branch fixture)", () => {
    // From neonvm_virtualmachine_compute_ctl_argv__debug_oom_branch.yml, without `2>&1`.
    const argv = [
      "-D",
      "/var/db/postgres/compute/pgdata",
      "-b",
      "/usr/local/bin/postgres",
      "-C",
      "postgresql://cloud_admin@127.0.0.1/postgres?options=-c%20default_transaction_read_only%3Dfalse",
      "--compute-id",
      "compute-purple-art-unreal",
      "--control-plane-uri",
      "http://dontexist.local:9096",
      "--resize-swap-on-bind",
      "--set-disk-quota-for-fs",
      "/var/db/postgres/compute",
    ];
    const opts = run(argv, { AUTOSCALING: "true", RUST_LOG: "info" });
    expect(opts).toMatchObject({
      pgdata: "/var/db/postgres/compute/pgdata",
      pgbin: "/usr/local/bin/postgres",
      pgBinDir: "/usr/local/bin",
      connstrRaw:
        "postgresql://cloud_admin@127.0.0.1/postgres?options=-c%20default_transaction_read_only%3Dfalse",
      computeId: "compute-purple-art-unreal",
      controlPlaneUri: "http://dontexist.local:9096",
      config: undefined,
      resizeSwapOnBind: true,
      setDiskQuotaForFs: "/var/db/postgres/compute",
      externalHttpPort: 3080,
      internalHttpPort: 3081,
      dev: false,
      lakebaseMode: false,
    });
    expect(opts.connstr.searchParams.get("options")).toBe("-c default_transaction_read_only=false");
  });

  test("neon_local Endpoint::start argv", () => {
    const argv = [
      "--external-http-port",
      "55433",
      "--internal-http-port",
      "55434",
      "--pgdata",
      "/repo/.neon/endpoints/ep-main/pgdata",
      "--connstr",
      "postgresql://cloud_admin@127.0.0.1:55432/postgres",
      "--config",
      "/repo/.neon/endpoints/ep-main/config.json",
      "--pgbin",
      "/repo/pg_install/v17/bin/postgres",
      "--compute-id",
      "ep-main",
      "--remote-ext-base-url",
      "http://127.0.0.1:8080/pg-ext-s3-gateway",
      "--dev",
      "--privileged-role-name",
      "neon_superuser",
    ];
    const opts = run(argv, {});
    expect(opts).toMatchObject({
      externalHttpPort: 55433,
      internalHttpPort: 55434,
      pgdata: "/repo/.neon/endpoints/ep-main/pgdata",
      connstrRaw: "postgresql://cloud_admin@127.0.0.1:55432/postgres",
      config: "/repo/.neon/endpoints/ep-main/config.json",
      controlPlaneUri: undefined,
      pgbin: "/repo/pg_install/v17/bin/postgres",
      pgBinDir: "/repo/pg_install/v17/bin",
      computeId: "ep-main",
      remoteExtBaseUrl: "http://127.0.0.1:8080/pg-ext-s3-gateway/",
      dev: true,
      privilegedRoleName: "neon_superuser",
    });
    expect(opts.connstr.port).toBe("55432");
  });
});

describe("paths derived from --pgbin", () => {
  test.each([
    [
      "/usr/local/bin/postgres",
      "/usr/local/bin//pg_config",
      "/usr/local/bin/pg_isready",
      "/usr/local/bin/pg_ctl",
      "/usr/local/bin/initdb",
      "/usr/local/bin",
    ],
    ["postgres", "/pg_config", "/pg_isready", "pg_ctl", "initdb", ""],
    ["/postgres", "//pg_config", "/pg_isready", "/pg_ctl", "/initdb", "/"],
    ["bin/postgres", "bin//pg_config", "bin/pg_isready", "bin/pg_ctl", "bin/initdb", "bin"],
    [
      "/a//bin/postgres",
      "/a//bin//pg_config",
      "/a//bin/pg_isready",
      "/a//bin/pg_ctl",
      "/a//bin/initdb",
      "/a//bin",
    ],
  ])("%s", (pgbin, pgConfig, pgIsready, pgCtl, initdb, dir) => {
    expect(pgConfigPath(pgbin)).toBe(pgConfig);
    expect(pgIsreadyPath(pgbin)).toBe(pgIsready);
    expect(pgCtlPath(pgbin)).toBe(pgCtl);
    expect(initdbPath(pgbin)).toBe(initdb);
    expect(run([...base(), "-b", pgbin]).pgBinDir).toBe(dir);
  });

  test("pg_config needs a pgbin ending in postgres", () => {
    expect(() => pgConfigPath("/usr/bin/postmaster")).toThrow(ComputeCtlError);
    expect(() => pgConfigPath("/usr/bin/postmaster")).toThrow("bad pgbin");
  });
});
