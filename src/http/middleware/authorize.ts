// JWT check for the external server's authenticated routes, as upstream's
// `Authorize` middleware (jsonwebtoken 9): Bearer header, signature against each
// key of `compute_ctl_config.jwks`, optional `exp` with 60 s leeway, then the
// admin-scope / compute_id decision. jose is only used for key import and the
// JWS signature; the claims checks are ours because jose's `jwtVerify` always
// checks `nbf` and `iat` and types `exp` differently from jsonwebtoken.

import type { JWK } from "jose";
import type { compactVerify } from "jose/jws/compact/verify";
import type { importJWK } from "jose/key/import";
import type { Logger } from "../../log.ts";
import type { Jwk } from "../../spec/index.ts";
import { errorResponse } from "../respond.ts";

export const COMPUTE_AUDIENCE = "compute";
export const ADMIN_SCOPE = "compute_ctl:admin";
/** jsonwebtoken's default leeway, which upstream keeps. */
const EXP_LEEWAY_SECONDS = 60;

export const AUTH_ERRORS = {
  invalidToken: "invalid authorization token",
  verifyFailed: "failed to verify authorization token",
  missingAudience: "missing audience in authorization token claims",
  invalidAudience: "invalid audience in authorization token claims",
  missingComputeId: "missing compute_id in authorization token claims",
  invalidComputeId: "invalid compute ID in authorization token claims",
} as const;

export type JwtAlgorithm = "EdDSA" | "RS256";

/** Upstream's `ComputeClaims`; `null` stands for absent or JSON null. */
export interface ComputeClaims {
  compute_id: string | null;
  scope: typeof ADMIN_SCOPE | null;
  aud: string[] | null;
}

export interface AuthorizeOptions {
  jwks: { keys: readonly Jwk[] };
  /** The `--compute-id` argument. */
  computeId: string;
  /** `INSTANCE_ID` env var as read at startup: when set (even empty), no checks. */
  instanceId?: string | undefined;
  log?: Logger;
  /** Wall clock in ms, for `exp`; tests pin it. */
  now?: () => number;
}

/** EdDSA, or RS256 as soon as any key says `alg: RS256` (upstream's Hadron switch). */
export function acceptedAlgorithm(keys: readonly Jwk[]): JwtAlgorithm {
  return keys.some((k) => k.alg === "RS256") ? "RS256" : "EdDSA";
}

/**
 * `Authorization: Bearer <token>` as the `headers` crate parses it: scheme
 * case-insensitive, exactly one space, visible ASCII only. The rest, even
 * empty or with spaces, is the token.
 */
export function parseBearer(header: string | undefined): string | undefined {
  if (header === undefined || header.length <= 6 || header[6] !== " ") return undefined;
  if (header.slice(0, 6).toLowerCase() !== "bearer") return undefined;
  if (!VISIBLE_ASCII.test(header)) return undefined;
  return header.slice(7);
}
const VISIBLE_ASCII = /^[\t\x20-\x7e]*$/;

/**
 * jsonwebtoken's `exp`: a non-negative finite number, rounded; anything else
 * (string, negative, huge) is ignored rather than rejected.
 */
function numericDate(value: unknown): number | undefined {
  if (typeof value !== "number" || !Number.isFinite(value) || value < 0) return undefined;
  if (value >= 2 ** 64) return undefined;
  return Math.round(value);
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

/** A verified token's claims, and its `exp` (checked on each use). */
export interface TokenClaims {
  claims: ComputeClaims;
  exp: number | undefined;
}

/**
 * Decodes a verified JWS payload as upstream does (serde into `ComputeClaims`);
 * `undefined` means "failed to verify". `exp` is judged separately, per request.
 */
export function parseClaims(payload: Uint8Array): TokenClaims | undefined {
  let json: unknown;
  try {
    json = JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(payload));
  } catch {
    return undefined;
  }
  if (!isRecord(json)) return undefined;

  const { compute_id, scope, aud } = json;
  if (compute_id != null && typeof compute_id !== "string") return undefined;
  if (scope != null && scope !== ADMIN_SCOPE) return undefined;
  if (aud != null && !(Array.isArray(aud) && aud.every((a) => typeof a === "string"))) {
    return undefined;
  }
  return {
    claims: { compute_id: compute_id ?? null, scope: scope ?? null, aud: aud ?? null },
    exp: numericDate(json.exp),
  };
}

