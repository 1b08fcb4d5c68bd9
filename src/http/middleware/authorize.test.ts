import { describe, expect, test } from "bun:test";
import { Hono } from "hono";
import {
  CompactSign,
  type CryptoKey,
  exportJWK,
  generateKeyPair,
  type JWTPayload,
  SignJWT,
} from "jose";
import { memoryLogger } from "../../log.ts";
import type { Jwk } from "../../spec/index.ts";
import { ComputeStateStore } from "../../state/store.ts";
import { jsonResponse } from "../respond.ts";
import type { HonoEnv, Route } from "../route.ts";
import { buildApp } from "../server.ts";
import {
  AUTH_ERRORS,
  type AuthorizeOptions,
  authorize,
  expired,
  parseBearer,
  parseClaims,
  SignatureCache,
} from "./authorize.ts";

const COMPUTE_ID = "compute-1";

interface KeyPair {
  privateKey: CryptoKey;
  publicJwk: Jwk;
}

async function edKeyPair(): Promise<KeyPair> {
  const { privateKey, publicKey } = await generateKeyPair("EdDSA", {
    crv: "Ed25519",
    extractable: true,
  });
  const { crv, x } = await exportJWK(publicKey);
  return { privateKey, publicJwk: { kty: "OKP", crv, x } };
}

async function rsaKeyPair(): Promise<KeyPair> {
  const { privateKey, publicKey } = await generateKeyPair("RS256", { extractable: true });
  const { n, e } = await exportJWK(publicKey);
  return { privateKey, publicJwk: { kty: "RSA", n, e } };
}

// Key generation (RSA especially) is the slow part: once per file.
const ed1 = await edKeyPair();
const ed2 = await edKeyPair();
const edOther = await edKeyPair();
const rsa1 = await rsaKeyPair();

const withAlg = (k: KeyPair, alg: "EdDSA" | "RS256"): Jwk => ({ ...k.publicJwk, alg });

function sign(
  claims: JWTPayload,
  key: CryptoKey | Uint8Array,
  alg = "EdDSA",
  header: Record<string, unknown> = {},
): Promise<string> {
  return new SignJWT(claims).setProtectedHeader({ ...header, alg }).sign(key);
}

/** Signs exact payload text, for shapes SignJWT would refuse or reformat. */
function signRaw(payload: string, key: CryptoKey, alg = "EdDSA", typ?: string): Promise<string> {
  return new CompactSign(new TextEncoder().encode(payload))
    .setProtectedHeader(typ === undefined ? { alg } : { typ, alg })
    .sign(key);
}

const nowSeconds = () => Math.floor(Date.now() / 1000);

function tinyApp(opts: Partial<AuthorizeOptions> & { keys?: Jwk[] } = {}) {
  const { log, lines } = memoryLogger();
  const { keys = [ed1.publicJwk], ...rest } = opts;
  const check = authorize({ jwks: { keys }, computeId: COMPUTE_ID, log, ...rest });
  const app = new Hono<HonoEnv>();
  app.get("/p", async (c) => (await check(c.req.header("authorization"))) ?? c.json({ ok: true }));
  const call = (authorization?: string) =>
    app.request("/p", authorization === undefined ? {} : { headers: { authorization } });
  const bearer = (token: string) => call(`Bearer ${token}`);
  return { app, call, bearer, lines };
}

async function expectError(res: Response, status: number, message: string) {
  expect(res.status).toBe(status);
  expect(res.headers.get("content-type")).toBe("application/json");
  expect(await res.text()).toBe(JSON.stringify({ error: message }));
}

async function expectOk(res: Response) {
  expect(res.status).toBe(200);
  expect(await res.json()).toEqual({ ok: true });
}

