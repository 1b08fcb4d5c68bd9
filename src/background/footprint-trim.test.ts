import { describe, expect, test } from "bun:test";
import { memoryLogger } from "../log.ts";
import type { TrimOutcome } from "../process/footprint.ts";
import type { ComputeStatus } from "../state/status.ts";
import { ComputeStateStore } from "../state/store.ts";
import {
  afterTrim,
  DEFAULT_TRIM_POLICY,
  decideTrim,
  describeTrim,
  FootprintTrimmer,
  type LastTrim,
  settle,
  startFootprintTrimmer,
  TRIM_INTERVAL_ENV,
  type TrimObservation,
  trimPolicyFromEnv,
} from "./footprint-trim.ts";

const MiB = 1024 * 1024;
const P = DEFAULT_TRIM_POLICY;

function obs(over: Partial<TrimObservation> = {}): TrimObservation {
  return { nowMs: 0, status: "running", statusChanges: 3, cpuMs: 0, rssBytes: 60 * MiB, ...over };
}

/** The interval's start and end, quiet unless `cpuMs` says otherwise. */
function interval(end: Partial<TrimObservation>, start: Partial<TrimObservation> = {}) {
  const s = obs({ nowMs: 100_000, ...start });
  return [s, obs({ nowMs: s.nowMs + P.intervalMs, cpuMs: s.cpuMs, ...end })] as const;
}

const last = (over: Partial<LastTrim> = {}): LastTrim => ({
  atMs: 100_000,
  statusChanges: 3,
  passes: 1,
  rssSettled: 35 * MiB,
  ...over,
});

describe("decideTrim", () => {
  test("only in a resting status that held for the whole interval", () => {
    for (const status of ["init", "configuration", "configuration_pending", "failed"] as const) {
      const [a, b] = interval({ status }, { status });
      expect(decideTrim(P, a, b, null)).toEqual({ trim: false, reason: "not resting" });
    }
    for (const status of ["running", "empty"] as ComputeStatus[]) {
      const [a, b] = interval({ status }, { status });
      expect(decideTrim(P, a, b, null)).toEqual({ trim: true, reason: "settled" });
    }
    const [a, b] = interval({ statusChanges: 5 });
    expect(decideTrim(P, a, b, null)).toEqual({ trim: false, reason: "status changed" });
  });

  test("busy: more CPU than the quiet share of the interval", () => {
    const limit = P.quietCpuShare * P.intervalMs;
    let [a, b] = interval({ cpuMs: limit + 1 });
    expect(decideTrim(P, a, b, null)).toEqual({ trim: false, reason: "busy" });
    [a, b] = interval({ cpuMs: limit });
    expect(decideTrim(P, a, b, null).trim).toBe(true);
    // A clock that did not move is never a quiet interval.
    expect(decideTrim(P, a, { ...a }, null)).toEqual({ trim: false, reason: "busy" });
  });

  test("first trim after a status change, a second pass, then only on growth", () => {
    // The compute went running → configuration → running since the last trim.
    let [a, b] = interval(
      { nowMs: 100_500, statusChanges: 5 },
      { nowMs: 100_000, statusChanges: 5 },
    );
    expect(decideTrim(P, a, b, last())).toEqual({ trim: true, reason: "settled" });

    const soon = 100_000 + P.minSpacingMs - 1;
    [a, b] = interval({ nowMs: soon }, { nowMs: soon - P.intervalMs });
    expect(decideTrim(P, a, b, last())).toEqual({ trim: false, reason: "settling" });

    const later = 100_000 + P.minSpacingMs;
    [a, b] = interval({ nowMs: later, rssBytes: 35 * MiB }, { nowMs: later - P.intervalMs });
    expect(decideTrim(P, a, b, last())).toEqual({ trim: true, reason: "second pass" });

    const settled = last({ passes: 2, rssSettled: 35 * MiB });
    [a, b] = interval(
      { nowMs: later, rssBytes: 35 * MiB + P.growthBytes - 1 },
      { nowMs: later - P.intervalMs },
    );
    expect(decideTrim(P, a, b, settled)).toEqual({ trim: false, reason: "not grown" });
    [a, b] = interval(
      { nowMs: later, rssBytes: 35 * MiB + P.growthBytes },
      { nowMs: later - P.intervalMs },
    );
    expect(decideTrim(P, a, b, settled)).toEqual({ trim: true, reason: "grown" });
  });

  test("afterTrim counts passes per status; settle raises the level only while settling", () => {
    const first = afterTrim(null, 3, 1000, 20 * MiB);
    expect(first).toEqual({ atMs: 1000, statusChanges: 3, passes: 1, rssSettled: 20 * MiB });
    expect(afterTrim(first, 3, 2000, 19 * MiB).passes).toBe(2);
    expect(afterTrim(first, 4, 2000, 19 * MiB).passes).toBe(1);

    const settling = { trim: false, reason: "settling" } as const;
    expect(settle(first, settling, 30 * MiB).rssSettled).toBe(30 * MiB);
    expect(settle(first, settling, 10 * MiB).rssSettled).toBe(20 * MiB);
    for (const reason of ["busy", "not grown", "not resting", "status changed"] as const) {
      expect(settle(first, { trim: false, reason }, 30 * MiB)).toBe(first);
    }
  });
});

