// The binary driven the way neon_local drives it (upstream-clients.md §4):
// its argv, its config.json, its token, its /status readiness loop, its
// reconfigure and its stops; and the request/response pairs of §1 and §2 for
// the routes we implement.
import { afterAll, expect, setDefaultTimeout, test } from "bun:test";
import { createHash } from "node:crypto";
import { closeSync, mkdirSync, openSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import type { Subprocess } from "bun";
import { CompactSign, exportJWK, generateKeyPair } from "jose";
import { type DevEnvironment, startDevEnvironment } from "../src/dev/environment.ts";
import { until } from "../src/testing/until.ts";
import { freePort, requireBinary } from "./helpers/binary.ts";
import { PG_BIN_DIR, postgresPids, RUN_AS, workDir } from "./helpers/compute.ts";
import { UPSTREAM_METRICS_KEYS } from "./helpers/upstream.ts";

setDefaultTimeout(60_000);

const root = workDir("compute-ctl-neon-local-");
afterAll(() => root.cleanup());

const STATUS_KEYS = ["start_time", "tenant", "timeline", "status", "last_active", "error"];
const RFC3339_Z = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.(\d{3}|\d{6}|\d{9}))?Z$/;
const RFC3339_OFFSET = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.(\d{3}|\d{6}|\d{9}))?\+00:00$/;
const UUID_V4 = /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;

type Claims = Record<string, unknown>;

/** neon_local's key: JWKS entry from create_jwks_from_pem, tokens with header {typ, alg} and no exp. */
async function neonLocalKeys() {
  const { publicKey, privateKey } = await generateKeyPair("EdDSA", {
    crv: "Ed25519",
    extractable: true,
  });
  const { x } = await exportJWK(publicKey);
  const raw = Buffer.from(String(x), "base64url");
  const jwk = {
    use: "sig",
    key_ops: ["verify"],
    alg: "EdDSA",
    kid: createHash("sha256").update(raw).digest("base64url"),
    kty: "OKP",
    crv: "Ed25519",
    x,
  };
  return { jwks: { keys: [jwk] }, sign: (claims: Claims) => signWith(privateKey, claims) };
}

function signWith(key: CryptoKey, claims: Claims): Promise<string> {
  return new CompactSign(new TextEncoder().encode(JSON.stringify(claims)))
    .setProtectedHeader({ typ: "JWT", alg: "EdDSA" })
    .sign(key);
}

/** setup_pg_conf's lines for a primary, less those vanilla postgres rejects (see below). */
function endpointPostgresConf(pgPort: number, safekeepers: string[]): string {
  return [
    "max_wal_senders=10",
    "wal_log_hints=off",
    "max_replication_slots=10",
    "hot_standby=on",
    "shared_buffers=1MB",
    "effective_io_concurrency=2",
    "fsync=off",
    "max_connections=100",
    "wal_level=logical",
    "wal_sender_timeout=5s",
    "listen_addresses='127.0.0.1'",
    `port=${pgPort}`,
    "wal_keep_size=0",
    "restart_after_crash=off",
    // Not here: shared_preload_libraries=neon, max_replication_{write,flush}_lag
    // and synchronous_standby_names=walproposer need Neon's postgres.
    `neon.safekeepers='${safekeepers.map((s) => s.replace("127.0.0.1", "localhost")).join(",")}'`,
    // Ours: no socket file outside the work dir.
    "unix_socket_directories=''",
    "",
  ].join("\n");
}

interface Endpoint {
  id: string;
  dir: string;
  pgdata: string;
  pgPort: number;
  ext: number;
  int: number;
  env: DevEnvironment;
  proc: Subprocess;
  keys: Awaited<ReturnType<typeof neonLocalKeys>>;
  /** The compute-scoped token neon_local issues (generate_jwt(None)). */
  token: string;
  /** Every answer of the readiness loop, in order. */
  polled: { code: number; status: string | undefined }[];
  log(): string;
}

