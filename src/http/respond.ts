// The one place that shapes HTTP answers, as upstream's JsonResponse: JSON
// successes, `{"error": …}` failures with `content-type: application/json`, and
// empty-bodied 404/405. Errors are logged here so handlers just throw.

import { ComputeCtlError, errorMessage } from "../errors.ts";
import type { Logger } from "../log.ts";

const JSON_TYPE = { "content-type": "application/json" } as const;

export function jsonResponse(body: unknown, status = 200): Response {
  return jsonTextResponse(JSON.stringify(body), status);
}

/** A body already encoded (the hot GETs keep theirs per state snapshot). */
export function jsonTextResponse(json: string, status = 200): Response {
  return new Response(json, { status, headers: JSON_TYPE });
}

export function errorResponse(status: number, message: string): Response {
  return jsonTextResponse(JSON.stringify({ error: message }), status);
}

/** Maps anything a handler throws to a status and `{"error": …}`, never a stack trace. */
export function responseForError(err: unknown, log: Logger): Response {
  const status = err instanceof ComputeCtlError ? err.httpStatus : 500;
  const message = errorMessage(err);
  log.error(message);
  return errorResponse(status, message);
}

export function emptyResponse(status: 404 | 405, headers?: Record<string, string>): Response {
  return new Response(null, { status, headers });
}
