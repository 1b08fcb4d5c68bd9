import { describe, expect, test } from "bun:test";
import { md5Password, ScramSha256 } from "./auth.ts";

const text = (b: Uint8Array | null): string | null =>
  b === null ? null : Buffer.from(b).toString();
const bytes = (s: string): Uint8Array => Buffer.from(s);

describe("md5Password", () => {
  test("md5 of (md5 hex of password+user) + salt", () => {
    // Computed independently with Python's hashlib.
    expect(md5Password("postgres", "secret", Uint8Array.of(1, 2, 3, 4))).toBe(
      "md5bb41a296aab6baccb36ff243a562abff",
    );
  });
});

describe("ScramSha256", () => {
  // RFC 7677 section 3: user "user", password "pencil".
  const nonce = "rOprNGfwEbeRWgbNEkqO";
  const serverFirst =
    "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096";

  test("reproduces the RFC 7677 exchange", () => {
    const s = new ScramSha256("pencil", nonce, "user");
    expect(text(s.first())).toBe("n,,n=user,r=rOprNGfwEbeRWgbNEkqO");
    expect(text(s.final(bytes(serverFirst)))).toBe(
      "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=",
    );
    expect(s.verify(bytes("v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="))).toBe(true);
  });

  test("a wrong server signature is refused", () => {
    const s = new ScramSha256("pencil", nonce, "user");
    s.final(bytes(serverFirst));
    expect(s.verify(bytes("v=AAAATRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="))).toBe(false);
    expect(new ScramSha256("pencil", nonce).verify(bytes("v=x"))).toBe(false);
  });

  test.each([
    ["a nonce not extending ours", "r=other,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096"],
    ["our nonce unchanged", `r=${nonce},s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096`],
    ["no salt", `r=${nonce}x,i=4096`],
    ["bad iteration count", `r=${nonce}x,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=0`],
  ])("an invalid server-first-message (%s) gives null", (_name, msg) => {
    expect(new ScramSha256("pencil", nonce, "user").final(bytes(msg))).toBeNull();
  });

  test("Postgres's form: empty user name, random nonce", () => {
    const first = text(new ScramSha256("pw").first()) ?? "";
    expect(first).toMatch(/^n,,n=,r=[A-Za-z0-9+/]{24}$/);
  });
});
