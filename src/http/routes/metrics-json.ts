// GET /metrics.json: the ComputeMetrics object, all fields in upstream order.
import { COMPUTE_METRICS_FIELDS } from "../../state/metrics.ts";
import { jsonResponse } from "../respond.ts";
import type { Route } from "../route.ts";

export const metricsJsonRoute: Route = {
  method: "GET",
  path: "/metrics.json",
  auth: true,
  handler: (_c, ctx) => {
    const m = ctx.store.state.metrics;
    const body: Record<string, number> = {};
    for (const f of COMPUTE_METRICS_FIELDS) body[f] = m[f];
    return jsonResponse(body);
  },
};