/** `neon_local endpoint start` (§4.1): config.json, argv, compute.log, pid file, readiness loop. */
async function endpointStart(id: string): Promise<Endpoint> {
  const env = await startDevEnvironment({
    pgBinDir: PG_BIN_DIR,
    workDir: root.dir,
    runAs: RUN_AS,
    safekeepers: 1,
  });
  const dir = join(root.dir, "endpoints", id);
  mkdirSync(dir, { recursive: true, mode: 0o755 });
  const pgdata = join(dir, "pgdata");
  const pgPort = await freePort();
  const ext = await freePort();
  const int = await freePort();
  const keys = await neonLocalKeys();
  const safekeepers = env.safekeepers.map((s) => s.connstring);
  writeFileSync(join(dir, "postgresql.conf"), endpointPostgresConf(pgPort, safekeepers));
  const config = {
    spec: {
      format_version: 1.0,
      operation_uuid: null,
      features: [],
      swap_size_bytes: null,
      disk_quota_bytes: null,
      disable_lfc_resizing: null,
      cluster: {
        cluster_id: null,
        name: null,
        state: null,
        roles: [],
        databases: [],
        postgresql_conf: readFileSync(join(dir, "postgresql.conf"), "utf8"),
        settings: null,
      },
      delta_operations: null,
      skip_pg_catalog_updates: true,
      tenant_id: env.tenantId,
      timeline_id: env.timelineId,
      pageserver_connection_info: {
        shard_count: 0,
        stripe_size: null,
        shards: {
          "0000": { pageservers: [{ id: 1, libpq_url: env.pageserver.url, grpc_url: null }] },
        },
        prefer_protocol: "libpq",
      },
      pageserver_connstring: env.pageserver.url,
      shard_stripe_size: null,
      project_id: null,
      branch_id: null,
      endpoint_id: id,
      safekeepers_generation: null,
      safekeeper_connstrings: safekeepers,
      mode: "Primary",
      storage_auth_token: null,
      remote_extensions: null,
      pgbouncer_settings: null,
      local_proxy_config: null,
      reconfigure_concurrency: 1,
      drop_subscriptions_before_start: false,
      audit_log_level: "Disabled",
      logs_export_host: null,
      endpoint_storage_addr: "127.0.0.1:9",
      endpoint_storage_token: await keys.sign({
        tenant_id: env.tenantId,
        timeline_id: env.timelineId,
        endpoint_id: id,
        exp: Math.floor(Date.now() / 1000) + 86_400,
      }),
      autoprewarm: false,
      offload_lfc_interval_seconds: null,
      suspend_timeout_seconds: -1,
      databricks_settings: null,
    },
    compute_ctl_config: { jwks: keys.jwks, tls: null },
  };
  const configPath = join(dir, "config.json");
  writeFileSync(configPath, JSON.stringify(config, null, 2));

  const logPath = join(dir, "compute.log");
  const fd = openSync(logPath, "a");
  const proc = Bun.spawn(
    [
      requireBinary(),
      "--external-http-port",
      String(ext),
      "--internal-http-port",
      String(int),
      "--pgdata",
      pgdata,
      "--connstr",
      `postgresql://cloud_admin@127.0.0.1:${pgPort}/postgres`,
      "--config",
      configPath,
      // The fake pgbin: real postgres, but a sync-safekeepers answering the stand-ins' LSN.
      "--pgbin",
      env.pgbin.postgres,
      "--compute-id",
      id,
    ],
    { stdin: "ignore", stdout: fd, stderr: fd, env: process.env },
  );
  closeSync(fd);
  writeFileSync(join(dir, "compute_ctl.pid"), String(proc.pid));
  const log = () => readFileSync(logPath, "utf8");

  const token = await keys.sign({ compute_id: id, scope: null, aud: null });
  const ep: Endpoint = {
    id,
    dir,
    pgdata,
    pgPort,
    ext,
    int,
    env,
    proc,
    keys,
    token,
    polled: [],
    log,
  };
  // Every 100 ms with the token; connection errors are retried, `init` keeps waiting.
  try {
    await until(
      "compute running",
      async () => {
        if (proc.exitCode !== null) throw new Error(`compute_ctl exited ${proc.exitCode}`);
        let res: Response;
        try {
          res = await fetch(`http://0.0.0.0:${ext}/status`, {
            headers: { authorization: `Bearer ${token}` },
            signal: AbortSignal.timeout(2_000),
          });
        } catch {
          return undefined;
        }
        const body = res.ok ? ((await res.json()) as { status?: string }) : {};
        ep.polled.push({ code: res.status, status: body.status });
        return body.status !== undefined && body.status !== "init";
      },
      { timeoutMs: 30_000, intervalMs: 100 },
    );
  } catch (e) {
    proc.kill("SIGKILL");
    await proc.exited;
    await killPostgres(pgdata);
    await env.close();
    throw new Error(`${e instanceof Error ? e.message : e}\n${log().slice(-4000)}`);
  }
  return ep;
}

