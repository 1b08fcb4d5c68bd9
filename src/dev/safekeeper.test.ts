// The safekeeper stand-in with psql (an independent client) and our client, in each
// answer mode, with the startup options compute_ctl sends.
import { afterAll, afterEach, describe, expect, test } from "bun:test";
import { TimeoutError } from "../errors.ts";
import { connect, type PgClient, PgWireError } from "../wire/client.ts";
import { type SafekeeperHandle, type SafekeeperOptions, startSafekeeper } from "./safekeeper.ts";
import { psql, RawClient, TENANT, TIMELINE } from "./testing.ts";

const OPTIONS = `-c timeline_id=${TIMELINE} tenant_id=${TENANT}`;
const servers: SafekeeperHandle[] = [];
const clients: PgClient[] = [];

function safekeeper(opts: SafekeeperOptions): SafekeeperHandle {
  const s = startSafekeeper(opts);
  servers.push(s);
  return s;
}

/** compute_ctl's URL form, with the options in the query string for libpq. */
function psqlUrl(s: SafekeeperHandle, options = OPTIONS): string {
  return `${s.url}?options=${encodeURIComponent(options)}`;
}

async function client(
  s: SafekeeperHandle,
  extra: { password?: string; options?: string } = {},
): Promise<PgClient> {
  const c = await connect({
    host: "127.0.0.1",
    port: s.port,
    user: "no_user",
    params: { options: extra.options ?? OPTIONS },
    connectTimeoutMs: 2000,
    ...(extra.password === undefined ? {} : { password: extra.password }),
  });
  clients.push(c);
  return c;
}

afterEach(async () => {
  for (const c of clients.splice(0)) await c.close().catch(() => {});
});
afterAll(async () => {
  for (const s of servers) await s.close();
});