/** jsonwebtoken's `exp` check with its default leeway. */
export function expired(exp: number | undefined, nowMs: number): boolean {
  return exp !== undefined && exp < Math.floor(nowMs / 1000) - EXP_LEEWAY_SECONDS;
}

interface KeyCandidate {
  label: string;
  /** Public members only: jsonwebtoken ignores `use`, `key_ops`, `alg` and `crv`. */
  jwk: JWK;
}

function keyLabel(key: Jwk, index: number): string {
  return typeof key.kid === "string" ? `${key.kid} (#${index})` : `#${index}`;
}

/**
 * The keys upstream would turn into decoding keys for `alg`, reduced to what
 * jsonwebtoken reads. OKP keys are taken as Ed25519 whatever their `crv`, as
 * `DecodingKey::from_jwk` does; a wrong-size `x` then fails at import.
 */
function candidateKeys(keys: readonly Jwk[], alg: JwtAlgorithm, log?: Logger): KeyCandidate[] {
  const out: KeyCandidate[] = [];
  keys.forEach((key, i) => {
    const label = keyLabel(key, i);
    const wanted = alg === "EdDSA" ? "OKP" : "RSA";
    if (key.kty !== wanted) {
      log?.warn(`skipping JWK ${label}: key type ${key.kty} cannot verify ${alg} tokens`);
      return;
    }
    if (key.kty === "OKP" && typeof key.x === "string") {
      out.push({ label, jwk: { kty: "OKP", crv: "Ed25519", x: key.x } });
    } else if (key.kty === "RSA" && typeof key.n === "string" && typeof key.e === "string") {
      out.push({ label, jwk: { kty: "RSA", n: key.n, e: key.e } });
    } else {
      log?.warn(`skipping JWK ${label}: missing key material`);
    }
  });
  return out;
}

interface Jose {
  importJWK: typeof importJWK;
  compactVerify: typeof compactVerify;
}

let josePromise: Promise<Jose> | undefined;

/** The two jose entry points we use, loaded on first need (~10 ms of evaluation under plain bun). */
function loadJose(): Promise<Jose> {
  josePromise ??= Promise.all([import("jose/key/import"), import("jose/jws/compact/verify")]).then(
    ([imp, verify]) => ({ importJWK: imp.importJWK, compactVerify: verify.compactVerify }),
  );
  return josePromise;
}

async function importKeys(
  candidates: readonly KeyCandidate[],
  alg: JwtAlgorithm,
  log?: Logger,
): Promise<CryptoKey[]> {
  const { importJWK } = await loadJose();
  const keys: CryptoKey[] = [];
  for (const c of candidates) {
    try {
      const key = await importJWK(c.jwk, alg);
      if (key instanceof Uint8Array) throw new Error("not an asymmetric key");
      keys.push(key);
    } catch (e) {
      log?.warn(`skipping JWK ${c.label}: cannot import it (${String(e)})`);
    }
  }
  return keys;
}

/**
 * The payload of `token` if one of `keys` verifies its signature, else null.
 * Every key that verifies yields the same payload (it is the token's), so
 * upstream's "first key whose signature and claims pass" is this plus one
 * claims check.
 */
async function verifiedPayload(
  token: string,
  keys: readonly CryptoKey[],
  alg: JwtAlgorithm,
): Promise<Uint8Array | null> {
  if (keys.length === 0) return null;
  const { compactVerify } = await loadJose();
  for (const key of keys) {
    try {
      return (await compactVerify(token, key, { algorithms: [alg] })).payload;
    } catch {
      // Not this key.
    }
  }
  return null;
}

/** Tokens remembered (verified or refused); the oldest goes first. */
export const VERIFIED_TOKEN_CACHE_SIZE = 256;

