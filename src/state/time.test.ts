import { expect, test } from "bun:test";
import { formatRfc3339Offset, formatRfc3339Z, fromMicros, nowNs } from "./time.ts";

const base = 1_700_000_000n * 1_000_000_000n; // 2023-11-14T22:13:20Z

test.each([
  [0n, "2023-11-14T22:13:20Z", "2023-11-14T22:13:20+00:00"],
  [500_000_000n, "2023-11-14T22:13:20.500Z", "2023-11-14T22:13:20.500+00:00"],
  [123_456_000n, "2023-11-14T22:13:20.123456Z", "2023-11-14T22:13:20.123456+00:00"],
  [123_456_789n, "2023-11-14T22:13:20.123456789Z", "2023-11-14T22:13:20.123456789+00:00"],
  [1n, "2023-11-14T22:13:20.000000001Z", "2023-11-14T22:13:20.000000001+00:00"],
  [10_000n, "2023-11-14T22:13:20.000010Z", "2023-11-14T22:13:20.000010+00:00"],
])("AutoSi fraction for +%pns", (frac, z, offset) => {
  expect(formatRfc3339Z(base + frac)).toBe(z);
  expect(formatRfc3339Offset(base + frac)).toBe(offset);
});

test("microsecond timestamps (pg state_change) keep 6 digits at most", () => {
  expect(formatRfc3339Offset(fromMicros(1_700_000_000_250_001n))).toBe(
    "2023-11-14T22:13:20.250001+00:00",
  );
});

test("nowNs is close to Date.now and never goes backwards", () => {
  const a = nowNs();
  const b = nowNs();
  expect(b >= a).toBe(true);
  const diffMs = Number(a / 1_000_000n) - Date.now();
  expect(Math.abs(diffMs)).toBeLessThan(1000);
});
