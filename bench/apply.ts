// The catalog spec apply at upstream's per-branch limit (500 roles, 500
// databases): applySpecSql against a throwaway cluster, beside a same-run
// baseline of the minimal DDL for the same change run as one `psql` script.
//
//   first apply   ours: applySpecSql on an empty cluster, startup concurrency;
//                 baseline: CREATE ROLE ... IN ROLE neon_superuser, CREATE
//                 DATABASE ... OWNER, GRANT ALL ON DATABASE ... TO neon_superuser
//   no-op         ours: the same spec again as /configure applies it (reconfigure
//                 concurrency, the `prepared` map the first apply filled);
//                 baseline: psql running `SELECT 1`, the floor of one invocation
//   10% change    ours: 10% of the roles get a new password and 10% of the
//                 databases a new owner, reconfigure concurrency;
//                 baseline: the same ALTER ROLE / ALTER DATABASE in one script
//
// Each repetition starts a fresh cluster (initdb, fsync=off: startTestCluster)
// per side and runs the three scenarios in order on it, ours and the baseline
// taking turns at going first. Medians over the repetitions.
//
//   bun bench/apply.ts [size] [runs]                  (default 500 1; 20 for a quick look)
//   BENCH_TMPDIR=/dev/shm bun bench/apply.ts 500 5    # clusters on tmpfs instead
//
// On ext4 the writeback of each cluster's ~4 GB (500 copies of template1 and
// their WAL) makes CREATE DATABASE swing several-fold between runs; tmpfs
// leaves the CPU work, which both sides share.

import { createHash, createHmac, pbkdf2Sync } from "node:crypto";
import { dirname } from "node:path";
import { reconfigureConcurrency, startupConcurrency } from "../src/apply/concurrency.ts";
import { type ApplySummary, applySpecSql } from "../src/apply/execute.ts";
import { memoryLogger } from "../src/log.ts";
import { parseComputeSpec } from "../src/spec/parse.ts";
import type { ComputeSpec } from "../src/spec/schema.ts";
import { startTestCluster, type TestCluster } from "../src/testing/pg-cluster.ts";
import { minimalSpecJson } from "../src/testing/specs.ts";
import { fmt, fsType, median, onCleanup, postmasterPids, table } from "./lib.ts";

const size = Number(process.argv[2] ?? 500);
const runs = Number(process.argv[3] ?? 1);
if (!Number.isInteger(size) || size < 10 || !Number.isInteger(runs) || runs < 1) {
  console.error("usage: bun bench/apply.ts [size ≥ 10] [runs ≥ 1]");
  process.exit(2);
}
// startTestCluster makes its directory under os.tmpdir(), which follows TMPDIR.
if (process.env.BENCH_TMPDIR) process.env.TMPDIR = process.env.BENCH_TMPDIR;
const parent = process.env.TMPDIR ?? "/tmp";
const PRIVILEGED = "neon_superuser";
const NOOP_SAMPLES = 5;
const now = () => performance.now();

// --- The specs: role i owns database i; every other role has a SCRAM verifier.

interface RoleJson {
  name: string;
  encrypted_password: string;
  options: null;
}
interface DatabaseJson {
  name: string;
  owner: string;
  options: null;
}
interface Cluster {
  roles: RoleJson[];
  databases: DatabaseJson[];
}

/** A SCRAM-SHA-256 verifier as postgres stores it (salt from the role name: reproducible). */
function scramVerifier(password: string, name: string, iterations = 4096): string {
  const salt = createHash("sha256").update(name).digest().subarray(0, 16);
  const salted = pbkdf2Sync(password, salt, iterations, 32, "sha256");
  const clientKey = createHmac("sha256", salted).update("Client Key").digest();
  const storedKey = createHash("sha256").update(clientKey).digest();
  const serverKey = createHmac("sha256", salted).update("Server Key").digest();
  return `SCRAM-SHA-256$${iterations}:${salt.toString("base64")}$${storedKey.toString("base64")}:${serverKey.toString("base64")}`;
}

/** The spec's form: a SCRAM verifier, or the md5 hex digest without its `md5` prefix. */
function specPassword(i: number, name: string, password: string): string {
  return i % 2 === 0
    ? scramVerifier(password, name)
    : createHash("md5")
        .update(password + name)
        .digest("hex");
}

