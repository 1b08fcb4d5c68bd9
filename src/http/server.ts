// The external (3080) and internal (3081) servers: Hono apps on Bun.serve,
// assembled from route tables. Both listen on `::` (dual stack, as upstream).

import { type Context, Hono } from "hono";
import { ComputeCtlError, errorMessage } from "../errors.ts";
import { infoLine, type Logger } from "../log.ts";
import type { Authorizer } from "./middleware/authorize.ts";
import { requestIdFor, withRequestId, X_REQUEST_ID } from "./middleware/request-id.ts";
import { emptyResponse, jsonTextResponse, responseForError } from "./respond.ts";
import type { ApiContext, HonoEnv, Route } from "./route.ts";
import { configureRoute } from "./routes/configure.ts";
import { metricsRoute } from "./routes/metrics.ts";
import { metricsJsonRoute } from "./routes/metrics-json.ts";
import { refreshConfigurationRoute } from "./routes/refresh-configuration.ts";
import { statusRoute } from "./routes/status.ts";
import { terminateRoute } from "./routes/terminate.ts";

export const EXTERNAL_ROUTES: readonly Route[] = [
  statusRoute,
  metricsJsonRoute,
  configureRoute,
  terminateRoute,
];

/** The external server's routes, with the ones that need the process's registry. */
export function externalRoutes(metricsRegistry: { render(): string }): Route[] {
  return [metricsRoute(metricsRegistry), ...EXTERNAL_ROUTES];
}
export const INTERNAL_ROUTES: readonly Route[] = [refreshConfigurationRoute];

export interface AppOptions {
  /** Applied to routes with `auth: true` (the external server's JWT check). */
  authorize?: Authorizer;
}

function pathMatches(pattern: string, path: string): boolean {
  return pattern.endsWith("/*") ? path.startsWith(pattern.slice(0, -1)) : pattern === path;
}

/** Requests to a route that `listen` answers before Hono (see `directRoutes`). */
export type DirectHandler = (req: Request) => Response | Promise<Response>;

/** A Hono app plus the GET routes Bun.serve answers from its own route table. */
export type ApiApp = Hono<HonoEnv> & { readonly direct: Readonly<Record<string, DirectHandler>> };

/**
 * Upstream's layers (request id, access log, request id on the response, then
 * the JWT check on authenticated routes) run inline in each route's one Hono
 * handler rather than as `app.use` middleware: a chain of async middleware
 * cost more CPU per request than the rest of a /status answer, and a token
 * seen before is judged synchronously.
 */
export function buildApp(routes: readonly Route[], ctx: ApiContext, opts: AppOptions = {}): ApiApp {
  const app = new Hono<HonoEnv>();
  const begin = (c: Context<HonoEnv>): string => {
    const id = requestIdFor(c.req.header(X_REQUEST_ID));
    c.set("requestId", id);
    infoLine(ctx.log, `${c.req.method} ${c.req.path} request_id=${id}`);
    return id;
  };

  for (const r of routes) {
    const check = r.auth ? opts.authorize : undefined;
    app.on(r.method, r.path, (c): Response | Promise<Response> => {
      const id = begin(c);
      return guarded(check, c.req.header("authorization"), id, () => r.handler(c, ctx));
    });
  }
  // Unknown path: 404, empty body. Known path, other method: 405, empty body
  // (without the JWT check, as upstream's fallback after its auth layer).
  app.notFound((c) => {
    const id = begin(c);
    const allowed = routes.filter((r) => pathMatches(r.path, c.req.path)).map((r) => r.method);
    if (allowed.length > 0) {
      return withRequestId(emptyResponse(405, { allow: [...new Set(allowed)].join(", ") }), id);
    }
    return withRequestId(emptyResponse(404), id);
  });
  app.onError((err, c) =>
    withRequestId(
      responseForError(err, ctx.log),
      c.get("requestId") ?? requestIdFor(c.req.header(X_REQUEST_ID)),
    ),
  );
  return Object.assign(app, { direct: directRoutes(routes, ctx, opts) });
}

/** The JWT check (if any), then `run`; the request id goes on whichever answer it is. */
function guarded(
  check: Authorizer | undefined,
  authorization: string | undefined,
  id: string,
  run: () => Response | Promise<Response>,
): Response | Promise<Response> {
  const denied = check?.(authorization);
  if (denied === undefined) return answer(run(), id);
  if (denied instanceof Response) return withRequestId(denied, id);
  return denied.then((d) => answer(d ?? run(), id));
}

