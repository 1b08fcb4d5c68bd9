// The activity monitor (upstream monitor.rs; lifecycle §9): once the compute
// is `running`, every 500 ms it asks postgres (one reused connection,
// application_name compute_ctl:compute_monitor) whether users did anything,
// and moves `last_active` forward. Unlike upstream every check has a
// deadline: a postgres that does not answer is downtime, not a frozen monitor.

import type { Sql } from "postgres";
import { errorMessage } from "../errors.ts";
import type { Logger } from "../log.ts";
import { type ComputeStatus, statusDisplay } from "../state/status.ts";
import type { ComputeStateStore } from "../state/store.ts";
import { abortableSleep, formatRfc3339Z, type Timestamp } from "../state/time.ts";
import { type ActivityQueries, ActivityTracker } from "./activity.ts";

export const MONITOR_CHECK_INTERVAL_MS = 500;
/** Ours: a check (all its queries) that takes longer counts as a failure. */
export const MONITOR_CHECK_TIMEOUT_MS = 5_000;

const STOPPING: ReadonlySet<ComputeStatus> = new Set([
  "terminated",
  "termination_pending_fast",
  "termination_pending_immediate",
  "failed",
]);

/** A connection the monitor can query and close. */
export interface MonitorConnection {
  queries: ActivityQueries;
  close(): Promise<void>;
}

export interface DowntimeMetrics {
  setCurrentDowntimeMs(ms: number): void;
  addDowntimeMs(ms: number): void;
}

export interface MonitorOptions {
  store: ComputeStateStore;
  log: Logger;
  signal: AbortSignal;
  /** `activity_monitor_experimental` in the startup spec. */
  experimental: boolean;
  connect: () => Promise<MonitorConnection>;
  metrics: DowntimeMetrics;
  /** Wall clock for last_active (default: the store's). */
  now?: () => Timestamp;
  /** Milliseconds for downtime accounting (default performance.now). */
  monotonicMs?: () => number;
  sleep?: (ms: number, signal: AbortSignal) => Promise<void>;
  checkTimeoutMs?: number;
}

class CheckTimeout extends Error {
  override readonly name = "CheckTimeout";
}

function withTimeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new CheckTimeout(`${what} took longer than ${ms} ms`)), ms);
  });
  return Promise.race([p, timeout]).finally(() => clearTimeout(timer));
}

/** Runs until a stopping status or `signal`; never rejects. */
export async function runActivityMonitor(o: MonitorOptions): Promise<void> {
  const { store, log, signal } = o;
  const now = o.now ?? store.now;
  const mono = o.monotonicMs ?? (() => performance.now());
  const sleep = o.sleep ?? abortableSleep;
  const timeoutMs = o.checkTimeoutMs ?? MONITOR_CHECK_TIMEOUT_MS;

  // compute_ctl's own startup connections are not activity: wait for running.
  if (store.status !== "running") {
    log.info("compute is not running, waiting before monitoring activity");
    const st = await store
      .waitFor((s) => s.status === "running" || STOPPING.has(s.status), { signal })
      .catch(() => null);
    if (st === null || st.status !== "running") return;
  }

  const tracker = new ActivityTracker(o.experimental, log);
  let conn: MonitorConnection | null = null;
  let lastUp = mono();
  let lastUpAt = now();
  let lastChecked = mono();
  let totalDowntimeMs = 0;
  const downtimeInfo = () =>
    `total_ms: ${Math.round(totalDowntimeMs)}, current_ms: ${Math.round(mono() - lastUp)}, last_up: ${formatRfc3339Z(lastUpAt)}`;
  const interrupted = (): boolean => {
    const status = store.status;
    if (!STOPPING.has(status)) return signal.aborted;
    log.info(`compute is in ${statusDisplay(status)} status, stopping compute monitor`);
    return true;
  };
  const reportDown = () => {
    const t = mono();
    o.metrics.setCurrentDowntimeMs(t - lastUp);
    o.metrics.addDowntimeMs(t - lastChecked);
    totalDowntimeMs += t - lastChecked;
  };
  const drop = async () => {
    const c = conn;
    conn = null;
    try {
      await c?.close();
    } catch {
      // Closing a broken connection may fail; it is gone either way.
    }
  };

  // Ours: a failed compute that a refresh brings back is monitored again
  // (upstream's monitor stops for good, but nothing upstream revives a failed compute).
  const resumed = async (): Promise<boolean> => {
    if (signal.aborted || store.status !== "failed") return false;
    const st = await store
      .waitFor((s) => s.status === "running" || (STOPPING.has(s.status) && s.status !== "failed"), {
        signal,
      })
      .catch(() => null);
    if (st?.status !== "running") return false;
    log.info("compute is running again, resuming compute monitor");
    return true;
  };

  log.info("starting compute monitor");
  try {
    for (;;) {
      if (interrupted()) {
        await drop();
        if (!(await resumed())) break;
      }
      if (conn === null) {
        // A synchronous throw from connect is a failed connect like any other.
        const connecting = Promise.resolve().then(() => o.connect());
        try {
          conn = await withTimeout(connecting, timeoutMs, "connecting");
        } catch (e) {
          // A connection that arrives after the deadline is nobody's: close it.
          connecting.then((late) => late.close()).catch(() => {});
          log.info(
            `could not connect to Postgres: ${errorMessage(e)}, retrying (${downtimeInfo()})`,
          );
          if (interrupted()) break;
          reportDown();
        }
      }
      if (conn !== null) {
        try {
          await withTimeout(tracker.check(conn.queries, now()), timeoutMs, "the activity check");
          lastUp = mono();
          lastUpAt = now();
          o.metrics.setCurrentDowntimeMs(0);
          if (tracker.lastActive !== null) store.updateLastActive(tracker.lastActive);
        } catch (e) {
          log.error(`could not check Postgres: ${errorMessage(e)} (${downtimeInfo()})`);
          if (interrupted()) break;
          reportDown();
          // Even a connection that looks alive is replaced: it may be the stuck part.
          await drop();
        }
      }
      lastChecked = mono();
      await sleep(MONITOR_CHECK_INTERVAL_MS, signal);
    }
  } finally {
    await drop();
    log.info("compute monitor thread terminated gracefully");
  }
}

