// GET /status: always 200 with the current ComputeStatusResponse.
import { jsonGetRoute } from "../route.ts";
import { statusResponseJson } from "../status-response.ts";

export const statusRoute = jsonGetRoute("/status", (ctx) => statusResponseJson(ctx.store.state));