describe("TIMELINE_STATUS", () => {
  test("consistent LSNs: one row, flush_lsn|commit_lsn, tag TIMELINE_STATUS", async () => {
    const s = safekeeper({ answer: { flushLsn: "0/16b5ba8", commitLsn: 0x16b5ba8n } });
    const r = await psql(psqlUrl(s), "TIMELINE_STATUS");
    expect(r.stderr).toBe("");
    expect(r.text).toBe("0/16B5BA8|0/16B5BA8\n");
    const c = await client(s);
    const [res] = await c.simpleQuery("TIMELINE_STATUS");
    expect(res).toEqual({
      command: "TIMELINE_STATUS",
      columns: ["flush_lsn", "commit_lsn"],
      rows: [["0/16B5BA8", "0/16B5BA8"]],
    });
    const rec = s.requests.at(-1);
    expect(rec?.options).toBe(OPTIONS);
    expect(rec?.tenantId).toBe(TENANT);
    expect(rec?.timelineId).toBe(TIMELINE);
    expect(rec?.command).toBe("TIMELINE_STATUS");
    expect(rec?.protocol).toBe("simple");
  });

  test("missing timeline: the columns and no row", async () => {
    const s = safekeeper({ answer: "missing" });
    const r = await psql(psqlUrl(s), "TIMELINE_STATUS");
    expect(r.code).toBe(0);
    expect(r.text).toBe("");
    const c = await client(s);
    const [res] = await c.simpleQuery("TIMELINE_STATUS");
    expect(res?.columns).toEqual(["flush_lsn", "commit_lsn"]);
    expect(res?.rows).toEqual([]);
  });

  test("a slow answer blows compute_ctl's 100 ms budget", async () => {
    const s = safekeeper({
      answer: { delayMs: 400, answer: { flushLsn: "0/2", commitLsn: "0/1" } },
    });
    const c = await client(s);
    const err = await c.simpleQuery("TIMELINE_STATUS", { timeoutMs: 100 }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(TimeoutError);
    const t0 = performance.now();
    const r = await psql(psqlUrl(s), "TIMELINE_STATUS");
    expect(performance.now() - t0).toBeGreaterThanOrEqual(390);
    expect(r.text).toBe("0/2|0/1\n");
  });

  test("refuse: connections are closed at once", async () => {
    const s = safekeeper({ answer: "refuse" });
    const err = await client(s).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(PgWireError);
    const r = await psql(psqlUrl(s), "TIMELINE_STATUS");
    expect(r.code).not.toBe(0);
    expect(s.accepted()).toBeGreaterThanOrEqual(2);
    expect(s.requests).toEqual([]);
  });

  test("an error answer", async () => {
    const s = safekeeper({ answer: { error: "timeline is being deleted" } });
    const r = await psql(psqlUrl(s), "TIMELINE_STATUS");
    expect(r.stderr.trim()).toBe("ERROR:  timeline is being deleted");
  });

  test("setAnswer switches modes at run time, also on an open connection", async () => {
    const s = safekeeper({ answer: "missing" });
    const c = await client(s);
    expect((await c.simpleQuery("TIMELINE_STATUS"))[0]?.rows).toEqual([]);
    s.setAnswer({ flushLsn: "1/0", commitLsn: "0/FFFFFFFF" });
    expect((await c.simpleQuery("TIMELINE_STATUS"))[0]?.rows).toEqual([["1/0", "0/FFFFFFFF"]]);
    s.setAnswer("refuse");
    await expect(c.simpleQuery("TIMELINE_STATUS")).rejects.toBeInstanceOf(PgWireError);
    await expect(client(s)).rejects.toBeInstanceOf(PgWireError);
  });
});

describe("startup and commands", () => {
  test("the ids are required, from options", async () => {
    const s = safekeeper({ answer: "missing" });
    const none = await psql(s.url, "TIMELINE_STATUS");
    expect(none.stderr.trim()).toBe("ERROR:  tenantid is required");
    const half = await psql(psqlUrl(s, `-c tenant_id=${TENANT}`), "TIMELINE_STATUS");
    expect(half.stderr.trim()).toBe("ERROR:  timelineid is required");
    const legacy = await psql(
      psqlUrl(s, `-c ztimelineid=${TIMELINE} ztenantid=${TENANT}`),
      "TIMELINE_STATUS",
    );
    expect(legacy.code).toBe(0);
  });

  test("a malformed id is refused at startup", async () => {
    const s = safekeeper({ answer: "missing" });
    const err = await client(s, { options: "-c tenant_id=xyz" }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(PgWireError);
    expect((err as PgWireError).message).toBe("Failed to parse xyz as tenant id");
  });

  test("unsupported and unserved commands; SET datestyle is accepted", async () => {
    const s = safekeeper({ answer: "missing" });
    const c = await client(s);
    await expect(c.simpleQuery("select 1")).rejects.toThrow("unsupported command select 1");
    await expect(c.simpleQuery("IDENTIFY_SYSTEM")).rejects.toThrow(/not served/);
    const [r] = await c.simpleQuery("SET datestyle TO 'ISO'");
    expect(r?.command).toBe("SELECT 1");
  });

  test("password auth: recorded when right, 28000 when wrong", async () => {
    const s = safekeeper({
      answer: { flushLsn: "0/1", commitLsn: "0/1" },
      auth: { password: "tok" },
    });
    const c = await client(s, { password: "tok" });
    await c.simpleQuery("TIMELINE_STATUS");
    expect(s.requests.at(-1)?.password).toBe("tok");
    const err = await client(s, { password: "nope" }).catch((e: unknown) => e);
    expect((err as PgWireError).code).toBe("28000");
    const r = await psql(psqlUrl(s), "TIMELINE_STATUS", "tok");
    expect(r.text).toBe("0/1|0/1\n");
  });

  test("the extended protocol works too (Parse/Bind/Execute/Sync)", async () => {
    const s = safekeeper({ answer: { flushLsn: "0/5", commitLsn: "0/5" } });
    const raw = await RawClient.connect(s.port);
    await raw.startup({ user: "no_user", options: OPTIONS });
    raw.send(
      { type: "Parse", name: "", sql: "TIMELINE_STATUS", paramTypes: [] },
      { type: "Bind", portal: "", statement: "", paramFormats: [], params: [], resultFormats: [] },
      { type: "Execute", portal: "", maxRows: 0 },
      { type: "Sync" },
    );
    await raw.expect("ParseComplete");
    await raw.expect("BindComplete");
    await raw.expect("RowDescription");
    const row = await raw.expect("DataRow");
    expect(
      row.values.map((v) => (v instanceof Uint8Array ? new TextDecoder().decode(v) : v)),
    ).toEqual(["0/5", "0/5"]);
    await raw.expect("CommandComplete");
    await raw.expect("ReadyForQuery");
    raw.close();
    expect(s.requests.at(-1)?.protocol).toBe("extended");
  });
});
