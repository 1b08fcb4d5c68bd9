// ComputeStatusResponse: the body of /status (and of /configure). Key order,
// timestamp formats and explicit nulls are upstream's exactly.

import type { ComputeStatus } from "../state/status.ts";
import type { ComputeState } from "../state/store.ts";
import { formatRfc3339Offset, formatRfc3339Z } from "../state/time.ts";

export interface ComputeStatusResponse {
  start_time: string;
  tenant: string | null;
  timeline: string | null;
  status: ComputeStatus;
  last_active: string | null;
  error: string | null;
}

export function computeStatusResponse(s: ComputeState): ComputeStatusResponse {
  return {
    start_time: formatRfc3339Z(s.startTime),
    tenant: s.pspec?.tenant_id ?? null,
    timeline: s.pspec?.timeline_id ?? null,
    status: s.status,
    last_active: s.lastActive === null ? null : formatRfc3339Offset(s.lastActive),
    error: s.error,
  };
}

let lastState: ComputeState | undefined;
let lastBody = "";

/**
 * The /status body as JSON text. Snapshots are immutable, so the text of the
 * latest one is kept: a control plane polls /status far more often than the
 * state changes.
 */
export function statusResponseJson(s: ComputeState): string {
  if (s !== lastState) {
    lastBody = JSON.stringify(computeStatusResponse(s));
    lastState = s;
  }
  return lastBody;
}
