// The activity monitor on a real compute: last_active stays null while only
// compute_ctl and cloud_admin use postgres, follows a normal role's sessions
// (an idle one reports its own state_change), keeps moving while a logical
// replication subscriber is connected, never goes backwards, and a check that
// postgres never answers is downtime followed by a reconnect.
import { afterAll, expect, setDefaultTimeout, test } from "bun:test";
import { join } from "node:path";
import type { Subprocess } from "bun";
import { startTestCluster } from "../src/testing/pg-cluster.ts";
import { waitUntil } from "./helpers/binary.ts";
import { type ComputeUnderTest, PG_BIN_DIR, startCompute, workDir } from "./helpers/compute.ts";

// Process-level: real postgres and the built binary; each wait has its own deadline.
setDefaultTimeout(90_000);

const root = workDir("compute-ctl-monitor-");
afterAll(() => root.cleanup());

const ALICE = { name: "alice", encrypted_password: null, options: null };

async function sql(c: ComputeUnderTest, text: string): Promise<string> {
  const r = await c.psql(text);
  if (r.code !== 0) throw new Error(`psql: ${r.err}`);
  return r.out;
}

/** Waits until the monitor has run `n` more checks (its backend's query_start moved n times). */
async function monitorChecks(c: ComputeUnderTest, n: number): Promise<void> {
  const seen = new Set<string>();
  await waitUntil(
    `${n} activity checks`,
    async () => {
      const at = await sql(
        c,
        "SELECT query_start FROM pg_stat_activity WHERE application_name = 'compute_ctl:compute_monitor'",
      );
      if (at !== "") seen.add(at);
      return seen.size > n;
    },
    20_000,
  );
}

/** `last_active` of /status as microseconds since the epoch, or null. */
async function lastActiveMicros(c: ComputeUnderTest): Promise<bigint | null> {
  const v = (await c.status()).last_active;
  if (v === null || v === undefined) return null;
  const m = /^(.*T\d\d:\d\d:\d\d)(?:\.(\d+))?\+00:00$/.exec(String(v));
  if (!m) throw new Error(`unexpected last_active ${String(v)}`);
  const seconds = BigInt(Date.parse(`${m[1]}Z`)) / 1000n;
  return seconds * 1_000_000n + BigInt((m[2] ?? "").padEnd(9, "0").slice(0, 6));
}

/** A psql session as `user` that stays open; `send` writes SQL to it. */
function session(c: ComputeUnderTest, user: string) {
  const proc: Subprocess<"pipe", "ignore", "ignore"> = Bun.spawn(
    [
      join(PG_BIN_DIR, "psql"),
      "-X",
      "-q",
      "-h",
      "127.0.0.1",
      "-p",
      String(c.pgPort),
      "-U",
      user,
      "-d",
      "postgres",
    ],
    { stdin: "pipe", stdout: "ignore", stderr: "ignore" },
  );
  return {
    async send(text: string) {
      proc.stdin.write(`${text}\n`);
      await proc.stdin.flush();
    },
    async close() {
      proc.kill();
      await proc.exited;
    },
  };
}