/** Upstream's queries, verbatim where the doc says so, on a porsager connection. */
export function postgresActivityQueries(sql: Sql): ActivityQueries {
  const count = async (text: string) => {
    const [row] = await sql.unsafe<{ count: string | number }[]>(text);
    return Number(row?.count ?? 0);
  };
  return {
    async databaseStats() {
      const [row] = await sql.unsafe<{ total_active_time: number; total_sessions: string }[]>(
        `SELECT pg_catalog.coalesce(pg_catalog.sum(active_time), 0.0)::pg_catalog.float8 AS total_active_time,
       pg_catalog.coalesce(pg_catalog.sum(sessions), 0)::pg_catalog.bigint AS total_sessions
FROM pg_catalog.pg_stat_database
WHERE datname NOT IN ('postgres', 'template0', 'template1');`,
      );
      return {
        activeTime: Number(row?.total_active_time ?? 0),
        sessions: Number(row?.total_sessions ?? 0),
      };
    },
    async backends() {
      const rows = await sql.unsafe<{ state: string | null; state_change: string | null }[]>(
        `SELECT state, pg_catalog.to_char(state_change, 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'::pg_catalog.text) AS state_change
FROM pg_stat_activity
WHERE backend_type OPERATOR(pg_catalog.=) 'client backend'::pg_catalog.text
  AND pid OPERATOR(pg_catalog.!=) pg_catalog.pg_backend_pid()
  AND usename OPERATOR(pg_catalog.!=) 'cloud_admin'::pg_catalog.name;`,
      );
      return rows.map((r) => ({ state: r.state, stateChange: r.state_change }));
    },
    walsenders: () =>
      count("select count(*) from pg_stat_replication where application_name != 'walproposer';"),
    activeSubscriptions: () =>
      count("select count(*) from pg_stat_subscription where pid is not null;"),
    autovacuumWorkers: () =>
      count("select count(*) from pg_stat_activity where backend_type = 'autovacuum worker'"),
  };
}

/** One monitor connection: connected (and checked) before it is handed out. */
export async function connectMonitor(connstr: URL, log: Logger): Promise<MonitorConnection> {
  const { connectionTarget, openConnection } = await import("../apply/connection.ts");
  const sql = openConnection(connectionTarget(connstr), {
    applicationName: "compute_ctl:compute_monitor",
    log,
    connectTimeoutSeconds: Math.ceil(MONITOR_CHECK_TIMEOUT_MS / 1000),
  });
  try {
    await sql.unsafe("SELECT 1");
  } catch (e) {
    await sql.end({ timeout: 0 });
    throw e;
  }
  return { queries: postgresActivityQueries(sql), close: () => sql.end({ timeout: 0 }) };
}
