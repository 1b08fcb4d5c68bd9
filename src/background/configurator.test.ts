import { describe, expect, test } from "bun:test";
import { memoryLogger } from "../log.ts";
import type { ParsedSpec } from "../spec/parsed-spec.ts";
import type { ComputeConfig } from "../spec/schema.ts";
import { testSpec } from "../startup/testing.ts";
import type { ComputeStatus } from "../state/status.ts";
import { ComputeStateStore } from "../state/store.ts";
import { until } from "../testing/until.ts";
import { beforeStart, REFRESH_RETRY_MS, startConfigurator } from "./configurator.ts";

const WAIT_MS = 2000;

function setup(
  opts: {
    onStatus?: (s: ComputeStatus, store: ComputeStateStore) => void;
    fetchConfig?: () => Promise<ComputeConfig>;
  } = {},
) {
  const { log, lines } = memoryLogger();
  const statuses: ComputeStatus[] = [];
  const store: ComputeStateStore = new ComputeStateStore({
    log,
    onStatus: (s) => {
      statuses.push(s);
      opts.onStatus?.(s, store);
    },
  });
  const shutdown = new AbortController();
  const applied: ParsedSpec[] = [];
  const sleeps: number[] = [];
  let detached = 0;
  let fail: ((pspec: ParsedSpec) => Error | undefined) | undefined;
  let during: ((pspec: ParsedSpec) => void) | undefined;
  const start = () =>
    startConfigurator({
      store,
      log,
      signal: shutdown.signal,
      reconfigure: async (pspec) => {
        // The status while reconfigure runs, as the route's waiter would see it.
        expect(["configuration", "refresh_configuration"]).toContain(store.status);
        applied.push(pspec);
        during?.(pspec);
        const err = fail?.(pspec);
        if (err) throw err;
      },
      ...(opts.fetchConfig ? { fetchConfig: opts.fetchConfig } : {}),
      onDetached: () => {
        detached++;
      },
      sleep: async (ms) => {
        sleeps.push(ms);
      },
    });
  return {
    store,
    lines,
    statuses,
    shutdown,
    applied,
    sleeps,
    detached: () => detached,
    start,
    failWith: (f: typeof fail) => {
      fail = f;
    },
    onReconfigure: (f: typeof during) => {
      during = f;
    },
  };
}

/** What the main flow does for a spec given at start: init, then running. */
function startCompute(store: ComputeStateStore): void {
  store.update({ pgStartTime: store.now() });
  store.setStatus("init");
  store.setStatus("running");
}

/** What /configure does: store the spec, set pending, wait for running or failed. */
function configure(store: ComputeStateStore, pspec: ParsedSpec) {
  store.update({ pspec });
  expect(store.setStatus("configuration_pending")).toBe(true);
  return store.waitForStatus(["running", "failed"], { deadline: performance.now() + WAIT_MS });
}

const spec = (timeout: number) => testSpec({ suspend_timeout_seconds: timeout });

