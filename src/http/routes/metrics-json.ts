// GET /metrics.json: the ComputeMetrics object, all fields in upstream order.
import { COMPUTE_METRICS_FIELDS, type ComputeMetrics } from "../../state/metrics.ts";
import { jsonGetRoute } from "../route.ts";

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

export const metricsJsonRoute = jsonGetRoute("/metrics.json", (ctx) =>
  metricsJson(ctx.store.state.metrics),
);