describe("compute-scoped tokens (no scope)", () => {
  test("matching compute_id: next() runs", async () => {
    const { bearer } = tinyApp();
    await expectOk(await bearer(await sign({ compute_id: COMPUTE_ID }, ed1.privateKey)));
  });

  test("other compute_id: 403 invalid compute ID", async () => {
    const { bearer } = tinyApp();
    const res = await bearer(await sign({ compute_id: "compute-2" }, ed1.privateKey));
    await expectError(res, 403, AUTH_ERRORS.invalidComputeId);
  });

  test("claims {} (upstream test_compute_http): 403 missing compute_id", async () => {
    const { bearer } = tinyApp();
    await expectError(
      await bearer(await sign({}, ed1.privateKey)),
      403,
      AUTH_ERRORS.missingComputeId,
    );
  });

  test("explicit nulls are absent; extra claims ignored", async () => {
    const { bearer } = tinyApp();
    const token = await signRaw(
      `{"compute_id":"${COMPUTE_ID}","scope":null,"aud":null,"sub":1,"iss":[2],"whatever":{}}`,
      ed1.privateKey,
    );
    await expectOk(await bearer(token));
    const nullId = await signRaw('{"compute_id":null}', ed1.privateKey);
    await expectError(await bearer(nullId), 403, AUTH_ERRORS.missingComputeId);
  });

  test("compute_id is compared exactly (case, whitespace)", async () => {
    const { bearer } = tinyApp();
    for (const id of ["Compute-1", "compute-1 ", ""]) {
      const res = await bearer(await sign({ compute_id: id }, ed1.privateKey));
      await expectError(res, 403, AUTH_ERRORS.invalidComputeId);
    }
  });
});

describe("admin scope", () => {
  test('aud ["compute"]: allowed, compute_id not checked', async () => {
    const { bearer } = tinyApp();
    for (const claims of [
      { scope: "compute_ctl:admin", aud: ["compute"] },
      { scope: "compute_ctl:admin", aud: ["other", "compute"], compute_id: "compute-9" },
    ]) {
      await expectOk(await bearer(await sign(claims, ed1.privateKey)));
    }
  });

  test('aud ["invalid"] or []: 401 invalid audience', async () => {
    const { bearer } = tinyApp();
    for (const aud of [["invalid"], [], ["Compute"]]) {
      const res = await bearer(await sign({ scope: "compute_ctl:admin", aud }, ed1.privateKey));
      await expectError(res, 401, AUTH_ERRORS.invalidAudience);
    }
  });

  test("aud absent or null: 401 missing audience", async () => {
    const { bearer } = tinyApp();
    await expectError(
      await bearer(await sign({ scope: "compute_ctl:admin" }, ed1.privateKey)),
      401,
      AUTH_ERRORS.missingAudience,
    );
    const nullAud = await signRaw('{"scope":"compute_ctl:admin","aud":null}', ed1.privateKey);
    await expectError(await bearer(nullAud), 401, AUTH_ERRORS.missingAudience);
  });
});

describe("claims that do not decode: 401 failed to verify", () => {
  const cases: [string, string][] = [
    ["aud as a plain string (admin)", '{"scope":"compute_ctl:admin","aud":"compute"}'],
    ["aud as a plain string (compute)", `{"compute_id":"${COMPUTE_ID}","aud":"compute"}`],
    ["aud with a non-string", '{"scope":"compute_ctl:admin","aud":["compute",1]}'],
    ["unknown scope string", `{"compute_id":"${COMPUTE_ID}","scope":"compute_ctl:read"}`],
    ["scope not a string", `{"compute_id":"${COMPUTE_ID}","scope":["compute_ctl:admin"]}`],
    ["compute_id a number", '{"compute_id":1}'],
    ["payload an array", `["${COMPUTE_ID}"]`],
    ["payload null", "null"],
    ["payload not JSON", "compute_id"],
  ];
  test.each(cases)("%s", async (_name, payload) => {
    const { bearer } = tinyApp();
    await expectError(
      await bearer(await signRaw(payload, ed1.privateKey)),
      401,
      AUTH_ERRORS.verifyFailed,
    );
  });

  test("payload that is not UTF-8", async () => {
    const { bearer } = tinyApp();
    const token = await new CompactSign(new Uint8Array([0x7b, 0xff, 0x7d]))
      .setProtectedHeader({ alg: "EdDSA" })
      .sign(ed1.privateKey);
    await expectError(await bearer(token), 401, AUTH_ERRORS.verifyFailed);
  });
});

