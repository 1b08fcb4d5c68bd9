// Every pageserver fault knob, the slow safekeeper path failing then
// succeeding, auth, SIGTERM while postgres starts, and compute_ctl as PID 1.
import { afterAll, describe, expect, setDefaultTimeout, test } from "bun:test";
import type { PageserverFaults } from "../src/dev/pageserver.ts";
import { waitUntil } from "./helpers/binary.ts";
import { postgresPids, startCompute, workDir } from "./helpers/compute.ts";

// Process-level: real postgres and the built binary; each wait has its own deadline.
setDefaultTimeout(60_000);

const root = workDir("compute-ctl-faults-");
afterAll(() => root.cleanup());

// One retry keeps a failing case short; the retry loop itself is tested elsewhere.
const ONE_RETRY = { NEON_COMPUTE_TESTING_BASEBACKUP_RETRIES: "1" };

describe("basebackup fault knobs", () => {
  const succeed: [string, PageserverFaults][] = [
    // 1-byte frames are covered by the wire client's tests; end to end they take 30 s.
    ["7-byte CopyData frames", { chunkSize: 7 }],
    ["65537-byte CopyData frames", { chunkSize: 65537 }],
    ["a delay before answering", { delayMs: 300 }],
    ["end-of-archive blocks present", { endOfArchive: true }],
    ["refused with FATAL twice", { refuseConnections: 2, refuseWith: "fatal" }],
  ];
  for (const [name, faults] of succeed) {
    test(`${name}: running`, async () => {
      const c = await startCompute(root.dir, `ok-${name.replace(/\W+/g, "-")}`, {
        envOptions: { pageserverFaults: faults },
      });
      try {
        await c.waitForStatus(["running"], 60_000);
        expect((await c.psql("select 42")).out).toBe("42");
      } finally {
        await c.stop();
      }
    });
  }

  const fail: [string, PageserverFaults, RegExp][] = [
    ["ErrorResponse mid-stream", { errorMidStream: 100_000 }, /failed to get basebackup@/],
    ["socket closed mid-stream", { closeMidStream: 100_000 }, /failed to get basebackup@/],
    [
      "error before streaming",
      { errorBeforeStream: "timeline is archived" },
      /failed to get basebackup@/,
    ],
  ];
  for (const [name, faults, want] of fail) {
    test(`${name}: failed with the reason in /status, nothing running`, async () => {
      const c = await startCompute(root.dir, `fail-${name.replace(/\W+/g, "-")}`, {
        envOptions: { pageserverFaults: faults },
        binEnv: ONE_RETRY,
      });
      try {
        const st = await c.waitForStatus(["failed"], 60_000);
        expect(String(st.error)).toMatch(want);
        expect(c.child.stderr()).toContain("Failed to get basebackup");
        expect(postgresPids(c.pgdata)).toEqual([]);
      } finally {
        await c.stop();
      }
    });
  }

  test("the storage token is the pageserver password; a wrong one fails", async () => {
    const good = await startCompute(root.dir, "auth-ok", {
      envOptions: { storageAuthToken: "jwt-token-1" },
    });
    try {
      await good.waitForStatus(["running"]);
      expect(good.env.pageserver.connections.some((c) => c.password === "jwt-token-1")).toBe(true);
      expect(good.env.safekeepers[0]?.requests[0]?.password).toBe("jwt-token-1");
    } finally {
      await good.stop();
    }
    const bad = await startCompute(root.dir, "auth-bad", {
      envOptions: { storageAuthToken: "jwt-token-1" },
      spec: { storage_auth_token: "wrong" },
      binEnv: ONE_RETRY,
    });
    try {
      const st = await bad.waitForStatus(["failed"]);
      expect(String(st.error)).toContain("failed to");
    } finally {
      await bad.stop();
    }
  });
});

describe("safekeepers slow path", () => {
  test("sync-safekeepers fails twice, then succeeds: running", async () => {
    const c = await startCompute(root.dir, "sync-retry", {
      envOptions: {
        safekeeperAnswer: "missing",
        syncSafekeepers: { behaviour: { exitCode: 1, stderr: "could not elect\n", failTimes: 2 } },
      },
    });
    try {
      await c.waitForStatus(["running"], 60_000);
      expect((await c.env.pgbin.calls()).length).toBe(3);
      expect(c.child.stderr()).toContain("sync_safekeepers failed, will retry (attempt 1)");
    } finally {
      await c.stop();
    }
  });
});

describe("signals", () => {
  test("SIGTERM while postgres starts: exit 1, nothing left running", async () => {
    // A slow sync-safekeepers keeps the compute in `init` long enough to signal it.
    const c = await startCompute(root.dir, "sigterm-sync", {
      envOptions: { safekeeperAnswer: "missing", syncSafekeepers: { sleepMs: 30_000 } },
    });
    await waitUntil("sync-safekeepers running", async () =>
      (await c.env.pgbin.calls()).length > 0 ? true : undefined,
    );
    expect(await c.stop("SIGTERM")).toBe(1);
    const calls = await c.env.pgbin.calls();
    expect(calls[0]?.signal).toBe("TERM");
  });
});
