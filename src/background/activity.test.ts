import { describe, expect, test } from "bun:test";
import type { Timestamp } from "../state/time.ts";
import {
  type ActivityQueries,
  type ActivityReason,
  ActivityTracker,
  type BackendRow,
  type DatabaseStats,
  parseStateChange,
} from "./activity.ts";

// Timestamps built from Date.parse, independently of parseStateChange.
const NS_PER_MS = 1_000_000n;
const at = (iso: string, extraMicros = 0n): Timestamp =>
  BigInt(Date.parse(iso)) * NS_PER_MS + extraMicros * 1_000n;

const NOW = at("2024-01-01T12:00:00Z");
const LATER = at("2024-01-01T12:00:01Z");

type QueryName =
  | "databaseStats"
  | "backends"
  | "walsenders"
  | "activeSubscriptions"
  | "autovacuumWorkers";

interface World {
  stats?: DatabaseStats;
  backends?: BackendRow[];
  walsenders?: number;
  subscriptions?: number;
  autovacuum?: number;
}

/** ActivityQueries over a mutable world that records which queries ran, in order. */
function fakeQueries(world: World = {}) {
  const ran: QueryName[] = [];
  const q: ActivityQueries = {
    async databaseStats() {
      ran.push("databaseStats");
      return world.stats ?? { activeTime: 0, sessions: 0 };
    },
    async backends() {
      ran.push("backends");
      return world.backends ?? [];
    },
    async walsenders() {
      ran.push("walsenders");
      return world.walsenders ?? 0;
    },
    async activeSubscriptions() {
      ran.push("activeSubscriptions");
      return world.subscriptions ?? 0;
    },
    async autovacuumWorkers() {
      ran.push("autovacuumWorkers");
      return world.autovacuum ?? 0;
    },
  };
  return {
    q,
    world,
    /** The queries run since the last call. */
    take(): QueryName[] {
      return ran.splice(0);
    },
  };
}

function tracker(experimental = false) {
  const warnings: string[] = [];
  const t = new ActivityTracker(experimental, { warn: (m) => warnings.push(m) });
  return { t, warnings };
}

const ALL_BUT_STATS: QueryName[] = [
  "backends",
  "walsenders",
  "activeSubscriptions",
  "autovacuumWorkers",
];
const ALL: QueryName[] = ["databaseStats", ...ALL_BUT_STATS];

const idle = (stateChange: string | null): BackendRow => ({ state: "idle", stateChange });

