// The catalog apply inside the built binary: at startup of a primary (then
// migrations in the background), on /configure, never on replicas or static
// computes, and a failed apply failing the startup with its real cause.
import { afterAll, describe, expect, setDefaultTimeout, test } from "bun:test";
import { bearer } from "../src/testing/jwt.ts";
import { waitUntil } from "./helpers/binary.ts";
import { type ComputeUnderTest, startCompute, workDir } from "./helpers/compute.ts";

// Process-level: real postgres and the built binary; each wait has its own deadline.
setDefaultTimeout(90_000);

const root = workDir("compute-ctl-apply-");
afterAll(() => root.cleanup());

const md5 = (password: string, role: string) =>
  new Bun.CryptoHasher("md5").update(password + role).digest("hex");

const CLUSTER = {
  roles: [
    { name: "alice", encrypted_password: md5("alice-pw", "alice"), options: null },
    { name: "bob", encrypted_password: null, options: null },
  ],
  databases: [{ name: "app", owner: "alice", options: null }],
};

async function configure(c: ComputeUnderTest, spec: Record<string, unknown>, name: string) {
  const token = await c.keys.sign({ compute_id: name });
  return fetch(`http://127.0.0.1:${c.ext}/configure`, {
    method: "POST",
    headers: { "content-type": "application/json", ...bearer(token) },
    body: JSON.stringify({ spec, compute_ctl_config: { jwks: { keys: [] } } }),
    signal: AbortSignal.timeout(30_000),
  });
}

async function sql(c: ComputeUnderTest, text: string, db = "postgres"): Promise<string> {
  const r = await c.psql(text, db);
  if (r.code !== 0) throw new Error(`psql: ${r.err}`);
  return r.out;
}

describe("primary", () => {
  test("startup applies the spec and runs the migrations once; /configure re-applies only what changed", async () => {
    const c = await startCompute(root.dir, "primary", {
      spec: { skip_pg_catalog_updates: false },
      cluster: CLUSTER,
    });
    try {
      await c.waitForStatus(["running"]);
      expect(
        await sql(
          c,
          "SELECT rolname FROM pg_roles WHERE rolname IN ('alice', 'bob', 'neon_superuser') ORDER BY 1",
        ),
      ).toBe("alice\nbob\nneon_superuser");
      expect(await sql(c, "SELECT rolpassword FROM pg_authid WHERE rolname = 'alice'")).toBe(
        `md5${md5("alice-pw", "alice")}`,
      );
      expect(
        await sql(c, "SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = 'app'"),
      ).toBe("alice");
      expect(await sql(c, "SELECT to_regclass('public.health_check') IS NOT NULL")).toBe("t");
      // Migrations run in the background after the apply.
      await waitUntil(
        "all migrations recorded",
        async () => (await c.psql("SELECT id FROM neon_migration.migration_id")).out === "12",
        30_000,
      );
      expect(c.child.stderr()).toContain("Finished migration id=12");
      // The installed-extensions scan after the start: plpgsql in postgres, template1 and app.
      await waitUntil(
        "compute_installed_extensions",
        async () => {
          const text = await fetch(`http://127.0.0.1:${c.ext}/metrics`).then((r) => r.text());
          return text.includes(
            'compute_installed_extensions{extension_name="plpgsql",owned_by_superuser="1",version="1.0"} 3',
          )
            ? true
            : undefined;
        },
        20_000,
      );
      expect(c.child.stderr()).toContain("[NEON_EXT_STAT]");
      expect((await c.metrics()).config_ms).toBeGreaterThan(0);

      // The same spec again: nothing to do, no database connection.
      const same = await configure(c, c.spec, "primary");
      expect(same.status).toBe(200);
      expect(((await same.json()) as Record<string, unknown>).status).toBe("running");
      expect(c.child.stderr()).toContain("spec applied: 0 statement(s), 0 database connection(s)");
      // Vanilla PostgreSQL has no neon extension: said once per process, not per apply.
      expect(c.child.stderr().split("the neon extension is not available").length - 1).toBe(1);

      // A change: a new role and database, bob dropped.
      const cluster = {
        ...(c.spec.cluster as Record<string, unknown>),
        roles: [CLUSTER.roles[0], { name: "carol", encrypted_password: null, options: null }],
        databases: [...CLUSTER.databases, { name: "app2", owner: "carol", options: null }],
      };
      const changed = await configure(
        c,
        { ...c.spec, cluster, delta_operations: [{ action: "delete_role", name: "bob" }] },
        "primary",
      );
      expect(changed.status).toBe(200);
      expect(
        await sql(
          c,
          "SELECT string_agg(rolname, ',' ORDER BY rolname) FROM pg_roles WHERE rolname IN ('alice', 'bob', 'carol')",
        ),
      ).toBe("alice,carol");
      expect(
        await sql(c, "SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = 'app2'"),
      ).toBe("carol");
    } finally {
      await c.stop();
    }
  });

  test("a failed apply fails the startup with the phase, object and SQLSTATE in /status", async () => {
    const c = await startCompute(root.dir, "badowner", {
      spec: { skip_pg_catalog_updates: false },
      cluster: { roles: [], databases: [{ name: "app", owner: "nobody", options: null }] },
    });
    try {
      const st = await c.waitForStatus(["failed"]);
      const error = String(st.error);
      expect(error).toContain("CreateAndAlterDatabases");
      expect(error).toContain('database "app"');
      expect(error).toContain('role "nobody" does not exist');
      expect(error).toContain("SQLSTATE 42704");
    } finally {
      await c.stop();
    }
  });
});

describe("replica and static", () => {
  test("run no catalog SQL even when the spec has roles and databases", async () => {
    const replica = await startCompute(root.dir, "replica", {
      spec: { skip_pg_catalog_updates: false, mode: "Replica" },
      cluster: CLUSTER,
      clusterConf: "log_connections=on\n",
    });
    let lsn: string;
    try {
      await replica.waitForStatus(["running"]);
      lsn = replica.env.template.checkpointLsn;
      expect(await sql(replica, "SELECT count(*) FROM pg_roles WHERE rolname = 'alice'")).toBe("0");
    } finally {
      await replica.stop();
    }
    const log = replica.child.stderr();
    expect(log).not.toContain("compute_ctl:apply_config");
    expect(log).not.toContain("spec applied");

    const stat = await startCompute(root.dir, "static", {
      spec: { skip_pg_catalog_updates: false, mode: { Static: lsn } },
      cluster: CLUSTER,
      clusterConf: "log_connections=on\n",
    });
    try {
      await stat.waitForStatus(["running"]);
      expect(await sql(stat, "SELECT count(*) FROM pg_roles WHERE rolname = 'alice'")).toBe("0");
    } finally {
      await stat.stop();
    }
    // Our own psql connections show up in the relayed log: the check can see connections.
    expect(stat.child.stderr()).toContain("connection authorized");
    expect(stat.child.stderr()).not.toContain("compute_ctl:apply_config");
    expect(stat.child.stderr()).not.toContain("spec applied");
  });
});
