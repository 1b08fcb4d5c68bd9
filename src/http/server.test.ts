import { describe, expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { ConfigError, InvalidStatusError } from "../errors.ts";
import { memoryLogger } from "../log.ts";
import { COMPUTE_METRICS_FIELDS } from "../state/metrics.ts";
import { ComputeStateStore } from "../state/store.ts";
import { makeTestKeys } from "../testing/jwt.ts";
import { until } from "../testing/until.ts";
import { AUTH_ERRORS, authorize } from "./middleware/authorize.ts";
import type { Route } from "./route.ts";
import { ALL_INTERFACES, buildApp, EXTERNAL_ROUTES, LOOPBACK, listen } from "./server.ts";

function setup(extra: Route[] = []) {
  const { log, lines } = memoryLogger();
  const store = new ComputeStateStore({ log, now: () => 1_700_000_000_123_456_789n });
  const forwarded: string[] = [];
  const app = buildApp([...EXTERNAL_ROUTES, ...extra], {
    store,
    log,
    computeId: "compute-1",
    forwardTermination: () => forwarded.push("forwarded"),
  });
  return { app, store, lines, forwarded };
}

describe("GET /status", () => {
  test("exact upstream JSON: key order, Z start_time, null last_active", async () => {
    const { app } = setup();
    const res = await app.request("/status");
    expect(res.status).toBe(200);
    expect(res.headers.get("content-type")).toBe("application/json");
    expect(await res.text()).toBe(
      '{"start_time":"2023-11-14T22:13:20.123456789Z","tenant":null,"timeline":null,"status":"empty","last_active":null,"error":null}',
    );
  });

  test("last_active renders with +00:00 once set, status snake_case", async () => {
    const { app, store } = setup();
    store.setStatus("configuration_pending");
    store.updateLastActive(1_700_000_100_500_000_000n);
    const body = (await (await app.request("/status")).json()) as Record<string, unknown>;
    expect(body.status).toBe("configuration_pending");
    expect(body.last_active).toBe("2023-11-14T22:15:00.500+00:00");
  });

  test("failed status carries the error text", async () => {
    const { app, store } = setup();
    store.setStatus("init");
    store.setFailedStatus(new Error("failed to sync safekeepers", { cause: new Error("timeout") }));
    const body = (await (await app.request("/status")).json()) as Record<string, unknown>;
    expect(body.status).toBe("failed");
    expect(body.error).toBe("failed to sync safekeepers\n\nCaused by:\n    timeout");
  });

  test("HEAD answers like GET without a body", async () => {
    const { app } = setup();
    const res = await app.request("/status", { method: "HEAD" });
    expect(res.status).toBe(200);
    expect(await res.text()).toBe("");
  });
});

describe("GET /metrics.json", () => {
  test("all thirteen ComputeMetrics fields in upstream order", async () => {
    const { app, store } = setup();
    store.setMetric("basebackup_ms", 42);
    const res = await app.request("/metrics.json");
    expect(res.status).toBe(200);
    const body = (await res.json()) as Record<string, unknown>;
    expect(Object.keys(body)).toEqual([...COMPUTE_METRICS_FIELDS]);
    expect(body.basebackup_ms).toBe(42);
    expect(body.total_startup_ms).toBe(0);
  });
});

describe("response shaping", () => {
  test("unknown path: 404 with an empty body; trailing slash is not normalised", async () => {
    const { app } = setup();
    for (const path of ["/nope", "/status/"]) {
      const res = await app.request(path);
      expect(res.status).toBe(404);
      expect(await res.text()).toBe("");
    }
  });

  test("known path, wrong method: 405 with an empty body and Allow", async () => {
    const { app } = setup();
    const res = await app.request("/status", { method: "POST" });
    expect(res.status).toBe(405);
    expect(res.headers.get("allow")).toBe("GET");
    expect(await res.text()).toBe("");
  });

  test("x-request-id is echoed, or generated as a UUID", async () => {
    const { app } = setup();
    const echoed = await app.request("/status", { headers: { "x-request-id": "abc-123" } });
    expect(echoed.headers.get("x-request-id")).toBe("abc-123");
    const generated = await app.request("/nope");
    expect(generated.headers.get("x-request-id")).toMatch(
      /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/,
    );
  });

  test("one access line per request, with its request id, also for 404/405 and async errors", async () => {
    const routes: Route[] = [
      {
        method: "GET",
        path: "/later",
        auth: false,
        handler: async () => {
          throw new ConfigError("late");
        },
      },
    ];
    const { app, lines } = setup(routes);
    const headers = { "x-request-id": "r7" };
    await app.request("/status", { headers });
    await app.request("/nope", { headers });
    await app.request("/status", { method: "POST", headers });
    const late = await app.request("/later", { headers });
    expect(late.status).toBe(400);
    expect(late.headers.get("x-request-id")).toBe("r7");
    expect(lines.filter((l) => l.includes("request_id=")).map((l) => l.slice(25))).toEqual([
      " INFO GET /status request_id=r7",
      " INFO GET /nope request_id=r7",
      " INFO POST /status request_id=r7",
      " INFO GET /later request_id=r7",
    ]);
  });

  test("the /status and /metrics.json bodies follow every state change", async () => {
    const { app, store } = setup();
    const status = async () =>
      ((await (await app.request("/status")).json()) as { status: string }).status;
    const waited = async () =>
      ((await (await app.request("/metrics.json")).json()) as { wait_for_spec_ms: number })
        .wait_for_spec_ms;
    expect([await status(), await status()]).toEqual(["empty", "empty"]);
    store.setStatus("configuration_pending");
    expect(await status()).toBe("configuration_pending");
    expect(await waited()).toBe(0);
    store.setMetric("wait_for_spec_ms", 12);
    expect([await waited(), await waited()]).toEqual([12, 12]);
    store.setMetric("wait_for_spec_ms", 13);
    expect(await waited()).toBe(13);
  });

  test("thrown errors become {error} JSON with the error's status, logged", async () => {
    const routes: Route[] = [
      {
        method: "GET",
        path: "/bad",
        auth: false,
        handler: () => {
          throw new ConfigError("spec.cluster: missing");
        },
      },
      {
        method: "GET",
        path: "/state",
        auth: false,
        handler: () => {
          throw new InvalidStatusError("invalid compute status: init");
        },
      },
      {
        method: "GET",
        path: "/boom",
        auth: false,
        handler: () => {
          throw new TypeError("x is undefined");
        },
      },
    ];
    const { app, lines } = setup(routes);
    const cases: [string, number, string][] = [
      ["/bad", 400, "spec.cluster: missing"],
      ["/state", 412, "invalid compute status: init"],
      ["/boom", 500, "x is undefined"],
    ];
    for (const [path, status, message] of cases) {
      const res = await app.request(path, { headers: { "x-request-id": "r1" } });
      expect(res.status).toBe(status);
      expect(res.headers.get("content-type")).toBe("application/json");
      expect(res.headers.get("x-request-id")).toBe("r1");
      expect(await res.json()).toEqual({ error: message });
      expect(lines.some((l) => l.includes("ERROR") && l.endsWith(message))).toBe(true);
    }
  });
});

describe("listen", () => {
  test("answers on IPv4 and IPv6 loopback (dual stack)", async () => {
    const { app } = setup();
    const { log } = memoryLogger();
    const l = listen(app, 0, "external", log);
    try {
      for (const host of ["127.0.0.1", "[::1]"]) {
        const res = await fetch(`http://${host}:${l.port}/status`);
        expect(res.status).toBe(200);
      }
    } finally {
      await l.stop();
    }
  });
});

describe("the polled GETs, answered before Hono (Bun.serve routes)", () => {
  async function serveWithAuth() {
    const { log, lines } = memoryLogger();
    const store = new ComputeStateStore({ log, now: () => 1_700_000_000_123_456_789n });
    const keys = await makeTestKeys();
    const app = buildApp(
      EXTERNAL_ROUTES,
      { store, log, computeId: "compute-1", forwardTermination: () => {} },
      { authorize: authorize({ jwks: keys.jwks, computeId: "compute-1", log }) },
    );
    const l = listen(app, 0, "external", log, LOOPBACK);
    const token = `Bearer ${await keys.sign({ compute_id: "compute-1" })}`;
    const other = `Bearer ${await keys.sign({ compute_id: "compute-2" })}`;
    const get = (path: string, headers: Record<string, string> = {}, method = "GET") =>
      fetch(`http://127.0.0.1:${l.port}${path}`, { method, headers });
    return { app, store, lines, l, token, other, get };
  }

  test("both routes are in the table, and only they", () => {
    const { app } = setup();
    expect(Object.keys(app.direct).sort()).toEqual(["/metrics.json", "/status"]);
  });

  test("same status, headers and bytes as through Hono; one access line each; HEAD, 405", async () => {
    const { app, store, lines, l, token, get } = await serveWithAuth();
    try {
      for (const path of ["/status", "/metrics.json"]) {
        const headers = { authorization: token, "x-request-id": "r1" };
        const direct = await get(path, headers);
        const viaHono = await app.request(path, { headers });
        expect(direct.status).toBe(200);
        expect(direct.headers.get("content-type")).toBe("application/json");
        expect(direct.headers.get("x-request-id")).toBe("r1");
        expect(await direct.text()).toBe(await viaHono.text());
      }
      store.setStatus("configuration_pending");
      const after = await get("/status?with=query", { authorization: token });
      expect(((await after.json()) as { status: string }).status).toBe("configuration_pending");
      expect(after.headers.get("x-request-id")).toMatch(/^[0-9a-f-]{36}$/);

      const head = await get("/status", { authorization: token, "x-request-id": "h1" }, "HEAD");
      expect([head.status, await head.text(), head.headers.get("x-request-id")]).toEqual([
        200,
        "",
        "h1",
      ]);
      const post = await get("/status", { "x-request-id": "p1" }, "POST");
      expect([post.status, post.headers.get("allow"), post.headers.get("x-request-id")]).toEqual([
        405,
        "GET",
        "p1",
      ]);

      const access = lines
        .filter((x) => x.includes("request_id="))
        .map((x) => x.replace(/^\S+\s+INFO /, ""));
      expect(access.filter((x) => x.includes("request_id=r1"))).toEqual([
        "GET /status request_id=r1",
        "GET /status request_id=r1",
        "GET /metrics.json request_id=r1",
        "GET /metrics.json request_id=r1",
      ]);
      expect(access.filter((x) => /request_id=[hp]1$/.test(x))).toEqual([
        "HEAD /status request_id=h1",
        "POST /status request_id=p1",
      ]);
    } finally {
      await l.stop();
    }
  });

  test("the JWT check: 400 without a token, 403 for another compute, first time and again", async () => {
    const { l, token, other, get } = await serveWithAuth();
    try {
      const missing = await get("/status", { "x-request-id": "m1" });
      expect([missing.status, await missing.text(), missing.headers.get("x-request-id")]).toEqual([
        400,
        JSON.stringify({ error: AUTH_ERRORS.invalidToken }),
        "m1",
      ]);
      // The first use of a token is checked asynchronously, later ones synchronously.
      for (let i = 0; i < 2; i++) {
        const res = await get("/metrics.json", { authorization: other, "x-request-id": "o1" });
        expect([res.status, await res.text(), res.headers.get("x-request-id")]).toEqual([
          403,
          JSON.stringify({ error: AUTH_ERRORS.invalidComputeId }),
          "o1",
        ]);
        expect((await get("/metrics.json", { authorization: token })).status).toBe(200);
      }
    } finally {
      await l.stop();
    }
  });
});

describe("listen errors", () => {
  test("a port in use is an error naming the server and the port", () => {
    const { app } = setup();
    const { log } = memoryLogger();
    // A plain TCP listener holds the port (two Bun.serve in one process may share it).
    const holder = Bun.listen({ hostname: "::", port: 0, socket: { data() {} } });
    try {
      expect(() => listen(app, holder.port, "internal", log)).toThrow(
        `internal http server: cannot listen on port ${holder.port}`,
      );
    } finally {
      holder.stop(true);
    }
  });
});

describe("POST /terminate", () => {
  test("running → termination_pending_immediate → (main flow) terminated: 200 with the LSN; repeat: 201", async () => {
    const { app, store, forwarded } = setup();
    store.setStatus("init");
    store.setStatus("running");
    const res = app.request("/terminate?mode=immediate", { method: "POST" });
    await store.waitForStatus(["termination_pending_immediate"], {
      deadline: performance.now() + 2000,
    });
    expect(forwarded).toEqual(["forwarded"]);
    // What run() does once postgres is gone: the shutdown sync's LSN, then terminated.
    store.update({ terminateFlushLsn: 0x16b5ba8n });
    store.setStatus("terminated");
    const r = await res;
    expect(r.status).toBe(200);
    expect(await r.json()).toEqual({ lsn: "0/16B5BA8" });
    const again = await app.request("/terminate", { method: "POST" });
    expect(again.status).toBe(201);
    expect(await again.json()).toEqual({ lsn: "0/16B5BA8" });
  });

  test("no query string means fast; a replica's answer has a null LSN", async () => {
    const { app, store } = setup();
    const res = app.request("/terminate", { method: "POST" });
    await store.waitForStatus(["termination_pending_fast"], { deadline: performance.now() + 2000 });
    store.setStatus("terminated");
    expect(await (await res).json()).toEqual({ lsn: null });
  });

  test.each(["init", "configuration_pending", "failed"] as const)("412 in %s", async (status) => {
    const { app, store } = setup();
    if (status === "init" || status === "failed") store.setStatus("init");
    if (status === "failed") store.setStatus("failed");
    if (status === "configuration_pending") store.setStatus("configuration_pending");
    const res = await app.request("/terminate", { method: "POST" });
    expect(res.status).toBe(412);
    expect(await res.json()).toEqual({
      error: `invalid compute status: ${status.replaceAll("_", "-")}`,
    });
  });

  test.each([
    [
      "?mode=slow",
      "failed to deserialize query string: mode: unknown variant `slow`, expected `fast` or `immediate`",
    ],
    ["?", "failed to deserialize query string: missing field `mode`"],
    ["?other=1", "failed to deserialize query string: missing field `mode`"],
  ])("bad query %s: 400, nothing changed", async (query, message) => {
    const { app, store } = setup();
    const res = await app.request(`/terminate${query}`, { method: "POST" });
    expect(res.status).toBe(400);
    expect(await res.json()).toEqual({ error: message });
    expect(store.status).toBe("empty");
  });

  test("a client that goes away leaves no waiter behind", async () => {
    const { app, store } = setup();
    const ac = new AbortController();
    const res = app.request("/terminate", { method: "POST", signal: ac.signal });
    await store.waitForStatus(["termination_pending_fast"], { deadline: performance.now() + 2000 });
    expect(store.pendingWaiters).toBe(1);
    ac.abort();
    await Promise.resolve(res).catch(() => undefined);
    await until("the waiter to go", () => store.pendingWaiters === 0, 2000);
  });
});

describe("listen addresses", () => {
  /** Local addresses (hex, as in /proc/net/tcp{,6}) of listening sockets on `port`. */
  function listeningAddresses(port: number): string[] {
    const hexPort = port.toString(16).toUpperCase().padStart(4, "0");
    const out: string[] = [];
    for (const file of ["/proc/net/tcp", "/proc/net/tcp6"]) {
      for (const line of readFileSync(file, "utf8").split("\n").slice(1)) {
        const [, local, , state] = line.trim().split(/\s+/);
        if (state === "0A" && local?.endsWith(`:${hexPort}`)) out.push(local.split(":")[0] ?? "");
      }
    }
    return out.sort();
  }

  test("loopback only: 127.0.0.1 and ::1, nothing on every interface", async () => {
    const { app } = setup();
    const { log } = memoryLogger();
    const l = listen(app, 0, "internal", log, LOOPBACK);
    try {
      expect(l.hostnames).toEqual(["127.0.0.1", "::1"]);
      for (const host of ["127.0.0.1", "[::1]"]) {
        expect((await fetch(`http://${host}:${l.port}/nope`)).status).toBe(404);
      }
      expect(listeningAddresses(l.port)).toEqual(["00000000000000000000000001000000", "0100007F"]);
    } finally {
      await l.stop();
    }
  });

  test("every interface (upstream): one dual-stack socket on ::", async () => {
    const { app } = setup();
    const { log } = memoryLogger();
    const l = listen(app, 0, "internal", log, ALL_INTERFACES);
    try {
      expect(listeningAddresses(l.port)).toEqual(["00000000000000000000000000000000"]);
    } finally {
      await l.stop();
    }
  });
});

describe("long requests", () => {
  // /configure and /terminate wait for the compute; Bun.serve's default idle
  // timeout (10 s) would reset them.
  test("a handler slower than 10 s still gets its answer delivered", async () => {
    const slow: Route = {
      method: "POST",
      path: "/slow",
      auth: false,
      handler: async () => {
        await Bun.sleep(10_500);
        return new Response("done");
      },
    };
    const { app } = setup([slow]);
    const { log } = memoryLogger();
    const l = listen(app, 0, "external", log, LOOPBACK);
    try {
      const res = await fetch(`http://127.0.0.1:${l.port}/slow`, { method: "POST" });
      expect(await res.text()).toBe("done");
    } finally {
      await l.stop();
    }
  }, 30_000);
});
