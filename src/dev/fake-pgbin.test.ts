// The fake pgbin, run the way compute_ctl runs it: as the postgres user, with PGDATA
// (and NEON_AUTH_TOKEN) in the environment, next to symlinked real tools.
import { afterAll, describe, expect, test } from "bun:test";
import * as fs from "node:fs";
import { join } from "node:path";
import {
  type FakePgbinOptions,
  makeSyncSafekeepersPgbin,
  parseCalls,
  shQuote,
} from "./fake-pgbin.ts";
import { PG_BIN, RUN_AS, runCmd, TempDirs, until } from "./testing.ts";

const tmp = new TempDirs();
afterAll(() => tmp.cleanup());

/** A PGDATA holding only the postgresql.conf compute_ctl writes before syncing. */
function pgdata(conf = "neon.safekeepers='127.0.0.1:5454'\n"): string {
  const d = join(tmp.make("pgdata"), "pgdata");
  fs.mkdirSync(d, { mode: 0o700 });
  if (conf !== "") fs.writeFileSync(join(d, "postgresql.conf"), conf);
  if (RUN_AS) fs.chownSync(d, RUN_AS.uid, RUN_AS.gid);
  return d;
}

async function make(opts: Omit<FakePgbinOptions, "dir" | "realPgBinDir">) {
  return makeSyncSafekeepersPgbin({
    dir: join(tmp.make("bin"), "bin"),
    realPgBinDir: PG_BIN,
    ...opts,
  });
}

function sync(bin: string, env: Record<string, string>) {
  return runCmd([bin, "--sync-safekeepers"], { env, user: RUN_AS });
}

