// The client against a real PostgreSQL 15 started for this file: auth methods, errors
// with SQLSTATE, large COPY streams, errors mid-copy, backpressure and aborts.

import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import {
  chownSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  readlinkSync,
  rmSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Subprocess } from "bun";
import { TimeoutError } from "../errors.ts";
import { TEST_PG_BIN_DIR } from "../testing/pg.ts";
import {
  COPY_HIGH_WATER_BYTES,
  type ConnectOptions,
  connect,
  type PgClient,
  PgWireError,
} from "./client.ts";

const PG_BIN = TEST_PG_BIN_DIR;

async function waitFor(
  what: string,
  cond: () => boolean | Promise<boolean>,
  ms = 10_000,
): Promise<void> {
  const end = Date.now() + ms;
  while (!(await cond())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await Bun.sleep(10);
  }
}

function idOf(flag: "-u" | "-g"): number {
  const out = Bun.spawnSync(["id", flag, "postgres"]).stdout.toString().trim();
  const n = Number(out);
  if (!Number.isInteger(n)) throw new Error(`no postgres user (id ${flag}: ${out})`);
  return n;
}

/** Processes whose working directory is `dir`: postgres chdirs into its data directory. */
function processesIn(dir: string): number[] {
  const pids: number[] = [];
  for (const entry of readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      if (readlinkSync(`/proc/${entry}/cwd`) === dir) pids.push(Number(entry));
    } catch {
      // Gone, or not ours to read.
    }
  }
  return pids;
}

let dir = "";
let dataDir = "";
let port = 0;
let postmaster: Subprocess<"ignore", "ignore", "pipe"> | undefined;
let serverLog = "";
const clients: PgClient[] = [];

async function client(extra: Partial<ConnectOptions> = {}): Promise<PgClient> {
  const c = await connect({
    host: "127.0.0.1",
    port,
    user: "postgres",
    connectTimeoutMs: 5000,
    ...extra,
  });
  clients.push(c);
  return c;
}

function freePort(): number {
  const l = Bun.listen({ hostname: "127.0.0.1", port: 0, socket: { data() {} } });
  const p = l.port;
  l.stop(true);
  return p;
}

beforeAll(async () => {
  const uid = idOf("-u");
  const gid = idOf("-g");
  dir = mkdtempSync(join(tmpdir(), "wire-pg-"));
  chownSync(dir, uid, gid);
  dataDir = join(dir, "data");
  const env = { PATH: process.env.PATH ?? "/usr/bin:/bin", LANG: "C", LC_ALL: "C" };
  const init = Bun.spawnSync(
    [
      `${PG_BIN}/initdb`,
      "-D",
      dataDir,
      "--auth=trust",
      "--no-sync",
      "-U",
      "postgres",
      "-E",
      "UTF8",
    ],
    { uid, gid, env, stdout: "pipe", stderr: "pipe" },
  );
  if (init.exitCode !== 0) throw new Error(`initdb failed: ${init.stderr.toString()}`);
  writeFileSync(
    join(dataDir, "pg_hba.conf"),
    [
      "local all all trust",
      "host all md5_user 127.0.0.1/32 md5",
      "host all scram_user 127.0.0.1/32 scram-sha-256",
      "host all clear_user 127.0.0.1/32 password",
      "host all all 127.0.0.1/32 trust",
      "",
    ].join("\n"),
  );
  port = freePort();
  postmaster = Bun.spawn(
    [
      `${PG_BIN}/postgres`,
      "-D",
      dataDir,
      "-p",
      String(port),
      "-k",
      dir,
      "-c",
      "listen_addresses=127.0.0.1",
      "-c",
      "fsync=off",
    ],
    { uid, gid, env, stdin: "ignore", stdout: "ignore", stderr: "pipe" },
  );
  const pm = postmaster;
  void (async () => {
    for await (const chunk of pm.stderr) serverLog += new TextDecoder().decode(chunk);
  })();
  await waitFor(
    "postmaster.pid to say ready",
    () => {
      if (pm.exitCode !== null) throw new Error(`postgres exited ${pm.exitCode}: ${serverLog}`);
      try {
        const lines = readFileSync(join(dataDir, "postmaster.pid"), "utf8").trim().split("\n");
        return lines.at(-1)?.trim() === "ready";
      } catch {
        return false;
      }
    },
    20_000,
  );
  // Roles for the auth tests, created over the unix socket (trust).
  const admin = await connect({ host: dir, port, user: "postgres" });
  await admin.simpleQuery(`
    SET password_encryption = 'md5';
    CREATE ROLE md5_user LOGIN PASSWORD 'md5 secret';
    CREATE ROLE clear_user LOGIN PASSWORD 'clear secret';
    SET password_encryption = 'scram-sha-256';
    CREATE ROLE scram_user LOGIN PASSWORD 'scram secret';
  `);
  await admin.close();
}, 30_000);