describe("configurator", () => {
  test("running → configuration_pending → configuration → running, with the stored spec", async () => {
    const h = setup();
    startCompute(h.store);
    const loop = h.start();
    const done = await configure(h.store, spec(7));
    expect(done.status).toBe("running");
    expect(h.applied.map((p) => p.spec.suspend_timeout_seconds)).toEqual([7]);
    expect(h.statuses).toEqual([
      "init",
      "running",
      "configuration_pending",
      "configuration",
      "running",
    ]);
    expect(h.lines.some((l) => l.endsWith("compute node configured"))).toBe(true);
    h.shutdown.abort();
    await loop;
    expect(h.store.pendingWaiters).toBe(0);
  });

  test("a failure sets failed with the error recorded; the loop waits on (a refresh may revive it)", async () => {
    const h = setup();
    h.failWith(() => new Error("pg_ctl reload failed", { cause: new Error("no such file") }));
    startCompute(h.store);
    const loop = h.start();
    const done = await configure(h.store, spec(1));
    expect(done.status).toBe("failed");
    expect(done.error).toBe("pg_ctl reload failed\n\nCaused by:\n    no such file");
    expect(
      h.lines.some((l) => l.includes("ERROR") && l.includes("could not configure compute node")),
    ).toBe(true);
    await until("the loop to wait again", () => h.store.pendingWaiters === 1);
    h.shutdown.abort();
    await loop;
    expect(h.store.pendingWaiters).toBe(0);
  });

  test("a request already pending when it starts is handled (state checked first)", async () => {
    const h = setup();
    startCompute(h.store);
    const answered = configure(h.store, spec(3));
    const loop = h.start();
    expect((await answered).status).toBe("running");
    expect(h.applied).toHaveLength(1);
    h.shutdown.abort();
    await loop;
  });

  // Upstream #9162: a /configure landing after the configurator set `running`
  // but before it waited again was lost. Here it is set synchronously inside
  // setStatus("running") (the onStatus hook), the narrowest possible window.
  test("lost wake-up replay: pending set between two iterations is still picked up", async () => {
    let second: Promise<unknown> | undefined;
    const h = setup({
      onStatus: (s, store) => {
        if (s === "running" && store.state.pspec?.spec.suspend_timeout_seconds === 1) {
          second = configure(store, spec(2));
        }
      },
    });
    startCompute(h.store);
    const loop = h.start();
    await configure(h.store, spec(1));
    expect(second).toBeDefined();
    const done = (await second) as { status: ComputeStatus };
    expect(done.status).toBe("running");
    expect(h.applied.map((p) => p.spec.suspend_timeout_seconds)).toEqual([1, 2]);
    h.shutdown.abort();
    await loop;
    expect(h.store.pendingWaiters).toBe(0);
  });

  test("lost wake-up replay: pending set right after reconfigure returns", async () => {
    const h = setup();
    startCompute(h.store);
    let second: Promise<unknown> | undefined;
    h.onReconfigure((pspec) => {
      if (pspec.spec.suspend_timeout_seconds !== 1) return;
      // Queued from inside the first reconfigure: runs as soon as `running` is set.
      second = h.store
        .waitForStatus(["running"], { deadline: performance.now() + WAIT_MS })
        .then(() => configure(h.store, spec(2)));
    });
    const loop = h.start();
    await configure(h.store, spec(1));
    const done = (await second) as { status: ComputeStatus };
    expect(done.status).toBe("running");
    expect(h.applied.map((p) => p.spec.suspend_timeout_seconds)).toEqual([1, 2]);
    h.shutdown.abort();
    await loop;
  });

  test("100 pending requests in a row, all handled in order", async () => {
    const h = setup();
    startCompute(h.store);
    const loop = h.start();
    const deadline = performance.now() + 10_000;
    for (let i = 0; i < 100; i++) {
      const done = await configure(h.store, spec(i));
      expect(done.status).toBe("running");
      expect(performance.now()).toBeLessThan(deadline);
    }
    expect(h.applied.map((p) => p.spec.suspend_timeout_seconds)).toEqual(
      Array.from({ length: 100 }, (_, i) => i),
    );
    h.shutdown.abort();
    await loop;
    expect(h.store.pendingWaiters).toBe(0);
  });

  test("shutdown ends an idle loop and leaves no waiter", async () => {
    const h = setup();
    startCompute(h.store);
    const loop = h.start();
    expect(h.store.pendingWaiters).toBe(1);
    h.shutdown.abort(new Error("received SIGTERM"));
    await loop;
    expect(h.store.pendingWaiters).toBe(0);
    expect(h.applied).toHaveLength(0);
  });

  test("shutdown during a reconfigure: it finishes, nothing more is picked up", async () => {
    const h = setup();
    startCompute(h.store);
    h.onReconfigure(() => h.shutdown.abort());
    const loop = h.start();
    expect((await configure(h.store, spec(1))).status).toBe("running");
    await loop;
    h.store.update({ pspec: spec(2) });
    h.store.setStatus("configuration_pending");
    expect(h.applied).toHaveLength(1);
    expect(h.store.pendingWaiters).toBe(0);
  });

  test("started while empty, it leaves the first spec to the main flow", async () => {
    const h = setup();
    const loop = h.start();
    // /configure on an empty compute: the main flow takes this one.
    const first = configure(h.store, spec(1));
    expect(h.store.status).toBe("configuration_pending");
    startCompute(h.store);
    expect((await first).status).toBe("running");
    expect(h.applied).toHaveLength(0);
    // Later requests are the configurator's.
    expect((await configure(h.store, spec(2))).status).toBe("running");
    expect(h.applied.map((p) => p.spec.suspend_timeout_seconds)).toEqual([2]);
    h.shutdown.abort();
    await loop;
  });

  test("started during init, it ends when startup fails", async () => {
    const h = setup();
    h.store.update({ pgStartTime: h.store.now() });
    h.store.setStatus("init");
    const loop = h.start();
    h.store.setFailedStatus(new Error("basebackup failed"));
    await loop;
    expect(h.store.pendingWaiters).toBe(0);
    expect(h.applied).toHaveLength(0);
  });

  test("ends when the compute is terminated", async () => {
    const h = setup();
    startCompute(h.store);
    const loop = h.start();
    h.store.setStatus("termination_pending_fast");
    h.store.setStatus("terminated");
    await loop;
    expect(h.store.pendingWaiters).toBe(0);
  });

  test.each<[string, ComputeStatus, boolean, boolean]>([
    ["empty", "empty", false, true],
    ["init", "init", true, true],
    ["first spec of an empty compute", "configuration_pending", false, true],
    ["pending from running", "configuration_pending", true, false],
    ["running", "running", true, false],
    ["failed", "failed", true, false],
  ])("beforeStart: %s", (_name, status, started, expected) => {
    const store = new ComputeStateStore({ log: memoryLogger().log });
    const s = { ...store.state, status, pgStartTime: started ? 1n : null };
    expect(beforeStart(s)).toBe(expected);
  });
});

