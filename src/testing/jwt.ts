// An Ed25519 key pair shaped like neon_local's: the public JWK goes into
// compute_ctl_config.jwks, tokens are signed the way neon_local signs them
// (no exp). For tests, benchmarks and `compute_ctl dev`.
import { exportJWK, generateKeyPair, SignJWT } from "jose";
import type { Jwk } from "../spec/schema.ts";

export interface TestKeys {
  jwks: { keys: Jwk[] };
  /** A compact JWS over `claims` (e.g. `{compute_id}` or the admin scope). */
  sign(claims: Record<string, unknown>): Promise<string>;
}

export async function makeTestKeys(): Promise<TestKeys> {
  const { publicKey, privateKey } = await generateKeyPair("EdDSA", {
    crv: "Ed25519",
    extractable: true,
  });
  const jwk = await exportJWK(publicKey);
  const key = { ...jwk, use: "sig", key_ops: ["verify"], alg: "EdDSA", kid: "test" } as Jwk;
  return {
    jwks: { keys: [key] },
    sign: (claims) => new SignJWT(claims).setProtectedHeader({ alg: "EdDSA" }).sign(privateKey),
  };
}

export function bearer(token: string): Record<string, string> {
  return { authorization: `Bearer ${token}` };
}
