// POST /configure (upstream routes/configure.rs): validate the body and the
// spec, accept it only in `empty` or `running`, hand it over through the state
// (`configuration_pending`), then block until the main flow (first spec) or
// the configurator (running compute) reports `running` or `failed`.

import { ComputeCtlError, InvalidStatusError } from "../../errors.ts";
import { parseConfigurationRequest } from "../../spec/parse.ts";
import { toParsedSpec } from "../../spec/parsed-spec.ts";
import { statusDisplay } from "../../state/status.ts";
import type { ComputeState } from "../../state/store.ts";
import { readJsonBody } from "../body.ts";
import { errorResponse, jsonResponse } from "../respond.ts";
import type { Route } from "../route.ts";
import { computeStatusResponse } from "../status-response.ts";

/** nginx's "client closed request": nobody reads it, the access log does. */
const CLIENT_CLOSED_REQUEST = 499;

/**
 * Rust's `{:?}` of a string: double quotes, `\"`, `\\`, `\n`, `\r`, `\t`,
 * `\0`, other control characters as `\u{hex}`. Upstream's 500 text has it.
 */
export function rustDebugString(s: string): string {
  let out = '"';
  for (const ch of s) {
    const code = ch.codePointAt(0) ?? 0;
    if (ch === '"') out += '\\"';
    else if (ch === "\\") out += "\\\\";
    else if (ch === "\n") out += "\\n";
    else if (ch === "\r") out += "\\r";
    else if (ch === "\t") out += "\\t";
    else if (ch === "\0") out += "\\0";
    else if (code < 0x20 || (code >= 0x7f && code <= 0x9f)) out += `\\u{${code.toString(16)}}`;
    else out += ch;
  }
  return `${out}"`;
}

/**
 * The 500 text for a failed configuration. Unlike upstream (whose
 * reconfigure never set `state.error`, hence `"unknown error"`), the
 * configurator records its error, so the real cause is reported.
 */
export function configurationFailedMessage(state: ComputeState): string {
  return `compute configuration failed: ${rustDebugString(state.error ?? "unknown error")}`;
}

export const configureRoute: Route = {
  method: "POST",
  path: "/configure",
  auth: true,
  handler: async (c, ctx) => {
    const { store, log } = ctx;
    // Shape errors are ConfigError (400, JSON path first); compute_ctl_config is
    // validated and ignored: keys never rotate without a restart.
    const request = parseConfigurationRequest(await readJsonBody(c));
    // Upstream's texts (`duplicate entry in safekeeper_connstrings: …!`), also a 400.
    const pspec = toParsedSpec(request.spec);

    // From here to the wait, nothing is awaited: the gate, the hand-over and
    // the waiter's registration see one consistent state.
    const status = store.status;
    if (status !== "empty" && status !== "running") {
      throw new InvalidStatusError(`invalid compute status: ${statusDisplay(status)}`);
    }
    store.update({ pspec });
    if (!store.setStatus("configuration_pending")) {
      throw new ComputeCtlError(`cannot accept a configuration in status ${statusDisplay(status)}`);
    }
    log.info(
      `accepted configuration for operation ${request.spec.operation_uuid ?? "unknown"}, waiting for compute to become running`,
    );

    const signal = c.req.raw.signal;
    let done: ComputeState;
    try {
      // No server-side timeout (upstream has none); a client that goes away
      // takes its waiter with it, the configuration itself goes on.
      done = await store.waitFor((s) => s.status === "running" || s.status === "failed", {
        signal,
      });
    } catch (e) {
      if (!signal.aborted) throw e;
      log.info(
        `/configure client went away while the compute was ${statusDisplay(store.status)}; the configuration goes on`,
      );
      return errorResponse(CLIENT_CLOSED_REQUEST, "client closed request");
    }
    if (done.status === "failed") {
      const message = configurationFailedMessage(done);
      log.error(message);
      return errorResponse(500, message);
    }
    return jsonResponse(computeStatusResponse(done));
  },
};