describe("trimPolicyFromEnv", () => {
  test("default, off, a custom interval, and a bad value", () => {
    expect(trimPolicyFromEnv({})).toEqual({ policy: DEFAULT_TRIM_POLICY });
    expect(trimPolicyFromEnv({ [TRIM_INTERVAL_ENV]: "" })).toEqual({
      policy: DEFAULT_TRIM_POLICY,
    });
    expect(trimPolicyFromEnv({ [TRIM_INTERVAL_ENV]: "0" })).toEqual({ policy: null });
    const fast = trimPolicyFromEnv({ [TRIM_INTERVAL_ENV]: "500" }).policy;
    expect(fast?.intervalMs).toBe(500);
    // The spacing keeps its ratio to the interval, and is never below one interval.
    expect(fast?.minSpacingMs).toBe(3000);
    expect(trimPolicyFromEnv({ [TRIM_INTERVAL_ENV]: "1" }).policy?.minSpacingMs).toBe(6);
    for (const bad of ["ten", "-5", "1.5", "1e4", "2147483648"]) {
      const r = trimPolicyFromEnv({ [TRIM_INTERVAL_ENV]: bad });
      expect(r.policy).toEqual(DEFAULT_TRIM_POLICY);
      expect(r.warning).toBe(
        `${TRIM_INTERVAL_ENV}=${JSON.stringify(bad)} is not a whole number of milliseconds up to 2147483647; using 10000`,
      );
    }
  });
});

test("startFootprintTrimmer: off with 0, a warning for a bad value", () => {
  const { log, lines } = memoryLogger();
  const store = new ComputeStateStore({ log });
  expect(startFootprintTrimmer({ store, log, env: { [TRIM_INTERVAL_ENV]: "0" } })).toBeNull();
  const t = startFootprintTrimmer({ store, log, env: { [TRIM_INTERVAL_ENV]: "soon" } });
  try {
    expect(t).not.toBeNull();
    expect(lines.join("\n")).toContain(`${TRIM_INTERVAL_ENV}="soon" is not a whole number`);
  } finally {
    t?.stop();
  }
});

/** A process the trimmer watches: the test moves its clock, CPU and RSS. */
class World {
  nowMs = 0;
  cpuMs = 0;
  rss = 64 * MiB;
  status: ComputeStatus = "init";
  statusChanges = 1;
  trims: number[] = [];
  failNext = false;

  observe = (): TrimObservation => ({
    nowMs: this.nowMs,
    status: this.status,
    statusChanges: this.statusChanges,
    cpuMs: this.cpuMs,
    rssBytes: this.rss,
  });

  trim = async (): Promise<TrimOutcome> => {
    if (this.failNext) {
      this.failNext = false;
      throw new Error("madvise exploded");
    }
    const before = { rss: this.rss, file: this.rss - 10 * MiB, anon: 10 * MiB };
    this.trims.push(this.nowMs);
    this.rss = 22 * MiB;
    this.cpuMs += 100;
    return {
      before,
      after: { rss: 22 * MiB, file: 12 * MiB, anon: 10 * MiB },
      pagedOut: 100 * MiB,
      ms: 100,
    };
  };

  setStatus(s: ComputeStatus) {
    this.status = s;
    this.statusChanges++;
  }
}

function harness() {
  const w = new World();
  const { log, lines } = memoryLogger();
  const t = new FootprintTrimmer({ policy: P, log, observe: w.observe, trim: w.trim });
  // Takes the first observation; the test then drives the checks itself.
  t.start();
  t.stop();
  /** One interval passes (with `cpuMs` of work), then the timer's check. */
  const tick = async (cpuMs = 1) => {
    w.nowMs += P.intervalMs;
    w.cpuMs += cpuMs;
    await t.check();
  };
  return { w, t, lines, tick };
}