describe("exp (optional, 60 s leeway) and other registered claims", () => {
  test("exp 10 minutes ago: 401", async () => {
    const { bearer } = tinyApp();
    const token = await sign({ compute_id: COMPUTE_ID, exp: nowSeconds() - 600 }, ed1.privateKey);
    await expectError(await bearer(token), 401, AUTH_ERRORS.verifyFailed);
  });

  test("exp 30 s ago (inside the leeway): allowed", async () => {
    const { bearer } = tinyApp();
    const token = await sign({ compute_id: COMPUTE_ID, exp: nowSeconds() - 30 }, ed1.privateKey);
    await expectOk(await bearer(token));
  });

  test("no exp (neon_local's tokens) and future exp: allowed", async () => {
    const { bearer } = tinyApp();
    await expectOk(await bearer(await sign({ compute_id: COMPUTE_ID }, ed1.privateKey)));
    const future = await sign({ compute_id: COMPUTE_ID, exp: nowSeconds() + 3600 }, ed1.privateKey);
    await expectOk(await bearer(future));
  });

  test("boundary on a pinned clock: exp = now - 60 passes, now - 61 fails", async () => {
    const nowMs = 1_700_000_000_900;
    const { bearer } = tinyApp({ now: () => nowMs });
    const at = (exp: number) => sign({ compute_id: COMPUTE_ID, exp }, ed1.privateKey);
    await expectOk(await bearer(await at(1_700_000_000 - 60)));
    await expectError(await bearer(await at(1_700_000_000 - 61)), 401, AUTH_ERRORS.verifyFailed);
    // jsonwebtoken rounds a fractional exp.
    await expectOk(await bearer(await at(1_700_000_000 - 60.5)));
    await expectError(await bearer(await at(1_700_000_000 - 60.6)), 401, AUTH_ERRORS.verifyFailed);
  });

  test("exp that is not a u64 is ignored, as jsonwebtoken does", async () => {
    const { bearer } = tinyApp();
    for (const exp of ['"0"', "-1", "-1e9", "true", "1e30", "{}"]) {
      await expectOk(
        await bearer(await signRaw(`{"compute_id":"${COMPUTE_ID}","exp":${exp}}`, ed1.privateKey)),
      );
    }
  });

  test("nbf in the future, iat of any type, iss/sub: not checked", async () => {
    const { bearer } = tinyApp();
    const claims = `{"compute_id":"${COMPUTE_ID}","nbf":${nowSeconds() + 3600},"iat":"x","iss":"a","sub":"b"}`;
    await expectOk(await bearer(await signRaw(claims, ed1.privateKey)));
  });
});

