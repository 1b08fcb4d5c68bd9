// The installed-extensions scan: aggregation and scheduling without postgres,
// then the scan itself against a real PostgreSQL started for this file.
import { afterAll, beforeAll, describe, expect, setDefaultTimeout, test } from "bun:test";
import { connectionTarget, openConnection } from "../apply/connection.ts";
import { memoryLogger } from "../log.ts";
import { abortableSleep } from "../state/time.ts";
import { startTestCluster, type TestCluster } from "../testing/pg-cluster.ts";
import {
  aggregateExtensions,
  collectionIntervalSeconds,
  runInstalledExtensionsTask,
  scanInstalledExtensions,
} from "./installed-extensions.ts";

setDefaultTimeout(60_000);

describe("aggregateExtensions", () => {
  test("counts databases per name, version and superuser ownership", () => {
    expect(
      aggregateExtensions([
        [
          { extname: "plpgsql", extversion: "1.0", extowner: 10 },
          { extname: "hstore", extversion: "1.8", extowner: 16384 },
        ],
        [
          { extname: "plpgsql", extversion: "1.0", extowner: 10 },
          { extname: "hstore", extversion: "1.8", extowner: 10 },
        ],
        [{ extname: "plpgsql", extversion: "1.0", extowner: 10 }],
      ]),
    ).toEqual([
      { extname: "plpgsql", version: "1.0", n_databases: 3, owned_by_superuser: "1" },
      { extname: "hstore", version: "1.8", n_databases: 1, owned_by_superuser: "0" },
      { extname: "hstore", version: "1.8", n_databases: 1, owned_by_superuser: "1" },
    ]);
    expect(aggregateExtensions([])).toEqual([]);
  });
});

test.each([
  [-1, 3600],
  [0, 3600],
  [1, 1],
  [300, 300],
])("suspend_timeout_seconds %p -> collection interval %p s", (timeout, interval) => {
  expect(collectionIntervalSeconds(timeout)).toBe(interval);
});

test("the periodic task sleeps first, twice the interval, which only grows", async () => {
  const intervals = [60, 30, 120];
  const sleeps: number[] = [];
  let scans = 0;
  const stop = new AbortController();
  await runInstalledExtensionsTask({
    intervalSeconds: () => intervals[Math.min(scans, intervals.length - 1)] as number,
    scan: async () => {
      scans++;
      if (scans === 3) stop.abort();
    },
    sleep: async (ms) => {
      sleeps.push(ms);
    },
    signal: stop.signal,
  });
  expect(sleeps).toEqual([120_000, 120_000, 240_000]);
  expect(scans).toBe(3);
});

describe("scanInstalledExtensions (real postgres)", () => {
  let pg: TestCluster;
  beforeAll(async () => {
    pg = await startTestCluster();
    await pg.psql(
      "CREATE ROLE ext_owner LOGIN; CREATE DATABASE ext_a OWNER ext_owner; CREATE DATABASE ext_b; CREATE DATABASE ext_closed ALLOW_CONNECTIONS false",
    );
    // hstore is a trusted extension: the database owner may create it, and owns it.
    await pg.psql("SET ROLE ext_owner; CREATE EXTENSION hstore", "ext_a");
    await pg.psql("CREATE EXTENSION hstore", "ext_b");
  });
  afterAll(async () => {
    await pg?.stop();
  });

  test("every connectable database, aggregated, logged as [NEON_EXT_STAT]", async () => {
    const { log, lines } = memoryLogger();
    const target = connectionTarget(new URL(pg.url));
    const open = (database?: string) =>
      openConnection(target, {
        ...(database ? { database } : {}),
        applicationName: "test",
        log,
      });
    const system = open();
    try {
      const list = await scanInstalledExtensions({ system, connect: open, log });
      // postgres, template1, ext_a, ext_b: template0 and ext_closed refuse connections.
      expect(list).toContainEqual({
        extname: "plpgsql",
        version: "1.0",
        n_databases: 4,
        owned_by_superuser: "1",
      });
      const hstore = list.filter((e) => e.extname === "hstore");
      expect(hstore.map((e) => [e.owned_by_superuser, e.n_databases]).sort()).toEqual([
        ["0", 1],
        ["1", 1],
      ]);
      const logged = lines.find((l) => l.includes("[NEON_EXT_STAT] "));
      expect(JSON.parse(String(logged?.split("[NEON_EXT_STAT] ")[1]))).toEqual({
        extensions: list,
      });
    } finally {
      await system.end({ timeout: 0 });
    }
  });
});

test("a zero interval means no periodic scan (not a scan loop)", async () => {
  let scans = 0;
  await runInstalledExtensionsTask({
    intervalSeconds: () => 0,
    scan: async () => {
      scans++;
    },
    sleep: async () => {},
    signal: new AbortController().signal,
  });
  expect(scans).toBe(0);
});

test("abortableSleep beyond setTimeout's 2^31-1 ms limit does not fire early", async () => {
  const stop = new AbortController();
  const slept = abortableSleep(2 ** 32, stop.signal).then(() => "slept");
  // Overflowing timers fire after 1 ms: 50 ms is plenty to see that go wrong.
  const window = new Promise<string>((r) => setTimeout(() => r("still sleeping"), 50));
  expect(await Promise.race([slept, window])).toBe("still sleeping");
  stop.abort();
  expect(await slept).toBe("slept");
});
