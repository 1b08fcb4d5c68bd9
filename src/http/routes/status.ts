// GET /status: always 200 with the current ComputeStatusResponse.
import { jsonTextResponse } from "../respond.ts";
import type { Route } from "../route.ts";
import { statusResponseJson } from "../status-response.ts";

export const statusRoute: Route = {
  method: "GET",
  path: "/status",
  auth: true,
  handler: (_c, ctx) => jsonTextResponse(statusResponseJson(ctx.store.state)),
};