describe("rule 1: database statistics (activity_monitor_experimental)", () => {
  test("the first sample is only a baseline: the other rules run, nothing is active", async () => {
    const { t } = tracker(true);
    const f = fakeQueries({ stats: { activeTime: 10, sessions: 3 } });
    expect(await t.check(f.q, NOW)).toBeNull();
    expect(f.take()).toEqual(ALL);
    expect(t.lastActive).toBeNull();
  });

  test.each<[string, DatabaseStats]>([
    ["active_time up", { activeTime: 11, sessions: 3 }],
    ["active_time down", { activeTime: 9, sessions: 3 }],
    ["sessions up", { activeTime: 10, sessions: 4 }],
    ["sessions down", { activeTime: 10, sessions: 2 }],
  ])("%s since the previous sample → now, and no later query runs", async (_, next) => {
    const { t } = tracker(true);
    const f = fakeQueries({ stats: { activeTime: 10, sessions: 3 } });
    await t.check(f.q, NOW);
    f.take();
    f.world.stats = next;
    expect(await t.check(f.q, LATER)).toBe("database_stats");
    expect(f.take()).toEqual(["databaseStats"]);
    expect(t.lastActive).toBe(LATER);
  });

  test("unchanged statistics fall through to the next rules", async () => {
    const { t } = tracker(true);
    const f = fakeQueries({ stats: { activeTime: 10, sessions: 3 } });
    await t.check(f.q, NOW);
    f.take();
    f.world.walsenders = 1;
    expect(await t.check(f.q, LATER)).toBe("walsender");
    expect(f.take()).toEqual(["databaseStats", "backends", "walsenders"]);
    expect(t.lastActive).toBe(LATER);
  });

  test("the baseline is the latest sample, not the first", async () => {
    const { t } = tracker(true);
    const f = fakeQueries({ stats: { activeTime: 1, sessions: 1 } });
    await t.check(f.q, NOW);
    f.world.stats = { activeTime: 2, sessions: 1 };
    expect(await t.check(f.q, NOW + 1n)).toBe("database_stats");
    // Same as the second sample: no change, although it differs from the first.
    expect(await t.check(f.q, NOW + 2n)).toBeNull();
    expect(t.lastActive).toBe(NOW + 1n);
  });

  test("without the feature the statistics query never runs", async () => {
    const { t } = tracker(false);
    const f = fakeQueries({ stats: { activeTime: 1, sessions: 1 } });
    await t.check(f.q, NOW);
    f.world.stats = { activeTime: 99, sessions: 99 };
    expect(await t.check(f.q, LATER)).toBeNull();
    expect(f.take()).toEqual([...ALL_BUT_STATS, ...ALL_BUT_STATS]);
    expect(t.lastActive).toBeNull();
  });

  test("a failing statistics query fails the check before any other query", async () => {
    const { t } = tracker(true);
    const f = fakeQueries();
    f.q.databaseStats = async () => {
      throw new Error("stats broke");
    };
    await expect(t.check(f.q, NOW)).rejects.toThrow("stats broke");
    expect(f.take()).toEqual([]);
  });
});

describe("rule 2: client backends", () => {
  test.each([
    "active",
    "idle in transaction",
    "idle in transaction (aborted)",
    "fastpath function call",
    "disabled",
  ])("state %p → now, and no later query runs", async (state) => {
    const { t } = tracker();
    const f = fakeQueries({
      backends: [idle("2024-01-01T11:00:00.000000Z"), { state, stateChange: null }],
      walsenders: 1,
    });
    expect(await t.check(f.q, NOW)).toBe("active_backend");
    expect(f.take()).toEqual(["backends"]);
    expect(t.lastActive).toBe(NOW);
  });

  test("rows with a NULL state are skipped, whatever their state_change", async () => {
    const { t } = tracker();
    const f = fakeQueries({
      backends: [{ state: null, stateChange: "2024-01-01T11:59:00.000000Z" }],
    });
    expect(await t.check(f.q, NOW)).toBeNull();
    expect(f.take()).toEqual(ALL_BUT_STATS);
    expect(t.lastActive).toBeNull();
  });

  test("idle rows → the latest state_change, not now", async () => {
    const { t } = tracker();
    const f = fakeQueries({
      backends: [
        idle("2024-01-01T10:00:00.000000Z"),
        idle("2024-01-01T11:30:00.250001Z"),
        { state: null, stateChange: "2024-01-01T11:59:59.000000Z" },
        idle("2024-01-01T11:00:00.000000Z"),
      ],
      walsenders: 1,
    });
    expect(await t.check(f.q, NOW)).toBe("idle_backend");
    expect(f.take()).toEqual(["backends"]);
    expect(t.lastActive).toBe(at("2024-01-01T11:30:00.250Z", 1n));
  });

  test("unparsable state_change values are skipped with a warning", async () => {
    const { t, warnings } = tracker();
    const f = fakeQueries({
      backends: [idle("not a time"), idle("2024-01-01T09:00:00.000000Z"), idle("2024-99")],
    });
    expect(await t.check(f.q, NOW)).toBe("idle_backend");
    expect(t.lastActive).toBe(at("2024-01-01T09:00:00Z"));
    expect(warnings).toEqual([
      "cannot parse backend state_change DateTime: not a time",
      "cannot parse backend state_change DateTime: 2024-99",
    ]);
  });

  test("only unparsable idle rows: no candidate, the later rules run", async () => {
    const { t, warnings } = tracker();
    const f = fakeQueries({ backends: [idle("garbage")], autovacuum: 2 });
    expect(await t.check(f.q, NOW)).toBe("autovacuum");
    expect(f.take()).toEqual(ALL_BUT_STATS);
    expect(warnings).toHaveLength(1);
  });

  test.each([
    ["earlier than", "2024-01-01T10:00:00.000000Z"],
    ["equal to", "2024-01-01T11:00:00.000000Z"],
  ])("an idle candidate %s last_active falls through to the next rules", async (_, older) => {
    const { t } = tracker();
    const f = fakeQueries({ backends: [idle("2024-01-01T11:00:00.000000Z")] });
    expect(await t.check(f.q, NOW)).toBe("idle_backend");
    f.take();

    f.world.backends = [idle(older)];
    expect(await t.check(f.q, LATER)).toBeNull();
    expect(f.take()).toEqual(ALL_BUT_STATS);
    expect(t.lastActive).toBe(at("2024-01-01T11:00:00Z"));

    f.world.subscriptions = 1;
    expect(await t.check(f.q, LATER)).toBe("subscription");
    expect(f.take()).toEqual(["backends", "walsenders", "activeSubscriptions"]);
    expect(t.lastActive).toBe(LATER);
  });

  test("a failing backends query fails the check", async () => {
    const { t } = tracker();
    const f = fakeQueries({ walsenders: 1 });
    f.q.backends = async () => {
      throw new Error("backends broke");
    };
    await expect(t.check(f.q, NOW)).rejects.toThrow("backends broke");
    expect(f.take()).toEqual([]);
    expect(t.lastActive).toBeNull();
  });
});

