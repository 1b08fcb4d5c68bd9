import { describe, expect, test } from "bun:test";
import { startConfigurator } from "../../background/configurator.ts";
import { memoryLogger } from "../../log.ts";
import type { ParsedSpec } from "../../spec/parsed-spec.ts";
import type { ComputeStatus } from "../../state/status.ts";
import { ComputeStateStore } from "../../state/store.ts";
import { minimalSpecJson, TEST_TENANT, TEST_TIMELINE } from "../../testing/specs.ts";
import { until } from "../../testing/until.ts";
import { BODY_ERRORS, isJsonContentType, MAX_BODY_BYTES } from "../body.ts";
import type { Authorizer } from "../middleware/authorize.ts";
import { buildApp, listen } from "../server.ts";
import { configureRoute, rustDebugString } from "./configure.ts";
import { statusRoute } from "./status.ts";

const OTHER_TENANT = "c".repeat(32);

function setup(opts: { authorize?: Authorizer } = {}) {
  const { log, lines } = memoryLogger();
  const store = new ComputeStateStore({ log, now: () => 1_700_000_000_123_456_789n });
  const app = buildApp(
    [configureRoute, statusRoute],
    { store, log, computeId: "compute-1", forwardTermination: () => {} },
    opts,
  );
  return { app, store, lines };
}

function requestJson(spec: Record<string, unknown> = {}): Record<string, unknown> {
  return { spec: minimalSpecJson(spec), compute_ctl_config: { jwks: { keys: [] } } };
}

function post(
  app: ReturnType<typeof setup>["app"],
  body: unknown,
  init: { headers?: Record<string, string>; signal?: AbortSignal } = {},
) {
  return app.request("/configure", {
    method: "POST",
    headers: init.headers ?? { "content-type": "application/json" },
    body: typeof body === "string" || body instanceof ReadableStream ? body : JSON.stringify(body),
    signal: init.signal,
  });
}

async function expectError(res: Response, status: number, error: string): Promise<void> {
  expect(res.status).toBe(status);
  expect(res.headers.get("content-type")).toBe("application/json");
  expect(await res.json()).toEqual({ error });
}

/** Legal paths from `empty` to every status /configure refuses. */
const PATHS: Record<string, ComputeStatus[]> = {
  configuration_pending: ["configuration_pending"],
  init: ["init"],
  configuration: ["configuration_pending", "configuration"],
  failed: ["init", "failed"],
  termination_pending_fast: ["termination_pending_fast"],
  termination_pending_immediate: ["termination_pending_immediate"],
  terminated: ["termination_pending_fast", "terminated"],
  refresh_configuration_pending: ["init", "running", "refresh_configuration_pending"],
  refresh_configuration: [
    "init",
    "running",
    "refresh_configuration_pending",
    "refresh_configuration",
  ],
};

function drive(store: ComputeStateStore, path: readonly ComputeStatus[]): void {
  for (const s of path) expect(store.setStatus(s)).toBe(true);
}

/** A running compute whose configurator hands each /configure spec to `reconfigure`. */
function runningWithConfigurator(reconfigure: (pspec: ParsedSpec) => Promise<void>) {
  const { app, store } = setup();
  const { log } = memoryLogger();
  drive(store, ["init", "running"]);
  const shutdown = new AbortController();
  const configurator = startConfigurator({ store, log, signal: shutdown.signal, reconfigure });
  const stop = async () => {
    shutdown.abort();
    await configurator;
  };
  return { app, store, stop };
}

/** Resolves once /configure has handed its spec over (its waiter is then registered). */
function pending(store: ComputeStateStore) {
  return store.waitForStatus(["configuration_pending"], { deadline: performance.now() + 5000 });
}

