import { describe, expect, test } from "bun:test";
import { ConfigError } from "../errors.ts";
import { parseComputeSpec } from "./parse.ts";
import {
  genericOptionsFind,
  genericOptionsFindEntry,
  pageserverConnInfoFromConnstr,
  shardUrl,
  toParsedSpec,
} from "./parsed-spec.ts";
import type { ComputeSpec, GenericOption, PageserverConnectionInfo } from "./schema.ts";

const TENANT = "b0554b632bd4d547a63b86c3630317e8";
const TIMELINE = "2414a61ffc94e428f14b5758fe308e13";
const PS_URL = "postgres://no_user@localhost:64000";

function setting(name: string, value: string | null): Record<string, unknown> {
  return { name, value, vartype: "string" };
}

function spec(extra: Record<string, unknown> = {}, settings?: unknown[]): ComputeSpec {
  return parseComputeSpec({
    format_version: 1.0,
    cluster: { roles: [], databases: [], settings },
    suspend_timeout_seconds: -1,
    tenant_id: TENANT,
    timeline_id: TIMELINE,
    pageserver_connstring: PS_URL,
    safekeeper_connstrings: ["127.0.0.1:6501"],
    ...extra,
  });
}

function parseError(s: ComputeSpec): ConfigError {
  try {
    toParsedSpec(s);
  } catch (e) {
    expect(e).toBeInstanceOf(ConfigError);
    return e as ConfigError;
  }
  throw new Error("expected toParsedSpec to fail");
}

describe("genericOptionsFind", () => {
  const opts: GenericOption[] = [
    { name: "a", value: "1", vartype: "integer" },
    { name: "b", value: null, vartype: "string" },
    { name: "b", value: "later", vartype: "string" },
    { name: "a", value: "2", vartype: "integer" },
  ];

  test("first option with that exact name", () => {
    expect(genericOptionsFind(opts, "a")).toBe("1");
    expect(genericOptionsFindEntry(opts, "a")).toEqual({ value: "1", index: 0 });
    expect(genericOptionsFind(opts, "A")).toBeUndefined();
    expect(genericOptionsFind(opts, "missing")).toBeUndefined();
  });

  test("a null value on the first match means none (no fall-through)", () => {
    expect(genericOptionsFind(opts, "b")).toBeUndefined();
  });

  test("null or absent options", () => {
    expect(genericOptionsFind(null, "a")).toBeUndefined();
    expect(genericOptionsFind(undefined, "a")).toBeUndefined();
    expect(genericOptionsFind([], "a")).toBeUndefined();
  });
});

describe("pageserverConnInfoFromConnstr", () => {
  test("one connstring is unsharded", () => {
    expect(pageserverConnInfoFromConnstr("host=127.0.0.1 port=6400", 8)).toEqual({
      shard_count: 0,
      stripe_size: null,
      shards: {
        "0000": {
          pageservers: [{ id: null, libpq_url: "host=127.0.0.1 port=6400", grpc_url: null }],
        },
      },
      prefer_protocol: "libpq",
    });
  });

  test("N connstrings are N shards", () => {
    const info = pageserverConnInfoFromConnstr(
      "postgres://a:1,postgres://b:2,postgres://c:3",
      32768,
    );
    expect(info.shard_count).toBe(3);
    expect(info.stripe_size).toBe(32768);
    expect(Object.keys(info.shards)).toEqual(["0003", "0103", "0203"]);
    expect(info.shards["0103"]?.pageservers[0]?.libpq_url).toBe("postgres://b:2");
  });

  test("N>1 connstrings need a stripe size", () => {
    expect(() => pageserverConnInfoFromConnstr("a,b", null)).toThrow("2 shards but no stripe_size");
    expect(() => pageserverConnInfoFromConnstr("a,b", undefined)).toThrow(
      "2 shards but no stripe_size",
    );
  });
});

