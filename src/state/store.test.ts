import { describe, expect, test } from "bun:test";
import { TimeoutError } from "../errors.ts";
import { memoryLogger } from "../log.ts";
import { COMPUTE_STATUSES, type ComputeStatus, TRANSITIONS } from "./status.ts";
import { ComputeStateStore } from "./store.ts";

function store(onStatus?: (s: ComputeStatus) => void) {
  const { log, lines } = memoryLogger();
  return { s: new ComputeStateStore({ log, onStatus }), lines };
}

describe("ComputeStateStore transitions", () => {
  test("starts empty with no last_active, no error, zero metrics", () => {
    const { s } = store();
    expect(s.status).toBe("empty");
    expect(s.state.lastActive).toBeNull();
    expect(s.state.error).toBeNull();
    expect(Object.values(s.state.metrics).every((v) => v === 0)).toBe(true);
  });

  test("the upstream startup path is legal and logged with Display names", () => {
    const seen: ComputeStatus[] = [];
    const { s, lines } = store((st) => seen.push(st));
    expect(s.setStatus("configuration_pending")).toBe(true);
    expect(s.setStatus("init")).toBe(true);
    expect(s.setStatus("running")).toBe(true);
    expect(seen).toEqual(["configuration_pending", "init", "running"]);
    expect(
      lines.some((l) => l.endsWith("Changing compute status from empty to configuration-pending")),
    ).toBe(true);
  });

  // Every pair not in the table is refused, with an error log and no change.
  for (const from of COMPUTE_STATUSES) {
    for (const to of COMPUTE_STATUSES) {
      if (TRANSITIONS[from].includes(to)) continue;
      test(`illegal ${from} -> ${to} is refused`, () => {
        const { s, lines } = store();
        // Force the store into `from` through legal steps.
        const path = pathTo(from);
        for (const step of path) expect(s.setStatus(step)).toBe(true);
        expect(s.status).toBe(from);
        expect(s.setStatus(to)).toBe(false);
        expect(s.status).toBe(from);
        expect(lines.at(-1)).toContain("refused illegal compute status transition");
      });
    }
  }

  test("setFailedStatus keeps the error chain", () => {
    const { s } = store();
    s.setStatus("init");
    const err = new Error("failed to get basebackup@0/169AD58", {
      cause: new Error("connection refused"),
    });
    s.setFailedStatus(err);
    expect(s.status).toBe("failed");
    expect(s.state.error).toBe(
      "failed to get basebackup@0/169AD58\n\nCaused by:\n    connection refused",
    );
  });

  test("statusChanges counts accepted status changes, not refused ones or other updates", () => {
    const { s } = store();
    expect(s.statusChanges).toBe(0);
    s.setStatus("init");
    s.setStatus("init"); // init → init is not in the diagram: refused
    s.update({ pgStartTime: s.now() });
    s.setMetric("wait_for_spec_ms", 5);
    expect(s.statusChanges).toBe(1);
    s.setStatus("running");
    s.setStatus("configuration_pending");
    expect(s.statusChanges).toBe(3);
  });

  test("last_active only moves forward", () => {
    const { s } = store();
    expect(s.updateLastActive(100n)).toBe(true);
    expect(s.updateLastActive(50n)).toBe(false);
    expect(s.updateLastActive(100n)).toBe(false);
    expect(s.state.lastActive).toBe(100n);
  });
});

describe("ComputeStateStore.waitFor", () => {
  test("resolves at once when the predicate already holds", async () => {
    const { s } = store();
    const st = await s.waitForStatus(["empty"]);
    expect(st.status).toBe("empty");
    expect(s.pendingWaiters).toBe(0);
  });

  test("wakes on a later change", async () => {
    const { s } = store();
    const p = s.waitForStatus(["running"]);
    s.setStatus("init");
    s.setStatus("running");
    expect((await p).status).toBe("running");
    expect(s.pendingWaiters).toBe(0);
  });

  test("rejects at the deadline and leaves no waiter behind", async () => {
    const { s } = store();
    const err = await s
      .waitForStatus(["running"], { deadline: performance.now() + 20 })
      .catch((e) => e);
    expect(err).toBeInstanceOf(TimeoutError);
    expect(s.pendingWaiters).toBe(0);
  });

  test("rejects on abort", async () => {
    const { s } = store();
    const ac = new AbortController();
    const p = s.waitForStatus(["running"], { signal: ac.signal });
    ac.abort(new Error("shutting down"));
    const err = await p.catch((e) => e);
    expect(err).toBeInstanceOf(TimeoutError);
    expect(err.message).toBe("shutting down");
    expect(s.pendingWaiters).toBe(0);
  });

  // Upstream #9162: the configurator saw `running`, released the lock, and a
  // /configure set `configuration_pending` before it waited again; the notify
  // was lost. Here the configurator loop's wait checks the state first.
  test("configurator race: configuration_pending set between two iterations is not missed", async () => {
    const { s } = store();
    s.setStatus("init");
    const handled: string[] = [];
    let iterations = 0;
    const configurator = (async () => {
      while (handled.length < 1) {
        iterations++;
        const st = await s.waitFor(
          (x) => x.status === "configuration_pending" || x.status === "running",
          {
            deadline: performance.now() + 2000,
          },
        );
        if (st.status === "running") {
          // Between iterations: exactly where upstream lost the wake-up.
          s.setStatus("configuration_pending");
          // Now wait only for the pending request, as the configurator does.
          const pending = await s.waitForStatus(["configuration_pending"], {
            deadline: performance.now() + 2000,
          });
          handled.push(pending.status);
        } else {
          handled.push(st.status);
        }
      }
    })();
    s.setStatus("running");
    await configurator;
    expect(handled).toEqual(["configuration_pending"]);
    expect(iterations).toBeGreaterThanOrEqual(1);
    expect(s.pendingWaiters).toBe(0);
  });
});

function pathTo(target: ComputeStatus): ComputeStatus[] {
  // Breadth-first search over the legal transitions from `empty`.
  const prev = new Map<ComputeStatus, ComputeStatus | null>([["empty", null]]);
  const queue: ComputeStatus[] = ["empty"];
  while (queue.length > 0) {
    const cur = queue.shift() as ComputeStatus;
    if (cur === target) break;
    for (const nxt of TRANSITIONS[cur]) {
      if (!prev.has(nxt)) {
        prev.set(nxt, cur);
        queue.push(nxt);
      }
    }
  }
  const path: ComputeStatus[] = [];
  for (let c: ComputeStatus | null | undefined = target; c && c !== "empty"; c = prev.get(c))
    path.unshift(c);
  return path;
}