/** What postgres keeps in rolpassword for a spec password. */
const catalogForm = (p: string) => (p.startsWith("SCRAM-SHA-256$") ? p : `md5${p}`);

const pad = (i: number) => String(i).padStart(4, "0");
const roleName = (i: number) => `bench_role_${pad(i)}`;
const dbName = (i: number) => `bench_db_${pad(i)}`;
const ids = Array.from({ length: size }, (_, i) => i);
const changedRoles = ids.filter((i) => i % 10 === 0);
const changedDbs = ids.filter((i) => i % 10 === 5);

const initial: Cluster = {
  roles: ids.map((i) => ({
    name: roleName(i),
    encrypted_password: specPassword(i, roleName(i), `secret-${i}`),
    options: null,
  })),
  databases: ids.map((i) => ({ name: dbName(i), owner: roleName(i), options: null })),
};
const changed: Cluster = {
  roles: initial.roles.map((r, i) =>
    changedRoles.includes(i)
      ? { ...r, encrypted_password: specPassword(i, r.name, `secret-${i}-v2`) }
      : r,
  ),
  databases: initial.databases.map((d, i) =>
    changedDbs.includes(i) ? { ...d, owner: roleName((i + 1) % size) } : d,
  ),
};
const specOf = (c: Cluster): ComputeSpec => parseComputeSpec(minimalSpecJson({ cluster: c }));
const initialSpec = specOf(initial);
const changedSpec = specOf(changed);

// --- The baseline scripts: the minimal DDL, one statement per object, each
// with its kind so psql's `\timing` lines can be summed per kind.

interface Step {
  kind: string;
  sql: string;
}
const q = (ident: string) => `"${ident}"`; // our names are plain [a-z0-9_]
const firstSteps: Step[] = [
  {
    kind: "CREATE ROLE",
    sql: `CREATE ROLE ${PRIVILEGED} CREATEDB CREATEROLE NOLOGIN REPLICATION BYPASSRLS IN ROLE pg_read_all_data, pg_write_all_data;`,
  },
  ...initial.roles.map((r) => ({
    kind: "CREATE ROLE",
    sql: `CREATE ROLE ${q(r.name)} INHERIT CREATEROLE CREATEDB BYPASSRLS REPLICATION IN ROLE ${PRIVILEGED} LOGIN PASSWORD '${catalogForm(r.encrypted_password)}';`,
  })),
  ...initial.databases.flatMap((d) => [
    { kind: "CREATE DATABASE", sql: `CREATE DATABASE ${q(d.name)} OWNER ${q(d.owner)};` },
    {
      kind: "GRANT ON DATABASE",
      sql: `GRANT ALL PRIVILEGES ON DATABASE ${q(d.name)} TO ${PRIVILEGED};`,
    },
  ]),
];
const changeSteps: Step[] = [
  ...changedRoles.map((i) => {
    const r = changed.roles[i] as RoleJson;
    return {
      kind: "ALTER ROLE … PASSWORD",
      sql: `ALTER ROLE ${q(r.name)} PASSWORD '${catalogForm(r.encrypted_password)}';`,
    };
  }),
  ...changedDbs.map((i) => {
    const d = changed.databases[i] as DatabaseJson;
    return {
      kind: "ALTER DATABASE … OWNER",
      sql: `ALTER DATABASE ${q(d.name)} OWNER TO ${q(d.owner)};`,
    };
  }),
];

// --- Clusters: one alive at a time; on Ctrl-C, stopped and removed.

const live = new Set<TestCluster>();
onCleanup(() => {
  const dirs = [...live].map((c) => c.dataDir);
  const ours = (a: string) => dirs.includes(a);
  for (const pid of postmasterPids(ours)) process.kill(pid, "SIGQUIT");
  const deadline = now() + 5_000;
  while (postmasterPids(ours).length > 0 && now() < deadline) Bun.sleepSync(20);
  for (const d of dirs) Bun.spawnSync(["rm", "-rf", dirname(d)]);
});

