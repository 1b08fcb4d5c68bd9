// 1,000 requests mixing /configure, /status and /metrics.json from 50
// concurrent clients against a running primary that applies its catalog.
// /configure is accepted only in `running` (412 otherwise), the configurator
// applies one spec at a time, so the last 200 names the spec the catalog ends in.
import { afterAll, expect, setDefaultTimeout, test } from "bun:test";
import { bearer } from "../src/testing/jwt.ts";
import { waitUntil } from "./helpers/binary.ts";
import { type ComputeUnderTest, startCompute, workDir } from "./helpers/compute.ts";
import { UPSTREAM_METRICS_KEYS } from "./helpers/upstream.ts";

setDefaultTimeout(60_000);

const root = workDir("compute-ctl-stress-");
afterAll(() => root.cleanup());

const CLIENTS = 50;
const PER_CLIENT = 20;
const CONFIGURE_DEADLINE_MS = 20_000;
const READ_DEADLINE_MS = 5_000;
const OWNERS = ["own_0", "own_1", "own_2", "own_3"];
const DBS = ["db_0", "db_1", "db_2"];
const EXTRAS = ["x_0", "x_1", "x_2", "x_3"];

interface Variant {
  v: number;
  /** Database name → owner. */
  owners: Record<string, string>;
  extras: string[];
}

/** Variant v: database owners rotated by v % 4, extra roles from the bits of v / 4. */
function variant(v: number): Variant {
  const shift = v % OWNERS.length;
  const mask = Math.floor(v / OWNERS.length) % (1 << EXTRAS.length);
  return {
    v,
    owners: Object.fromEntries(
      DBS.map((db, k) => [db, OWNERS[(shift + k) % OWNERS.length] as string]),
    ),
    extras: EXTRAS.filter((_, j) => (mask >> j) & 1),
  };
}

function cluster(x: Variant): Record<string, unknown> {
  const role = (name: string) => ({ name, encrypted_password: null, options: null });
  return {
    roles: [...OWNERS, ...x.extras].map(role),
    databases: DBS.map((name) => ({ name, owner: x.owners[name], options: null })),
    // A unique marker per request: proves which spec the last reload wrote.
    settings: [{ name: "stress.variant", value: String(x.v), vartype: "string" }],
  };
}

function specFor(c: ComputeUnderTest, x: Variant): Record<string, unknown> {
  return {
    ...c.spec,
    operation_uuid: `stress-${x.v}`,
    cluster: { ...(c.spec.cluster as Record<string, unknown>), ...cluster(x) },
    delta_operations: EXTRAS.filter((r) => !x.extras.includes(r)).map((name) => ({
      action: "delete_role",
      name,
    })),
  };
}

type Kind = "configure" | "status" | "metrics";

interface Outcome {
  kind: Kind;
  v: number;
  code: number | "timeout" | "error";
  body: unknown;
  contentType: string | null;
  endedAt: number;
  error?: string;
}

async function sql(c: ComputeUnderTest, text: string): Promise<string> {
  const r = await c.psql(text);
  if (r.code !== 0) throw new Error(`psql: ${r.err}`);
  return r.out;
}

