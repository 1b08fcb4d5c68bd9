// A compute started from the built binary against the dev stand-ins.
import { chmodSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import {
  type DevEnvironment,
  type DevEnvironmentOptions,
  startDevEnvironment,
} from "../../src/dev/environment.ts";
import { resolveRunAs } from "../../src/process/user.ts";
import { bearer, makeTestKeys, type TestKeys } from "../../src/testing/jwt.ts";
import { TEST_PG_BIN_DIR } from "../../src/testing/pg.ts";
import { postmasterPids } from "../../src/testing/procs.ts";
import { computeArgv, loopbackPostgresConf, minimalSpecJson } from "../../src/testing/specs.ts";
import { GiveUp } from "../../src/testing/until.ts";
import { freePort, type Started, startBinary, waitUntil, writeJson } from "./binary.ts";

export const PG_BIN_DIR = TEST_PG_BIN_DIR;

export const RUN_AS = resolveRunAs();

/** A work dir the postgres user can traverse (mkdtemp makes it 0700). */
export function workDir(prefix: string): { dir: string; cleanup: () => void } {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  chmodSync(dir, 0o755);
  return { dir, cleanup: () => rmSync(dir, { recursive: true, force: true }) };
}

export interface ComputeUnderTest {
  env: DevEnvironment;
  /** The spec built for this compute (in the config file unless started `empty`). */
  spec: Record<string, unknown>;
  child: Started;
  pgPort: number;
  ext: number;
  /** The internal (no auth) port. */
  int: number;
  /** The `-c` file compute_ctl was started with (re-read by /refresh_configuration). */
  configPath: string;
  pgdata: string;
  status(): Promise<Record<string, unknown>>;
  metrics(): Promise<Record<string, number>>;
  /** A request to the external API with the compute's token (or the given headers). */
  request(method: string, path: string, headers?: Record<string, string>): Promise<Response>;
  /** The keys in the compute's JWKS, to sign other tokens (e.g. the admin scope). */
  keys: TestKeys;
  waitForStatus(want: string[], timeoutMs?: number): Promise<Record<string, unknown>>;
  psql(sql: string, db?: string): Promise<{ code: number; out: string; err: string }>;
  /** Stops compute_ctl (SIGTERM unless said) and the stand-ins; checks no postgres of ours is left. */
  stop(signal?: NodeJS.Signals): Promise<number>;
}

export interface StartOptions {
  envOptions?: Partial<DevEnvironmentOptions>;
  spec?: Record<string, unknown>;
  clusterConf?: string;
  /** Merged into the spec's cluster (roles, databases, settings), keeping its postgresql_conf. */
  cluster?: Record<string, unknown>;
  binEnv?: Record<string, string>;
  /** Use the real postgres as --pgbin instead of the sync-safekeepers stand-in dir. */
  realPgbin?: boolean;
  /** Command prefix for the binary, e.g. `unshare --pid --fork --mount-proc`. */
  prefix?: string[];
  /** Start with `spec: null` (a pooled compute waiting for /configure). */
  empty?: boolean;
}

export async function startCompute(
  root: string,
  name: string,
  opts: StartOptions = {},
): Promise<ComputeUnderTest> {
  const env = await startDevEnvironment({
    pgBinDir: PG_BIN_DIR,
    workDir: root,
    runAs: RUN_AS,
    ...opts.envOptions,
  });
  const pgPort = await freePort();
  const ext = await freePort();
  const int = await freePort();
  const pgdata = join(root, `${name}-pgdata`);
  const spec = minimalSpecJson({
    skip_pg_catalog_updates: true,
    cluster: {
      roles: [],
      databases: [],
      postgresql_conf: loopbackPostgresConf(pgPort, opts.clusterConf),
      settings: [{ name: "work_mem", value: "7MB", vartype: "string" }],
      ...opts.cluster,
    },
    mode: "Primary",
    ...env.storageSpec(),
    ...opts.spec,
  });
  // Keys and tokens shaped like neon_local's: the API is behind the JWT check.
  const keys = await makeTestKeys();
  const token = await keys.sign({ compute_id: name });
  const config = writeJson(join(root, `${name}-config.json`), {
    spec: opts.empty ? null : spec,
    compute_ctl_config: { jwks: keys.jwks },
  });
  const child = startBinary(
    computeArgv({
      pgdata,
      pgPort,
      computeId: name,
      pgbin: opts.realPgbin ? join(PG_BIN_DIR, "postgres") : env.pgbin.postgres,
      config,
      externalPort: ext,
      internalPort: int,
    }),
    opts.binEnv,
    opts.prefix,
  );
  const get = async (path: string) => {
    // Bounded, so one stuck request cannot hide the compute's state from the poll loop.
    const res = await fetch(`http://127.0.0.1:${ext}${path}`, {
      headers: bearer(token),
      signal: AbortSignal.timeout(5000),
    });
    if (!res.ok) throw new Error(`${path}: ${res.status}`);
    return res.json();
  };
  const status = () => get("/status") as Promise<Record<string, unknown>>;
  return {
    env,
    spec,
    child,
    pgPort,
    ext,
    int,
    configPath: config,
    pgdata,
    status,
    metrics: () => get("/metrics.json") as Promise<Record<string, number>>,
    request: (method, path, headers) =>
      fetch(`http://127.0.0.1:${ext}${path}`, { method, headers: headers ?? bearer(token) }),
    keys,
    waitForStatus: (want, timeoutMs = 30_000) =>
      waitUntil(
        `status in ${want.join("|")}`,
        async () => {
          if (child.proc.exitCode !== null)
            throw new GiveUp(
              `compute_ctl exited ${child.proc.exitCode}: ${interestingLog(child.stderr())}`,
            );
          const s = await status();
          return want.includes(String(s.status)) ? s : undefined;
        },
        timeoutMs,
      ).catch((e: unknown) => {
        // Say what compute_ctl was doing, not only what the poll saw.
        throw new Error(
          `${e instanceof Error ? e.message : String(e)}\ncompute_ctl log:\n${interestingLog(child.stderr())}`,
        );
      }),
    psql: async (sql, db = "postgres") => {
      const p = Bun.spawn(
        [
          join(PG_BIN_DIR, "psql"),
          "-XAtq",
          "-h",
          "127.0.0.1",
          "-p",
          String(pgPort),
          "-U",
          "cloud_admin",
          "-d",
          db,
          "-c",
          sql,
        ],
        { stdout: "pipe", stderr: "pipe", timeout: 10_000 },
      );
      const [out, err, code] = await Promise.all([
        new Response(p.stdout).text(),
        new Response(p.stderr).text(),
        p.exited,
      ]);
      return { code, out: out.trim(), err };
    },
    stop: async (signal = "SIGTERM") => {
      const code = await child.stop(signal);
      await env.close();
      await waitUntil(
        "no postgres left for this pgdata",
        () => (postgresPids(pgdata).length === 0 ? true : undefined),
        15_000,
      );
      return code;
    },
  };
}

/** Pids of live postmasters whose command line names `pgdata`. */
export function postgresPids(pgdata: string): number[] {
  return postmasterPids((a) => a === pgdata);
}

/** compute_ctl's log without the access-log lines the polling itself causes. */
export function interestingLog(stderr: string): string {
  return stderr
    .split("\n")
    .filter((l) => !/ (GET|HEAD) \/(status|metrics)/.test(l))
    .slice(-40)
    .join("\n");
}
