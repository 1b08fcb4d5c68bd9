// POST /terminate?mode=fast|immediate: stop postgres (SIGINT in both modes, as
// upstream; the mode only sets how long compute_ctl lingers afterwards) and
// answer with the shutdown sync-safekeepers LSN once the compute is terminated.
import { HttpError, InvalidStatusError } from "../../errors.ts";
import { formatLsn } from "../../spec/lsn.ts";
import { statusDisplay } from "../../state/status.ts";
import { jsonResponse } from "../respond.ts";
import type { Route } from "../route.ts";

export type TerminateMode = "fast" | "immediate";

/** No query string: fast. Any query string must carry a valid `mode` (upstream's extractor). */
export function parseTerminateMode(url: string): TerminateMode {
  const q = url.indexOf("?");
  if (q < 0) return "fast";
  const mode = new URLSearchParams(url.slice(q + 1)).get("mode");
  if (mode === "fast" || mode === "immediate") return mode;
  throw new HttpError(
    400,
    mode === null
      ? "failed to deserialize query string: missing field `mode`"
      : `failed to deserialize query string: mode: unknown variant \`${mode}\`, expected \`fast\` or \`immediate\``,
  );
}

export const terminateRoute: Route = {
  method: "POST",
  path: "/terminate",
  auth: true,
  handler: async (c, ctx) => {
    const mode = parseTerminateMode(c.req.url);
    const { store } = ctx;
    const lsnBody = () => {
      const lsn = store.state.terminateFlushLsn;
      return { lsn: lsn === null ? null : formatLsn(lsn) };
    };
    if (store.status === "terminated") return jsonResponse(lsnBody(), 201);
    if (store.status !== "empty" && store.status !== "running") {
      throw new InvalidStatusError(`invalid compute status: ${statusDisplay(store.status)}`);
    }
    store.setStatus(mode === "fast" ? "termination_pending_fast" : "termination_pending_immediate");
    ctx.forwardTermination();
    ctx.log.info("sent signal and notified waiters");
    await store.waitForStatus(["terminated"], { signal: c.req.raw.signal });
    ctx.log.info("terminated Postgres");
    return jsonResponse(lsnBody());
  },
};