describe("shardUrl", () => {
  const info: PageserverConnectionInfo = {
    shard_count: 2,
    stripe_size: 8,
    shards: {
      "0002": {
        pageservers: [
          { id: 1, libpq_url: "postgres://a:1", grpc_url: "grpc://a:2" },
          { id: 2, libpq_url: "postgres://z:1", grpc_url: null },
        ],
      },
      "0102": { pageservers: [] },
    },
    prefer_protocol: "libpq",
  };

  test("first pageserver of the shard", () => {
    expect(shardUrl(info, 0, "libpq")).toBe("postgres://a:1");
    expect(shardUrl(info, 0, "grpc")).toBe("grpc://a:2");
  });

  test("errors", () => {
    expect(() => shardUrl(info, 1, "libpq")).toThrow("must have at least one pageserver");
    expect(() => shardUrl(info, 5, "libpq")).toThrow(
      "shard connection info missing for shard 0502",
    );
    const noUrls: PageserverConnectionInfo = {
      ...info,
      shards: { "0002": { pageservers: [{ id: null, libpq_url: null, grpc_url: null }] } },
    };
    expect(() => shardUrl(noUrls, 0, "libpq")).toThrow("no libpq_url for shard 0002");
    expect(() => shardUrl(noUrls, 0, "grpc")).toThrow("no grpc_url for shard 0002");
  });
});