afterAll(async () => {
  for (const c of clients.splice(0)) await c.close().catch(() => {});
  if (postmaster) {
    postmaster.kill("SIGINT");
    const exited = await Promise.race([postmaster.exited, Bun.sleep(20_000).then(() => null)]);
    if (exited === null) postmaster.kill("SIGKILL");
    await postmaster.exited;
    // No backend or auxiliary process of this cluster may outlive the test.
    await waitFor("postgres processes to exit", () => processesIn(dataDir).length === 0, 10_000);
  }
  if (dir) rmSync(dir, { recursive: true, force: true });
}, 40_000);

const bigCopy = "COPY (select repeat('x', 1000) from generate_series(1, 200000)) TO STDOUT";
const bigCopyBytes = 200_000 * 1001; // 1000 x's and a newline per row

describe("real PostgreSQL 15", () => {
  test("simple query over TCP: statements, columns, NULLs, command tags, server params", async () => {
    const c = await client({ params: { application_name: "wire-test" } });
    expect(c.serverParams.server_version).toStartWith("15.");
    expect(c.serverParams.application_name).toBe("wire-test");
    expect(c.backendKey?.pid).toBeGreaterThan(0);
    const res = await c.simpleQuery(
      "select 1 as a, null::text as b, 'é' as c; create temp table t(); select",
    );
    expect(res).toEqual([
      { command: "SELECT 1", columns: ["a", "b", "c"], rows: [["1", null, "é"]] },
      { command: "CREATE TABLE", columns: [], rows: [] },
      { command: "SELECT 1", columns: [], rows: [[]] },
    ]);
    expect(await c.simpleQuery("")).toEqual([]);
  });

  test.each([
    ["a socket directory as host", () => ({ host: dir })],
    ["a full socket path", () => ({ path: join(dir, `.s.PGSQL.${port}`) })],
  ])("unix socket: %s", async (_name, where) => {
    const c = await client(where());
    expect(await c.simpleQuery("select inet_server_addr() is null")).toEqual([
      { command: "SELECT 1", columns: ["?column?"], rows: [["t"]] },
    ]);
  });

  test("notices go to onNotice, not into results", async () => {
    const notices: string[] = [];
    const c = await client({
      onNotice: (n) => notices.push(`${n.severity} ${n.code} ${n.message}`),
    });
    const res = await c.simpleQuery("do $$ begin raise notice 'hello %', 1; end $$");
    expect(res).toEqual([{ command: "DO", columns: [], rows: [] }]);
    expect(notices).toEqual(["NOTICE 00000 hello 1"]);
  });

  test.each([
    ["md5_user", "md5 secret"],
    ["scram_user", "scram secret"],
    ["clear_user", "clear secret"],
  ])("password auth as %s", async (user, password) => {
    const c = await client({ user, password, database: "postgres" });
    const [r] = await c.simpleQuery("select current_user");
    expect(r?.rows).toEqual([[user]]);
  });

  test.each(["md5_user", "scram_user", "clear_user"])(
    "a wrong password for %s is 28P01",
    async (user) => {
      const err = await client({ user, password: "wrong", database: "postgres" }).catch((e) => e);
      expect(err).toBeInstanceOf(PgWireError);
      expect(err).toMatchObject({ code: "28P01", severity: "FATAL", fromServer: true });
    },
  );

  test("errors carry SQLSTATE, severity, detail; the connection stays usable", async () => {
    const c = await client();
    const div = await c.simpleQuery("select 1/0").catch((e) => e);
    expect(div).toBeInstanceOf(PgWireError);
    expect(div).toMatchObject({ code: "22012", severity: "ERROR", message: "division by zero" });
    const dup = await c
      .simpleQuery("create temp table u(a int primary key); insert into u values (1), (1)")
      .catch((e) => e);
    expect(dup).toMatchObject({ code: "23505", detail: "Key (a)=(1) already exists." });
    expect(dup.fields.table).toBe("u");
    expect((await c.simpleQuery("select 2"))[0]?.rows).toEqual([["2"]]);
  });

  test("a large COPY streams every byte; the connection is reusable afterwards", async () => {
    const c = await client();
    let total = 0;
    let chunks = 0;
    for await (const chunk of await c.copyOut(bigCopy)) {
      total += chunk.length;
      chunks++;
    }
    expect(total).toBe(bigCopyBytes);
    expect(chunks).toBe(200_000);
    expect((await c.simpleQuery("select 3"))[0]?.rows).toEqual([["3"]]);
  }, 60_000);

  test("repeated COPYs on one connection do not hang (porsager#499)", async () => {
    const c = await client();
    for (let i = 0; i < 4; i++) {
      const stream = await c.copyOut(
        "COPY (select repeat('y', 100000) from generate_series(1, 50)) TO STDOUT",
      );
      let total = 0;
      for await (const chunk of stream) total += chunk.length;
      expect(total).toBe(50 * 100_001);
      expect((await c.simpleQuery(`select ${i}`))[0]?.rows).toEqual([[String(i)]]);
    }
  });

  test("an error in the middle of a COPY errors the stream after the rows before it", async () => {
    const c = await client();
    const stream = await c.copyOut(
      "COPY (select repeat('x', 1000) || 1/(100000-g) from generate_series(1, 200000) g) TO STDOUT",
    );
    let total = 0;
    let error: unknown;
    try {
      for await (const chunk of stream) total += chunk.length;
    } catch (e) {
      error = e;
    }
    expect(error).toBeInstanceOf(PgWireError);
    expect(error).toMatchObject({ code: "22012", message: "division by zero" });
    expect(total).toBeGreaterThan(0);
    expect(total).toBeLessThan(bigCopyBytes);
    expect((await c.simpleQuery("select 4"))[0]?.rows).toEqual([["4"]]);
  }, 60_000);

  test("an error before the COPY starts rejects copyOut", async () => {
    const c = await client();
    const err = await c.copyOut("COPY (select * from no_such_table) TO STDOUT").catch((e) => e);
    expect(err).toMatchObject({ code: "42P01" });
    expect(await c.copyOut("COPY pg_class FROM STDIN").catch((e) => e)).toMatchObject({
      code: "0A000",
    });
    expect((await c.simpleQuery("select 5"))[0]?.rows).toEqual([["5"]]);
  });

  test("a slow reader pauses the socket and the server waits in ClientWrite; memory stays flat", async () => {
    const c = await client({ params: { application_name: "wire-backpressure" } });
    const watcher = await client();
    const rssBefore = process.memoryUsage().rss;
    const stream = await c.copyOut(bigCopy);
    await waitFor("the client to pause", () => c.copyStats.paused);
    await waitFor("the server to block on the socket", async () => {
      const [r] = await watcher.simpleQuery(
        "select wait_event from pg_stat_activity where application_name = 'wire-backpressure'",
      );
      return r?.rows[0]?.[0] === "ClientWrite";
    });
    // Blocked: what the client holds is bounded, far below the 200 MB being copied.
    expect(c.copyStats.bufferedBytes).toBeLessThan(COPY_HIGH_WATER_BYTES + 4 * 1024 * 1024);
    expect(c.copyStats.bytes).toBeLessThan(bigCopyBytes / 4);
    let total = 0;
    let maxRss = 0;
    let n = 0;
    for await (const chunk of stream) {
      total += chunk.length;
      if (++n % 5000 === 0) {
        maxRss = Math.max(maxRss, process.memoryUsage().rss);
        await Bun.sleep(0); // a slow consumer: yield to the event loop now and then
      }
    }
    expect(total).toBe(bigCopyBytes);
    expect(c.copyStats.pauses).toBeGreaterThan(0);
    expect(c.copyStats.maxBufferedBytes).toBeLessThan(COPY_HIGH_WATER_BYTES + 4 * 1024 * 1024);
    expect(maxRss - rssBefore).toBeLessThan(100 * 1024 * 1024);
  }, 60_000);

  test("aborting a COPY errors the stream with the reason and ends the backend", async () => {
    const c = await client();
    const watcher = await client();
    const pid = c.backendKey?.pid;
    const ac = new AbortController();
    const reader = (await c.copyOut(bigCopy, { signal: ac.signal })).getReader();
    expect((await reader.read()).done).toBe(false);
    const reason = new Error("caller gave up");
    ac.abort(reason);
    expect(await reader.read().catch((e) => e)).toBe(reason);
    expect(await c.simpleQuery("select 1").catch((e) => e)).toMatchObject({ code: "08003" });
    await waitFor("the backend to exit", async () => {
      const [r] = await watcher.simpleQuery(
        `select count(*) from pg_stat_activity where pid = ${pid}`,
      );
      return r?.rows[0]?.[0] === "0";
    });
  });

  test("timeoutMs bounds a query", async () => {
    const c = await client();
    const t0 = performance.now();
    const err = await c.simpleQuery("select pg_sleep(30)", { timeoutMs: 100 }).catch((e) => e);
    expect(err).toBeInstanceOf(TimeoutError);
    expect(performance.now() - t0).toBeLessThan(5000);
  });
});
