// A route is one file under routes/: its method, path, whether the external
// server's JWT check applies, and a handler that gets the compute context.

import type { Context } from "hono";
import type { Logger } from "../log.ts";
import type { ComputeStateStore } from "../state/store.ts";
import { jsonTextResponse } from "./respond.ts";

/** What handlers may reach: the state store and process-wide parameters. */
export interface ApiContext {
  store: ComputeStateStore;
  log: Logger;
  computeId: string;
  /** Upstream forward_termination_signal: SIGTERM to sync-safekeepers, SIGINT to postgres. */
  forwardTermination: () => void;
  /** Upstream's pg_cctl_pagestream_request_errors_total, counted by /refresh_configuration. */
  reportPagestreamError?: () => void;
}

export type HttpMethod = "GET" | "POST" | "DELETE";

export interface Route {
  method: HttpMethod;
  path: string;
  /** Behind the JWT check on the external server (everything but /metrics). */
  auth: boolean;
  handler: (c: Context, ctx: ApiContext) => Response | Promise<Response>;
  /**
   * A GET whose answer is this JSON text, from the state alone: served from
   * Bun.serve's own route table, before Hono (see server.ts `directRoutes`).
   */
  json?: (ctx: ApiContext) => string;
}

/** An authenticated GET answering `json(ctx)` with 200, through Hono or directly. */
export function jsonGetRoute(path: string, json: (ctx: ApiContext) => string): Route {
  return {
    method: "GET",
    path,
    auth: true,
    json,
    handler: (_c, ctx) => jsonTextResponse(json(ctx)),
  };
}

export type HonoEnv = { Variables: { requestId: string } };
