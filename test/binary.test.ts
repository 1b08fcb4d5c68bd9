// Smoke tests of the built binary: CLI behaviour, config errors, /status.
import { afterAll, describe, expect, setDefaultTimeout, test } from "bun:test";
import { chmodSync, existsSync } from "node:fs";
import { join } from "node:path";
import { bearer, makeTestKeys } from "../src/testing/jwt.ts";
import { TEST_PG_BIN_DIR } from "../src/testing/pg.ts";
import { minimalSpecJson } from "../src/testing/specs.ts";
import {
  FIXTURES,
  freePort,
  runBinary,
  startBinary,
  tempDir,
  waitUntil,
  writeJson,
} from "./helpers/binary.ts";

// Process-level: real postgres and the built binary; each wait has its own deadline.
setDefaultTimeout(60_000);

const tmp = tempDir();
// The prewarm initdb runs as the postgres user: it must reach <pgdata>.warmup.
chmodSync(tmp.dir, 0o755);
afterAll(() => tmp.cleanup());

function baseArgs(config: string, ports?: { ext: number; int: number }): string[] {
  const args = [
    "-D",
    join(tmp.dir, "pgdata"),
    "-C",
    "postgresql://cloud_admin@127.0.0.1:55432/postgres",
    "-i",
    "compute-smoke",
    "-b",
    join(TEST_PG_BIN_DIR, "postgres"),
    "-c",
    config,
  ];
  if (ports)
    args.push("--external-http-port", String(ports.ext), "--internal-http-port", String(ports.int));
  return args;
}

function noStackTrace(text: string) {
  expect(text).not.toMatch(/^\s+at .+:\d+/m);
}

describe("command line", () => {
  test("--help prints every flag and exits 0", async () => {
    const r = await runBinary(["--help"]);
    expect(r.code).toBe(0);
    for (const flag of [
      "--pgdata",
      "--connstr",
      "--compute-id",
      "--config",
      "--control-plane-uri",
      "--lakebase-mode",
    ]) {
      expect(r.stdout).toContain(flag);
    }
  });

  test("--version exits 0 with the version and build tag", async () => {
    const r = await runBinary(["--version"]);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/^compute_ctl \S+ \(build_tag \S+, bun \d+\.\d+\.\d+\)\n$/);
  });

  test("an unknown flag is a usage error: exit 2, message names the flag", async () => {
    const r = await runBinary(["--no-such-flag"]);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain("--no-such-flag");
    noStackTrace(r.stderr);
  });

  test("-c with -p conflict is a usage error", async () => {
    const r = await runBinary([...baseArgs("/x.json"), "-p", "http://127.0.0.1:1"]);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain("--control-plane-uri");
  });

  test("neither -c nor -p: clear message, non-zero exit", async () => {
    const r = await runBinary([
      "-D",
      "/tmp/x",
      "-C",
      "postgresql://a@127.0.0.1/postgres",
      "-i",
      "c1",
    ]);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(/--config|--control-plane-uri/);
    noStackTrace(r.stderr);
  });
});

describe("config errors", () => {
  test("missing config file: exit 1, names the file", async () => {
    const r = await runBinary(baseArgs(join(tmp.dir, "missing.json")));
    expect(r.code).toBe(1);
    expect(r.stderr).toContain("missing.json");
    noStackTrace(r.stderr);
  });

  test("legacy bare spec fixture: exit 1, names compute_ctl_config", async () => {
    const r = await runBinary(
      baseArgs(join(FIXTURES, "docker_compose_spec__legacy_bare_computespec.json")),
    );
    expect(r.code).toBe(1);
    expect(r.stderr).toContain("compute_ctl_config");
    noStackTrace(r.stderr);
  });

  test("invalid JSON: exit 1 with a parse message", async () => {
    const path = join(tmp.dir, "bad.json");
    await Bun.write(path, '{"spec": ');
    const r = await runBinary(baseArgs(path));
    expect(r.code).toBe(1);
    expect(r.stderr).toContain("bad.json");
    noStackTrace(r.stderr);
  });

  test("a primary spec without safekeepers is fatal before listening", async () => {
    const ports = { ext: await freePort(), int: await freePort() };
    const config = writeJson(join(tmp.dir, "nosk.json"), {
      // No safekeepers at all: neither the field nor the neon.safekeepers setting.
      spec: minimalSpecJson({ safekeeper_connstrings: [] }),
      compute_ctl_config: { jwks: { keys: [] } },
    });
    const r = await runBinary(baseArgs(config, ports));
    expect(r.code).toBe(1);
    expect(r.stderr).toContain("safekeeper connstrings should be provided");
  });

  test("docker-compose config with its TENANT_ID placeholder: fatal, names the setting", async () => {
    const r = await runBinary(baseArgs(join(FIXTURES, "docker_compose_compute_config.json")));
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(
      /invalid compute spec: invalid tenant id \(at spec\.cluster\.settings\[\d+\]\.value\)/,
    );
  });
});

describe("HTTP", () => {
  test("an empty compute answers /status with status empty and null last_active; SIGTERM exits 1", async () => {
    const ports = { ext: await freePort(), int: await freePort() };
    const keys = await makeTestKeys();
    const auth = bearer(await keys.sign({ compute_id: "compute-smoke" }));
    const config = writeJson(join(tmp.dir, "empty.json"), {
      spec: null,
      compute_ctl_config: { jwks: keys.jwks },
    });
    const child = startBinary(baseArgs(config, ports));
    try {
      const body = await waitUntil("GET /status", async () => {
        const res = await fetch(`http://127.0.0.1:${ports.ext}/status`, { headers: auth });
        return res.ok ? ((await res.json()) as Record<string, unknown>) : undefined;
      });
      expect(body.status).toBe("empty");
      expect(body.last_active).toBeNull();
      expect(body.tenant).toBeNull();
      expect(body.start_time).toMatch(/Z$/);
      const v6 = await fetch(`http://[::1]:${ports.ext}/metrics.json`, { headers: auth });
      expect(v6.status).toBe(200);
      // The external API is behind the JWT check; /metrics is open.
      expect((await fetch(`http://127.0.0.1:${ports.ext}/status`)).status).toBe(400);
      const wrong = bearer(await keys.sign({ compute_id: "another-compute" }));
      const denied = await fetch(`http://127.0.0.1:${ports.ext}/status`, { headers: wrong });
      expect(denied.status).toBe(403);
      expect(await denied.json()).toEqual({
        error: "invalid compute ID in authorization token claims",
      });
      const prom = await fetch(`http://127.0.0.1:${ports.ext}/metrics`);
      expect(prom.headers.get("content-type")).toBe("text/plain; version=0.0.4");
      expect(await prom.text()).toContain('compute_ctl_up{build_tag="latest",status="empty"} 1');
      const internal = await fetch(`http://127.0.0.1:${ports.int}/nope`);
      expect(internal.status).toBe(404);
    } finally {
      expect(await child.stop("SIGTERM")).toBe(1);
    }
    expect(child.stderr()).toContain("received SIGTERM termination signal");
    // Started without a spec: the throwaway prewarm postgres ran first and is gone.
    expect(child.stderr()).toContain("prewarming VM memory");
    expect(child.stderr()).toContain("the neon library is not installed");
    expect(existsSync(join(tmp.dir, "pgdata.warmup"))).toBe(false);
  });
});
