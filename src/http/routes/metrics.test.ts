import { describe, expect, test } from "bun:test";
import { memoryLogger } from "../../log.ts";
import { ComputeCtlMetrics } from "../../metrics/registry.ts";
import { ComputeStateStore } from "../../state/store.ts";
import type { Authorizer } from "../middleware/authorize.ts";
import { buildApp } from "../server.ts";
import { metricsRoute } from "./metrics.ts";

// Stands in for the JWT check: /metrics must never reach it.
const denyAll: Authorizer = () => Response.json({ error: "denied" }, { status: 401 });

function setup() {
  const { log } = memoryLogger();
  const registry = new ComputeCtlMetrics({ buildTag: "latest" });
  const store = new ComputeStateStore({ log, onStatus: (s) => registry.setStatus(s) });
  const app = buildApp(
    [metricsRoute(registry)],
    { store, log, computeId: "compute-1", forwardTermination: () => {} },
    { authorize: denyAll },
  );
  return { app, store, registry };
}

describe("GET /metrics", () => {
  test("200, upstream content type, body is the registry's text", async () => {
    const { app, registry } = setup();
    const res = await app.request("/metrics");
    expect(res.status).toBe(200);
    expect(res.headers.get("content-type")).toBe("text/plain; version=0.0.4");
    expect(await res.text()).toBe(registry.render());
  });

  test("unauthenticated even when the server has an auth check", async () => {
    const { app } = setup();
    const res = await app.request("/metrics");
    expect(res.status).toBe(200);
    expect(await res.text()).toContain('compute_ctl_up{build_tag="latest",status="empty"} 1\n');
  });

  test("follows status changes made through the store's onStatus hook", async () => {
    const { app, store } = setup();
    store.setStatus("configuration_pending");
    const text = await (await app.request("/metrics")).text();
    const up = text.split("\n").filter((l) => l.startsWith("compute_ctl_up{"));
    expect(up).toEqual(['compute_ctl_up{build_tag="latest",status="configuration-pending"} 1']);
  });

  test("each scrape renders afresh", async () => {
    const { app, registry } = setup();
    await app.request("/metrics");
    registry.cplaneRequest("200 OK");
    const text = await (await app.request("/metrics")).text();
    expect(text).toContain(
      'compute_ctl_cplane_requests_total{http_status="200 OK",rpc="GetConfig"} 1\n',
    );
  });

  test("x-request-id echoed; HEAD has no body; POST is 405", async () => {
    const { app } = setup();
    const res = await app.request("/metrics", { headers: { "x-request-id": "rid-1" } });
    expect(res.headers.get("x-request-id")).toBe("rid-1");
    const head = await app.request("/metrics", { method: "HEAD" });
    expect(head.status).toBe(200);
    expect(await head.text()).toBe("");
    expect((await app.request("/metrics", { method: "POST" })).status).toBe(405);
  });

  test("a render failure is a 500 JSON error", async () => {
    const { log } = memoryLogger();
    const store = new ComputeStateStore({ log });
    const broken = {
      render(): string {
        throw new Error("encoding failed");
      },
    };
    const app = buildApp([metricsRoute(broken)], {
      store,
      log,
      computeId: "c",
      forwardTermination: () => {},
    });
    const res = await app.request("/metrics");
    expect(res.status).toBe(500);
    expect(await res.json()).toEqual({ error: "encoding failed" });
  });
});