test("last_active: null while only cloud_admin works, then a normal role's idle session's state_change, never backwards", async () => {
  const c = await startCompute(root.dir, "activity", {
    spec: { skip_pg_catalog_updates: false },
    cluster: { roles: [ALICE] },
  });
  let admin: ReturnType<typeof session> | undefined;
  let alice: ReturnType<typeof session> | undefined;
  try {
    await c.waitForStatus(["running"]);
    admin = session(c, "cloud_admin");
    await monitorChecks(c, 3);
    expect((await c.status()).last_active).toBeNull();

    // A busy cloud_admin session is compute_ctl's own kind: not activity.
    await admin.send("SELECT pg_sleep(30);");
    await waitUntil(
      "the cloud_admin query to run",
      async () =>
        (await sql(
          c,
          "SELECT count(*) FROM pg_stat_activity WHERE usename = 'cloud_admin' AND query LIKE 'SELECT pg_sleep%' AND state = 'active' AND pid <> pg_backend_pid()",
        )) === "1",
    );
    await monitorChecks(c, 3);
    expect((await c.status()).last_active).toBeNull();

    // alice connects, runs a query and stays connected, idle.
    alice = session(c, "alice");
    await alice.send("SELECT 1;");
    const first = await waitUntil(
      "last_active to be set",
      async () => (await lastActiveMicros(c)) ?? undefined,
      20_000,
    );
    await waitUntil(
      "alice to be idle",
      async () =>
        (await sql(c, "SELECT state FROM pg_stat_activity WHERE usename = 'alice'")) === "idle",
    );
    await monitorChecks(c, 2);
    const idleSince = BigInt(
      await sql(
        c,
        "SELECT (extract(epoch FROM state_change) * 1000000)::bigint FROM pg_stat_activity WHERE usename = 'alice'",
      ),
    );
    // The idle session's own timestamp, not the time of the check.
    expect(await lastActiveMicros(c)).toBe(idleSince);
    expect(idleSince).toBeGreaterThanOrEqual(first ?? 0n);

    // Later activity moves it forward; samples never go backwards.
    const samples: bigint[] = [];
    await alice.send("SELECT 2;");
    for (let i = 0; i < 4; i++) {
      await monitorChecks(c, 1);
      samples.push((await lastActiveMicros(c)) ?? 0n);
    }
    expect(samples.at(-1)).toBeGreaterThan(idleSince);
    for (let i = 1; i < samples.length; i++) {
      expect(samples[i]).toBeGreaterThanOrEqual(samples[i - 1] as bigint);
    }
  } finally {
    await admin?.close();
    await alice?.close();
    await c.stop();
  }
});

test("a logical replication subscriber keeps last_active moving", async () => {
  const c = await startCompute(root.dir, "publisher", {
    clusterConf: "wal_level=logical\n",
  });
  const subscriber = await startTestCluster();
  try {
    await c.waitForStatus(["running"]);
    await sql(c, "CREATE TABLE public.t (i int); CREATE PUBLICATION p FOR TABLE public.t");
    await monitorChecks(c, 2);
    expect((await c.status()).last_active).toBeNull();
    await subscriber.psql(
      `CREATE TABLE public.t (i int); CREATE SUBSCRIPTION s CONNECTION 'host=127.0.0.1 port=${c.pgPort} dbname=postgres user=cloud_admin' PUBLICATION p`,
    );
    const first = await waitUntil(
      "last_active from the walsender",
      async () => (await lastActiveMicros(c)) ?? undefined,
      20_000,
    );
    await monitorChecks(c, 2);
    const later = await lastActiveMicros(c);
    expect(later).toBeGreaterThan(first as bigint);
    await subscriber.psql("DROP SUBSCRIPTION s");
  } finally {
    await subscriber.stop();
    await c.stop();
  }
});

test("a check postgres never answers is downtime; the monitor reconnects", async () => {
  const c = await startCompute(root.dir, "stuck");
  let stopped: number | null = null;
  try {
    await c.waitForStatus(["running"]);
    await monitorChecks(c, 1);
    stopped = Number(
      await sql(
        c,
        "SELECT pid FROM pg_stat_activity WHERE application_name = 'compute_ctl:compute_monitor'",
      ),
    );
    process.kill(stopped, "SIGSTOP");
    const metric = async (name: string) => {
      const text = await fetch(`http://127.0.0.1:${c.ext}/metrics`).then((r) => r.text());
      const m = new RegExp(`^${name} (\\S+)$`, "m").exec(text);
      return m ? Number(m[1]) : Number.NaN;
    };
    await waitUntil(
      "downtime to be reported",
      async () => (await metric("compute_pg_current_downtime_ms")) > 0,
      20_000,
    );
    expect(c.child.stderr()).toContain(
      "could not check Postgres: the activity check took longer than",
    );
    // A new connection, then a successful check clears the current downtime.
    await waitUntil(
      "a new monitor connection",
      async () => {
        const pid = await sql(
          c,
          "SELECT pid FROM pg_stat_activity WHERE application_name = 'compute_ctl:compute_monitor' AND state = 'idle'",
        );
        return pid !== "" && Number(pid) !== stopped;
      },
      20_000,
    );
    await waitUntil(
      "the downtime gauge back at 0",
      async () => (await metric("compute_pg_current_downtime_ms")) === 0,
      20_000,
    );
    expect(await metric("compute_pg_downtime_ms_total")).toBeGreaterThan(0);
  } finally {
    if (stopped !== null) process.kill(stopped, "SIGCONT");
    await c.stop();
  }
});