describe("signature cache", () => {
  test("a remembered token still expires: exp is checked on every request", async () => {
    let nowMs = 1_700_000_000_000;
    const { bearer } = tinyApp({ now: () => nowMs });
    const token = await sign({ compute_id: COMPUTE_ID, exp: 1_700_000_100 }, ed1.privateKey);
    await expectOk(await bearer(token));
    await expectOk(await bearer(token));
    nowMs = (1_700_000_100 + 61) * 1000;
    await expectError(await bearer(token), 401, AUTH_ERRORS.verifyFailed);
  });

  test("a refused signature stays refused, and claims are judged per request", async () => {
    const { bearer } = tinyApp();
    const forged = await sign({ compute_id: COMPUTE_ID }, edOther.privateKey);
    await expectError(await bearer(forged), 401, AUTH_ERRORS.verifyFailed);
    await expectError(await bearer(forged), 401, AUTH_ERRORS.verifyFailed);
    const wrongCompute = await sign({ compute_id: "other" }, ed1.privateKey);
    await expectError(await bearer(wrongCompute), 403, AUTH_ERRORS.invalidComputeId);
    await expectError(await bearer(wrongCompute), 403, AUTH_ERRORS.invalidComputeId);
  });

  test("verifies each token once, keeps at most its limit, the oldest leaving first", async () => {
    const cache = new SignatureCache(2);
    const calls: string[] = [];
    const verify = (t: string) => async () => {
      calls.push(t);
      return t === "bad" ? null : new TextEncoder().encode(t);
    };
    for (const t of ["a", "a", "bad", "bad", "a"]) await cache.payload(t, verify(t));
    expect(calls).toEqual(["a", "bad"]);
    await cache.payload("c", verify("c"));
    expect(cache.size).toBe(2);
    await cache.payload("a", verify("a"));
    expect(calls).toEqual(["a", "bad", "c", "a"]);
  });
});

