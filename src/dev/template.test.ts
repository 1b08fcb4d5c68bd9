// The template cluster: its shape (what a pageserver basebackup looks like), its
// cache (reuse, concurrent builders) and that vanilla postgres really starts on it.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import * as fs from "node:fs";
import { join } from "node:path";
import { connect } from "../wire/client.ts";
import {
  ensureTemplateCluster,
  parseControlData,
  parsePgVersion,
  TEMPLATE_FORMAT_VERSION,
  type TemplateCluster,
} from "./template.ts";
import { PG_BIN, RUN_AS, runCmd, TempDirs, until } from "./testing.ts";

const tmp = new TempDirs();
let cacheDir = "";
let template: TemplateCluster;

beforeAll(async () => {
  cacheDir = join(tmp.make("cache"), "nested", "cache");
  template = await ensureTemplateCluster({ pgBinDir: PG_BIN, cacheDir });
}, 60_000);
afterAll(() => tmp.cleanup());

describe("ensureTemplateCluster", () => {
  test("is shaped like a pageserver basebackup", () => {
    const at = (p: string) => join(template.dir, p);
    expect(template.pgVersion).toBe(15);
    expect(fs.readFileSync(at("PG_VERSION"), "utf8").trim()).toBe("15");
    expect(fs.existsSync(at("postgresql.conf"))).toBe(false);
    expect(fs.statSync(at("pg_dynshmem")).isDirectory()).toBe(true);
    expect(fs.readFileSync(at("postgresql.auto.conf"), "utf8")).toBe("");
    const signal = `PREV LSN: ${template.checkpointLsn}`;
    expect(fs.readFileSync(at("neon.signal"), "utf8")).toBe(signal);
    expect(fs.readFileSync(at("zenith.signal"), "utf8")).toBe(signal);
    expect(fs.statSync(at("global/pg_control")).size).toBe(8192);
    // compute_ctl only appends its md5 line; the trust lines must be there already.
    expect(fs.readFileSync(at("pg_hba.conf"), "utf8")).toMatch(
      /^host\s+all\s+all\s+127\.0\.0\.1\/32\s+trust$/m,
    );
    expect(template.checkpointLsn).toMatch(/^[0-9A-F]+\/[0-9A-F]+$/);
    expect(template.checkpointLsnValue > 0n).toBe(true);
  });

  test("pg_controldata agrees: cleanly shut down at the reported checkpoint", async () => {
    const r = await runCmd([join(PG_BIN, "pg_controldata"), template.dir]);
    expect(r.code).toBe(0);
    const cd = parseControlData(r.text);
    expect(cd.state).toBe("shut down");
    expect(cd.checkpointLsn).toBe(template.checkpointLsnValue);
  });

  test("a second call reuses the cache", async () => {
    const manifest = join(template.dir, "..", "template.json");
    const before = fs.statSync(manifest).mtimeMs;
    const again = await ensureTemplateCluster({ pgBinDir: PG_BIN, cacheDir });
    expect(again).toEqual(template);
    expect(fs.statSync(manifest).mtimeMs).toBe(before);
    expect(fs.readdirSync(cacheDir)).toEqual([`template-pg15-f${TEMPLATE_FORMAT_VERSION}`]);
  });

  test("two processes racing on an empty cache agree and leave no build dirs", async () => {
    const dir = join(tmp.make("race"), "cache");
    const script = `
      import { ensureTemplateCluster } from ${JSON.stringify(join(import.meta.dir, "template.ts"))};
      const t = await ensureTemplateCluster({ pgBinDir: ${JSON.stringify(PG_BIN)}, cacheDir: ${JSON.stringify(dir)} });
      process.stdout.write(JSON.stringify({ dir: t.dir, lsn: t.checkpointLsn }));
    `;
    const runs = await Promise.all(
      [1, 2].map(() => runCmd(["bun", "-e", script], { timeoutMs: 60_000 })),
    );
    for (const r of runs) expect(r.stderr).toBe("");
    const results = runs.map((r) => JSON.parse(r.text) as { dir: string; lsn: string });
    expect(new Set(results.map((r) => r.dir)).size).toBe(1);
    expect(new Set(results.map((r) => r.lsn)).size).toBe(1);
    expect(fs.readdirSync(dir)).toEqual([`template-pg15-f${TEMPLATE_FORMAT_VERSION}`]);
  }, 60_000);

  test("a broken cache entry is rebuilt", async () => {
    const dir = join(tmp.make("broken"), "cache");
    const entry = join(dir, `template-pg15-f${TEMPLATE_FORMAT_VERSION}`);
    fs.mkdirSync(join(entry, "pgdata"), { recursive: true });
    fs.writeFileSync(join(entry, "template.json"), "{not json");
    const t = await ensureTemplateCluster({ pgBinDir: PG_BIN, cacheDir: dir });
    expect(fs.existsSync(join(t.dir, "PG_VERSION"))).toBe(true);
    expect(fs.readdirSync(dir)).toEqual([`template-pg15-f${TEMPLATE_FORMAT_VERSION}`]);
  }, 60_000);

  test("vanilla postgres starts on a copy and cloud_admin can log in", async () => {
    const data = join(tmp.make("run"), "pgdata");
    fs.cpSync(template.dir, data, { recursive: true });
    fs.chmodSync(data, 0o700);
    if (RUN_AS) await runCmd(["chown", "-R", `${RUN_AS.uid}:${RUN_AS.gid}`, data]);
    const sock = tmp.make("sock");
    if (RUN_AS) fs.chownSync(sock, RUN_AS.uid, RUN_AS.gid);
    fs.writeFileSync(
      join(data, "postgresql.conf"),
      `listen_addresses = ''\nunix_socket_directories = '${sock}'\nport = 5432\nfsync = off\n`,
    );
    const pg = Bun.spawn([join(PG_BIN, "postgres"), "-D", data], {
      stdout: "ignore",
      stderr: "pipe",
      env: { LC_ALL: "C", ...(RUN_AS ? { HOME: RUN_AS.home, USER: RUN_AS.name } : {}) },
      ...(RUN_AS ? { uid: RUN_AS.uid, gid: RUN_AS.gid } : {}),
    });
    try {
      await until(
        "postmaster.pid to say ready",
        () => {
          if (pg.exitCode !== null) throw new Error(`postgres exited with ${pg.exitCode}`);
          try {
            return fs.readFileSync(join(data, "postmaster.pid"), "utf8").trim().endsWith("ready");
          } catch {
            return false;
          }
        },
        20_000,
      );
      const c = await connect({
        path: join(sock, ".s.PGSQL.5432"),
        user: "cloud_admin",
        database: "postgres",
      });
      const [res] = await c.simpleQuery(
        "select current_user, rolsuper from pg_roles where rolname = current_user",
      );
      expect(res?.rows).toEqual([["cloud_admin", "t"]]);
      await c.close();
    } finally {
      pg.kill("SIGINT");
      await pg.exited;
    }
  }, 30_000);
});

describe("parsers", () => {
  test.each([
    ["postgres (PostgreSQL) 15.18 (Debian 15.18-0+deb12u1)", 15],
    ["postgres (PostgreSQL) 17.2", 17],
    ["postgres (PostgreSQL) 14beta1", 14],
    ["something else", undefined],
  ])("parsePgVersion(%p)", (text, want) => {
    expect(parsePgVersion(text)).toBe(want);
  });

  test("parseControlData reads the two fields we need", () => {
    const text = [
      "pg_control version number:            1300",
      "Database cluster state:               shut down",
      "Latest checkpoint location:           0/1500708",
      "Latest checkpoint's REDO location:    0/1500708",
    ].join("\n");
    expect(parseControlData(text)).toEqual({ state: "shut down", checkpointLsn: 0x1500708n });
    expect(() => parseControlData("Database cluster state: in production\n")).toThrow(
      /pg_controldata/,
    );
  });
});