describe("toParsedSpec", () => {
  test("fields win over settings", () => {
    const p = toParsedSpec(
      spec(
        { storage_auth_token: "tok", endpoint_storage_addr: "es:1", endpoint_storage_token: "jwt" },
        [
          setting("neon.tenant_id", "0".repeat(32)),
          setting("neon.endpoint_storage_addr", "other:2"),
        ],
      ),
    );
    expect(p).toMatchObject({
      tenant_id: TENANT,
      timeline_id: TIMELINE,
      safekeeper_connstrings: ["127.0.0.1:6501"],
      storage_auth_token: "tok",
      endpoint_storage_addr: "es:1",
      endpoint_storage_token: "jwt",
      mode: { kind: "primary" },
    });
    expect(shardUrl(p.pageserver_conninfo, 0, "libpq")).toBe(PS_URL);
    expect(p.spec.tenant_id as string).toBe(TENANT);
  });

  test("pageserver_connection_info wins over pageserver_connstring", () => {
    const info = {
      shard_count: 0,
      shards: { "0000": { pageservers: [{ id: 7, libpq_url: "postgres://x@y:1" }] } },
    };
    const p = toParsedSpec(spec({ pageserver_connection_info: info }));
    expect(p.pageserver_conninfo.shards["0000"]?.pageservers[0]?.id).toBe(7);
  });

  test("legacy pageserver_connstring + shard_stripe_size", () => {
    const p = toParsedSpec(
      spec({ pageserver_connstring: "postgres://a:1,postgres://b:1", shard_stripe_size: 2048 }),
    );
    expect(p.pageserver_conninfo.shard_count).toBe(2);
    expect(p.pageserver_conninfo.stripe_size).toBe(2048);
    const e = parseError(spec({ pageserver_connstring: "postgres://a:1,postgres://b:1" }));
    expect(e.message).toBe("2 shards but no stripe_size");
    expect(e.path).toBe("spec.pageserver_connstring");
  });

  test("GUC fallbacks (neon.*)", () => {
    const p = toParsedSpec(
      spec(
        {
          tenant_id: null,
          timeline_id: null,
          pageserver_connstring: null,
          safekeeper_connstrings: [],
        },
        [
          setting("neon.tenant_id", TENANT.toUpperCase()),
          setting("neon.timeline_id", TIMELINE),
          setting("neon.pageserver_connstring", "postgres://a:1,postgres://b:2"),
          setting("neon.stripe_size", "32768"),
          setting("neon.safekeepers", "sk1:5454,sk2:5454"),
          setting("neon.endpoint_storage_addr", "es:9"),
          setting("neon.endpoint_storage_token", "t"),
        ],
      ),
    );
    expect(p.tenant_id as string).toBe(TENANT);
    expect(p.timeline_id as string).toBe(TIMELINE);
    expect(p.pageserver_conninfo.shard_count).toBe(2);
    expect(p.pageserver_conninfo.stripe_size).toBe(32768);
    expect(p.safekeeper_connstrings).toEqual(["sk1:5454", "sk2:5454"]);
    expect(p.endpoint_storage_addr).toBe("es:9");
    expect(p.endpoint_storage_token).toBe("t");
  });

  test("an unparsable neon.stripe_size counts as absent", () => {
    const s = spec({ pageserver_connstring: null }, [
      setting("neon.pageserver_connstring", "a,b"),
      setting("neon.stripe_size", "lots"),
    ]);
    const e = parseError(s);
    expect(e.message).toBe("2 shards but no stripe_size");
    expect(e.path).toBe("spec.cluster.settings[0].value");
  });

  test("endpoint storage is null without field or GUC", () => {
    expect(toParsedSpec(spec()).endpoint_storage_addr).toBeNull();
    expect(toParsedSpec(spec()).storage_auth_token).toBeNull();
  });

  test.each<[Record<string, unknown>, unknown[] | undefined, string, string]>([
    [
      { pageserver_connstring: null },
      undefined,
      "pageserver connection information should be provided",
      "spec.pageserver_connection_info",
    ],
    [
      { safekeeper_connstrings: [] },
      undefined,
      "safekeeper connstrings should be provided",
      "spec.safekeeper_connstrings",
    ],
    [{ tenant_id: null }, undefined, "tenant id should be provided", "spec.tenant_id"],
    [
      { tenant_id: null },
      [setting("neon.tenant_id", null)],
      "tenant id should be provided",
      "spec.tenant_id",
    ],
    [
      { tenant_id: null },
      [setting("x", "y"), setting("neon.tenant_id", "TENANT_ID")],
      "invalid tenant id",
      "spec.cluster.settings[1].value",
    ],
    [{ timeline_id: null }, undefined, "timeline id should be provided", "spec.timeline_id"],
    [
      { timeline_id: null },
      [setting("neon.timeline_id", "TIMELINE_ID")],
      "invalid timeline id",
      "spec.cluster.settings[0].value",
    ],
    [
      { safekeeper_connstrings: ["a:1", "b:1", "a:1"] },
      undefined,
      "duplicate entry in safekeeper_connstrings: a:1!",
      "spec.safekeeper_connstrings",
    ],
    [
      { safekeeper_connstrings: [] },
      [setting("neon.safekeepers", "z:1,b:1,z:1,b:1")],
      "duplicate entry in safekeeper_connstrings: b:1!",
      "spec.safekeeper_connstrings",
    ],
  ])("%j %j -> %p", (extra, settings, message, path) => {
    const e = parseError(spec(extra, settings));
    expect(e.message).toBe(message);
    expect(e.path).toBe(path);
  });

  test("the order of checks follows upstream (pageserver, safekeepers, tenant, timeline)", () => {
    const s = spec({ pageserver_connstring: null, safekeeper_connstrings: [], tenant_id: null });
    expect(parseError(s).message).toBe("pageserver connection information should be provided");
    const s2 = spec({ safekeeper_connstrings: [], tenant_id: null });
    expect(parseError(s2).message).toBe("safekeeper connstrings should be provided");
  });

  test('an empty neon.safekeepers GUC yields [""] and passes (upstream quirk)', () => {
    const p = toParsedSpec(spec({ safekeeper_connstrings: [] }, [setting("neon.safekeepers", "")]));
    expect(p.safekeeper_connstrings).toEqual([""]);
  });

  test("replicas and static computes need no safekeepers and skip validation", () => {
    for (const mode of ["Replica", { Static: "0/16B5BA8" }]) {
      const p = toParsedSpec(
        spec({ mode, safekeeper_connstrings: [] }, [setting("neon.safekeepers", "a:1")]),
      );
      expect(p.safekeeper_connstrings).toEqual([]);
      const dup = toParsedSpec(spec({ mode, safekeeper_connstrings: ["a:1", "a:1"] }));
      expect(dup.safekeeper_connstrings).toEqual(["a:1", "a:1"]);
    }
    const st = toParsedSpec(spec({ mode: { Static: "0/16B5BA8" } }));
    expect(st.mode).toEqual({ kind: "static", lsn: 0x16b5ba8n });
  });

  test("the invalid tenant id error keeps the bad value as its cause", () => {
    const e = parseError(spec({ tenant_id: null }, [setting("neon.tenant_id", "TENANT_ID")]));
    expect(e.cause).toBeInstanceOf(Error);
    expect((e.cause as Error).message).toBe('"TENANT_ID" is not 32 hex characters');
  });
});