describe("POST /configure: request body", () => {
  test.each([
    ["application/json", true],
    ["application/json; charset=utf-8", true],
    ["Application/JSON", true],
    ["application/vnd.neon.compute+json", true],
    ["application/merge-patch+json;v=1", true],
    ["text/json", false],
    ["application/jsonx", false],
    ["application/x-www-form-urlencoded", false],
    ["text/plain;charset=UTF-8", false],
    ["", false],
  ])("content type %p accepted: %p", (header, ok) => {
    expect(isJsonContentType(header)).toBe(ok);
  });

  test("415 without or with a non-JSON content type", async () => {
    const { app, store } = setup();
    const body = JSON.stringify(requestJson());
    await expectError(await post(app, body, { headers: {} }), 415, BODY_ERRORS.contentType);
    await expectError(
      await post(app, body, { headers: { "content-type": "text/plain" } }),
      415,
      "expected request with `content-type: application/json`",
    );
    expect(store.status).toBe("empty");
  });

  test("415 comes before the size check", async () => {
    const { app } = setup();
    const res = await post(app, "x".repeat(MAX_BODY_BYTES + 1), { headers: {} });
    expect(res.status).toBe(415);
  });

  test("413 when the declared length is over 2 MiB", async () => {
    const { app } = setup();
    const res = await post(app, "{}", {
      headers: { "content-type": "application/json", "content-length": String(MAX_BODY_BYTES + 1) },
    });
    await expectError(res, 413, "failed to buffer the request body: length limit exceeded");
  });

  test("413 when a body without a length grows over 2 MiB", async () => {
    const { app } = setup();
    const chunk = new Uint8Array(64 * 1024).fill(0x20);
    let sent = 0;
    const stream = new ReadableStream<Uint8Array>({
      pull(controller) {
        // Endless: the reader must stop on its own past the limit.
        sent += chunk.length;
        controller.enqueue(chunk);
      },
    });
    const res = await post(app, stream);
    await expectError(res, 413, BODY_ERRORS.tooLarge);
    expect(sent).toBeLessThan(MAX_BODY_BYTES + 4 * chunk.length);
  });

  test("exactly 2 MiB is accepted (then the status gate answers)", async () => {
    const { app, store } = setup();
    store.setStatus("init");
    const json = JSON.stringify(requestJson());
    const res = await post(app, json + " ".repeat(MAX_BODY_BYTES - json.length));
    await expectError(res, 412, "invalid compute status: init");
  });

  test.each([
    ['{"spec": ', "unexpected end of input, expected a value at line 1 column 10"],
    ["", "unexpected end of input, expected a value at line 1 column 1"],
    ['{"spec": {},\n}', 'expected a string key, found "}" at line 2 column 1'],
    ["\uFEFF{}", 'expected a value, found "\uFEFF" at line 1 column 1'],
  ])("400 for invalid JSON %p", async (text, detail) => {
    const { app } = setup();
    await expectError(
      await post(app, text),
      400,
      `failed to parse the request body as json: ${detail}`,
    );
  });

  test("400 for bytes that are not UTF-8", async () => {
    const { app } = setup();
    const bytes = new Uint8Array([0x7b, 0x22, 0xff, 0x22, 0x3a, 0x31, 0x7d]);
    const res = await app.request("/configure", {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: bytes,
    });
    await expectError(res, 400, "failed to parse the request body as json: invalid UTF-8");
  });

  test.each([
    [{ compute_ctl_config: { jwks: { keys: [] } } }, "spec: missing"],
    [{ spec: minimalSpecJson() }, "compute_ctl_config: missing"],
    [
      { ...requestJson(), spec: { ...minimalSpecJson(), suspend_timeout_seconds: undefined } },
      "spec.suspend_timeout_seconds: missing",
    ],
    [
      requestJson({ cluster: { roles: {}, databases: [] } }),
      "spec.cluster.roles: expected array, got object",
    ],
    [[], "expected object, got array"],
  ])("400 naming the JSON path for a wrong shape (%#)", async (body, message) => {
    const { app, store } = setup();
    const res = await post(app, body);
    expect(res.status).toBe(400);
    expect(await res.json()).toEqual({ error: message });
    expect(store.status).toBe("empty");
    expect(store.state.pspec).toBeNull();
  });

  test("400 with upstream's text when the spec does not make a ParsedSpec", async () => {
    const { app, store } = setup();
    const body = requestJson({ safekeeper_connstrings: ["127.0.0.1:6502", "127.0.0.1:6502"] });
    await expectError(
      await post(app, body),
      400,
      "duplicate entry in safekeeper_connstrings: 127.0.0.1:6502!",
    );
    expect(store.status).toBe("empty");
  });

  test("the spec is validated before the status: a bad spec is a 400 even in init", async () => {
    const { app, store } = setup();
    store.setStatus("init");
    const body = requestJson({ safekeeper_connstrings: [] });
    await expectError(await post(app, body), 400, "safekeeper connstrings should be provided");
  });
});