test("1,000 mixed requests from 50 clients: no hang, no lost /configure, the catalog ends in the last applied spec", async () => {
  const c = await startCompute(root.dir, "stress", {
    spec: { skip_pg_catalog_updates: false },
    cluster: cluster(variant(0)),
  });
  try {
    await c.waitForStatus(["running"]);
    const auth = bearer(await c.keys.sign({ compute_id: "stress" }));
    const base = `http://127.0.0.1:${c.ext}`;
    let nextVariant = 1;

    const one = async (kind: Kind): Promise<Outcome> => {
      const v = kind === "configure" ? nextVariant++ : -1;
      const init: RequestInit =
        kind === "configure"
          ? {
              method: "POST",
              headers: { ...auth, "content-type": "application/json" },
              body: JSON.stringify({
                spec: specFor(c, variant(v)),
                compute_ctl_config: { jwks: { keys: [] } },
              }),
              signal: AbortSignal.timeout(CONFIGURE_DEADLINE_MS),
            }
          : { headers: auth, signal: AbortSignal.timeout(READ_DEADLINE_MS) };
      const path = { configure: "/configure", status: "/status", metrics: "/metrics.json" }[kind];
      try {
        const res = await fetch(base + path, init);
        const body = await res.json();
        return {
          kind,
          v,
          code: res.status,
          body,
          contentType: res.headers.get("content-type"),
          endedAt: performance.now(),
        };
      } catch (e) {
        const timeout = e instanceof Error && e.name === "TimeoutError";
        return {
          kind,
          v,
          code: timeout ? "timeout" : "error",
          body: null,
          contentType: null,
          endedAt: performance.now(),
          error: String(e),
        };
      }
    };

    const kinds: Kind[] = ["configure", "status", "metrics"];
    const started = performance.now();
    const perClient = await Promise.all(
      Array.from({ length: CLIENTS }, async (_, client) => {
        const out: Outcome[] = [];
        for (let j = 0; j < PER_CLIENT; j++) out.push(await one(kinds[(client + j) % 3] as Kind));
        return out;
      }),
    );
    const elapsed = performance.now() - started;
    const all = perClient.flat();
    expect(all.length).toBe(CLIENTS * PER_CLIENT);

    // No request hung past its deadline or lost its connection.
    expect(
      all.filter((o) => typeof o.code !== "number").map((o) => `${o.kind}: ${o.error}`),
    ).toEqual([]);
    for (const o of all) expect(o.contentType).toBe("application/json");

    // Reads always answer, and never show a state outside the reconfiguration cycle.
    const reads = all.filter((o) => o.kind !== "configure");
    expect(reads.filter((o) => o.code !== 200)).toEqual([]);
    const seen = new Set(
      reads.filter((o) => o.kind === "status").map((o) => (o.body as { status: string }).status),
    );
    for (const s of seen)
      expect(["running", "configuration_pending", "configuration"]).toContain(s);
    for (const o of reads.filter((o) => o.kind === "metrics"))
      expect(Object.keys(o.body as object)).toEqual(UPSTREAM_METRICS_KEYS);

    // /configure: accepted ones end in running (valid specs: never failed), the rest are 412.
    const configures = all.filter((o) => o.kind === "configure");
    const accepted = configures.filter((o) => o.code === 200);
    const refused = configures.filter((o) => o.code === 412);
    expect(accepted.length + refused.length).toBe(configures.length);
    expect(accepted.length).toBeGreaterThan(0);
    for (const o of accepted) expect((o.body as { status: string }).status).toBe("running");
    for (const o of refused)
      expect((o.body as { error: string }).error).toMatch(
        /^invalid compute status: configuration(-pending)?$/,
      );

    // The log names every accepted operation once, in the order they were applied,
    // and exactly the ones that got a 200: none lost, none applied unanswered.
    const log = c.child.stderr();
    const ops = (re: RegExp) => [...log.matchAll(re)].map((m) => Number(m[1]));
    const acceptedOrder = ops(/accepted configuration for operation stress-(\d+)/g);
    const finishedOrder = ops(
      /finished reconfiguration of compute node for operation stress-(\d+)/g,
    );
    expect(finishedOrder).toEqual(acceptedOrder);
    expect([...acceptedOrder].sort((a, b) => a - b)).toEqual(
      accepted.map((o) => o.v).sort((a, b) => a - b),
    );
    // The last 200 to come back is the last spec applied.
    const last = accepted.reduce((a, b) => (b.endedAt > a.endedAt ? b : a));
    expect(acceptedOrder.at(-1)).toBe(last.v);

    expect((await c.status()).status).toBe("running");
    const want = variant(last.v);
    expect(
      await sql(
        c,
        "SELECT coalesce(string_agg(rolname, ',' ORDER BY rolname), '') FROM pg_roles WHERE rolname LIKE 'x\\_%' OR rolname LIKE 'own\\_%'",
      ),
    ).toBe([...OWNERS, ...want.extras].sort().join(","));
    expect(
      await sql(
        c,
        "SELECT string_agg(datname || '=' || pg_get_userbyid(datdba), ',' ORDER BY datname) FROM pg_database WHERE datname LIKE 'db\\_%'",
      ),
    ).toBe(DBS.map((db) => `${db}=${want.owners[db]}`).join(","));
    // Reload is a signal: wait for postgres to have read the last file.
    await waitUntil(
      `stress.variant = ${last.v}`,
      async () => ((await sql(c, "SHOW stress.variant")) === String(last.v) ? true : undefined),
      5_000,
    );
    expect(elapsed).toBeLessThan(40_000);
  } finally {
    await c.stop();
  }
});
