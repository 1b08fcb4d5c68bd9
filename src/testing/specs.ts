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

/** compute_ctl's argv for a compute on loopback, as tests and benchmarks start it. */
export function computeArgv(o: {
  pgdata: string;
  pgPort: number;
  computeId: string;
  pgbin: string;
  config: string;
  externalPort: number;
  internalPort: number;
}): string[] {
  return [
    "-D",
    o.pgdata,
    "-C",
    `postgresql://cloud_admin@127.0.0.1:${o.pgPort}/postgres`,
    "-i",
    o.computeId,
    "-b",
    o.pgbin,
    "-c",
    o.config,
    "--external-http-port",
    String(o.externalPort),
    "--internal-http-port",
    String(o.internalPort),
  ];
}
