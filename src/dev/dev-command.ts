// `compute_ctl dev`: the README's main command. Finds PostgreSQL, prepares the
// template (cached), starts the pageserver and safekeeper stand-ins on
// loopback, then runs the real ComputeNode with the example spec, exactly as
// `compute_ctl -c config.json` would. Ctrl-C shuts everything down.

import { existsSync, readdirSync, realpathSync } from "node:fs";
import { chmod, mkdir, writeFile } from "node:fs/promises";
import { dirname, join } from "node:path";
import exampleSpec from "../../examples/spec.json";
import { type DevOptions, parseCli } from "../cli.ts";
import { ComputeNode } from "../compute.ts";
import { ComputeCtlError, errorMessage } from "../errors.ts";
import { log } from "../log.ts";
import { BunRunner } from "../process/bun-runner.ts";
import { Reaper } from "../process/reaper.ts";
import { onTerminationSignals } from "../process/signals.ts";
import { resolveRunAs } from "../process/user.ts";
import { parseComputeConfig, parseComputeSpec, parseJsonText } from "../spec/parse.ts";
import { configureAsPrimary } from "../startup/configure.ts";
import { startCompute } from "../startup/index.ts";
import { makeTestKeys } from "../testing/jwt.ts";
import { startDevEnvironment } from "./environment.ts";

/** PostgreSQL's bin directory: the flag, `pg_config --bindir` on PATH, or the newest /usr/lib/postgresql/N. */
export function findPgBinDir(flag: string | undefined): string {
  if (flag !== undefined) {
    const dir = flag.endsWith("/postgres") ? dirname(flag) : flag;
    if (!existsSync(join(dir, "postgres")))
      throw new ComputeCtlError(`--pgbin: no postgres binary in ${dir}`);
    return dir;
  }
  const pgConfig = Bun.which("pg_config");
  if (pgConfig) {
    const out = Bun.spawnSync([pgConfig, "--bindir"], { stderr: "ignore" })
      .stdout.toString()
      .trim();
    if (out && existsSync(join(out, "postgres"))) return out;
  }
  const base = "/usr/lib/postgresql";
  const versions = existsSync(base)
    ? readdirSync(base)
        .filter((v) => existsSync(join(base, v, "bin", "postgres")))
        .sort((a, b) => Number(b) - Number(a))
    : [];
  if (versions[0] !== undefined) return join(base, versions[0], "bin");
  const onPath = Bun.which("postgres");
  if (onPath) return dirname(realpathSync(onPath));
  throw new ComputeCtlError(
    "no PostgreSQL server binaries found (looked at pg_config --bindir, /usr/lib/postgresql/*/bin and PATH); install them, e.g. `apt-get install postgresql`, or pass --pgbin",
  );
}

/** The spec to start from, validated up front; errors name the file. */
async function loadSpec(path: string | undefined): Promise<Record<string, unknown>> {
  if (path === undefined) return structuredClone(exampleSpec) as Record<string, unknown>;
  try {
    const value = parseJsonText(await Bun.file(path).text());
    if (typeof value !== "object" || value === null || Array.isArray(value)) {
      throw new ComputeCtlError("not a JSON object");
    }
    parseComputeSpec(value);
    return value as Record<string, unknown>;
  } catch (e) {
    throw new ComputeCtlError(`--spec ${path}: ${errorMessage(e)}`, { cause: e });
  }
}

export async function runDev(opts: DevOptions): Promise<number> {
  const pgBinDir = findPgBinDir(opts.pgbin);
  const runAs = resolveRunAs();
  await mkdir(opts.dataDir, { recursive: true });
  await chmod(opts.dataDir, 0o755);
  log.info(
    `dev: PostgreSQL binaries from ${pgBinDir}${runAs ? `, postgres runs as ${runAs.name}` : ""}`,
  );

  // The spec first: bad input must not leave stand-ins or files behind.
  const spec = await loadSpec(opts.spec);
  const env = await startDevEnvironment({ pgBinDir, workDir: opts.dataDir, runAs });
  try {
    return await runDevCompute(opts, env, spec, runAs);
  } finally {
    await env.close();
    await env.removeFiles();
  }
}

