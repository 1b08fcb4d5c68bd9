// The startup pipeline end to end: the built binary against the stand-ins and
// real PostgreSQL, as root (postgres then runs as the `postgres` user).
import { afterAll, describe, expect, setDefaultTimeout, test } from "bun:test";
import { formatLsn } from "../src/spec/lsn.ts";
import { waitUntil } from "./helpers/binary.ts";
import { postgresPids, startCompute, workDir } from "./helpers/compute.ts";

// Process-level: real postgres and the built binary; each wait has its own deadline.
setDefaultTimeout(60_000);

const root = workDir("compute-ctl-startup-");
afterAll(() => root.cleanup());

describe("primary", () => {
  test("starts: running, queryable, settings from the spec, metrics filled; SIGTERM stops all", async () => {
    const c = await startCompute(root.dir, "primary");
    try {
      const st = await c.waitForStatus(["running"]);
      expect(st.tenant).toBe(c.env.tenantId);
      expect(st.last_active).toBeNull();
      expect((await c.psql("select 1")).out).toBe("1");
      expect((await c.psql("show work_mem")).out).toBe("7MB");
      expect((await c.psql("show neon.compute_mode")).out).toBe("primary");
      expect((await c.psql("select pg_is_in_recovery()")).out).toBe("f");
      const m = await c.metrics();
      expect(m.basebackup_bytes).toBeGreaterThan(0);
      expect(m.total_startup_ms).toBeGreaterThan(0);
      // The safekeepers agreed: the fast path skipped --sync-safekeepers.
      expect(m.sync_safekeepers_ms).toBe(0);
      expect(await c.env.pgbin.calls()).toHaveLength(0);
      const bb = c.env.pageserver.requests.find((r) => r.command.startsWith("basebackup"));
      expect(bb?.command).toBe(
        `basebackup ${c.env.tenantId} ${c.env.timelineId} ${c.env.template.checkpointLsn} --gzip`,
      );
      expect(bb?.startup.application_name).toBe("compute_ctl");
      expect(bb?.startup.options).toBe("-c neon.compute_mode=primary");
      expect(c.child.stderr()).toContain("PG:");
    } finally {
      expect(await c.stop("SIGTERM")).toBe(1);
    }
  });

  test("safekeepers out of sync: --sync-safekeepers runs and its LSN is used", async () => {
    const c = await startCompute(root.dir, "slowpath", {
      envOptions: { safekeeperAnswer: { flushLsn: "0/3000000", commitLsn: "0/2000000" } },
    });
    try {
      await c.waitForStatus(["running"]);
      const calls = await c.env.pgbin.calls();
      expect(calls.length).toBe(1);
      expect(calls[0]?.pgdata).toBe(c.pgdata);
      expect((await c.metrics()).sync_safekeepers_ms).toBeGreaterThanOrEqual(0);
    } finally {
      await c.stop();
    }
  });

  test("postgres stopped from outside: compute_ctl syncs safekeepers and exits with postgres' code", async () => {
    const c = await startCompute(root.dir, "external-stop");
    try {
      await c.waitForStatus(["running"]);
      const [pid] = postgresPids(c.pgdata);
      expect(pid).toBeDefined();
      process.kill(pid as number, "SIGINT");
      const code = await c.child.proc.exited;
      expect(code).toBe(0);
      expect(c.child.stderr()).toContain("syncing safekeepers on shutdown");
      expect((await c.env.pgbin.calls()).length).toBe(1);
    } finally {
      await c.stop();
    }
  });

  test("a bad setting: postgres fails to start, status failed with the reason", async () => {
    const c = await startCompute(root.dir, "badconf", { clusterConf: "shared_buffers=nonsense\n" });
    try {
      const st = await c.waitForStatus(["failed"]);
      expect(String(st.error)).toContain("Postgres exited unexpectedly with code 1");
      expect(postgresPids(c.pgdata)).toEqual([]);
    } finally {
      expect(await c.stop()).toBe(1);
    }
  });
});

describe("replica and static", () => {
  test("replica: running in recovery, basebackup --replica without LSN, standby.signal", async () => {
    const c = await startCompute(root.dir, "replica", { spec: { mode: "Replica" } });
    try {
      await c.waitForStatus(["running"]);
      expect((await c.psql("select pg_is_in_recovery()")).out).toBe("t");
      const bb = c.env.pageserver.requests.find((r) => r.command.startsWith("basebackup"));
      expect(bb?.command).toBe(`basebackup ${c.env.tenantId} ${c.env.timelineId} --gzip --replica`);
      expect(await Bun.file(`${c.pgdata}/standby.signal`).exists()).toBe(true);
    } finally {
      await c.stop();
    }
  });

  test("static: running at the given LSN", async () => {
    const c = await startCompute(root.dir, "static", { spec: {} });
    const lsn = c.env.template.checkpointLsn;
    await c.stop();
    const s = await startCompute(root.dir, "static2", { spec: { mode: { Static: lsn } } });
    try {
      await s.waitForStatus(["running"]);
      expect((await s.psql("show neon.compute_mode")).out).toBe("static");
      // The LSN lease task leases the static LSN from the pageserver.
      await waitUntil("a lease request", () =>
        s.env.pageserver.requests.find((r) => r.command.startsWith("lease lsn")),
      );
      const lease = s.env.pageserver.requests.find((r) => r.command.startsWith("lease lsn"));
      expect(lease?.command).toBe(
        `lease lsn ${s.env.tenantId} ${s.env.timelineId} ${formatLsn(s.env.template.checkpointLsnValue)} `,
      );
      const bb = s.env.pageserver.requests.find((r) => r.command.startsWith("basebackup"));
      expect(bb?.command).toBe(
        `basebackup ${s.env.tenantId} ${s.env.timelineId} ${formatLsn(s.env.template.checkpointLsnValue)} --gzip --replica`,
      );
    } finally {
      await s.stop();
    }
  });
});

describe("basebackup faults", () => {
  test("refused connections are retried until the basebackup succeeds", async () => {
    const c = await startCompute(root.dir, "refuse", {
      envOptions: { pageserverFaults: { refuseConnections: 2 } },
    });
    try {
      await c.waitForStatus(["running"]);
      expect(c.child.stderr()).toContain("Failed to get basebackup");
    } finally {
      await c.stop();
    }
  });

  test("an ErrorResponse after the tar data fails the attempt; out of retries → failed", async () => {
    const c = await startCompute(root.dir, "errtar", {
      envOptions: { pageserverFaults: { errorAfterTar: true } },
      binEnv: { NEON_COMPUTE_TESTING_BASEBACKUP_RETRIES: "1" },
    });
    try {
      const st = await c.waitForStatus(["failed"]);
      expect(String(st.error)).toStartWith(
        `failed to get basebackup@${c.env.template.checkpointLsn}`,
      );
    } finally {
      await c.stop();
    }
  });

  test("SIGTERM during the basebackup: exit 1, nothing left running", async () => {
    const c = await startCompute(root.dir, "sigterm-bb", {
      envOptions: { pageserverFaults: { delayMs: 60_000 } },
    });
    await waitUntil("basebackup requested", () =>
      c.env.pageserver.connections.length > 0 ? true : undefined,
    );
    expect(await c.stop("SIGTERM")).toBe(1);
    expect(postgresPids(c.pgdata)).toEqual([]);
  });
});