async function withCluster<T>(fn: (c: TestCluster) => Promise<T>): Promise<T> {
  // On a disk, the previous cluster's writeback would otherwise land on this one.
  Bun.spawnSync(["sync"]);
  const c = await startTestCluster();
  live.add(c);
  try {
    return await fn(c);
  } finally {
    await c.stop();
    live.delete(c);
  }
}

/** Differences between the cluster's bench roles and databases and `want`. */
async function verify(c: TestCluster, want: Cluster): Promise<string[]> {
  const rows = (text: string) =>
    text
      .trim()
      .split("\n")
      .filter((l) => l !== "")
      .map((l) => l.split("|"));
  const roles = new Map(
    rows(
      await c.psql(
        `SELECT rolname, coalesce(rolpassword, ''), rolcanlogin, pg_has_role(rolname, '${PRIVILEGED}', 'MEMBER')
FROM pg_authid WHERE rolname LIKE 'bench\\_role\\_%'`,
      ),
    ).map(([name, ...rest]) => [name, rest.join("|")]),
  );
  const dbs = new Map(
    rows(
      await c.psql(
        `SELECT datname, pg_get_userbyid(datdba), coalesce(datacl::text, '') LIKE '%${PRIVILEGED}=CTc/%'
FROM pg_database WHERE datname LIKE 'bench\\_db\\_%'`,
      ),
    ).map(([name, ...rest]) => [name, rest.join("|")]),
  );
  const found: string[] = [];
  if (roles.size !== want.roles.length)
    found.push(`${roles.size} bench roles, want ${want.roles.length}`);
  if (dbs.size !== want.databases.length)
    found.push(`${dbs.size} bench databases, want ${want.databases.length}`);
  for (const r of want.roles) {
    const got = roles.get(r.name);
    const exp = `${catalogForm(r.encrypted_password)}|t|t`;
    if (got !== exp) found.push(`role ${r.name}: got ${got ?? "nothing"}, want ${exp}`);
  }
  for (const d of want.databases) {
    const got = dbs.get(d.name);
    const exp = `${d.owner}|t`;
    if (got !== exp) found.push(`database ${d.name}: got ${got ?? "nothing"}, want ${exp}`);
  }
  return found;
}

// --- One side of a repetition: the three scenarios in order on a fresh cluster.

interface OursRun {
  ms: number;
  summary: ApplySummary;
  /** ms per phase, from the apply's own log (ms timestamps). */
  phases: Map<string, number>;
}

const problems: string[] = [];
function check(what: string, found: string[]): void {
  for (const p of found.slice(0, 5)) problems.push(`${what}: ${p}`);
  if (found.length > 5) problems.push(`${what}: … and ${found.length - 5} more`);
}

/**
 * Phase durations from the apply's log: the time from each phase's first
 * `applying …` line to the next one's (all per-database phases as one, as
 * they interleave), the first from the call and the last to `spec applied`.
 */
function phaseTimes(lines: string[], startedAt: number): Map<string, number> {
  const starts: [string, number][] = [["connect, read catalog, plan", startedAt]];
  const seen = new Set<string>();
  let end = Number.NaN;
  for (const line of lines) {
    const m = /^(\S+)\s+\w+ (?:applying (\w+)( in database )?|(spec applied))/.exec(line);
    if (!m) continue;
    const t = Date.parse(m[1] ?? "");
    if (m[4]) {
      end = t;
      continue;
    }
    const key = m[3] ? "per-database phases" : (m[2] ?? "?");
    if (seen.has(key)) continue;
    seen.add(key);
    starts.push([key, t]);
  }
  const out = new Map<string, number>();
  starts.forEach(([key, t], i) => {
    out.set(key, (starts[i + 1]?.[1] ?? end) - t);
  });
  return out;
}

async function apply(
  spec: ComputeSpec,
  c: TestCluster,
  concurrency: number,
  prepared: Map<string, string>,
  warned: Set<string>,
): Promise<OursRun> {
  const { log, lines } = memoryLogger();
  const startedAt = Date.now();
  const t0 = now();
  try {
    const summary = await applySpecSql(spec, {
      connstr: new URL(c.url),
      privilegedRoleName: PRIVILEGED,
      concurrency,
      log,
      prepared,
      warned,
    });
    return { ms: now() - t0, summary, phases: phaseTimes(lines, startedAt) };
  } catch (e) {
    console.error(`applySpecSql failed: ${String(e)}\nits last log lines:`);
    console.error(lines.slice(-20).join("\n"));
    throw e;
  }
}