describe("refresh_configuration", () => {
  const moved = testSpec({ pageserver_connstring: "postgres://no_user@127.0.0.1:64999" });
  const config = (pspec: ParsedSpec | null): ComputeConfig =>
    ({
      spec: pspec?.spec ?? null,
      compute_ctl_config: { jwks: { keys: [] } },
    }) as unknown as ComputeConfig;

  function refreshRequested(store: ComputeStateStore) {
    expect(store.setStatus("refresh_configuration_pending")).toBe(true);
    return store.waitForStatus(["running"], { deadline: performance.now() + WAIT_MS });
  }

  test("a moved pageserver: the fetched spec is applied, then running", async () => {
    const h = setup({ fetchConfig: async () => config(moved) });
    startCompute(h.store);
    h.store.update({ pspec: spec(1) });
    const loop = h.start();
    await refreshRequested(h.store);
    expect(h.applied).toHaveLength(1);
    expect(h.store.state.pspec?.pageserver_conninfo).toEqual(moved.pageserver_conninfo);
    expect(h.statuses.slice(-3)).toEqual([
      "refresh_configuration_pending",
      "refresh_configuration",
      "running",
    ]);
    h.shutdown.abort();
    await loop;
  });

  test("the same pageservers: running without reconfiguring, then a pause for the control plane", async () => {
    const current = spec(1);
    const h = setup({ fetchConfig: async () => config(current) });
    startCompute(h.store);
    h.store.update({ pspec: current });
    const loop = h.start();
    await refreshRequested(h.store);
    expect(h.applied).toHaveLength(0);
    await until("the pause", () => h.sleeps.length === 1);
    expect(h.sleeps).toEqual([REFRESH_RETRY_MS]);
    h.shutdown.abort();
    await loop;
  });

  test("a fetch error is retried after a pause; a failed compute is revived", async () => {
    let calls = 0;
    const h = setup({
      fetchConfig: async () => {
        calls++;
        if (calls === 1) throw new Error("control plane answered 502");
        return config(moved);
      },
    });
    startCompute(h.store);
    h.store.update({ pspec: spec(1) });
    h.failWith((p) => (p === h.store.state.pspec && calls === 0 ? new Error("boom") : undefined));
    const loop = h.start();
    // Fail the compute first through /configure, as a failed reconfiguration would.
    expect((await configure(h.store, spec(2))).status).toBe("failed");
    await refreshRequested(h.store);
    expect(calls).toBe(2);
    expect(h.sleeps).toEqual([REFRESH_RETRY_MS]);
    expect(h.lines.some((l) => l.includes("control plane answered 502"))).toBe(true);
    expect(h.store.status).toBe("running");
    h.shutdown.abort();
    await loop;
  });

  test("reviving a failed compute applies the fetched spec even with the same pageservers, and clears the error", async () => {
    const current = spec(1);
    const h = setup({ fetchConfig: async () => config(current) });
    startCompute(h.store);
    h.store.update({ pspec: current });
    h.failWith(() => (h.applied.length === 1 ? new Error("boom") : undefined));
    const loop = h.start();
    expect((await configure(h.store, spec(2))).status).toBe("failed");
    expect(h.store.state.error).toBe("boom");
    await refreshRequested(h.store);
    expect(h.applied).toHaveLength(2);
    expect(h.store.state.error).toBeNull();
    h.shutdown.abort();
    await loop;
  });

  test("a failing reconfiguration is retried from refresh_configuration_pending", async () => {
    let attempts = 0;
    const h = setup({ fetchConfig: async () => config(moved) });
    h.failWith(() => (++attempts === 1 ? new Error("reload failed") : undefined));
    startCompute(h.store);
    h.store.update({ pspec: spec(1) });
    const loop = h.start();
    await refreshRequested(h.store);
    expect(attempts).toBe(2);
    expect(h.statuses.slice(-4)).toEqual<ComputeStatus[]>([
      "refresh_configuration",
      "refresh_configuration_pending",
      "refresh_configuration",
      "running",
    ]);
    h.shutdown.abort();
    await loop;
  });

  test("no spec any more: the compute was detached, the loop ends and the node is told", async () => {
    const h = setup({ fetchConfig: async () => config(null) });
    startCompute(h.store);
    const loop = h.start();
    h.store.setStatus("refresh_configuration_pending");
    await loop;
    expect(h.detached()).toBe(1);
    expect(h.applied).toHaveLength(0);
  });
});