describe("POST /configure: status gate", () => {
  test.each(Object.entries(PATHS))("412 in %s, nothing changes", async (status, path) => {
    const { app, store } = setup();
    drive(store, path);
    const before = store.state;
    const display = status.replaceAll("_", "-");
    await expectError(await post(app, requestJson()), 412, `invalid compute status: ${display}`);
    expect(store.state).toBe(before);
    expect(store.pendingWaiters).toBe(0);
  });

  test("behind the external server's auth check", async () => {
    const denyAll: Authorizer = () => Response.json({ error: "denied" }, { status: 401 });
    const { app, store } = setup({ authorize: denyAll });
    expect((await post(app, requestJson())).status).toBe(401);
    expect(store.status).toBe("empty");
  });
});

describe("POST /configure: answers", () => {
  test("from empty: spec handed over, 200 with the status once the main flow is running", async () => {
    const { app, store } = setup();
    const handedOver = pending(store);
    const res = post(app, requestJson({ tenant_id: OTHER_TENANT }));
    const st = await handedOver;
    expect(String(st.pspec?.tenant_id)).toBe(OTHER_TENANT);
    expect(store.pendingWaiters).toBe(1);
    // The main flow: wait_spec wakes, startup runs.
    store.update({ pgStartTime: store.now() });
    drive(store, ["init", "running"]);
    const answer = await res;
    expect(answer.status).toBe(200);
    expect(answer.headers.get("content-type")).toBe("application/json");
    expect(await answer.text()).toBe(
      `{"start_time":"2023-11-14T22:13:20.123456789Z","tenant":"${OTHER_TENANT}","timeline":"${TEST_TIMELINE}","status":"running","last_active":null,"error":null}`,
    );
    expect(store.pendingWaiters).toBe(0);
  });

  test("from running: 200 once the configurator is back to running", async () => {
    const { app, store } = setup();
    drive(store, ["init", "running"]);
    const handedOver = pending(store);
    const res = post(app, requestJson({ tenant_id: OTHER_TENANT }));
    await handedOver;
    drive(store, ["configuration"]);
    expect(store.pendingWaiters).toBe(1);
    drive(store, ["running"]);
    const body = (await (await res).json()) as Record<string, unknown>;
    expect(body.status).toBe("running");
    expect(body.tenant).toBe(OTHER_TENANT);
  });

  test("500 with the recorded reason, Debug-quoted as upstream", async () => {
    const { app, store } = setup();
    drive(store, ["init", "running"]);
    const handedOver = pending(store);
    const res = post(app, requestJson());
    await handedOver;
    drive(store, ["configuration"]);
    store.setFailedStatus(new Error("pg_ctl reload failed", { cause: new Error("ENOENT") }));
    await expectError(
      await res,
      500,
      'compute configuration failed: "pg_ctl reload failed\\n\\nCaused by:\\n    ENOENT"',
    );
  });

  test('500 "unknown error" when failed without a recorded error', async () => {
    const { app, store } = setup();
    const handedOver = pending(store);
    const res = post(app, requestJson());
    await handedOver;
    drive(store, ["init", "failed"]);
    await expectError(await res, 500, 'compute configuration failed: "unknown error"');
  });

  test("a client that goes away leaves no waiter; the request stays accepted", async () => {
    const { app, store, lines } = setup();
    drive(store, ["init", "running"]);
    const ac = new AbortController();
    const handedOver = pending(store);
    const res = post(app, requestJson(), { signal: ac.signal });
    await handedOver;
    expect(store.pendingWaiters).toBe(1);
    ac.abort();
    expect((await res).status).toBe(499);
    expect(store.pendingWaiters).toBe(0);
    expect(store.status).toBe("configuration_pending");
    expect(lines.some((l) => l.includes("client went away"))).toBe(true);
  });

  test("over a real socket, a disconnect ends the wait too", async () => {
    const { app, store } = setup();
    const { log } = memoryLogger();
    drive(store, ["init", "running"]);
    const server = listen(app, 0, "external", log);
    try {
      const ac = new AbortController();
      const handedOver = pending(store);
      const res = fetch(`http://127.0.0.1:${server.port}/configure`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify(requestJson()),
        signal: ac.signal,
      }).catch((e: unknown) => e);
      await handedOver;
      expect(store.pendingWaiters).toBe(1);
      ac.abort();
      expect(await res).toBeInstanceOf(Error);
      await until("the waiter is gone", () => store.pendingWaiters === 0);
      expect(store.status).toBe("configuration_pending");
    } finally {
      await server.stop();
    }
  });

  test("with the configurator: configured, then a failure reported with its cause", async () => {
    const applied: ParsedSpec[] = [];
    const { app, store, stop } = runningWithConfigurator(async (pspec) => {
      applied.push(pspec);
      if (applied.length === 2) throw new Error("could not write postgresql.conf");
    });
    const ok = await post(app, requestJson({ tenant_id: OTHER_TENANT }));
    expect(ok.status).toBe(200);
    expect(applied.map((p) => String(p.tenant_id))).toEqual([OTHER_TENANT]);

    await expectError(
      await post(app, requestJson()),
      500,
      'compute configuration failed: "could not write postgresql.conf"',
    );
    const status = (await (await app.request("/status")).json()) as Record<string, unknown>;
    expect(status).toMatchObject({
      status: "failed",
      tenant: TEST_TENANT,
      error: "could not write postgresql.conf",
    });
    // A failed compute takes no /configure (only a refresh may bring it back).
    await expectError(await post(app, requestJson()), 412, "invalid compute status: failed");
    await stop();
    expect(store.pendingWaiters).toBe(0);
  });

  test("100 requests in a row through the configurator, each answered in order", async () => {
    const applied: number[] = [];
    const { app, store, stop } = runningWithConfigurator(async (pspec) => {
      applied.push(pspec.spec.suspend_timeout_seconds);
    });
    const deadline = performance.now() + 10_000;
    for (let i = 0; i < 100; i++) {
      const res = await post(app, requestJson({ suspend_timeout_seconds: i }));
      expect(res.status).toBe(200);
      expect(performance.now()).toBeLessThan(deadline);
    }
    expect(applied).toEqual(Array.from({ length: 100 }, (_, i) => i));
    await stop();
    expect(store.pendingWaiters).toBe(0);
  });
});

describe("rustDebugString", () => {
  test.each([
    ["unknown error", '"unknown error"'],
    ['say "hi"\\', '"say \\"hi\\"\\\\"'],
    ["a\nb\tc\rd\0", '"a\\nb\\tc\\rd\\0"'],
    ["esc\u001b[0m del\u007f", '"esc\\u{1b}[0m del\\u{7f}"'],
    ["it's ünïcode ✓", '"it\'s ünïcode ✓"'],
  ])("%p", (input, out) => {
    expect(rustDebugString(input)).toBe(out);
  });
});