/**
 * Signature checks by `Authorization` header. The keys are fixed for the life
 * of the process, so a signature verified once stays verified; `exp` and the
 * claims are still judged on every request. The control plane reuses one
 * token, so this turns ~100–200 µs of Ed25519 per request into a map lookup,
 * answered synchronously.
 */
export class SignatureCache<T> {
  private readonly entries = new Map<string, T>();

  constructor(private readonly limit = VERIFIED_TOKEN_CACHE_SIZE) {}

  get size(): number {
    return this.entries.size;
  }

  /** The remembered result for `key`, if any. */
  get(key: string): T | undefined {
    return this.entries.get(key);
  }

  /** The remembered result, or a promise of `verify()`'s, remembered once it settles. */
  payload(key: string, verify: () => Promise<T>): T | Promise<T> {
    const hit = this.entries.get(key);
    if (hit !== undefined) return hit;
    return verify().then((result) => {
      if (this.entries.size >= this.limit) {
        const oldest = this.entries.keys().next().value;
        if (oldest !== undefined) this.entries.delete(oldest);
      }
      this.entries.set(key, result);
      return result;
    });
  }
}

/**
 * Upstream's decision for one request: `undefined` lets it through, else the
 * error response. Synchronous for a token seen before (the hot path of a
 * control plane polling /status), a promise while a signature is checked.
 */
export type Authorizer = (
  authorization: string | undefined,
) => Response | undefined | Promise<Response | undefined>;

export function authorize(opts: AuthorizeOptions): Authorizer {
  const { computeId, log } = opts;
  const now = opts.now ?? Date.now;
  const bypass = opts.instanceId !== undefined;
  const alg = acceptedAlgorithm(opts.jwks.keys);
  const candidates = bypass ? [] : candidateKeys(opts.jwks.keys, alg, log);
  if (!bypass && opts.jwks.keys.length === 0) {
    log?.warn("compute_ctl_config.jwks has no keys: every authorized request will get 401");
  }
  // Imported once, off the start-up path: right after the servers listen (the
  // next timer tick), or by the first request if it comes sooner.
  let keys: Promise<CryptoKey[]> | undefined;
  if (!bypass) {
    setTimeout(() => {
      keys ??= importKeys(candidates, alg, log);
      keys.catch(() => {});
    }, 0).unref();
  }

  const signatures = new SignatureCache<TokenClaims | null>();

  const deny = (status: 400 | 401 | 403, message: string) => {
    log?.error(message);
    return errorResponse(status, message);
  };

  const judge = (token: TokenClaims | null): Response | undefined => {
    if (token === null || expired(token.exp, now())) return deny(401, AUTH_ERRORS.verifyFailed);
    const { claims } = token;
    if (claims.scope === ADMIN_SCOPE) {
      if (claims.aud === null) return deny(401, AUTH_ERRORS.missingAudience);
      if (!claims.aud.includes(COMPUTE_AUDIENCE)) return deny(401, AUTH_ERRORS.invalidAudience);
    } else {
      if (claims.compute_id === null) return deny(403, AUTH_ERRORS.missingComputeId);
      if (claims.compute_id !== computeId) return deny(403, AUTH_ERRORS.invalidComputeId);
    }
    return undefined;
  };

  const verify = async (token: string): Promise<TokenClaims | null> => {
    keys ??= importKeys(candidates, alg, log);
    const payload = await verifiedPayload(token, await keys, alg);
    return (payload && parseClaims(payload)) ?? null;
  };

  return (authorization) => {
    if (bypass) return undefined;
    // Keyed by the whole header: a header seen before parsed, and will parse, the same.
    const seen = authorization === undefined ? undefined : signatures.get(authorization);
    if (seen !== undefined) return judge(seen);
    const token = parseBearer(authorization);
    if (authorization === undefined || token === undefined) {
      return deny(400, AUTH_ERRORS.invalidToken);
    }
    const verified = signatures.payload(authorization, () => verify(token));
    return verified instanceof Promise ? verified.then(judge) : judge(verified);
  };
}