describe("signature and algorithm", () => {
  test("tampered signature or payload: 401", async () => {
    const { bearer } = tinyApp();
    const token = await sign({ compute_id: COMPUTE_ID }, ed1.privateKey);
    const [h, p, s] = token.split(".") as [string, string, string];
    const flip = (str: string, i: number) =>
      str.slice(0, i) + (str[i] === "A" ? "B" : "A") + str.slice(i + 1);
    await expectError(await bearer(`${h}.${p}.${flip(s, 10)}`), 401, AUTH_ERRORS.verifyFailed);
    const otherPayload = Buffer.from(JSON.stringify({ compute_id: "compute-1 " })).toString(
      "base64url",
    );
    await expectError(await bearer(`${h}.${otherPayload}.${s}`), 401, AUTH_ERRORS.verifyFailed);
  });

  test("signed by a key not in the set: 401", async () => {
    const { bearer } = tinyApp();
    const res = await bearer(await sign({ compute_id: COMPUTE_ID }, edOther.privateKey));
    await expectError(res, 401, AUTH_ERRORS.verifyFailed);
  });

  test("second key of the set matches; the token's kid is ignored", async () => {
    const { bearer } = tinyApp({ keys: [withAlg(ed1, "EdDSA"), { ...ed2.publicJwk, kid: "two" }] });
    await expectOk(await bearer(await sign({ compute_id: COMPUTE_ID }, ed2.privateKey)));
    const wrongKid = await sign({ compute_id: COMPUTE_ID }, ed2.privateKey, "EdDSA", {
      kid: "nope",
    });
    await expectOk(await bearer(wrongKid));
  });

  test("malformed compact tokens: 401", async () => {
    const { bearer } = tinyApp();
    const token = await sign({ compute_id: COMPUTE_ID }, ed1.privateKey);
    for (const bad of ["x", "a.b", `${token}.x`, ` ${token}`, "..."]) {
      await expectError(await bearer(bad), 401, AUTH_ERRORS.verifyFailed);
    }
  });

  test("EdDSA set: RS256, HS256, alg none and alg Ed25519 tokens get 401", async () => {
    const secret = new Uint8Array(32).fill(7);
    const oct: Jwk = { kty: "oct", k: Buffer.from(secret).toString("base64url") };
    const { bearer } = tinyApp({ keys: [ed1.publicJwk, rsa1.publicJwk, oct] });
    const claims = { compute_id: COMPUTE_ID };
    await expectError(
      await bearer(await sign(claims, rsa1.privateKey, "RS256")),
      401,
      AUTH_ERRORS.verifyFailed,
    );
    await expectError(
      await bearer(await sign(claims, secret, "HS256")),
      401,
      AUTH_ERRORS.verifyFailed,
    );
    const none = `${Buffer.from('{"alg":"none"}').toString("base64url")}.${Buffer.from(JSON.stringify(claims)).toString("base64url")}.`;
    await expectError(await bearer(none), 401, AUTH_ERRORS.verifyFailed);
    // RFC 9864's fully-specified name: jsonwebtoken 9 does not know it.
    await expectError(
      await bearer(await sign(claims, ed1.privateKey, "Ed25519")),
      401,
      AUTH_ERRORS.verifyFailed,
    );
    await expectOk(await bearer(await sign(claims, ed1.privateKey)));
  });

  test("RS256 as soon as one key says alg RS256: RS256 token passes, EdDSA fails", async () => {
    const { bearer, lines } = tinyApp({
      keys: [ed1.publicJwk, rsa1.publicJwk, { ...rsa1.publicJwk, alg: "RS256" }],
    });
    const claims = { compute_id: COMPUTE_ID };
    await expectOk(await bearer(await sign(claims, rsa1.privateKey, "RS256")));
    await expectError(
      await bearer(await sign(claims, ed1.privateKey)),
      401,
      AUTH_ERRORS.verifyFailed,
    );
    // Same RSA signature under another header alg: only RS256 is accepted.
    const rs256 = await sign(claims, rsa1.privateKey, "RS256");
    const rs512Header = Buffer.from('{"alg":"RS512"}').toString("base64url");
    const relabelled = [rs512Header, ...rs256.split(".").slice(1)].join(".");
    await expectError(await bearer(relabelled), 401, AUTH_ERRORS.verifyFailed);
    const admin = { scope: "compute_ctl:admin", aud: ["compute"] };
    await expectOk(await bearer(await sign(admin, rsa1.privateKey, "RS256")));
    expect(lines.filter((l) => l.includes("WARN") && l.includes("key type OKP"))).toHaveLength(1);
  });

  test("empty key set: 401 for any token; a missing header is still 400", async () => {
    const { bearer, call, lines } = tinyApp({ keys: [] });
    await expectError(
      await bearer(await sign({ compute_id: COMPUTE_ID }, ed1.privateKey)),
      401,
      AUTH_ERRORS.verifyFailed,
    );
    await expectError(await bearer("garbage"), 401, AUTH_ERRORS.verifyFailed);
    await expectError(await call(), 400, AUTH_ERRORS.invalidToken);
    expect(lines.some((l) => l.includes("WARN") && l.includes("no keys"))).toBe(true);
  });

  test("JWK use/key_ops/alg/crv and private members are ignored, as jsonwebtoken does", async () => {
    const privateJwk = await exportJWK(ed1.privateKey);
    const odd: Jwk = {
      ...ed1.publicJwk,
      use: "enc",
      key_ops: ["sign"],
      alg: "ES256",
      crv: "X25519",
      d: privateJwk.d,
    };
    const { bearer } = tinyApp({ keys: [odd] });
    await expectOk(await bearer(await sign({ compute_id: COMPUTE_ID }, ed1.privateKey)));
  });
});

describe("unusable keys are skipped with one warning each", () => {
  test("wrong type at construction, bad material once on first use (concurrent requests)", async () => {
    const badX: Jwk = { kty: "OKP", crv: "Ed25519", x: "AAAA", kid: "short" };
    const noX: Jwk = { kty: "OKP", crv: "Ed25519", kid: "nox" };
    const { bearer, lines } = tinyApp({ keys: [rsa1.publicJwk, badX, noX, ed1.publicJwk] });
    const warnings = () => lines.filter((l) => l.includes("WARN"));
    expect(warnings()).toHaveLength(2);
    expect(warnings()[0]).toContain("key type RSA cannot verify EdDSA tokens");
    expect(warnings()[1]).toContain("nox (#2): missing key material");

    const token = await sign({ compute_id: COMPUTE_ID }, ed1.privateKey);
    const responses = await Promise.all([bearer(token), bearer(token), bearer(token)]);
    for (const res of responses) await expectOk(res);
    await expectOk(await bearer(token));
    expect(warnings()).toHaveLength(3);
    expect(warnings()[2]).toContain("skipping JWK short (#1): cannot import it");
  });

  test("a set with no usable key: 401", async () => {
    const { bearer } = tinyApp({ keys: [{ kty: "OKP", crv: "Ed25519", x: "AAAA" }] });
    const res = await bearer(await sign({ compute_id: COMPUTE_ID }, ed1.privateKey));
    await expectError(res, 401, AUTH_ERRORS.verifyFailed);
  });
});

