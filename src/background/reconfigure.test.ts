import { afterEach, beforeEach, describe, expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { mkdtemp, readFile, rm, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { FakeRunner } from "../process/fake-runner.ts";
import { SpawnError } from "../process/runner.ts";
import type { StartupContext } from "../startup/context.ts";
import { readOvercommitMemory, renderPostgresConf } from "../startup/postgres-conf.ts";
import { testContext, testSpec } from "../startup/testing.ts";
import { reconfigure } from "./reconfigure.ts";

const OVERRIDE = "compute_ctl_temp_override.conf";

let pgdata: string;

beforeEach(async () => {
  pgdata = await mkdtemp(join(tmpdir(), "reconfigure-"));
  await writeFile(join(pgdata, "postgresql.conf"), "# written at startup\n");
});

afterEach(async () => {
  await rm(pgdata, { recursive: true, force: true });
});

/** What the files said at each `pg_ctl reload`, in order. */
interface Reload {
  cmd: readonly string[];
  override: string | null;
  conf: string;
}

function readOrNull(path: string): string | null {
  try {
    return readFileSync(path, "utf8");
  } catch {
    return null;
  }
}

function setup(extra: Record<string, unknown> = {}, pgCtlExit = 0) {
  const reloads: Reload[] = [];
  const runner = new FakeRunner().on("/pg/bin/pg_ctl reload", (child) => {
    reloads.push({
      cmd: child.command,
      override: readOrNull(join(pgdata, OVERRIDE)),
      conf: readFileSync(join(pgdata, "postgresql.conf"), "utf8"),
    });
    queueMicrotask(() => child.exit(pgCtlExit));
  });
  const t = testContext({ pspec: testSpec(extra), runner, pgdata });
  const applied: { override: string | null; reloadsBefore: number; trigger: string }[] = [];
  const applyConfig = async (_ctx: StartupContext, trigger: string) => {
    applied.push({
      override: readOrNull(join(pgdata, OVERRIDE)),
      reloadsBefore: reloads.length,
      trigger,
    });
  };
  return { ...t, reloads, applied, applyConfig };
}

function expectedConf(ctx: StartupContext): string {
  return renderPostgresConf({
    pspec: ctx.pspec,
    privilegedRoleName: "neon_superuser",
    internalHttpPort: 3081,
    overcommitMemory2: readOvercommitMemory(),
  });
}

describe("reconfigure", () => {
  test("primary: new postgresql.conf, reload, override bracket around the apply, reload", async () => {
    const h = setup({ operation_uuid: "op-42" });
    await reconfigure(h.ctx, { applyConfig: h.applyConfig });

    const conf = await readFile(join(pgdata, "postgresql.conf"), "utf8");
    expect(conf).toBe(expectedConf(h.ctx));
    expect(conf).toContain("neon.safekeepers='127.0.0.1:5454,127.0.0.1:5455,127.0.0.1:5456'");

    const reload = ["/pg/bin/pg_ctl", "reload", "-D", pgdata];
    expect(h.runner.spawned.map((c) => c.command)).toEqual([reload, reload, reload]);
    // The first reload already reads the new file; only the second sees the override.
    expect(h.reloads.map((r) => r.conf === conf)).toEqual([true, true, true]);
    expect(h.reloads.map((r) => r.override)).toEqual([null, "neon.max_cluster_size=-1", ""]);
    expect(h.applied).toEqual([
      { override: "neon.max_cluster_size=-1", reloadsBefore: 2, trigger: "reconfigure" },
    ]);
    expect(await readFile(join(pgdata, OVERRIDE), "utf8")).toBe("");
    expect(h.lines.at(-1)).toEndWith(
      "finished reconfiguration of compute node for operation op-42",
    );
  });

  test("skip_pg_catalog_updates: one reload, no override, no apply", async () => {
    const h = setup({ skip_pg_catalog_updates: true });
    await reconfigure(h.ctx, { applyConfig: h.applyConfig });
    expect(h.reloads).toHaveLength(1);
    expect(h.applied).toHaveLength(0);
    expect(await stat(join(pgdata, OVERRIDE)).catch(() => null)).toBeNull();
    expect(h.lines.at(-1)).toEndWith("for operation unknown");
  });

  test("replica: the override bracket and its reloads, but no catalog apply", async () => {
    const h = setup({ mode: "Replica", safekeeper_connstrings: [] });
    await reconfigure(h.ctx, { applyConfig: h.applyConfig });
    expect(h.reloads.map((r) => r.override)).toEqual([null, "neon.max_cluster_size=-1", ""]);
    expect(h.applied).toHaveLength(0);
    expect(await readFile(join(pgdata, "postgresql.conf"), "utf8")).toContain(
      "neon.compute_mode=replica",
    );
  });

  test("a failing apply fails the reconfigure; the override is emptied, no last reload", async () => {
    const h = setup();
    const err = await reconfigure(h.ctx, {
      applyConfig: async () => {
        throw new Error("role creation failed");
      },
    }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(Error);
    expect((err as Error).message).toBe("role creation failed");
    expect(h.reloads).toHaveLength(2);
    expect(await readFile(join(pgdata, OVERRIDE), "utf8")).toBe("");
  });

  test("pg_ctl reload's exit status is ignored, as upstream", async () => {
    const h = setup({}, 1);
    await reconfigure(h.ctx, { applyConfig: h.applyConfig });
    expect(h.reloads).toHaveLength(3);
    expect(h.applied).toHaveLength(1);
  });

  test("pg_ctl that cannot be spawned fails the reconfigure", async () => {
    const t = testContext({ pspec: testSpec(), runner: new FakeRunner(), pgdata });
    const err = await reconfigure(t.ctx).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(SpawnError);
  });

  test("a compliance audit level is refused before anything is touched", async () => {
    const h = setup({ audit_log_level: "Hipaa" });
    const err = await reconfigure(h.ctx, { applyConfig: h.applyConfig }).catch((e: unknown) => e);
    expect((err as Error).message).toBe(
      "audit_log_level Hipaa needs compliance audit logging, which this compute_ctl does not implement yet",
    );
    expect(h.runner.spawned).toHaveLength(0);
    expect(await readFile(join(pgdata, "postgresql.conf"), "utf8")).toBe("# written at startup\n");
  });

  test("unsupported spec fields are named in the log", async () => {
    const h = setup({ pgbouncer_settings: { pool_mode: "session" } });
    await reconfigure(h.ctx, { applyConfig: h.applyConfig });
    expect(
      h.lines.some(
        (l) =>
          l.includes("WARN") &&
          l.endsWith(
            "spec field pgbouncer_settings (pgbouncer tuning) is not supported by this build yet; ignored",
          ),
      ),
    ).toBe(true);
  });

  test("the default apply is the catalog apply, which names what it could not reach", async () => {
    const h = setup();
    const closed = Bun.listen({ hostname: "127.0.0.1", port: 0, socket: { data() {} } });
    const port = closed.port;
    closed.stop(true);
    h.ctx.params = {
      ...h.ctx.params,
      connstr: new URL(`postgresql://cloud_admin@127.0.0.1:${port}/postgres`),
    };
    const err = await reconfigure(h.ctx).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(Error);
    expect((err as Error).message).toStartWith("apply_spec_sql: reading the catalog:");
  });
});
