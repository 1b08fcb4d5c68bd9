import { afterAll, afterEach, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { type PageserverHandle, startPageserver } from "../dev/pageserver.ts";
import { memoryLogger } from "../log.ts";
import { parseComputeSpec } from "../spec/parse.ts";
import { type ParsedSpec, toParsedSpec } from "../spec/parsed-spec.ts";
import { ComputeStateStore } from "../state/store.ts";
import { minimalSpecJson, TEST_TENANT, TEST_TIMELINE } from "../testing/specs.ts";
import { until } from "../testing/until.ts";
import {
  combineLeases,
  LEASE_REFUSED_MESSAGE,
  type LeaseRequest,
  type LeaseResult,
  launchLsnLeaseTask,
  leaseCommand,
  renewalDelayMs,
  retryDelayMs,
} from "./lsn-lease.ts";

const LSN_TEXT = "0/16B5BA8";
const LSN = 0x16b5ba8n;
const NOW = 1_700_000_000_000;
const MIN = 60_000;
const URL_A = "postgres://no_user@127.0.0.1:64001";
const URL_B = "postgres://no_user@127.0.0.1:64002";

function staticSpec(extra: Record<string, unknown> = {}): ParsedSpec {
  return toParsedSpec(
    parseComputeSpec(
      minimalSpecJson({
        mode: { Static: LSN_TEXT },
        safekeeper_connstrings: [],
        pageserver_connstring: URL_A,
        ...extra,
      }),
    ),
  );
}

/** Shards "0002" and "0102", each served by the given pageserver URLs. */
function shardedInfo(shard0: string[], shard1: string[]): Record<string, unknown> {
  const shard = (urls: string[]) => ({
    pageservers: urls.map((libpq_url, i) => ({ id: i + 1, libpq_url, grpc_url: null })),
  });
  return {
    shard_count: 2,
    stripe_size: 32768,
    shards: { "0002": shard(shard0), "0102": shard(shard1) },
    prefer_protocol: "libpq",
  };
}

interface PendingSleep {
  ms: number;
  signal: AbortSignal;
  wake(): void;
}

/**
 * A sleep the test controls: each call waits until the test wakes it or its
 * signal aborts. `next()` hands over the sleeps in call order, so tests step
 * the loop without any real waiting.
 */
class ManualSleeps {
  readonly all: PendingSleep[] = [];
  private taken = 0;
  private notify: (() => void) | undefined;

  readonly sleep = (ms: number, signal: AbortSignal): Promise<void> =>
    new Promise<void>((resolve, reject) => {
      const s: PendingSleep = { ms, signal, wake: resolve };
      signal.addEventListener("abort", () => reject(new Error("sleep aborted")), { once: true });
      this.all.push(s);
      this.notify?.();
    });

  async next(): Promise<PendingSleep> {
    for (;;) {
      const s = this.all[this.taken];
      if (s !== undefined) {
        this.taken++;
        return s;
      }
      await new Promise<void>((r) => {
        this.notify = r;
      });
      this.notify = undefined;
    }
  }
}

type Script = (req: LeaseRequest, call: number) => LeaseResult | Error;

function setup(opts: { pspec?: ParsedSpec | null; script?: Script } = {}) {
  const { log, lines } = memoryLogger();
  const pspec = opts.pspec === undefined ? staticSpec() : opts.pspec;
  const store = new ComputeStateStore({ log, initial: { pspec } });
  const shutdown = new AbortController();
  const sleeps = new ManualSleeps();
  const requests: LeaseRequest[] = [];
  let clock = NOW;
  const script: Script = opts.script ?? (() => clock + 10 * MIN);
  const acquire = async (req: LeaseRequest): Promise<LeaseResult> => {
    requests.push(req);
    const r = script(req, requests.length - 1);
    if (r instanceof Error) throw r;
    return r;
  };
  const start = () =>
    launchLsnLeaseTask({
      store,
      log,
      signal: shutdown.signal,
      sleep: sleeps.sleep,
      now: () => clock,
      acquire,
    });
  return {
    store,
    lines,
    shutdown,
    sleeps,
    requests,
    start,
    advance: (ms: number) => {
      clock += ms;
    },
    now: () => clock,
  };
}

describe("pure helpers", () => {
  test.each([
    [TEST_TENANT, TEST_TIMELINE, LSN, `lease lsn ${TEST_TENANT} ${TEST_TIMELINE} 0/16B5BA8 `],
    [
      `${TEST_TENANT}-0102`,
      TEST_TIMELINE,
      0x1_0000_00ffn,
      `lease lsn ${TEST_TENANT}-0102 ${TEST_TIMELINE} 1/FF `,
    ],
    [TEST_TENANT, TEST_TIMELINE, 0n, `lease lsn ${TEST_TENANT} ${TEST_TIMELINE} 0/0 `],
  ])("leaseCommand(%s, %s, %p)", (tenant, timeline, lsn, expected) => {
    expect(leaseCommand(tenant, timeline, lsn)).toBe(expected);
  });

  test.each([
    ["10 min left: renew a minute early", NOW + 10 * MIN, NOW, 9 * MIN],
    ["2 min left: the two rules agree", NOW + 2 * MIN, NOW, MIN],
    ["100 s left: half wins", NOW + 100_000, NOW, 50_000],
    ["30 s left: half", NOW + 30_000, NOW, 15_000],
    ["already expired", NOW - 5_000, NOW, 0],
    ["expires now", NOW, NOW, 0],
  ])("renewalDelayMs: %s", (_what, validUntil, now, expected) => {
    expect(renewalDelayMs(validUntil, now)).toBe(expected);
  });

  test.each([
    [0, 500],
    [1, 750],
    [2, 1125],
    [3, 1687],
    [4, 2531],
    [10, 28832],
    [11, 43248],
    [12, 60_000],
    [50, 60_000],
  ])("retryDelayMs(%p) = %p", (n, expected) => {
    expect(retryDelayMs(n)).toBe(expected);
  });

  test.each<[string, LeaseResult[], LeaseResult]>([
    ["one lease", [NOW], NOW],
    ["earliest of several", [NOW + 3, NOW + 1, NOW + 2], NOW + 1],
    ["a refusal beats any time", [NOW, null, NOW + 1], null],
    ["only refusals", [null, null], null],
    ["no pageservers at all (upstream: None)", [], null],
  ])("combineLeases: %s", (_what, results, expected) => {
    expect(combineLeases(results)).toBe(expected);
  });
});

describe("launchLsnLeaseTask", () => {
  test("does nothing unless the spec is static", async () => {
    for (const pspec of [null, staticSpec({ mode: "Primary", safekeeper_connstrings: ["a:1"] })]) {
      const h = setup({ pspec, script: () => new Error("must not be called") });
      await h.start();
      expect(h.requests).toHaveLength(0);
      expect(h.sleeps.all).toHaveLength(0);
    }
    const replica = setup({ pspec: staticSpec({ mode: "Replica" }) });
    await replica.start();
    expect(replica.requests).toHaveLength(0);
  });

  test("a granted lease is renewed at max(valid − 60 s, valid / 2)", async () => {
    const h = setup({ pspec: staticSpec({ storage_auth_token: "tok" }) });
    const done = h.start();
    const first = await h.sleeps.next();
    expect(first.ms).toBe(9 * MIN);
    expect(h.requests).toHaveLength(1);
    expect(h.requests[0]).toMatchObject({
      url: URL_A,
      password: "tok",
      tenantShardId: TEST_TENANT,
      timelineId: TEST_TIMELINE,
      lsn: LSN,
    });
    expect(h.lines.at(-1)).toEndWith("INFO Request succeeded, sleeping for 540 seconds");

    // The renewal, 9 minutes later: the clock is read again for the new lease.
    h.advance(9 * MIN);
    first.wake();
    const second = await h.sleeps.next();
    expect(h.requests).toHaveLength(2);
    expect(second.ms).toBe(9 * MIN);

    h.shutdown.abort();
    await done;
    expect(h.store.pendingWaiters).toBe(0);
    expect(h.requests).toHaveLength(2);
  });

  test("transient errors retry at 500 ms × 1.5^n, and the backoff resets after success", async () => {
    const h = setup({
      script: (_req, call) =>
        call < 3 || call === 4 ? new Error(`connection refused #${call}`) : NOW + 10 * MIN,
    });
    const done = h.start();
    const waits: number[] = [];
    for (let i = 0; i < 5; i++) {
      const s = await h.sleeps.next();
      waits.push(s.ms);
      s.wake();
    }
    expect(waits).toEqual([500, 750, 1125, 9 * MIN, 500]);
    const failures = h.lines.filter((l) => l.includes("WARN Failed to acquire lsn lease"));
    expect(failures.map((l) => l.replace(/^\S+ +WARN /, ""))).toEqual([
      "Failed to acquire lsn lease: connection refused #0 (attempt 0)",
      "Failed to acquire lsn lease: connection refused #1 (attempt 1)",
      "Failed to acquire lsn lease: connection refused #2 (attempt 2)",
      "Failed to acquire lsn lease: connection refused #4 (attempt 0)",
    ]);
    h.shutdown.abort();
    await done;
    expect(h.store.pendingWaiters).toBe(0);
  });

  test("every pageserver of every shard is leased; the earliest expiry sets the renewal", async () => {
    const urls = ["postgres://no_user@10.0.0.1:6400", "postgres://no_user@10.0.0.2:6400"];
    const expiry: Record<string, number> = {
      [`${URL_A}|${TEST_TENANT}-0002`]: NOW + 10 * MIN,
      [`${urls[0]}|${TEST_TENANT}-0102`]: NOW + 4 * MIN,
      [`${urls[1]}|${TEST_TENANT}-0102`]: NOW + 20 * MIN,
    };
    const h = setup({
      pspec: staticSpec({ pageserver_connection_info: shardedInfo([URL_A], urls) }),
      script: (req) => expiry[`${req.url}|${req.tenantShardId}`] ?? new Error("unexpected"),
    });
    const done = h.start();
    const s = await h.sleeps.next();
    expect(h.requests.map((r) => `${r.url}|${r.tenantShardId}`)).toEqual(Object.keys(expiry));
    expect(s.ms).toBe(3 * MIN);
    h.shutdown.abort();
    await done;
  });

  test("a refusal on one shard is permanent: the task logs and ends", async () => {
    const h = setup({
      pspec: staticSpec({ pageserver_connection_info: shardedInfo([URL_A], [URL_B]) }),
      script: (req) => (req.tenantShardId.endsWith("-0102") ? null : NOW + 10 * MIN),
    });
    await h.start();
    expect(h.requests.map((r) => r.tenantShardId)).toEqual([
      `${TEST_TENANT}-0002`,
      `${TEST_TENANT}-0102`,
    ]);
    expect(h.sleeps.all).toHaveLength(0);
    expect(h.lines.at(-1)).toEndWith(`WARN Exited with error: ${LEASE_REFUSED_MESSAGE}`);
    expect(h.lines.at(-1)).toContain(
      "Exited with error: Permanent error: lease could not be obtained, LSN is behind the GC cutoff",
    );
    expect(h.store.pendingWaiters).toBe(0);
  });

  test("a pageserver change ends the renewal wait early; the next lease uses the new address", async () => {
    const h = setup();
    const done = h.start();
    const wait = await h.sleeps.next();
    expect(wait.ms).toBe(9 * MIN);

    // Same conninfo in a new spec object: not a change.
    h.store.update({ pspec: staticSpec() });
    expect(wait.signal.aborted).toBe(false);
    expect(h.store.pendingWaiters).toBe(1);

    h.store.update({
      pspec: staticSpec({ pageserver_connstring: URL_B, storage_auth_token: "new" }),
    });
    const next = await h.sleeps.next();
    expect(wait.signal.aborted).toBe(true);
    expect(next.ms).toBe(9 * MIN);
    expect(h.requests.map((r) => [r.url, r.password])).toEqual([
      [URL_A, null],
      [URL_B, "new"],
    ]);
    expect(h.lines.filter((l) => l.endsWith("INFO Pageserver config changed"))).toHaveLength(1);
    h.shutdown.abort();
    await done;
    expect(h.store.pendingWaiters).toBe(0);
  });

  test("a pageserver change ends a retry wait early too", async () => {
    const h = setup({
      script: (req) => (req.url === URL_A ? new Error("pageserver gone") : NOW + 10 * MIN),
    });
    const done = h.start();
    const retry = await h.sleeps.next();
    expect(retry.ms).toBe(500);
    h.store.update({ pspec: staticSpec({ pageserver_connstring: URL_B }) });
    const renewal = await h.sleeps.next();
    expect(renewal.ms).toBe(9 * MIN);
    expect(h.requests.map((r) => r.url)).toEqual([URL_A, URL_B]);
    h.shutdown.abort();
    await done;
  });

  test("a change made while an attempt runs is noticed by the wait that follows", async () => {
    const late: { store?: ComputeStateStore } = {};
    const h = setup({
      script: (_req, call) => {
        if (call === 0) late.store?.update({ pspec: staticSpec({ pageserver_connstring: URL_B }) });
        return NOW + 10 * MIN;
      },
    });
    late.store = h.store;
    const done = h.start();
    const first = await h.sleeps.next();
    await h.sleeps.next();
    // Never woken by the test: the live conninfo already differed when the wait began.
    expect(first.signal.aborted).toBe(true);
    expect(h.requests.map((r) => r.url)).toEqual([URL_A, URL_B]);
    h.shutdown.abort();
    await done;
  });

  test("shutdown during a wait ends the loop without another attempt", async () => {
    const h = setup();
    const done = h.start();
    const wait = await h.sleeps.next();
    h.shutdown.abort();
    await done;
    expect(wait.signal.aborted).toBe(true);
    expect(h.requests).toHaveLength(1);
    expect(h.store.pendingWaiters).toBe(0);
  });

  test("shutdown during an attempt ends the loop without a failure warning", async () => {
    const { log, lines } = memoryLogger();
    const store = new ComputeStateStore({ log, initial: { pspec: staticSpec() } });
    const shutdown = new AbortController();
    const sleeps = new ManualSleeps();
    let started: () => void = () => {};
    const inFlight = new Promise<void>((r) => {
      started = r;
    });
    const done = launchLsnLeaseTask({
      store,
      log,
      signal: shutdown.signal,
      sleep: sleeps.sleep,
      acquire: (req) =>
        new Promise<LeaseResult>((_resolve, reject) => {
          req.signal.addEventListener("abort", () => reject(new Error("aborted")), {
            once: true,
          });
          started();
        }),
    });
    await inFlight;
    shutdown.abort();
    await done;
    expect(sleeps.all).toHaveLength(0);
    expect(lines.some((l) => l.includes("Failed to acquire"))).toBe(false);
    expect(store.pendingWaiters).toBe(0);
  });
});

describe("against the pageserver stand-in", () => {
  // Leases never read the template (only basebackup does), so an empty dir will do.
  const templateDir = mkdtempSync(join(tmpdir(), "cc-lease-"));
  const servers: PageserverHandle[] = [];
  const server = (opts: Omit<Parameters<typeof startPageserver>[0], "template"> = {}) => {
    const s = startPageserver({ template: { dir: templateDir }, ...opts });
    servers.push(s);
    return s;
  };

  afterEach(async () => {
    await Promise.all(servers.splice(0).map((s) => s.close()));
  });
  afterAll(() => rmSync(templateDir, { recursive: true, force: true }));

  test("sends the exact command with the token, renews, and stops on a refusal", async () => {
    const ps = server({
      auth: { password: "storage-token" },
      tenantId: TEST_TENANT,
      timelineId: TEST_TIMELINE,
      leaseLengthMs: 10 * MIN,
    });
    const { log, lines } = memoryLogger();
    const store = new ComputeStateStore({
      log,
      initial: {
        pspec: staticSpec({ pageserver_connstring: ps.url, storage_auth_token: "storage-token" }),
      },
    });
    const shutdown = new AbortController();
    const sleeps = new ManualSleeps();
    const done = launchLsnLeaseTask({ store, log, signal: shutdown.signal, sleep: sleeps.sleep });

    const renewal = await sleeps.next();
    // valid_until is the server's Date.now() + 10 min, read back a little later.
    expect(renewal.ms).toBeGreaterThan(9 * MIN - 5_000);
    expect(renewal.ms).toBeLessThanOrEqual(9 * MIN);
    expect(ps.requests).toHaveLength(1);
    const [req] = ps.requests;
    expect(req?.command).toBe(`lease lsn ${TEST_TENANT} ${TEST_TIMELINE} ${LSN_TEXT} `);
    expect(req?.protocol).toBe("simple");
    expect(req?.result?.outcome).toBe("ok");
    expect(req?.password).toBe("storage-token");
    expect(req?.applicationName).toBeUndefined();
    expect(req?.options).toBeUndefined();
    expect(req?.startup.user).toBe("no_user");

    ps.setFaults({ refuseLease: true });
    renewal.wake();
    await done;
    expect(ps.requests).toHaveLength(2);
    expect(lines.at(-1)).toEndWith(`WARN Exited with error: ${LEASE_REFUSED_MESSAGE}`);
    expect(store.pendingWaiters).toBe(0);
  });

  test("with the real timer, short leases are renewed until shutdown", async () => {
    // 60 ms leases: renewal every max(60 − 60 000, 30) = 30 ms.
    const ps = server({ leaseLengthMs: 60 });
    const { log } = memoryLogger();
    const store = new ComputeStateStore({
      log,
      initial: { pspec: staticSpec({ pageserver_connstring: ps.url }) },
    });
    const shutdown = new AbortController();
    const done = launchLsnLeaseTask({ store, log, signal: shutdown.signal });
    await until("three leases", () => ps.requests.length >= 3);
    shutdown.abort();
    await done;
    expect(ps.requests.slice(0, 3).every((r) => r.result?.outcome === "ok")).toBe(true);
    expect(store.pendingWaiters).toBe(0);
  });

  test("sharded: one lease per shard with <tenant>-NNCC, and a pageserver error is retried", async () => {
    const a = server({ leaseLengthMs: 10 * MIN });
    const b = server({ leaseLengthMs: 5 * MIN, tenantId: "c".repeat(32) });
    const { log, lines } = memoryLogger();
    const store = new ComputeStateStore({
      log,
      initial: {
        pspec: staticSpec({ pageserver_connection_info: shardedInfo([a.url], [b.url]) }),
      },
    });
    const shutdown = new AbortController();
    const sleeps = new ManualSleeps();
    const done = launchLsnLeaseTask({ store, log, signal: shutdown.signal, sleep: sleeps.sleep });

    // b only knows another tenant, so its answer is an ErrorResponse: a transient error.
    const retry = await sleeps.next();
    expect(retry.ms).toBe(500);
    expect(lines.at(-1)).toContain(`Failed to acquire lsn lease: Tenant ${TEST_TENANT} not found`);
    expect(a.requests.map((r) => r.command)).toEqual([
      `lease lsn ${TEST_TENANT}-0002 ${TEST_TIMELINE} ${LSN_TEXT} `,
    ]);
    expect(b.requests.map((r) => r.command)).toEqual([
      `lease lsn ${TEST_TENANT}-0102 ${TEST_TIMELINE} ${LSN_TEXT} `,
    ]);

    // Move shard 1 to a pageserver that knows the tenant: the wait ends at once.
    const c = server({ leaseLengthMs: 5 * MIN });
    store.update({
      pspec: staticSpec({ pageserver_connection_info: shardedInfo([a.url], [c.url]) }),
    });
    const renewal = await sleeps.next();
    // The shorter lease (shard 1's 5 min) decides: max(4 min, 2.5 min).
    expect(renewal.ms).toBeGreaterThan(4 * MIN - 5_000);
    expect(renewal.ms).toBeLessThanOrEqual(4 * MIN);
    expect(c.requests.map((r) => r.command)).toEqual([
      `lease lsn ${TEST_TENANT}-0102 ${TEST_TIMELINE} ${LSN_TEXT} `,
    ]);
    shutdown.abort();
    await done;
    expect(store.pendingWaiters).toBe(0);
  });
});
