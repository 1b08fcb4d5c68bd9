// The installed-extensions scan (upstream installed_extensions.rs; upstream-api.md
// §4.3): which extension versions are installed in how many databases, for
// the `compute_installed_extensions` metric and one `[NEON_EXT_STAT]` log line.
// Once after a primary is configured, then periodically while it runs.

import type { Sql } from "postgres";
import { errorMessage } from "../errors.ts";
import type { Logger } from "../log.ts";
import type { InstalledExtension } from "../metrics/registry.ts";

export interface ExtensionRow {
  extname: string;
  extversion: string;
  /** pg_extension.extowner as an integer oid. */
  extowner: number;
}

/** The bootstrap superuser's oid: extensions it owns count as `owned_by_superuser`. */
const BOOTSTRAP_SUPERUSER_OID = 10;

/** Counts databases per (name, version, owned by the superuser), in first-seen order. */
export function aggregateExtensions(perDatabase: readonly ExtensionRow[][]): InstalledExtension[] {
  const out = new Map<string, InstalledExtension>();
  for (const rows of perDatabase) {
    for (const r of rows) {
      const owned = r.extowner === BOOTSTRAP_SUPERUSER_OID ? "1" : "0";
      const key = JSON.stringify([r.extname, r.extversion, owned]);
      const e = out.get(key);
      if (e) e.n_databases++;
      else {
        out.set(key, {
          extname: r.extname,
          version: r.extversion,
          n_databases: 1,
          owned_by_superuser: owned,
        });
      }
    }
  }
  return [...out.values()];
}

/** Upstream: `suspend_timeout_seconds` of -1 or 0 means hourly; otherwise that many seconds. */
export function collectionIntervalSeconds(suspendTimeoutSeconds: number): number {
  return suspendTimeoutSeconds === -1 || suspendTimeoutSeconds === 0 ? 3600 : suspendTimeoutSeconds;
}

export interface ScanOptions {
  /** A connection to the system database. */
  system: Sql;
  /** A connection to another database, closed by the caller's `close`. */
  connect: (database: string) => Sql;
  log: Logger;
}

/** Lists connectable databases (at most 500, as upstream) and reads pg_extension in each. */
export async function scanInstalledExtensions(o: ScanOptions): Promise<InstalledExtension[]> {
  const dbs = await o.system.unsafe<{ datname: string }[]>(
    "SELECT datname FROM pg_catalog.pg_database WHERE datallowconn AND datconnlimit OPERATOR(pg_catalog.<>) OPERATOR(pg_catalog.-) 2 LIMIT 500",
  );
  const perDatabase: ExtensionRow[][] = [];
  for (const { datname } of dbs) {
    const sql = o.connect(datname);
    try {
      const rows = await sql.unsafe<{ extname: string; extversion: string; extowner: number }[]>(
        "SELECT extname, extversion, extowner::pg_catalog.int4 AS extowner FROM pg_catalog.pg_extension",
      );
      perDatabase.push(rows.map((r) => ({ ...r, extowner: Number(r.extowner) })));
    } finally {
      await sql.end({ timeout: 0 });
    }
  }
  const list = aggregateExtensions(perDatabase);
  o.log.info(`[NEON_EXT_STAT] ${JSON.stringify({ extensions: list })}`);
  return list;
}

/** One scan on fresh connections from --connstr; errors are logged, never thrown. */
export async function collectInstalledExtensions(
  connstr: URL,
  log: Logger,
  publish: (list: InstalledExtension[]) => void,
  signal?: AbortSignal,
): Promise<void> {
  const { connectionTarget, openConnection } = await import("../apply/connection.ts");
  const target = connectionTarget(connstr);
  const open = (database?: string) =>
    openConnection(target, {
      ...(database !== undefined ? { database } : {}),
      applicationName: "compute_ctl:get_installed_extensions",
      log,
    });
  // Every connection of the scan ends when compute_ctl shuts down.
  const opened = new Set<Sql>();
  const track = (database?: string) => {
    const sql = open(database);
    opened.add(sql);
    return sql;
  };
  const endAll = () => {
    for (const sql of opened) void sql.end({ timeout: 0 });
  };
  signal?.addEventListener("abort", endAll, { once: true });
  const system = track();
  try {
    publish(await scanInstalledExtensions({ system, connect: track, log }));
  } catch (e) {
    if (!signal?.aborted) log.error(`could not get installed extensions: ${errorMessage(e)}`);
  } finally {
    signal?.removeEventListener("abort", endAll);
    await system.end({ timeout: 0 });
  }
}

/**
 * The periodic scan: sleeps first, then scans, every twice the collection
 * interval; the interval is read each round and only ever grows.
 */
export async function runInstalledExtensionsTask(o: {
  intervalSeconds: () => number;
  scan: () => Promise<void>;
  sleep: (ms: number) => Promise<void>;
  signal: AbortSignal;
}): Promise<void> {
  let interval = 0;
  while (!o.signal.aborted) {
    interval = Math.max(interval, o.intervalSeconds());
    // A zero interval (e.g. `--installed-extensions-collection-interval 0`) would
    // scan every database back to back: no periodic scan then.
    if (interval <= 0) return;
    await o.sleep(2 * interval * 1000);
    if (o.signal.aborted) return;
    await o.scan();
  }
}
