// Upstream shapes the process-level tests check against, written out here
// rather than imported from src/, so a test cannot agree with a wrong source.

/** `ComputeMetrics` in upstream's serialisation order (upstream-api.md §1.7). */
export const UPSTREAM_METRICS_KEYS = [
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
];
