// A throwaway PostgreSQL cluster for tests that need a real server but not a
// whole compute: initdb as the postgres user (we run as root), superuser
// cloud_admin as on a compute, trust on loopback, started on a free port.

import { chownSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { identityEnv, resolveRunAs } from "../process/user.ts";
import { TEST_PG_BIN_DIR } from "./pg.ts";
import { GiveUp, until } from "./until.ts";

export interface TestCluster {
  port: number;
  /** `postgresql://cloud_admin@127.0.0.1:<port>/postgres`, the shape of --connstr. */
  url: string;
  dataDir: string;
  /** Everything the server wrote to stderr so far (read asynchronously: see logBarrier). */
  log(): string;
  /**
   * Returns once the server log holds everything logged before this call: a
   * marker is logged and awaited, and the server writes its log in order.
   */
  logBarrier(): Promise<void>;
  /** Runs SQL with psql as cloud_admin; rejects on a non-zero exit. Output is unaligned, tuples only. */
  psql(sql: string, db?: string): Promise<string>;
  stop(): Promise<void>;
}

function freePort(): number {
  const l = Bun.listen({ hostname: "127.0.0.1", port: 0, socket: { data() {} } });
  const p = l.port;
  l.stop(true);
  return p;
}

export async function startTestCluster(conf: Record<string, string> = {}): Promise<TestCluster> {
  const runAs = resolveRunAs();
  const dir = mkdtempSync(join(tmpdir(), "compute-ctl-pg-"));
  if (runAs) chownSync(dir, runAs.uid, runAs.gid);
  const dataDir = join(dir, "data");
  const env = {
    PATH: process.env.PATH ?? "/usr/bin:/bin",
    LANG: "C",
    LC_ALL: "C",
    ...(runAs ? identityEnv(runAs) : {}),
  };
  const ids = runAs ? { uid: runAs.uid, gid: runAs.gid } : {};
  const init = Bun.spawnSync(
    [
      `${TEST_PG_BIN_DIR}/initdb`,
      "-D",
      dataDir,
      "--auth=trust",
      "--no-sync",
      "--no-instructions",
      "-U",
      "cloud_admin",
      "-E",
      "UTF8",
      "--locale=C",
    ],
    { ...ids, env, stdout: "pipe", stderr: "pipe" },
  );
  if (init.exitCode !== 0) {
    rmSync(dir, { recursive: true, force: true });
    throw new Error(`initdb failed: ${init.stderr.toString()}`);
  }
  const settings: Record<string, string> = {
    listen_addresses: "'127.0.0.1'",
    unix_socket_directories: `'${dir}'`,
    fsync: "off",
    shared_buffers: "16MB",
    ...conf,
  };
  writeFileSync(
    join(dataDir, "postgresql.auto.conf"),
    Object.entries(settings)
      .map(([k, v]) => `${k} = ${v}\n`)
      .join(""),
  );
  const port = freePort();
  const pm = Bun.spawn([`${TEST_PG_BIN_DIR}/postgres`, "-D", dataDir, "-p", String(port)], {
    ...ids,
    env,
    stdin: "ignore",
    stdout: "ignore",
    stderr: "pipe",
  });
  let serverLog = "";
  const relay = (async () => {
    const decoder = new TextDecoder();
    for await (const chunk of pm.stderr) serverLog += decoder.decode(chunk, { stream: true });
  })();
  const stop = async () => {
    pm.kill("SIGINT");
    await pm.exited;
    await relay;
    rmSync(dir, { recursive: true, force: true });
  };
  try {
    await until(
      "postmaster.pid to say ready",
      () => {
        if (pm.exitCode !== null) throw new GiveUp(`postgres exited ${pm.exitCode}: ${serverLog}`);
        try {
          const lines = readFileSync(join(dataDir, "postmaster.pid"), "utf8").trim().split("\n");
          return lines.at(-1)?.trim() === "ready";
        } catch {
          return false;
        }
      },
      { timeoutMs: 20_000 },
    );
  } catch (e) {
    await stop();
    throw e;
  }
  const url = `postgresql://cloud_admin@127.0.0.1:${port}/postgres`;
  const psql = async (sql: string, db = "postgres"): Promise<string> => {
    const proc = Bun.spawn(
      [
        `${TEST_PG_BIN_DIR}/psql`,
        "-X",
        "-q",
        "-At",
        "-v",
        "ON_ERROR_STOP=1",
        "-h",
        "127.0.0.1",
        "-p",
        String(port),
        "-U",
        "cloud_admin",
        "-d",
        db,
        "-f",
        "-",
      ],
      { stdin: new TextEncoder().encode(sql), stdout: "pipe", stderr: "pipe" },
    );
    const [out, err, code] = await Promise.all([
      new Response(proc.stdout).text(),
      new Response(proc.stderr).text(),
      proc.exited,
    ]);
    if (code !== 0) throw new Error(`psql exited ${code}: ${err.trim()}`);
    return out;
  };
  return {
    port,
    url,
    dataDir,
    log: () => serverLog,
    async logBarrier() {
      const marker = `log barrier ${crypto.randomUUID()}`;
      await psql(`DO $$ BEGIN RAISE LOG '${marker}'; END $$`);
      await until("the server log to catch up", () => serverLog.includes(marker), {
        timeoutMs: 10_000,
      });
    },
    psql,
    stop,
  };
}
