// How many databases the apply works on at once (upstream-api.md §3.6). At
// startup nobody else is connected yet, so it scales with max_connections; on
// /configure the spec's reconfigure_concurrency decides (default 1), because
// user sessions need the connection slots then.

import type { ComputeSpec } from "../spec/schema.ts";

/** max_connections from `cluster.settings`, else the first matching `postgresql_conf` line. */
export function specMaxConnections(spec: ComputeSpec): number | null {
  const setting = spec.cluster.settings?.find((o) => o.name === "max_connections");
  if (setting?.value !== null && setting?.value !== undefined) return parseUnsigned(setting.value);
  for (const line of (spec.cluster.postgresql_conf ?? "").split("\n")) {
    if (!line.includes("max_connections")) continue;
    const eq = line.indexOf("=");
    if (eq < 0 || line.slice(0, eq).trim() !== "max_connections") continue;
    const n = parseUnsigned(line.slice(eq + 1).trim());
    if (n !== null) return n;
  }
  return null;
}

/** Rust's usize parsing: digits with an optional leading `+`. */
function parseUnsigned(text: string): number | null {
  return /^\+?\d+$/.test(text) ? Number(text) : null;
}

/** Upstream max_service_connections at startup. */
export function startupConcurrency(spec: ComputeSpec): number {
  const n = specMaxConnections(spec);
  if (n === null) return 10;
  if (n < 10) return n;
  if (n < 30) return 10;
  if (n < 300) return Math.floor(n / 3);
  return 100;
}

export function reconfigureConcurrency(spec: ComputeSpec): number {
  return spec.reconfigure_concurrency;
}