describe("FootprintTrimmer", () => {
  test("start-up, settle, second pass, growth after a burst, a configure", async () => {
    const { w, t, lines, tick } = harness();
    await tick(2000); // start-up: busy, and not resting
    w.setStatus("running");
    await tick(); // the status changed during this interval
    expect(w.trims).toEqual([]);
    await tick(); // a quiet interval in `running`
    expect(w.trims).toEqual([30_000]);
    expect(lines.at(-1)).toContain("released memory (settled): RSS 64.0 → 22.0 MiB");

    // Idle: code faults back in; the level it settles at is remembered.
    for (const rss of [30, 34, 35]) {
      w.rss = rss * MiB;
      await tick();
    }
    expect(t.lastTrim?.rssSettled).toBe(35 * MiB);
    for (let i = 0; i < 3; i++) await tick();
    expect(w.trims).toEqual([30_000, 90_000]); // the second pass, minSpacing later
    expect(t.lastTrim?.passes).toBe(2);

    // Settled again at 33 MiB; creeping by less than growthBytes never trims.
    w.rss = 33 * MiB;
    for (let i = 0; i < 6; i++) await tick();
    w.rss = 34 * MiB;
    for (let i = 0; i < 10; i++) await tick();
    expect(w.trims).toHaveLength(2);

    // A burst of requests: busy intervals never trim, the first quiet one does.
    w.rss = 50 * MiB;
    await tick(P.intervalMs);
    await tick(P.intervalMs);
    expect(w.trims).toHaveLength(2);
    await tick();
    expect(w.trims).toHaveLength(3);
    expect(lines.at(-1)).toContain("released memory (grown)");

    // A /configure: running → configuration_pending → configuration → running.
    w.setStatus("configuration_pending");
    w.setStatus("configuration");
    await tick(500);
    w.setStatus("running");
    await tick();
    await tick();
    expect(lines.at(-1)).toContain("released memory (settled)");
    expect(t.lastTrim?.passes).toBe(1);
  });

  test("a failed trim is logged and waits like a trim; one trim at a time", async () => {
    const { w, t, lines, tick } = harness();
    w.status = "empty";
    w.failNext = true;
    await tick();
    expect(lines.at(-1)).toContain("releasing memory failed: madvise exploded");
    expect(t.lastTrim?.atMs).toBe(P.intervalMs);
    await tick(); // settling: no immediate retry
    expect(w.trims).toEqual([]);

    // A check while a trim is still running joins it instead of starting another.
    w.nowMs += P.minSpacingMs;
    const one = t.check();
    const two = t.check();
    expect(two).toBe(one);
    await one;
    expect(w.trims).toHaveLength(1);
  });

  test("an observation that throws (no /proc) stops the trimmer once, never escapes", async () => {
    const { log, lines } = memoryLogger();
    let calls = 0;
    const t = new FootprintTrimmer({
      policy: P,
      log,
      observe: () => {
        calls++;
        throw new Error("ENOENT: /proc/self/status");
      },
      trim: () => Promise.reject(new Error("not reached")),
    });
    await t.check();
    await t.check();
    expect(
      lines.filter((l) => l.includes("idle memory trim stopped: ENOENT: /proc/self/status")),
    ).toHaveLength(1);
    expect(calls).toBe(1);
    expect(t.lastTrim).toBeNull();
  });

  test("the log line says what was released, and why paging out could not happen", () => {
    const o: TrimOutcome = {
      before: { rss: 64 * MiB, file: 47 * MiB, anon: 17 * MiB },
      after: { rss: 21.5 * MiB, file: 10 * MiB, anon: 11.5 * MiB },
      pagedOut: 102.25 * MiB,
      ms: 101.4,
    };
    expect(describeTrim(o, "settled")).toBe(
      "released memory (settled): RSS 64.0 → 21.5 MiB (file 10.0, anon 11.5); 102.3 MiB of the executable's mappings advised out (MADV_PAGEOUT); 101 ms",
    );
    expect(
      describeTrim({ ...o, pagedOut: "madvise(MADV_PAGEOUT) failed: EINVAL" }, "grown"),
    ).toContain("; executable not paged out: madvise(MADV_PAGEOUT) failed: EINVAL;");
  });
});