async function runDevCompute(
  opts: DevOptions,
  env: Awaited<ReturnType<typeof startDevEnvironment>>,
  spec: Record<string, unknown>,
  runAs: ReturnType<typeof resolveRunAs>,
): Promise<number> {
  log.info(
    `dev: pageserver stand-in at ${env.pageserver.url}, safekeepers ${env.safekeepers.map((s) => s.connstring).join(",")}`,
  );

  const cluster = (spec.cluster ?? {}) as Record<string, unknown>;
  // The last `port` line wins in postgresql.conf: the flag overrides the example's.
  cluster.postgresql_conf = `${String(cluster.postgresql_conf ?? "")}\nport=${opts.pgPort}\n`;
  // The external API checks JWTs as in production: a key made for this run, and a
  // token for this compute (neon_local's shape: compute_id, no exp).
  const keys = await makeTestKeys();
  const token = await keys.sign({ compute_id: "compute-dev" });
  const config = {
    spec: { ...spec, cluster, ...env.storageSpec() },
    compute_ctl_config: { jwks: keys.jwks },
  };
  const configPath = join(opts.dataDir, "config.json");
  await writeFile(configPath, JSON.stringify(config, null, 2));

  const pgdata = join(opts.dataDir, "pgdata");
  const connstr = `postgresql://cloud_admin@127.0.0.1:${opts.pgPort}/postgres`;
  // The same flags an operator would pass to the binary.
  const argv = [
    "-D",
    pgdata,
    "-C",
    connstr,
    "-i",
    "compute-dev",
    "-b",
    env.pgbin.postgres,
    "-c",
    configPath,
    "--external-http-port",
    String(opts.externalHttpPort),
    "--internal-http-port",
    String(opts.internalHttpPort),
    "--dev",
  ];
  const parsed = parseCli(argv, process.env);
  if (parsed.kind !== "run")
    throw new ComputeCtlError("dev: internal error building the command line");

  const reaper = new Reaper();
  reaper.start();
  const node = new ComputeNode(parsed.options, parseComputeConfig(config), {
    log,
    runner: new BunRunner({ spawnedPids: reaper }),
    runAs,
    startCompute: (ctx) => startCompute(ctx, configureAsPrimary),
  });
  // A second Ctrl-C reaches the node too: it then kills the children at once.
  onTerminationSignals((sig) => {
    void node
      .onTerminationSignal(sig)
      .then(() => env.close())
      .then(() => env.removeFiles())
      .finally(() => process.exit(1));
  });

  void node.store.waitForStatus(["running", "failed"]).then((st) => {
    if (st.status === "failed") {
      log.error(`dev: the compute failed to start: ${st.error ?? "(no error text)"}`);
      return;
    }
    const lines = [
      "",
      "compute_ctl dev: the compute is running.",
      `  psql:           psql '${connstr}'`,
      `  token:          export TOKEN=${token}`,
      `  status:         curl -H "Authorization: Bearer $TOKEN" http://127.0.0.1:${opts.externalHttpPort}/status`,
      `  metrics:        curl -H "Authorization: Bearer $TOKEN" http://127.0.0.1:${opts.externalHttpPort}/metrics.json`,
      `  prometheus:     curl http://127.0.0.1:${opts.externalHttpPort}/metrics`,
      `  internal API:   http://127.0.0.1:${opts.internalHttpPort}/`,
      `  same as:        compute_ctl ${argv.join(" ")}`,
      "  Ctrl-C stops postgres, the stand-ins and compute_ctl.",
      "",
    ];
    process.stdout.write(`${lines.join("\n")}\n`);
  });
  try {
    return await node.run();
  } catch (e) {
    log.error(`dev: ${errorMessage(e)}`);
    return 1;
  }
}