describe("Authorization header", () => {
  test("missing: 400", async () => {
    const { call } = tinyApp();
    await expectError(await call(), 400, AUTH_ERRORS.invalidToken);
  });

  test("other schemes and malformed values: 400", async () => {
    const { call } = tinyApp();
    for (const value of ["Basic xxx", "Bearer", "Bearerx.y.z", "Token abc", "bearer\tabc", "abc"]) {
      await expectError(await call(value), 400, AUTH_ERRORS.invalidToken);
    }
  });

  test("scheme is case-insensitive", async () => {
    const { call } = tinyApp();
    const token = await sign({ compute_id: COMPUTE_ID }, ed1.privateKey);
    await expectOk(await call(`bearer ${token}`));
    await expectOk(await call(`BEARER ${token}`));
  });

  test("a second space becomes part of the token: 401, not 400", async () => {
    const { call } = tinyApp();
    const token = await sign({ compute_id: COMPUTE_ID }, ed1.privateKey);
    await expectError(await call(`Bearer  ${token}`), 401, AUTH_ERRORS.verifyFailed);
  });

  test("parseBearer as the headers crate", () => {
    expect(parseBearer(undefined)).toBeUndefined();
    expect(parseBearer("Bearer ")).toBe("");
    expect(parseBearer("bEaReR a b")).toBe("a b");
    expect(parseBearer("Bearer \u00e9")).toBeUndefined();
    expect(parseBearer("Bearer a\tb")).toBe("a\tb");
  });
});

describe("INSTANCE_ID (Hadron)", () => {
  test("set: every request passes without checks", async () => {
    for (const instanceId of ["lakebase-instance-id", ""]) {
      const { call, bearer } = tinyApp({ instanceId, keys: [] });
      await expectOk(await call());
      await expectOk(await call("Basic xxx"));
      await expectOk(await bearer(await sign({ compute_id: "other" }, edOther.privateKey)));
    }
  });

  test("unset (undefined): checks apply", async () => {
    const { call } = tinyApp({ instanceId: undefined });
    await expectError(await call(), 400, AUTH_ERRORS.invalidToken);
  });
});

describe("neon_local", () => {
  // control_plane/src/endpoint.rs: kid = base64url(sha256(raw public key)), no padding.
  async function neonLocalJwk(k: KeyPair): Promise<Jwk> {
    const x = String(k.publicJwk.x);
    const digest = new Uint8Array(
      await crypto.subtle.digest("SHA-256", Buffer.from(x, "base64url")),
    );
    return {
      use: "sig",
      key_ops: ["verify"],
      alg: "EdDSA",
      kid: Buffer.from(digest).toString("base64url"),
      kty: "OKP",
      crv: "Ed25519",
      x,
    };
  }

  test("its JWKS and its two token shapes", async () => {
    const jwk = await neonLocalJwk(ed1);
    expect(String(jwk.kid)).toMatch(/^[A-Za-z0-9_-]{43}$/);
    const { bearer } = tinyApp({ keys: [jwk], computeId: "ep-main" });
    const compute = await signRaw(
      '{"compute_id":"ep-main","scope":null,"aud":null}',
      ed1.privateKey,
      "EdDSA",
      "JWT",
    );
    await expectOk(await bearer(compute));
    const admin = await signRaw(
      '{"compute_id":null,"scope":"compute_ctl:admin","aud":["compute"]}',
      ed1.privateKey,
      "EdDSA",
      "JWT",
    );
    await expectOk(await bearer(admin));
    const otherEndpoint = await signRaw(
      '{"compute_id":"ep-other","scope":null,"aud":null}',
      ed1.privateKey,
      "EdDSA",
      "JWT",
    );
    await expectError(await bearer(otherEndpoint), 403, AUTH_ERRORS.invalidComputeId);
  });
});

