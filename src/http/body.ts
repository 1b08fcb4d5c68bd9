// Request bodies, as upstream's JSON extractor (axum 0.8) rejects them: the
// content type first (415), then the size (413), then the JSON syntax (400).
// The shape is the caller's schema's job; its ConfigError is a 400 that names
// the JSON path (upstream answers 422 there).

import type { Context } from "hono";
import { HttpError } from "../errors.ts";
import { findJsonSyntaxError } from "../spec/json-syntax.ts";

/** axum's DefaultBodyLimit. */
export const MAX_BODY_BYTES = 2 * 1024 * 1024;

export const BODY_ERRORS = {
  contentType: "expected request with `content-type: application/json`",
  tooLarge: "failed to buffer the request body: length limit exceeded",
  syntaxPrefix: "failed to parse the request body as json: ",
} as const;

/** `application/json` or `application/<anything>+json`, parameters allowed, any case. */
export function isJsonContentType(header: string | undefined): boolean {
  if (header === undefined) return false;
  const essence = (header.split(";", 1)[0] ?? "").trim().toLowerCase();
  const m = /^application\/([^\s/]+)$/.exec(essence);
  const subtype = m?.[1];
  return subtype !== undefined && (subtype === "json" || subtype.endsWith("+json"));
}

async function readBounded(req: Request, limit: number): Promise<Uint8Array> {
  const declared = req.headers.get("content-length");
  if (declared !== null && Number(declared) > limit) throw new HttpError(413, BODY_ERRORS.tooLarge);
  if (req.body === null) return new Uint8Array(0);
  // The declared length may be absent (chunked) or wrong: count what arrives.
  const reader = req.body.getReader();
  const chunks: Uint8Array[] = [];
  let total = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    total += value.byteLength;
    if (total > limit) {
      await reader.cancel().catch(() => undefined);
      throw new HttpError(413, BODY_ERRORS.tooLarge);
    }
    chunks.push(value);
  }
  return Buffer.concat(chunks);
}

function syntaxError(detail: string): HttpError {
  return new HttpError(400, `${BODY_ERRORS.syntaxPrefix}${detail}`);
}

/**
 * The request's JSON value. Throws HttpError 415 (content type), 413 (over
 * `limit`, default 2 MiB) or 400 (`failed to parse the request body as json:
 * <reason> at line L column C`, serde's wording).
 */
export async function readJsonBody(c: Context, limit = MAX_BODY_BYTES): Promise<unknown> {
  if (!isJsonContentType(c.req.header("content-type"))) {
    throw new HttpError(415, BODY_ERRORS.contentType);
  }
  const bytes = await readBounded(c.req.raw, limit);
  let text: string;
  try {
    // ignoreBOM keeps a BOM in the text, so it is refused as serde refuses it.
    text = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true }).decode(bytes);
  } catch {
    throw syntaxError("invalid UTF-8");
  }
  try {
    return JSON.parse(text);
  } catch (e) {
    const found = findJsonSyntaxError(text);
    if (found === undefined) throw syntaxError(e instanceof Error ? e.message : String(e));
    throw syntaxError(`${found.reason} at line ${found.line} column ${found.column}`);
  }
}
