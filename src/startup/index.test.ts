import { expect, test } from "bun:test";
import { unsupportedSpecFeatures } from "./index.ts";
import { testSpec } from "./testing.ts";

test("a plain spec has nothing unsupported", () => {
  expect(unsupportedSpecFeatures(testSpec().spec)).toEqual({ warnings: [], fatal: null });
});

test("unsupported features are named; compliance audit levels refuse to start", () => {
  const spec = testSpec({
    swap_size_bytes: 1024,
    pgbouncer_settings: { pool_mode: "session" },
    audit_log_level: "Hipaa",
  }).spec;
  const r = unsupportedSpecFeatures(spec);
  // Swap resize is carried out (with --resize-swap-on-bind), so it is not named.
  expect(r.warnings).toEqual([
    "spec field pgbouncer_settings (pgbouncer tuning) is not supported by this build yet; ignored",
  ]);
  expect(r.fatal).toBe(
    "audit_log_level Hipaa needs compliance audit logging, which this compute_ctl does not implement yet",
  );
  expect(unsupportedSpecFeatures(testSpec({ audit_log_level: "Base" }).spec).fatal).toBeNull();
});