describe("parseClaims and expired", () => {
  const enc = (s: string) => new TextEncoder().encode(s);
  test("maps absent and null to null; exp is kept for the per-request check", () => {
    expect(parseClaims(enc("{}"))).toEqual({
      claims: { compute_id: null, scope: null, aud: null },
      exp: undefined,
    });
    expect(
      parseClaims(enc('{"compute_id":"a","scope":"compute_ctl:admin","aud":["x"],"exp":100}')),
    ).toEqual({ claims: { compute_id: "a", scope: "compute_ctl:admin", aud: ["x"] }, exp: 100 });
    expect(parseClaims(enc('{"compute_id":1}'))).toBeUndefined();
    expect(parseClaims(enc("[]"))).toBeUndefined();
  });

  test("exp with jsonwebtoken's 60 s leeway; absent never expires", () => {
    expect(expired(100, 160_000)).toBe(false);
    expect(expired(100, 161_000)).toBe(true);
    expect(expired(undefined, Number.MAX_SAFE_INTEGER)).toBe(false);
  });
});

describe("through buildApp", () => {
  function setup() {
    const { log } = memoryLogger();
    const store = new ComputeStateStore({ log, now: () => 1_700_000_000_123_456_789n });
    const routes: Route[] = [
      { method: "GET", path: "/secret", auth: true, handler: () => jsonResponse({ ok: true }) },
      { method: "GET", path: "/open", auth: false, handler: () => jsonResponse({ ok: true }) },
    ];
    const app = buildApp(
      routes,
      { store, log, computeId: COMPUTE_ID, forwardTermination: () => {} },
      {
        authorize: authorize({ jwks: { keys: [ed1.publicJwk] }, computeId: COMPUTE_ID, log }),
      },
    );
    return app;
  }

  test("auth: true routes are guarded; errors keep x-request-id", async () => {
    const app = setup();
    const denied = await app.request("/secret", { headers: { "x-request-id": "r1" } });
    await expectError(denied, 400, AUTH_ERRORS.invalidToken);
    expect(denied.headers.get("x-request-id")).toBe("r1");
    const wrong = await app.request("/secret", {
      headers: { authorization: `Bearer ${await sign({ compute_id: "x" }, ed1.privateKey)}` },
    });
    await expectError(wrong, 403, AUTH_ERRORS.invalidComputeId);
    expect(wrong.headers.get("x-request-id")).toMatch(/^[0-9a-f-]{36}$/);
    const ok = await app.request("/secret", {
      headers: {
        authorization: `Bearer ${await sign({ compute_id: COMPUTE_ID }, ed1.privateKey)}`,
      },
    });
    await expectOk(ok);
  });

  test("auth: false routes stay open, also with a bad header", async () => {
    const app = setup();
    await expectOk(await app.request("/open"));
    await expectOk(await app.request("/open", { headers: { authorization: "Basic xxx" } }));
  });

  test("unknown paths stay 404; a wrong method with a valid token is 405", async () => {
    const app = setup();
    expect((await app.request("/nope")).status).toBe(404);
    // The 405 fallback comes before the JWT check, as upstream's sits after its auth layer.
    expect((await app.request("/secret", { method: "POST" })).status).toBe(405);
    const authorization = `Bearer ${await sign({ compute_id: COMPUTE_ID }, ed1.privateKey)}`;
    const res = await app.request("/secret", { method: "POST", headers: { authorization } });
    expect(res.status).toBe(405);
  });
});
