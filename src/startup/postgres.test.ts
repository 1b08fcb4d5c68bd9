import { expect, test } from "bun:test";
import { postmasterPidSaysReady } from "./postgres.ts";

test.each([
  ["1234\n/pgdata\n1700000000\n5432\n/tmp\n127.0.0.1\n  5432001  0\nready   \n", true],
  ["1234\n/pgdata\n1700000000\n5432\n/tmp\n127.0.0.1\n  5432001  0\nstarting\n", false],
  ["1234\n/pgdata\n1700000000\n5432\n/tmp\n127.0.0.1\n  5432001  0\nstandby \n", false],
  ["", false],
  ["ready", true],
])("postmaster.pid %#", (text, want) => {
  expect(postmasterPidSaysReady(text)).toBe(want);
});
