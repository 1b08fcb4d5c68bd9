// What counts as user activity (upstream monitor.rs check(); lifecycle §9.4),
// apart from the connection that asks: the rules run in order against an
// ActivityQueries implementation and the first that fires decides. The clock
// is a parameter, so the rules are unit-tested without postgres or sleeping.

import { fromMicros, type Timestamp } from "../state/time.ts";

export interface DatabaseStats {
  activeTime: number;
  sessions: number;
}

export interface BackendRow {
  state: string | null;
  /** `YYYY-MM-DDTHH:MM:SS.ffffffZ` (upstream's to_char format), or null. */
  stateChange: string | null;
}

/** One method per query of the rules, in rule order. */
export interface ActivityQueries {
  databaseStats(): Promise<DatabaseStats>;
  backends(): Promise<BackendRow[]>;
  walsenders(): Promise<number>;
  activeSubscriptions(): Promise<number>;
  autovacuumWorkers(): Promise<number>;
}

/** Which rule fired, for logs and tests. */
export type ActivityReason =
  | "database_stats"
  | "active_backend"
  | "idle_backend"
  | "walsender"
  | "subscription"
  | "autovacuum";

const STATE_CHANGE = /^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,6}))?Z$/;

/** Parses upstream's `to_char` rendering of state_change (microseconds, UTC). */
export function parseStateChange(text: string): Timestamp | null {
  const m = STATE_CHANGE.exec(text);
  if (!m) return null;
  const [year, month, day, hour, minute, second] = m.slice(1, 7).map(Number) as [
    number,
    number,
    number,
    number,
    number,
    number,
  ];
  const date = new Date(0);
  // setUTCFullYear takes years below 100 literally (Date.UTC would add 1900).
  date.setUTCFullYear(year, month - 1, day);
  date.setUTCHours(hour, minute, second, 0);
  // Date rolls out-of-range fields over (Feb 30 → Mar 1); chrono rejects them.
  const roundTrip = [
    date.getUTCFullYear(),
    date.getUTCMonth() + 1,
    date.getUTCDate(),
    date.getUTCHours(),
    date.getUTCMinutes(),
    date.getUTCSeconds(),
  ];
  if (roundTrip.some((v, i) => v !== [year, month, day, hour, minute, second][i])) return null;
  const micros = BigInt(date.getTime()) * 1000n + BigInt((m[7] ?? "").padEnd(6, "0"));
  return fromMicros(micros);
}

/**
 * The monitor's own view: its `last_active` (only ever moves forward) and
 * the previous database statistics of the experimental rule.
 */
export class ActivityTracker {
  lastActive: Timestamp | null = null;
  private previousStats: DatabaseStats | null = null;

  constructor(
    private readonly experimental: boolean,
    private readonly log: { warn(msg: string): void } = { warn() {} },
  ) {}

  private advance(candidate: Timestamp, reason: ActivityReason): ActivityReason | null {
    if (this.lastActive !== null && candidate <= this.lastActive) return null;
    this.lastActive = candidate;
    return reason;
  }

  /**
   * Runs the rules in order. Returns the rule that moved `lastActive`, or
   * null when nothing new was seen. Query errors propagate (the check failed).
   */
  async check(q: ActivityQueries, now: Timestamp): Promise<ActivityReason | null> {
    if (this.experimental) {
      const stats = await q.databaseStats();
      const prev = this.previousStats;
      this.previousStats = stats;
      if (
        prev !== null &&
        (prev.activeTime !== stats.activeTime || prev.sessions !== stats.sessions)
      ) {
        return this.advance(now, "database_stats");
      }
    }

    let idleMax: Timestamp | null = null;
    for (const row of await q.backends()) {
      if (row.state === null) continue;
      if (row.state !== "idle") {
        return this.advance(now, "active_backend");
      }
      if (row.stateChange === null) continue;
      const ts = parseStateChange(row.stateChange);
      if (ts === null) {
        this.log.warn(`cannot parse backend state_change DateTime: ${row.stateChange}`);
        continue;
      }
      if (idleMax === null || ts > idleMax) idleMax = ts;
    }
    if (idleMax !== null && (this.lastActive === null || idleMax > this.lastActive)) {
      return this.advance(idleMax, "idle_backend");
    }

    if ((await q.walsenders()) > 0) return this.advance(now, "walsender");
    if ((await q.activeSubscriptions()) > 0) return this.advance(now, "subscription");
    if ((await q.autovacuumWorkers()) > 0) return this.advance(now, "autovacuum");
    return null;
  }
}
