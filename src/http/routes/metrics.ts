// GET /metrics: the Prometheus text exposition, unauthenticated as upstream
// (scrapers carry no JWT). A factory because ApiContext has no registry yet.
import { TEXT_CONTENT_TYPE } from "../../metrics/prometheus.ts";
import type { ComputeCtlMetrics } from "../../metrics/registry.ts";
import type { Route } from "../route.ts";

export function metricsRoute(registry: Pick<ComputeCtlMetrics, "render">): Route {
  return {
    method: "GET",
    path: "/metrics",
    auth: false,
    handler: () =>
      new Response(registry.render(), { headers: { "content-type": TEXT_CONTENT_TYPE } }),
  };
}
