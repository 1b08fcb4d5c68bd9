import { expect, test } from "bun:test";
import { FakeRunner } from "../process/fake-runner.ts";
import { getPgInstall, getPgVersion, parsePgVersionString } from "./pg-version.ts";

test.each([
  ["PostgreSQL 15.18 (Debian 15.18-0+deb12u1)", 15],
  ["PostgreSQL 14.1", 14],
  ["PostgreSQL 17devel", 17],
])("%s → %d", (text, want) => {
  expect(parsePgVersionString(text)).toBe(want);
});

test.each([
  ["PostgreSQL 13.4", "Unsupported postgres version 13"],
  ["PostgreSQL 18.0", "Unsupported postgres version 18"],
  // As upstream's regex: the major backtracks to "1" so something follows it.
  ["PostgreSQL 14", "Unsupported postgres version 1 "],
  ["garbage", "cannot parse"],
])("%s is refused", (text, msg) => {
  expect(() => parsePgVersionString(text)).toThrow(msg);
});

test("runs pg_config next to --pgbin", async () => {
  const runner = new FakeRunner().on(
    "/usr/lib/postgresql/15/bin//pg_config --version --pkglibdir",
    {
      stdout: ["PostgreSQL 15.18", "/usr/lib/postgresql/15/lib"],
    },
  );
  expect(await getPgVersion(runner, "/usr/lib/postgresql/15/bin/postgres")).toBe(15);
  expect(await getPgInstall(runner, "/usr/lib/postgresql/15/bin/postgres")).toEqual({
    major: 15,
    pkglibdir: "/usr/lib/postgresql/15/lib",
  });
});

test("a missing pg_config is a clear error", async () => {
  await expect(getPgVersion(new FakeRunner(), "/nowhere/postgres")).rejects.toThrow(
    /pg_config error: .*pg_config/,
  );
});