interface OursSample {
  first: OursRun;
  noop: OursRun[];
  fresh: OursRun;
  change: OursRun;
}

async function oneOurs(): Promise<OursSample> {
  return withCluster(async (c) => {
    // What a running compute keeps between applies.
    const prepared = new Map<string, string>();
    const warned = new Set<string>();
    const first = await apply(initialSpec, c, startupConcurrency(initialSpec), prepared, warned);
    check("ours, after the first apply", await verify(c, initial));
    const noop: OursRun[] = [];
    for (let i = 0; i < NOOP_SAMPLES; i++) {
      noop.push(await apply(initialSpec, c, reconfigureConcurrency(initialSpec), prepared, warned));
    }
    // A restarted compute_ctl: its startup apply, nothing remembered.
    const fresh = await apply(
      initialSpec,
      c,
      startupConcurrency(initialSpec),
      new Map(),
      new Set(),
    );
    const change = await apply(
      changedSpec,
      c,
      reconfigureConcurrency(changedSpec),
      prepared,
      warned,
    );
    check("ours, after the 10% change", await verify(c, changed));
    return { first, noop, fresh, change };
  });
}

interface BaseRun {
  ms: number;
  /** Server-side ms per statement kind (psql's `\timing`), and the rest of the wall time. */
  parts: Map<string, number>;
}

interface BaseSample {
  first: BaseRun;
  noop: number[];
  change: BaseRun;
}

async function psqlScript(c: TestCluster, steps: Step[]): Promise<BaseRun> {
  const t0 = now();
  const out = await c.psql(["\\timing on", ...steps.map((s) => s.sql)].join("\n"));
  const ms = now() - t0;
  const times = [...out.matchAll(/^Time: ([\d.]+) ms/gm)].map((m) => Number(m[1]));
  if (times.length !== steps.length)
    problems.push(`psql printed ${times.length} timings for ${steps.length} statements`);
  const parts = new Map<string, number>();
  steps.forEach((s, i) => {
    parts.set(s.kind, (parts.get(s.kind) ?? 0) + (times[i] ?? 0));
  });
  const statements = times.reduce((a, b) => a + b, 0);
  parts.set("psql start, connect, exit, round trips", ms - statements);
  return { ms, parts };
}

async function timedPsql(c: TestCluster, sql: string): Promise<number> {
  const t0 = now();
  await c.psql(sql);
  return now() - t0;
}

async function oneBaseline(): Promise<BaseSample> {
  return withCluster(async (c) => {
    const first = await psqlScript(c, firstSteps);
    check("baseline, after the first script", await verify(c, initial));
    const noop: number[] = [];
    for (let i = 0; i < NOOP_SAMPLES; i++) noop.push(await timedPsql(c, "SELECT 1;"));
    const change = await psqlScript(c, changeSteps);
    check("baseline, after the change script", await verify(c, changed));
    return { first, noop, change };
  });
}

// --- Run, alternating which side goes first.

const pgVersion = await withCluster(async (c) => (await c.psql("SHOW server_version")).trim());
const ours: OursSample[] = [];
const base: BaseSample[] = [];
for (let r = 0; r < runs; r++) {
  const t0 = now();
  if (r % 2 === 0) {
    ours.push(await oneOurs());
    base.push(await oneBaseline());
  } else {
    base.push(await oneBaseline());
    ours.push(await oneOurs());
  }
  console.error(`run ${r + 1}/${runs}: ${fmt((now() - t0) / 1000)} s`);
}

// --- Report.

const oursFirst = median(ours.map((s) => s.first.ms));
const oursNoop = median(ours.flatMap((s) => s.noop.map((n) => n.ms)));
const oursFresh = median(ours.map((s) => s.fresh.ms));
const oursChange = median(ours.map((s) => s.change.ms));
const baseFirst = median(base.map((s) => s.first.ms));
const baseNoop = median(base.flatMap((s) => s.noop));
const baseChange = median(base.map((s) => s.change.ms));
const ratio = (a: number, b: number) => `${(a / b).toFixed(2)}×`;
const verdict = (ok: boolean) => (ok ? "**pass**" : "**FAIL**");

