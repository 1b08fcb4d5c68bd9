import { expect, test } from "bun:test";
import { basebackupCommand, basebackupRetries } from "./basebackup.ts";
import { TENANT, TIMELINE } from "./testing.ts";

test.each<
  [
    string,
    { kind: "primary" } | { kind: "replica" } | { kind: "static"; lsn: bigint },
    bigint,
    string,
  ]
>([
  ["primary", { kind: "primary" }, 0x16b5ba8n, `basebackup ${TENANT} ${TIMELINE} 0/16B5BA8 --gzip`],
  ["primary at 0/0", { kind: "primary" }, 0n, `basebackup ${TENANT} ${TIMELINE} --gzip`],
  [
    "static",
    { kind: "static", lsn: 0x1_0000_00a0n },
    0x1_0000_00a0n,
    `basebackup ${TENANT} ${TIMELINE} 1/A0 --gzip --replica`,
  ],
  ["replica", { kind: "replica" }, 0n, `basebackup ${TENANT} ${TIMELINE} --gzip --replica`],
])("command text for %s", (_, mode, lsn, want) => {
  expect(basebackupCommand({ tenant_id: TENANT, timeline_id: TIMELINE, mode } as never, lsn)).toBe(
    want,
  );
});

test("retry count: 10 unless the testing variable says otherwise", () => {
  expect(basebackupRetries({})).toBe(10);
  expect(basebackupRetries({ NEON_COMPUTE_TESTING_BASEBACKUP_RETRIES: "2" })).toBe(2);
  expect(basebackupRetries({ NEON_COMPUTE_TESTING_BASEBACKUP_RETRIES: "x" })).toBe(10);
});
