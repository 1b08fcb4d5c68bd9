// GET /metrics.json: the ComputeMetrics object, all fields in upstream order.
import { COMPUTE_METRICS_FIELDS, type ComputeMetrics } from "../../state/metrics.ts";
import { jsonTextResponse } from "../respond.ts";
import type { Route } from "../route.ts";

let lastMetrics: Readonly<ComputeMetrics> | undefined;
let lastBody = "";

/** The body as JSON text, kept while the (immutable) metrics object is the same. */
export function metricsJson(m: Readonly<ComputeMetrics>): string {
  if (m !== lastMetrics) {
    const body: Record<string, number> = {};
    for (const f of COMPUTE_METRICS_FIELDS) body[f] = m[f];
    lastBody = JSON.stringify(body);
    lastMetrics = m;
  }
  return lastBody;
}

export const metricsJsonRoute: Route = {
  method: "GET",
  path: "/metrics.json",
  auth: true,
  handler: (_c, ctx) => jsonTextResponse(metricsJson(ctx.store.state.metrics)),
};