console.log(
  `${size} roles × ${size} databases (half SCRAM, half md5); ${runs} run(s), order alternating, medians` +
    ` (no-op: ${NOOP_SAMPLES} samples a run); PostgreSQL ${pgVersion}, fsync=off; clusters under ${parent} (${fsType(parent)})\n`,
);
console.log(
  table(
    ["scenario", "ours ms", "baseline ms", "ratio", "target", "result"],
    [
      [
        `first apply: ${size} roles, ${size} databases (ours: startup concurrency ${startupConcurrency(initialSpec)}; baseline: minimal DDL in one psql script)`,
        fmt(oursFirst),
        fmt(baseFirst),
        ratio(oursFirst, baseFirst),
        "≤ 1.2× baseline",
        verdict(oursFirst <= 1.2 * baseFirst),
      ],
      [
        `no-op re-apply as /configure (concurrency ${reconfigureConcurrency(initialSpec)}, \`prepared\` kept; baseline: psql running \`SELECT 1\`, the floor of one psql invocation)`,
        fmt(oursNoop),
        fmt(baseNoop),
        ratio(oursNoop, baseNoop),
        "≤ 300 ms",
        verdict(oursNoop <= 300),
      ],
      [
        `no-op re-apply, empty \`prepared\` (a restarted compute_ctl: startup concurrency ${startupConcurrency(initialSpec)}; baseline as above)`,
        fmt(oursFresh),
        fmt(baseNoop),
        ratio(oursFresh, baseNoop),
        "—",
        "—",
      ],
      [
        `10% change: ${changedRoles.length} new passwords, ${changedDbs.length} new owners (ours: concurrency ${reconfigureConcurrency(changedSpec)}; baseline: the ${changedRoles.length + changedDbs.length} ALTERs in one psql script)`,
        fmt(oursChange),
        fmt(baseChange),
        ratio(oursChange, baseChange),
        "≤ 1.2× baseline",
        verdict(oursChange <= 1.2 * baseChange),
      ],
    ],
  ),
);

const work = (xs: OursRun[]) =>
  `${median(xs.map((x) => x.summary.statements))} statements, ${median(xs.map((x) => x.summary.databasesVisited))} database connections`;
console.log(`
What ours ran (medians): first apply ${work(ours.map((s) => s.first))}; no-op ${work(ours.flatMap((s) => s.noop))}; empty \`prepared\` ${work(ours.map((s) => s.fresh))}; change ${work(ours.map((s) => s.change))}.
`);

/** Median ms per part over the runs, as table rows. */
function parts(name: string, xs: Map<string, number>[]): string[][] {
  const keys = [...new Set(xs.flatMap((x) => [...x.keys()]))];
  return keys.map((k) => [name, k, fmt(median(xs.map((x) => x.get(k) ?? 0)), 0)]);
}
console.log(
  table(
    ["ours", "phase (from its log)", "median ms"],
    [
      ...parts(
        "first apply",
        ours.map((s) => s.first.phases),
      ),
      ...parts(
        "no-op",
        ours.flatMap((s) => s.noop.map((n) => n.phases)),
      ),
      ...parts(
        "empty `prepared`",
        ours.map((s) => s.fresh.phases),
      ),
      ...parts(
        "10% change",
        ours.map((s) => s.change.phases),
      ),
    ],
  ),
);
console.log("");
console.log(
  table(
    ["baseline", "statements (psql `\\timing`, summed)", "median ms"],
    [
      ...parts(
        "first apply",
        base.map((s) => s.first.parts),
      ),
      ...parts(
        "10% change",
        base.map((s) => s.change.parts),
      ),
    ],
  ),
);

if (problems.length > 0) {
  console.log(
    `\n**PROBLEMS** (the catalog differs from the spec, or psql's timings are off) (${problems.length}):\n${problems.map((p) => `- ${p}`).join("\n")}`,
  );
} else {
  console.log(
    "\nCatalog checked after every apply and script: roles, passwords, membership, owners, grants as the spec says.",
  );
}
