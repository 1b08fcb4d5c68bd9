import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import {
  ControlPlaneError,
  controlPlaneSpecUrl,
  type FetchLike,
  fetchConfigFromControlPlane,
} from "./control-plane.ts";
import { httpStatusLabel } from "./http-status.ts";

const TENANT = "b0554b632bd4d547a63b86c3630317e8";
const TIMELINE = "2414a61ffc94e428f14b5758fe308e13";
const JWKS = { jwks: { keys: [] } };
const SPEC = {
  format_version: 1.0,
  cluster: { roles: [], databases: [], postgresql_conf: "shared_preload_libraries='neon'" },
  tenant_id: TENANT,
  timeline_id: TIMELINE,
  pageserver_connstring: "postgres://no_user@localhost:64000",
  safekeeper_connstrings: ["127.0.0.1:5454"],
  mode: "Primary",
  skip_pg_catalog_updates: true,
  reconfigure_concurrency: 1,
  suspend_timeout_seconds: -1,
};

type Answer = { status: number; body: string };

/** A control-plane stand-in: each compute id has a script of answers. */
const scripts = new Map<string, Answer[]>();
const seen: { path: string; method: string; authorization: string | null }[] = [];
let server: ReturnType<typeof Bun.serve>;
let base: string;

const json = (status: number, value: unknown): Answer => ({ status, body: JSON.stringify(value) });

beforeAll(() => {
  server = Bun.serve({
    hostname: "127.0.0.1",
    port: 0,
    fetch(req) {
      const url = new URL(req.url);
      seen.push({
        path: url.pathname,
        method: req.method,
        authorization: req.headers.get("authorization"),
      });
      const id = /^\/compute\/api\/v2\/computes\/([^/]+)\/spec$/.exec(url.pathname)?.[1] ?? "";
      const script = scripts.get(id);
      const answer = script && script.length > 1 ? script.shift() : script?.[0];
      if (answer === undefined) return new Response("no such compute", { status: 404 });
      return new Response(answer.body, {
        status: answer.status,
        headers: { "content-type": "application/json" },
      });
    },
  });
  base = `http://127.0.0.1:${server.port}`;
});

afterAll(() => {
  server.stop(true);
});

interface Run {
  labels: string[];
  sleeps: number[];
  logs: string[];
}

function harness(
  computeId: string,
  answers: Answer[],
  extra: { token?: string; fetch?: FetchLike; baseUri?: string } = {},
) {
  scripts.set(computeId, answers);
  const run: Run = { labels: [], sleeps: [], logs: [] };
  const promise = fetchConfigFromControlPlane({
    baseUri: extra.baseUri ?? base,
    computeId,
    token: extra.token ?? "secret",
    ...(extra.fetch ? { fetch: extra.fetch } : {}),
    sleep: async (ms) => {
      run.sleeps.push(ms);
    },
    onAttempt: (label) => run.labels.push(label),
    log: {
      info: (m) => run.logs.push(`INFO ${m}`),
      error: (m) => run.logs.push(`ERROR ${m}`),
    },
  });
  return { run, promise };
}

async function failure(promise: Promise<unknown>): Promise<ControlPlaneError> {
  try {
    await promise;
  } catch (e) {
    expect(e).toBeInstanceOf(ControlPlaneError);
    return e as ControlPlaneError;
  }
  throw new Error("expected a failure");
}

