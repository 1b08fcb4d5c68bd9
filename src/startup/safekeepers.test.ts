import { describe, expect, test } from "bun:test";
import { FakeRunner } from "../process/fake-runner.ts";
import {
  checkSafekeepersSynced,
  primaryStartLsn,
  syncBackoffMs,
  syncedLsn,
  syncSafekeepers,
  syncSafekeepersWithRetries,
  type TimelineStatus,
} from "./safekeepers.ts";
import { testContext, testSpec } from "./testing.ts";

const ok = (flush: bigint, commit = flush): TimelineStatus => ({
  found: true,
  flushLsn: flush,
  commitLsn: commit,
});

describe("syncedLsn (quorum decision)", () => {
  test.each<[string, TimelineStatus[], bigint | null]>([
    ["all equal", [ok(10n), ok(10n)], 10n],
    ["flush != commit", [ok(10n, 9n), ok(10n)], null],
    ["different LSNs", [ok(10n), ok(11n)], null],
    ["timeline missing", [ok(10n), { found: false }], null],
    ["zero LSN is a value", [ok(0n), ok(0n)], 0n],
  ])("%s", (_, answers, want) => {
    expect(syncedLsn(answers)).toBe(want);
  });
});

describe("checkSafekeepersSynced", () => {
  test("a quorum of consistent answers gives the LSN and records sync_sk_check_ms", async () => {
    const { ctx } = testContext();
    const lsn = await checkSafekeepersSynced(ctx, async () => ok(0x16b5ba8n));
    expect(lsn).toBe(0x16b5ba8n);
  });

  test("stops at a quorum: one hanging safekeeper out of three does not matter", async () => {
    const { ctx } = testContext();
    const probe = async (sk: string, signal: AbortSignal) => {
      if (sk.endsWith("5456")) {
        await new Promise((_, reject) =>
          signal.addEventListener("abort", () => reject(new Error("aborted"))),
        );
      }
      return ok(5n);
    };
    expect(await checkSafekeepersSynced(ctx, probe, 10_000)).toBe(5n);
  });

  test("a quorum of failures means unknown (null) and is logged", async () => {
    const { ctx, lines } = testContext();
    const lsn = await checkSafekeepersSynced(ctx, async () => {
      throw new Error("connection refused");
    });
    expect(lsn).toBeNull();
    expect(
      lines.some(
        (l) => l.includes("failed sync safekeepers check") && l.includes("connection refused"),
      ),
    ).toBe(true);
  });

  test("each safekeeper gets the timeout budget", async () => {
    const { ctx } = testContext();
    const started = performance.now();
    const lsn = await checkSafekeepersSynced(
      ctx,
      (_sk, signal) =>
        new Promise((_, rej) => signal.addEventListener("abort", () => rej(new Error("x")))),
      50,
    );
    expect(lsn).toBeNull();
    expect(performance.now() - started).toBeLessThan(2000);
  });
});

describe("syncSafekeepers (slow path)", () => {
  test("runs <pgbin> --sync-safekeepers with PGDATA and NEON_AUTH_TOKEN; parses the LSN", async () => {
    const runner = new FakeRunner().on("/pg/bin/postgres --sync-safekeepers", {
      stdout: ["0/169AD58"],
      stderr: ["2024-01-01 00:00:00 LOG: done"],
    });
    const { ctx } = testContext({ runner, pspec: testSpec({ storage_auth_token: "jwt" }) });
    expect(await syncSafekeepers(ctx)).toBe(0x169ad58n);
    const child = runner.last("/pg/bin/postgres");
    expect(child?.spec.env).toEqual({ PGDATA: "/nonexistent/pgdata", NEON_AUTH_TOKEN: "jwt" });
    expect(ctx.children.syncSafekeepers).toBeNull();
  });

  test("a non-zero exit is an error with upstream's text and stdout", async () => {
    const runner = new FakeRunner().on("/pg/bin/postgres --sync-safekeepers", {
      stdout: ["partial"],
      exit: 3,
    });
    const { ctx } = testContext({ runner });
    await expect(syncSafekeepers(ctx)).rejects.toThrow(
      "postgres --sync-safekeepers exited with non-zero status: exit status: 3. stdout: partial",
    );
  });

  test("garbage on stdout is an LSN parse error", async () => {
    const runner = new FakeRunner().on("/pg/bin/postgres --sync-safekeepers", {
      stdout: ["not an lsn"],
    });
    const { ctx } = testContext({ runner });
    await expect(syncSafekeepers(ctx)).rejects.toThrow(/LSN/);
  });

  test("retries with upstream's backoff, then succeeds", async () => {
    let calls = 0;
    const runner = new FakeRunner().on("/pg/bin/postgres --sync-safekeepers", (child) => {
      calls++;
      if (calls < 3) queueMicrotask(() => child.exit(1));
      else {
        child.writeStdout("0/10");
        queueMicrotask(() => child.exit(0));
      }
    });
    const { ctx, sleeps } = testContext({ runner });
    expect(await syncSafekeepersWithRetries(ctx)).toBe(0x10n);
    expect(sleeps).toEqual([0, 1100]);
  });

  test("gives up after 5 retries (6 attempts)", async () => {
    const runner = new FakeRunner().on("/pg/bin/postgres --sync-safekeepers", { exit: 1 });
    const { ctx, sleeps, lines } = testContext({ runner });
    await expect(syncSafekeepersWithRetries(ctx)).rejects.toThrow("non-zero status");
    expect(runner.spawned).toHaveLength(6);
    expect(sleeps.map(Math.round)).toEqual([0, 1100, 1210, 1331, 1464]);
    expect(lines.at(-1)).toContain("sync_safekeepers still failed after 5 retries, giving up");
  });

  test("backoff is capped at 3 s", () => {
    expect(syncBackoffMs(0)).toBe(0);
    expect(syncBackoffMs(20)).toBe(3000);
  });

  test("primaryStartLsn wraps the failure as 'failed to sync safekeepers'", async () => {
    const runner = new FakeRunner().on("/pg/bin/postgres --sync-safekeepers", { exit: 2 });
    const { ctx } = testContext({
      runner,
      pspec: testSpec({ safekeeper_connstrings: ["127.0.0.1:1"] }),
    });
    const err = await primaryStartLsn(ctx).catch((e) => e);
    expect(err.message).toBe("failed to sync safekeepers");
    expect(String(err.cause?.message)).toContain("non-zero status");
  });
});