/** After compute_ctl was killed its postgres may be left: kill that too, and wait. */
async function killPostgres(pgdata: string): Promise<void> {
  for (const pid of postgresPids(pgdata)) process.kill(pid, "SIGKILL");
  await until("no postgres left for this pgdata", () => postgresPids(pgdata).length === 0, {
    timeoutMs: 15_000,
  });
}

async function closeEndpoint(ep: Endpoint): Promise<void> {
  if (ep.proc.exitCode === null) {
    ep.proc.kill("SIGKILL");
    await ep.proc.exited;
  }
  await killPostgres(ep.pgdata);
  await ep.env.close();
  await ep.env.removeFiles();
}

function api(ep: Endpoint, path: string, init: RequestInit = {}): Promise<Response> {
  return fetch(`http://0.0.0.0:${ep.ext}${path}`, {
    ...init,
    signal: AbortSignal.timeout(30_000),
  });
}

function auth(token: string, extra: Record<string, string> = {}): Record<string, string> {
  return { authorization: `Bearer ${token}`, ...extra };
}

async function psql(ep: Endpoint, sql: string): Promise<string> {
  const p = Bun.spawn(
    [
      join(PG_BIN_DIR, "psql"),
      "-XAtq",
      `postgresql://cloud_admin@127.0.0.1:${ep.pgPort}/postgres`,
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
  if (code !== 0) throw new Error(`psql: ${err}`);
  return out.replace(/\n$/, "");
}

async function expectJsonError(res: Response, status: number, error: string | RegExp) {
  expect(res.status).toBe(status);
  expect(res.headers.get("content-type")).toBe("application/json");
  const body = (await res.json()) as Record<string, unknown>;
  expect(Object.keys(body)).toEqual(["error"]);
  if (typeof error === "string") expect(body.error).toBe(error);
  else expect(String(body.error)).toMatch(error);
}

async function expectStatusResponse(ep: Endpoint, res: Response, status: string) {
  expect(res.status).toBe(200);
  expect(res.headers.get("content-type")).toBe("application/json");
  const body = (await res.json()) as Record<string, unknown>;
  expect(Object.keys(body)).toEqual(STATUS_KEYS);
  expect(body.status).toBe(status);
  expect(body.tenant).toBe(ep.env.tenantId);
  expect(body.timeline).toBe(ep.env.timelineId);
  expect(body.error).toBeNull();
  expect(String(body.start_time)).toMatch(RFC3339_Z);
  if (body.last_active !== null) expect(String(body.last_active)).toMatch(RFC3339_OFFSET);
  return body;
}

/** `compute_ctl_up` samples of a /metrics text. */
function upSamples(text: string): string[] {
  return text
    .split("\n")
    .filter((l) => l.startsWith("compute_ctl_up{") || l.startsWith("compute_ctl_up "));
}

test("endpoint start, reconfigure, stop (fast) as neon_local does them", async () => {
  const ep = await endpointStart("ep-main");
  try {
    // A compute started with a spec never shows anything but init, then running.
    expect(ep.polled.length).toBeGreaterThan(0);
    for (const p of ep.polled) expect(p.code).toBe(200);
    for (const p of ep.polled.slice(0, -1)) expect(p.status).toBe("init");
    expect(ep.polled.at(-1)?.status).toBe("running");
    expect(await psql(ep, "SELECT 1")).toBe("1");

    // endpoint reconfigure (§4.3) after a respec of cluster.settings, as test_compute_reconfigure.
    const config = JSON.parse(readFileSync(join(ep.dir, "config.json"), "utf8"));
    const prefix = "%m [%p] [test_compute_reconfigure]: ";
    config.spec.cluster.settings = [{ name: "log_line_prefix", vartype: "string", value: prefix }];
    config.spec.cluster.postgresql_conf = readFileSync(join(ep.dir, "postgresql.conf"), "utf8");
    const res = await api(ep, "/configure", {
      method: "POST",
      headers: auth(ep.token, { "content-type": "application/json" }),
      body: JSON.stringify({ spec: config.spec, compute_ctl_config: config.compute_ctl_config }),
    });
    await expectStatusResponse(ep, res, "running");
    expect(await psql(ep, "SHOW log_line_prefix")).toBe(prefix);
    // Exactly one compute_ctl_up sample, running, with the build tag.
    const metrics = await (
      await fetch(`http://127.0.0.1:${ep.ext}/metrics`, { signal: AbortSignal.timeout(5_000) })
    ).text();
    expect(upSamples(metrics)).toEqual([
      `compute_ctl_up{build_tag="${process.env.BUILD_TAG ?? "latest"}",status="running"} 1`,
    ]);

    // endpoint stop (fast): pg_ctl with a cleared environment, then ≤ 10 s for compute_ctl.
    const env: Record<string, string> = {};
    for (const k of ["LD_LIBRARY_PATH", "DYLD_LIBRARY_PATH"]) {
      const v = process.env[k];
      if (v !== undefined) env[k] = v;
    }
    const pgCtl = Bun.spawn(
      [join(PG_BIN_DIR, "pg_ctl"), "-D", ep.pgdata, "-w", "-m", "fast", "stop"],
      {
        env,
        stdout: "pipe",
        stderr: "pipe",
        timeout: 20_000,
        ...(RUN_AS ? { uid: RUN_AS.uid, gid: RUN_AS.gid } : {}),
      },
    );
    const pgCtlErr = await new Response(pgCtl.stderr).text();
    expect({ code: await pgCtl.exited, err: pgCtlErr }).toEqual({ code: 0, err: "" });
    const stopped = performance.now();
    await until("compute_ctl exited", () => ep.proc.exitCode !== null, {
      timeoutMs: 10_000,
      intervalMs: 100,
    });
    expect(performance.now() - stopped).toBeLessThan(10_000);
    // compute_ctl exits with postgres' code: 0 after a fast shutdown.
    expect(ep.proc.exitCode).toBe(0);
    expect(postgresPids(ep.pgdata)).toEqual([]);
  } catch (e) {
    throw new Error(
      `${e instanceof Error ? e.message : e}\ncompute.log:\n${ep.log().slice(-4000)}`,
    );
  } finally {
    await closeEndpoint(ep);
  }
});

test("§1/§2 request/response pairs, then endpoint stop --mode immediate-terminate", async () => {
  const ep = await endpointStart("ep-api");
  try {
    const admin = await ep.keys.sign({
      compute_id: null,
      scope: "compute_ctl:admin",
      aud: ["compute"],
    });

    // GET /status: ComputeStatusResponse, x-request-id echoed or generated.
    const st = await api(ep, "/status", { headers: auth(ep.token, { "x-request-id": "req-42" }) });
    expect(st.headers.get("x-request-id")).toBe("req-42");
    await expectStatusResponse(ep, st, "running");
    const st2 = await api(ep, "/status", { headers: auth(ep.token) });
    expect(String(st2.headers.get("x-request-id"))).toMatch(UUID_V4);
    await expectStatusResponse(ep, st2, "running");
    // localhost, as the Python client connects (may resolve to ::1 first).
    const viaLocalhost = await fetch(`http://localhost:${ep.ext}/status`, {
      headers: auth(ep.token),
      signal: AbortSignal.timeout(5_000),
    });
    await expectStatusResponse(ep, viaLocalhost, "running");

    // GET /metrics.json: all thirteen integers in upstream's order.
    const mj = await api(ep, "/metrics.json", { headers: auth(ep.token) });
    expect(mj.status).toBe(200);
    expect(mj.headers.get("content-type")).toBe("application/json");
    const m = (await mj.json()) as Record<string, number>;
    expect(Object.keys(m)).toEqual(UPSTREAM_METRICS_KEYS);
    for (const k of UPSTREAM_METRICS_KEYS)
      expect({ [k]: Number.isInteger(m[k]) && (m[k] ?? -1) >= 0 }).toEqual({ [k]: true });
    expect(m.wait_for_spec_ms).toBe(0); // spec from --config
    expect(m.sync_safekeepers_ms).toBe(0); // the safekeeper agrees: fast path, no sync
    expect(m.basebackup_bytes).toBeGreaterThan(0);
    expect(m.start_postgres_ms).toBeGreaterThan(0);
    expect(m.total_startup_ms).toBeGreaterThanOrEqual(m.start_postgres_ms ?? 0);

    // GET /metrics: no auth, Prometheus text.
    const pm = await fetch(`http://localhost:${ep.ext}/metrics`, {
      signal: AbortSignal.timeout(5_000),
    });
    expect(pm.status).toBe(200);
    expect(pm.headers.get("content-type")).toBe("text/plain; version=0.0.4");
    const text = await pm.text();
    expect(text).toContain("# HELP compute_ctl_up Whether compute_ctl is running\n");
    expect(text).toContain("# TYPE compute_ctl_up gauge\n");
    expect(upSamples(text)).toEqual([
      `compute_ctl_up{build_tag="${process.env.BUILD_TAG ?? "latest"}",status="running"} 1`,
    ]);

    // JWT checks (§1, test_compute_http.py).
    const other = await neonLocalKeys();
    const past = Math.floor(Date.now() / 1000) - 120;
    const cases: [string, Record<string, string>, number, string | null][] = [
      ["no header", {}, 400, "invalid authorization token"],
      ["not Bearer", { authorization: "Basic Zm9vOmJhcg==" }, 400, "invalid authorization token"],
      ["not a JWT", auth("not-a-token"), 401, "failed to verify authorization token"],
      [
        "another key",
        auth(await other.sign({ compute_id: ep.id })),
        401,
        "failed to verify authorization token",
      ],
      [
        "expired",
        auth(await ep.keys.sign({ compute_id: ep.id, exp: past })),
        401,
        "failed to verify authorization token",
      ],
      [
        "empty claims",
        auth(await ep.keys.sign({})),
        403,
        "missing compute_id in authorization token claims",
      ],
      [
        "another compute",
        auth(await ep.keys.sign({ compute_id: "ep-other", scope: null, aud: null })),
        403,
        "invalid compute ID in authorization token claims",
      ],
      [
        "admin without aud",
        auth(await ep.keys.sign({ scope: "compute_ctl:admin" })),
        401,
        "missing audience in authorization token claims",
      ],
      [
        "admin, wrong aud",
        auth(await ep.keys.sign({ scope: "compute_ctl:admin", aud: ["invalid"] })),
        401,
        "invalid audience in authorization token claims",
      ],
      ["admin", auth(admin), 200, null],
      ["future exp", auth(await ep.keys.sign({ compute_id: ep.id, exp: past + 3600 })), 200, null],
    ];
    for (const [what, headers, code, error] of cases) {
      const res = await api(ep, "/status", { headers });
      expect({ what, code: res.status }).toEqual({ what, code });
      expect(res.headers.get("x-request-id")).not.toBeNull();
      if (error === null) await expectStatusResponse(ep, res, "running");
      else await expectJsonError(res, code, error);
    }

    // /configure body errors (§1.2): nothing changes.
    const spec = JSON.parse(readFileSync(join(ep.dir, "config.json"), "utf8")).spec;
    const body = JSON.stringify({ spec, compute_ctl_config: { jwks: { keys: [] } } });
    await expectJsonError(
      await api(ep, "/configure", { method: "POST", headers: auth(ep.token), body }),
      415,
      "expected request with `content-type: application/json`",
    );
    const json = auth(ep.token, { "content-type": "application/json" });
    await expectJsonError(
      await api(ep, "/configure", { method: "POST", headers: json, body: '{"spec": ' }),
      400,
      /^failed to parse the request body as json: /,
    );
    // A wrong shape: 400 naming the path (COMPATIBILITY.md; upstream 422).
    await expectJsonError(
      await api(ep, "/configure", {
        method: "POST",
        headers: json,
        body: JSON.stringify({ spec }),
      }),
      400,
      "compute_ctl_config: missing",
    );
    await expectStatusResponse(
      ep,
      await api(ep, "/status", { headers: auth(ep.token) }),
      "running",
    );

    // Unknown paths (routes not implemented yet, on both ports) and wrong methods: empty bodies.
    const external: [string, string][] = [
      ["GET", "/dbs_and_roles"],
      ["GET", "/database_schema?database=postgres"],
      ["GET", "/lfc/prewarm"],
      ["POST", "/lfc/offload"],
      ["POST", "/promote"],
      ["GET", "/insights"],
      ["POST", "/check_writability"],
      ["GET", "/status/"],
    ];
    for (const [method, path] of external) {
      const res = await api(ep, path, { method, headers: auth(ep.token) });
      expect({ method, path, code: res.status, body: await res.text() }).toEqual({
        method,
        path,
        code: 404,
        body: "",
      });
    }
    for (const path of ["/extensions", "/grants"]) {
      const res = await fetch(`http://127.0.0.1:${ep.int}${path}`, {
        method: "POST",
        signal: AbortSignal.timeout(5_000),
      });
      expect({ path, code: res.status, body: await res.text() }).toEqual({
        path,
        code: 404,
        body: "",
      });
    }
    const wrong = await api(ep, "/configure", { method: "GET", headers: auth(ep.token) });
    expect({ code: wrong.status, body: await wrong.text() }).toEqual({ code: 405, body: "" });

    // /terminate with a bad query: 400, and the compute keeps running.
    const bad = await api(ep, "/terminate?mode=slow", {
      method: "POST",
      headers: auth(admin),
    });
    expect(bad.status).toBe(400);
    await expectStatusResponse(
      ep,
      await api(ep, "/status", { headers: auth(ep.token) }),
      "running",
    );

    // endpoint stop --mode immediate-terminate: admin token, {"lsn"}, then SIGTERM and ≤ 10 s.
    const term = await api(ep, "/terminate?mode=immediate", {
      method: "POST",
      headers: auth(admin),
    });
    expect(term.status).toBe(200);
    expect(term.headers.get("content-type")).toBe("application/json");
    expect(await term.json()).toEqual({ lsn: ep.env.template.checkpointLsn });
    expect(ep.env.template.checkpointLsn).toMatch(/^[0-9A-F]+\/[0-9A-F]+$/);
    expect(postgresPids(ep.pgdata)).toEqual([]);
    if (ep.proc.exitCode === null) ep.proc.kill("SIGTERM");
    await until(
      "compute_ctl exited",
      () => ep.proc.exitCode !== null || ep.proc.signalCode !== null,
      {
        timeoutMs: 10_000,
        intervalMs: 100,
      },
    );
  } catch (e) {
    throw new Error(
      `${e instanceof Error ? e.message : e}\ncompute.log:\n${ep.log().slice(-4000)}`,
    );
  } finally {
    await closeEndpoint(ep);
  }
});
