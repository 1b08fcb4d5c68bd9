// x-request-id: kept from the request (the control plane always sends one) or
// generated, and echoed on every response, including 404/405 and auth errors.
import type { MiddlewareHandler } from "hono";

export const X_REQUEST_ID = "x-request-id";

export function requestId(): MiddlewareHandler {
  return async (c, next) => {
    const id = c.req.header(X_REQUEST_ID) || crypto.randomUUID();
    c.set("requestId", id);
    await next();
    c.res.headers.set(X_REQUEST_ID, id);
  };
}