describe("rules 3-5: walsenders, subscriptions, autovacuum", () => {
  test.each<[string, World, ActivityReason, QueryName[]]>([
    ["walsenders", { walsenders: 1 }, "walsender", ["backends", "walsenders"]],
    [
      "active subscriptions",
      { subscriptions: 2 },
      "subscription",
      ["backends", "walsenders", "activeSubscriptions"],
    ],
    ["autovacuum workers", { autovacuum: 3 }, "autovacuum", ALL_BUT_STATS],
    // Earlier rules win; the later queries do not run.
    [
      "all three (walsenders win)",
      { walsenders: 1, subscriptions: 1, autovacuum: 1 },
      "walsender",
      ["backends", "walsenders"],
    ],
  ])("%s > 0 → now", async (_, world, reason, ran) => {
    const { t } = tracker();
    const f = fakeQueries(world);
    expect(await t.check(f.q, NOW)).toBe(reason);
    expect(f.take()).toEqual(ran);
    expect(t.lastActive).toBe(NOW);
  });

  test("nothing → null, last_active unchanged (still null, then still set)", async () => {
    const { t } = tracker();
    const f = fakeQueries({ backends: [idle(null), { state: null, stateChange: null }] });
    expect(await t.check(f.q, NOW)).toBeNull();
    expect(t.lastActive).toBeNull();

    f.world.walsenders = 1;
    await t.check(f.q, NOW);
    f.world.walsenders = 0;
    expect(await t.check(f.q, LATER)).toBeNull();
    expect(t.lastActive).toBe(NOW);
  });
});

