// Spec JSON shared by tests and benchmarks: the smallest valid primary spec,
// and the postgresql.conf lines that keep a test postgres on loopback.

export const TEST_TENANT = "a".repeat(32);
export const TEST_TIMELINE = "b".repeat(32);

/** A valid primary ComputeSpec (wire JSON); storage points at nothing unless overridden. */
export function minimalSpecJson(extra: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    format_version: 1.0,
    suspend_timeout_seconds: -1,
    cluster: { roles: [], databases: [] },
    tenant_id: TEST_TENANT,
    timeline_id: TEST_TIMELINE,
    pageserver_connstring: "postgres://no_user@127.0.0.1:1",
    safekeeper_connstrings: ["127.0.0.1:1"],
    ...extra,
  };
}

/** postgresql.conf lines for a postgres that listens on 127.0.0.1:`port` only, with no socket file. */
export function loopbackPostgresConf(port: number, extra = ""): string {
  return `listen_addresses='127.0.0.1'\nport=${port}\nunix_socket_directories=''\nfsync=off\nshared_buffers=16MB\n${extra}`;
}