describe("makeSyncSafekeepersPgbin", () => {
  test("--sync-safekeepers prints the LSN and records argv and env", async () => {
    const pg = await make({ lsn: "0/16B5BA8" });
    const data = pgdata();
    const r = await sync(pg.postgres, { PGDATA: data, NEON_AUTH_TOKEN: "jwt.token.here" });
    expect(r.stderr).toBe("");
    expect(r.text).toBe("0/16B5BA8\n");
    expect(r.code).toBe(0);
    const [call] = await pg.calls();
    expect(call).toEqual({
      n: 1,
      args: ["--sync-safekeepers"],
      pgdata: data,
      neonAuthToken: "jwt.token.here",
      uid: RUN_AS?.uid ?? process.getuid?.() ?? 0,
      cwd: expect.any(String),
      exitCode: 0,
      signal: undefined,
    });
  });

  test("fails without PGDATA or without postgresql.conf, as a real walproposer would", async () => {
    const pg = await make({ lsn: "0/1" });
    const a = await sync(pg.postgres, {});
    expect(a.code).toBe(2);
    expect(a.stderr).toContain("PGDATA is not set");
    const b = await sync(pg.postgres, { PGDATA: pgdata("") });
    expect(b.code).toBe(2);
    expect(b.stderr).toContain("postgresql.conf does not exist");
    const calls = await pg.calls();
    expect(calls.map((c) => [c.pgdata === undefined, c.exitCode])).toEqual([
      [true, 2],
      [false, 2],
    ]);
  });

  test("confMustContain checks the config compute_ctl wrote", async () => {
    const pg = await make({ lsn: "0/1", confMustContain: "neon.tenant_id" });
    const r = await sync(pg.postgres, { PGDATA: pgdata() });
    expect(r.code).toBe(2);
    expect(r.stderr).toContain("postgresql.conf lacks");
    const ok = await sync(pg.postgres, { PGDATA: pgdata("neon.tenant_id='x'\n") });
    expect(ok.code).toBe(0);
  });

  test("failTimes: N failures with the given output, then the LSN", async () => {
    const pg = await make({
      lsn: "0/169AD58",
      behaviour: {
        exitCode: 1,
        stdout: "partial\n",
        stderr: "FATAL:  could not connect\n",
        failTimes: 2,
      },
    });
    const data = pgdata();
    const runs = [];
    for (let i = 0; i < 3; i++) runs.push(await sync(pg.postgres, { PGDATA: data }));
    expect(runs.map((r) => [r.code, r.text, r.stderr])).toEqual([
      [1, "partial\n", "FATAL:  could not connect\n"],
      [1, "partial\n", "FATAL:  could not connect\n"],
      [0, "0/169AD58\n", ""],
    ]);
    await pg.reset();
    expect(await pg.calls()).toEqual([]);
    expect((await sync(pg.postgres, { PGDATA: data })).code).toBe(1);
  });

  test("a behaviour without failTimes applies to every call (e.g. garbage on stdout)", async () => {
    const pg = await make({ behaviour: { exitCode: 0, stdout: "not an lsn\n" } });
    for (let i = 0; i < 2; i++) {
      const r = await sync(pg.postgres, { PGDATA: pgdata() });
      expect([r.code, r.text]).toEqual([0, "not an lsn\n"]);
    }
  });

  test("sleepMs: SIGTERM ends the call at once and is recorded", async () => {
    const pg = await make({ lsn: "0/1", sleepMs: 30_000 });
    const proc = Bun.spawn([pg.postgres, "--sync-safekeepers"], {
      env: { PATH: process.env.PATH ?? "/usr/bin:/bin", PGDATA: pgdata() },
      stdout: "pipe",
      stderr: "pipe",
      ...(RUN_AS ? { uid: RUN_AS.uid, gid: RUN_AS.gid } : {}),
    });
    try {
      // The trap is in place before the call is logged.
      await until("the call to start", async () => (await pg.calls()).length === 1);
      const t0 = performance.now();
      proc.kill("SIGTERM");
      expect(await proc.exited).toBe(143);
      expect(performance.now() - t0).toBeLessThan(5_000);
      const [call] = await pg.calls();
      expect([call?.signal, call?.exitCode]).toEqual(["TERM", 143]);
    } finally {
      proc.kill("SIGKILL");
    }
  });

  test("anything else execs the real postgres; the tools are the real ones", async () => {
    const pg = await make({ lsn: "0/1" });
    const v = await runCmd([pg.postgres, "--version"], { user: RUN_AS });
    expect(v.text).toMatch(/^postgres \(PostgreSQL\) 15\./);
    const cfg = await runCmd([join(pg.dir, "pg_config"), "--version"], { user: RUN_AS });
    expect(cfg.text).toMatch(/^PostgreSQL 15\./);
    // pg_config resolves its own location through the link: the real bindir.
    const bindir = await runCmd([join(pg.dir, "pg_config"), "--bindir"]);
    expect(fs.realpathSync(bindir.text.trim())).toBe(fs.realpathSync(PG_BIN));
    for (const tool of ["pg_ctl", "initdb", "pg_isready", "pg_controldata"]) {
      expect(fs.readlinkSync(join(pg.dir, tool))).toBe(join(PG_BIN, tool));
      expect(fs.existsSync(join(pg.dir, tool))).toBe(true);
    }
    expect(await pg.calls()).toEqual([]);
  });

  test.skipIf(RUN_AS === null)("refuses a directory the postgres user cannot reach", async () => {
    const parent = tmp.make("private");
    fs.chmodSync(parent, 0o700);
    await expect(
      makeSyncSafekeepersPgbin({ dir: join(parent, "bin"), realPgBinDir: PG_BIN, lsn: "0/1" }),
    ).rejects.toThrow(/not searchable by postgres/);
  });

  test("an LSN is required unless every call fails; a bad LSN is refused", async () => {
    await expect(make({})).rejects.toThrow(/an lsn is needed/);
    await expect(make({ behaviour: { exitCode: 1, failTimes: 1 } })).rejects.toThrow(
      /an lsn is needed/,
    );
    await expect(make({ lsn: "garbage" })).rejects.toThrow(/bad LSN/);
  });
});

describe("helpers", () => {
  test("shQuote survives quotes, spaces and dollars through sh", async () => {
    const s = `it's a "$HOME" \\ test`;
    const r = await runCmd(["sh", "-c", `printf '%s' ${shQuote(s)}`]);
    expect(r.text).toBe(s);
  });

  test("parseCalls", () => {
    const log = [
      "call 1",
      "arg --sync-safekeepers",
      "env PGDATA=/p",
      "uid 101",
      "cwd /",
      "exit 1 0",
      "call 2",
      "arg --sync-safekeepers",
      "uid 101",
      "cwd /",
      "signal 2 TERM",
      "exit 2 143",
      "",
    ].join("\n");
    const calls = parseCalls(log);
    expect(calls.map((c) => [c.n, c.pgdata, c.neonAuthToken, c.exitCode, c.signal])).toEqual([
      [1, "/p", undefined, 0, undefined],
      [2, undefined, undefined, 143, "TERM"],
    ]);
  });
});
