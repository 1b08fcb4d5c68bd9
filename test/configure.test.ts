// POST /configure on a real compute: the first spec of a pooled compute, and a
// reconfiguration of a running one.
import { afterAll, expect, setDefaultTimeout, test } from "bun:test";
import { bearer } from "../src/testing/jwt.ts";
import { startCompute, workDir } from "./helpers/compute.ts";

// Process-level: real postgres and the built binary; each wait has its own deadline.
setDefaultTimeout(60_000);

const root = workDir("compute-ctl-configure-");
afterAll(() => root.cleanup());

function post(c: Awaited<ReturnType<typeof startCompute>>, body: unknown, token?: string) {
  return fetch(`http://127.0.0.1:${c.ext}/configure`, {
    method: "POST",
    headers: { "content-type": "application/json", ...(token ? bearer(token) : {}) },
    body: JSON.stringify(body),
  });
}

test("empty compute: /configure starts it and answers running; wait_for_spec_ms recorded", async () => {
  const c = await startCompute(root.dir, "pooled", { empty: true });
  try {
    const st = await c.waitForStatus(["empty"]);
    expect(st.tenant).toBeNull();
    const token = await c.keys.sign({ compute_id: "pooled" });
    const res = await post(c, { spec: c.spec, compute_ctl_config: { jwks: { keys: [] } } }, token);
    expect(res.status).toBe(200);
    const body = (await res.json()) as Record<string, unknown>;
    expect(body.status).toBe("running");
    expect(body.tenant).toBe(c.env.tenantId);
    expect((await c.metrics()).wait_for_spec_ms).toBeGreaterThan(0);
    expect((await c.psql("select 1")).out).toBe("1");
  } finally {
    await c.stop();
  }
});

test("running compute: /configure rewrites postgresql.conf and reloads; bad specs get 400 naming the field", async () => {
  const c = await startCompute(root.dir, "reconf");
  try {
    await c.waitForStatus(["running"]);
    const token = await c.keys.sign({ compute_id: "reconf" });
    const cluster = { ...(c.spec.cluster as Record<string, unknown>) };
    cluster.settings = [{ name: "work_mem", value: "9MB", vartype: "string" }];
    const res = await post(
      c,
      { spec: { ...c.spec, cluster }, compute_ctl_config: { jwks: { keys: [] } } },
      token,
    );
    expect(res.status).toBe(200);
    expect(((await res.json()) as Record<string, unknown>).status).toBe("running");
    expect((await c.psql("show work_mem")).out).toBe("9MB");
    expect(c.child.stderr()).toContain(
      "Changing compute status from configuration-pending to configuration",
    );

    const { suspend_timeout_seconds: _, ...noTimeout } = c.spec;
    const bad = await post(
      c,
      { spec: noTimeout, compute_ctl_config: { jwks: { keys: [] } } },
      token,
    );
    expect(bad.status).toBe(400);
    expect(await bad.json()).toEqual({ error: "spec.suspend_timeout_seconds: missing" });
    expect((await c.status()).status).toBe("running");
  } finally {
    await c.stop();
  }
});