describe("fetchConfigFromControlPlane", () => {
  test("attached with a spec", async () => {
    const { run, promise } = harness("c-attached", [
      json(200, { status: "attached", spec: SPEC, compute_ctl_config: JWKS }),
    ]);
    const config = await promise;
    expect(config.spec?.tenant_id as string).toBe(TENANT);
    expect(config.spec?.mode).toEqual({ kind: "primary" });
    expect(config.compute_ctl_config).toEqual({ jwks: { keys: [] }, tls: null });
    expect(run.labels).toEqual(["200 OK"]);
    expect(run.sleeps).toEqual([]);
    expect(run.logs).toEqual([
      `INFO getting config from control plane: ${base}/compute/api/v2/computes/c-attached/spec`,
    ]);
    const req = seen.findLast((r) => r.path.includes("c-attached"));
    expect(req).toEqual({
      path: "/compute/api/v2/computes/c-attached/spec",
      method: "GET",
      authorization: "Bearer secret",
    });
  });

  test("empty: spec as sent (null)", async () => {
    const { run, promise } = harness("c-empty", [
      json(200, { status: "empty", spec: null, compute_ctl_config: JWKS }),
    ]);
    expect(await promise).toEqual({
      spec: null,
      compute_ctl_config: { jwks: { keys: [] }, tls: null },
    });
    expect(run.labels).toEqual(["200 OK"]);
  });

  test("the bearer header is sent even with an empty token", async () => {
    const { promise } = harness(
      "c-notoken",
      [json(200, { status: "empty", compute_ctl_config: JWKS })],
      { token: "" },
    );
    await promise;
    // Bun's fetch may trim the trailing space of a header value; what matters is the scheme.
    const auth = seen.findLast((r) => r.path.includes("c-notoken"))?.authorization;
    expect(auth === "Bearer " || auth === "Bearer").toBe(true);
  });

  test("502 then success is retried after 100 ms", async () => {
    const { run, promise } = harness("c-502", [
      { status: 502, body: "bad gateway" },
      json(200, { status: "attached", spec: SPEC, compute_ctl_config: JWKS }),
    ]);
    expect((await promise).spec).not.toBeNull();
    expect(run.labels).toEqual(["502 Bad Gateway", "200 OK"]);
    expect(run.sleeps).toEqual([100]);
    expect(run.logs[1]).toBe(
      "ERROR attempt 1 to get config failed with: control plane request failed with 502",
    );
  });

  test("503 three times exhausts the attempts (and sleeps after the last)", async () => {
    const { run, promise } = harness("c-503", [{ status: 503, body: "" }]);
    const err = await failure(promise);
    expect(err.message).toBe(
      "Exhausted all attempts to retrieve the config from the control plane",
    );
    expect((err.cause as Error).message).toBe("control plane is temporarily unavailable");
    expect(run.labels).toEqual([
      "503 Service Unavailable",
      "503 Service Unavailable",
      "503 Service Unavailable",
    ]);
    expect(run.sleeps).toEqual([100, 100, 100]);
  });

  test("garbage JSON is retried, then exhausts", async () => {
    const { run, promise } = harness("c-garbage", [{ status: 200, body: "{not json" }]);
    const err = await failure(promise);
    expect(err.message).toBe(
      "Exhausted all attempts to retrieve the config from the control plane",
    );
    expect((err.cause as Error).message).toBe(
      "could not deserialize control plane response: invalid JSON at line 1 column 2: expected a string key or '}', found \"n\"",
    );
    expect(run.labels).toEqual(["200 OK", "200 OK", "200 OK"]);
    expect(run.sleeps).toEqual([100, 100, 100]);
  });

  test("a wrong shape is retried like garbage", async () => {
    const { run, promise } = harness("c-shape", [
      json(200, {
        status: "attached",
        spec: { ...SPEC, suspend_timeout_seconds: undefined },
        compute_ctl_config: JWKS,
      }),
      json(200, { status: "empty", compute_ctl_config: JWKS }),
    ]);
    expect((await promise).spec).toBeNull();
    expect(run.labels).toEqual(["200 OK", "200 OK"]);
    expect(run.logs[1]).toBe(
      "ERROR attempt 1 to get config failed with: could not deserialize control plane response: spec.suspend_timeout_seconds: missing",
    );
  });

  test("404 fails at once", async () => {
    const { run, promise } = harness("c-404", [{ status: 404, body: "{}" }]);
    const err = await failure(promise);
    expect(err.message).toBe("unexpected control plane response status code: 404 Not Found");
    expect(err.retryable).toBe(false);
    expect(run.labels).toEqual(["404 Not Found"]);
    expect(run.sleeps).toEqual([]);
  });

  test("other 2xx and 5xx fail at once too", async () => {
    for (const [status, label] of [
      [204, "204 No Content"],
      [500, "500 Internal Server Error"],
      [599, "599 <unknown status code>"],
    ] as const) {
      const { run, promise } = harness(`c-${status}`, [{ status, body: "" }]);
      expect((await failure(promise)).message).toBe(
        `unexpected control plane response status code: ${label}`,
      );
      expect(run.labels).toEqual([label]);
    }
  });

  test("attached with a null spec fails at once", async () => {
    const { run, promise } = harness("c-nullspec", [
      json(200, { status: "attached", spec: null, compute_ctl_config: JWKS }),
    ]);
    const err = await failure(promise);
    expect(err.message).toBe("compute is attached, but spec is empty");
    expect(run.labels).toEqual(["200 OK"]);
    expect(run.sleeps).toEqual([]);
  });

  test("transport errors are labelled unknown and retried", async () => {
    const closed = Bun.serve({ hostname: "127.0.0.1", port: 0, fetch: () => new Response("") });
    const deadBase = `http://127.0.0.1:${closed.port}`;
    closed.stop(true);
    const { run, promise } = harness("c-dead", [], { baseUri: deadBase });
    const err = await failure(promise);
    expect(err.message).toBe(
      "Exhausted all attempts to retrieve the config from the control plane",
    );
    expect((err.cause as Error).message.startsWith("control plane request failed: ")).toBe(true);
    expect(run.labels).toEqual(["unknown", "unknown", "unknown"]);
    expect(run.sleeps).toEqual([100, 100, 100]);
  });

  test("URL by plain concatenation; each request carries a timeout signal", async () => {
    const urls: string[] = [];
    const fakeFetch: FetchLike = async (url, init) => {
      urls.push(url);
      expect(init.signal).toBeInstanceOf(AbortSignal);
      expect(init.method).toBe("GET");
      return new Response(JSON.stringify({ status: "empty", compute_ctl_config: JWKS }));
    };
    const { promise } = harness("c-fake", [], { baseUri: "http://cp.example/", fetch: fakeFetch });
    await promise;
    expect(urls).toEqual(["http://cp.example//compute/api/v2/computes/c-fake/spec"]);
    expect(controlPlaneSpecUrl("http://h:1", "id")).toBe(
      "http://h:1/compute/api/v2/computes/id/spec",
    );
  });

  test("an aborted request (timeout) counts as a transport error", async () => {
    const labels: string[] = [];
    const err = await failure(
      fetchConfigFromControlPlane({
        baseUri: "http://cp.invalid",
        computeId: "c",
        token: "",
        timeoutMs: 1,
        fetch: (_url, init) =>
          new Promise((_resolve, reject) => {
            init.signal?.addEventListener("abort", () => reject(init.signal?.reason));
          }),
        sleep: async () => {},
        onAttempt: (l) => labels.push(l),
      }),
    );
    expect(err.message).toBe(
      "Exhausted all attempts to retrieve the config from the control plane",
    );
    expect(labels).toEqual(["unknown", "unknown", "unknown"]);
  });
});

describe("httpStatusLabel", () => {
  test.each([
    [200, "200 OK"],
    [502, "502 Bad Gateway"],
    [503, "503 Service Unavailable"],
    [404, "404 Not Found"],
    [203, "203 Non Authoritative Information"],
    [299, "299 <unknown status code>"],
  ])("%p -> %p", (status, label) => {
    expect(httpStatusLabel(status)).toBe(label);
  });
});
