// GET /status: always 200 with the current ComputeStatusResponse.
import { jsonResponse } from "../respond.ts";
import type { Route } from "../route.ts";
import { computeStatusResponse } from "../status-response.ts";

export const statusRoute: Route = {
  method: "GET",
  path: "/status",
  auth: true,
  handler: (_c, ctx) => jsonResponse(computeStatusResponse(ctx.store.state)),
};
