// ComputeMetrics: the /metrics.json object. Field order is upstream's
// serialisation order; all are unsigned integers that default to 0.

export const COMPUTE_METRICS_FIELDS = [
  "wait_for_spec_ms",
  "sync_sk_check_ms",
  "sync_safekeepers_ms",
  "pageserver_connect_micros",
  "basebackup_ms",
  "basebackup_bytes",
  "start_postgres_ms",
  "config_ms",
  "total_startup_ms",
  "load_ext_ms",
  "num_ext_downloaded",
  "largest_ext_size",
  "total_ext_download_size",
] as const;

export type ComputeMetricsField = (typeof COMPUTE_METRICS_FIELDS)[number];
export type ComputeMetrics = Record<ComputeMetricsField, number>;

export function emptyMetrics(): ComputeMetrics {
  const m = {} as ComputeMetrics;
  for (const f of COMPUTE_METRICS_FIELDS) m[f] = 0;
  return m;
}