function answer(res: Response | Promise<Response>, id: string): Response | Promise<Response> {
  return res instanceof Promise ? res.then((r) => withRequestId(r, id)) : withRequestId(res, id);
}

/**
 * The routes with a `json` body (GET /status, GET /metrics.json: what a control
 * plane polls), answered from Bun.serve's route table without building Hono's
 * context: the same layers, the same bytes, ~3 µs less per request. Bun matches
 * the path exactly and sends HEAD here too (dropping the body); other methods
 * and paths go to Hono as before.
 */
function directRoutes(
  routes: readonly Route[],
  ctx: ApiContext,
  opts: AppOptions,
): Record<string, DirectHandler> {
  const out: Record<string, DirectHandler> = {};
  for (const r of routes) {
    const json = r.json;
    if (r.method !== "GET" || json === undefined) continue;
    const check = r.auth ? opts.authorize : undefined;
    const failed = (err: unknown, id: string) => withRequestId(responseForError(err, ctx.log), id);
    out[r.path] = (req) => {
      const id = requestIdFor(req.headers.get(X_REQUEST_ID) ?? undefined);
      infoLine(ctx.log, `${req.method} ${r.path} request_id=${id}`);
      try {
        const res = guarded(check, req.headers.get("authorization") ?? undefined, id, () =>
          jsonTextResponse(json(ctx)),
        );
        return res instanceof Promise ? res.catch((e) => failed(e, id)) : res;
      } catch (e) {
        return failed(e, id);
      }
    };
  }
  return out;
}

export interface Listener {
  readonly port: number;
  /** The addresses actually bound. */
  readonly hostnames: readonly string[];
  stop(): Promise<void>;
}

/** Every interface, dual stack (upstream binds both servers like this). */
export const ALL_INTERFACES = ["::"] as const;
/** Loopback only, IPv4 and IPv6 (our default for the unauthenticated internal server). */
export const LOOPBACK = ["127.0.0.1", "::1"] as const;

/**
 * Listens on `port` at each of `hostnames` (the first bind fixes the port when
 * it is 0). An IPv6 address the host cannot bind (no IPv6 in some containers)
 * is skipped with a warning, `::` then becoming 0.0.0.0; any other failure
 * (port in use, ...) is an error naming the server and the port.
 */
export function listen(
  app: ApiApp,
  port: number,
  name: string,
  log: Logger,
  hostnames: readonly string[] = ALL_INTERFACES,
): Listener {
  const servers: ReturnType<typeof Bun.serve>[] = [];
  let bound = port;
  const serve = (hostname: string) => {
    const server = Bun.serve({
      port: bound,
      hostname,
      routes: Object.fromEntries(Object.entries(app.direct).map(([p, GET]) => [p, { GET }])),
      fetch: app.fetch,
      development: false,
      // /configure and /terminate block until the compute gets there (upstream
      // has no server-side timeout); Bun's default would cut them off at 10 s.
      idleTimeout: 0,
    });
    bound = server.port ?? bound;
    servers.push(server);
  };
  try {
    for (const host of hostnames) {
      try {
        serve(host);
      } catch (e) {
        if (!host.includes(":") || !noIpv6(e)) throw e;
        log.warn(
          `${name} http server: no IPv6 here (${errorMessage(e)}); not listening on ${host}`,
        );
        if (host === "::") serve("0.0.0.0");
      }
    }
  } catch (e) {
    for (const s of servers) s.stop(true);
    throw new ComputeCtlError(
      `${name} http server: cannot listen on port ${port}: ${errorMessage(e)}`,
      {
        cause: e,
      },
    );
  }
  const names = servers.map((s) => s.hostname ?? "?");
  log.info(`${name} http server listening on port ${bound} at ${names.join(", ")}`);
  return {
    port: bound,
    hostnames: names,
    stop: async () => {
      await Promise.all(servers.map((s) => s.stop(true)));
    },
  };
}

function noIpv6(e: unknown): boolean {
  const code = typeof e === "object" && e !== null && "code" in e ? String(e.code) : "";
  return (
    code === "EAFNOSUPPORT" || code === "EADDRNOTAVAIL" || /address family/i.test(errorMessage(e))
  );
}
