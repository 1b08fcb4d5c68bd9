// Password answers for the client's authentication exchange: md5 and SCRAM-SHA-256
// (RFC 5802 / RFC 7677, no channel binding). Pure functions of their inputs, so the
// SCRAM steps are checked against the RFC's published example.

import { createHash, createHmac, pbkdf2Sync, randomBytes, timingSafeEqual } from "node:crypto";

const md5hex = (data: string | Uint8Array): string => createHash("md5").update(data).digest("hex");
const hmac = (key: Uint8Array, data: string): Buffer =>
  createHmac("sha256", key).update(data).digest();

/** The PasswordMessage text for AuthenticationMD5Password: `md5` + md5(md5(password+user) + salt). */
export function md5Password(user: string, password: string, salt: Uint8Array): string {
  const inner = md5hex(password + user);
  return `md5${md5hex(Buffer.concat([Buffer.from(inner), salt]))}`;
}

/**
 * One SCRAM-SHA-256 exchange. Postgres takes the user from the startup message, so the
 * SCRAM user name is empty by default. Passwords are used as given (no SASLprep), which
 * matches the server for ASCII passwords.
 */
export class ScramSha256 {
  private readonly clientFirstBare: string;
  private serverSignature = "";

  constructor(
    private readonly password: string,
    private readonly nonce = randomBytes(18).toString("base64"),
    user = "",
  ) {
    this.clientFirstBare = `n=${user},r=${nonce}`;
  }

  /** client-first-message, sent in SASLInitialResponse. */
  first(): Uint8Array {
    return Buffer.from(`n,,${this.clientFirstBare}`);
  }

  /** client-final-message for the server-first-message; null if the latter is invalid. */
  final(serverFirstBytes: Uint8Array): Uint8Array | null {
    const serverFirst = Buffer.from(serverFirstBytes).toString();
    const attrs = new Map(serverFirst.split(",").map((kv) => [kv.slice(0, 1), kv.slice(2)]));
    const nonce = attrs.get("r") ?? "";
    const salt = Buffer.from(attrs.get("s") ?? "", "base64");
    const iterations = Number(attrs.get("i"));
    if (!nonce.startsWith(this.nonce) || nonce === this.nonce || salt.length === 0) return null;
    if (!Number.isInteger(iterations) || iterations < 1) return null;
    const salted = pbkdf2Sync(this.password, salt, iterations, 32, "sha256");
    const clientKey = hmac(salted, "Client Key");
    const storedKey = createHash("sha256").update(clientKey).digest();
    const withoutProof = `c=biws,r=${nonce}`;
    const authMessage = `${this.clientFirstBare},${serverFirst},${withoutProof}`;
    const signature = hmac(storedKey, authMessage);
    const proof = clientKey.map((b, i) => b ^ (signature[i] ?? 0));
    this.serverSignature = hmac(hmac(salted, "Server Key"), authMessage).toString("base64");
    return Buffer.from(`${withoutProof},p=${Buffer.from(proof).toString("base64")}`);
  }

  /** Whether the server-final-message proves the server knows the password too. */
  verify(serverFinal: Uint8Array): boolean {
    if (this.serverSignature === "") return false;
    const got = Buffer.from(Buffer.from(serverFinal).toString().replace(/^v=/, ""));
    const want = Buffer.from(this.serverSignature);
    return got.length === want.length && timingSafeEqual(got, want);
  }
}
