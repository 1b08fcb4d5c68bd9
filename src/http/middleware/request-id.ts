// x-request-id: kept from the request (the control plane always sends one) or
// generated, and echoed on every response, including 404/405 and auth errors.

export const X_REQUEST_ID = "x-request-id";

/** The request's id: its own header, or a fresh UUID when it has none (or an empty one). */
export function requestIdFor(header: string | undefined): string {
  return header || crypto.randomUUID();
}

/** Puts the id on the response (a fresh Response's headers are mutable). */
export function withRequestId(res: Response, id: string): Response {
  res.headers.set(X_REQUEST_ID, id);
  return res;
}