test("last_active never moves backwards across a sequence of checks", async () => {
  const { t } = tracker(true);
  const f = fakeQueries({ stats: { activeTime: 0, sessions: 0 } });
  const T = (s: number) => at("2024-01-01T12:00:00Z") + BigInt(s) * 1_000_000_000n;
  const steps: [Timestamp, World, Timestamp | null][] = [
    [T(0), {}, null],
    [T(10), { backends: [idle("2024-01-01T12:00:05.000000Z")] }, T(5)],
    [T(20), { backends: [{ state: "active", stateChange: null }] }, T(20)],
    // An idle session last used before the last activity: no change.
    [T(30), { backends: [idle("2024-01-01T12:00:15.000000Z")] }, T(20)],
    // A clock that went backwards does not move last_active back either.
    [T(15), { walsenders: 1 }, T(20)],
    [T(12), { stats: { activeTime: 1, sessions: 0 } }, T(20)],
    [T(40), { autovacuum: 1 }, T(40)],
    [T(50), {}, T(40)],
  ];
  const seen: (Timestamp | null)[] = [];
  for (const [now, world, expected] of steps) {
    // Each step's world replaces the previous one; stats persist unless given.
    f.world.backends = world.backends ?? [];
    f.world.walsenders = world.walsenders ?? 0;
    f.world.subscriptions = world.subscriptions ?? 0;
    f.world.autovacuum = world.autovacuum ?? 0;
    if (world.stats) f.world.stats = world.stats;
    await t.check(f.q, now);
    expect(t.lastActive).toBe(expected);
    seen.push(t.lastActive);
  }
  for (let i = 1; i < seen.length; i++) {
    const prev = seen[i - 1] ?? null;
    const cur = seen[i] ?? null;
    if (prev !== null) expect(cur !== null && cur >= prev).toBe(true);
  }
});

describe("parseStateChange", () => {
  const base = at("2024-05-06T07:08:09Z");

  test("the exact microsecond value", () => {
    expect(parseStateChange("2024-05-06T07:08:09.123456Z")).toBe(base + 123_456_000n);
    expect(parseStateChange("1999-12-31T23:59:59.999999Z")).toBe(
      at("1999-12-31T23:59:59.999Z") + 999_000n,
    );
  });

  test.each<[string, bigint]>([
    ["2024-05-06T07:08:09Z", 0n],
    ["2024-05-06T07:08:09.1Z", 100_000n],
    ["2024-05-06T07:08:09.12Z", 120_000n],
    ["2024-05-06T07:08:09.123Z", 123_000n],
    ["2024-05-06T07:08:09.1234Z", 123_400n],
    ["2024-05-06T07:08:09.12345Z", 123_450n],
    ["2024-05-06T07:08:09.123456Z", 123_456n],
    ["2024-05-06T07:08:09.000001Z", 1n],
    ["2024-05-06T07:08:09.000000Z", 0n],
  ])("%p → +%p µs", (text, micros) => {
    expect(parseStateChange(text)).toBe(base + micros * 1_000n);
  });

  test.each([
    "",
    "garbage",
    "2024-05-06 07:08:09.123456Z",
    "2024-05-06T07:08:09.123456",
    "2024-05-06T07:08:09.123456+00:00",
    "2024-05-06T07:08:09.1234567Z",
    "2024-05-06T07:08:09.Z",
    "2024-5-6T07:08:09Z",
    " 2024-05-06T07:08:09Z",
    "2024-05-06T07:08:09Z ",
    "2024-05-06T07:08Z",
  ])("%p is not a state_change", (text) => {
    expect(parseStateChange(text)).toBeNull();
  });

  // BUG: Date.UTC rolls out-of-range fields over (month 13 → next January)
  // instead of rejecting them as chrono does; the row would not be skipped.
  test("out-of-range fields are rejected, not rolled over", () => {
    for (const text of [
      "2024-13-01T00:00:00.000000Z",
      "2024-02-30T00:00:00.000000Z",
      "2024-01-01T24:00:00.000000Z",
      "2024-01-01T00:60:00.000000Z",
    ]) {
      expect(parseStateChange(text)).toBeNull();
    }
  });

  // BUG: Date.UTC maps years 0-99 to 1900-1999.
  test("years below 100 are taken literally", () => {
    expect(parseStateChange("0050-01-01T00:00:00.000000Z")).toBe(at("0050-01-01T00:00:00Z"));
  });
});
