// POST /refresh_configuration (internal; upstream routes/refresh_configuration.rs):
// the neon extension calls it when page requests fail, so compute_ctl re-reads
// its configuration (the pageserver may have moved). The configurator does the
// work; this only counts the report and sets `refresh_configuration_pending`.

import { HttpError } from "../../errors.ts";
import { statusDebug } from "../../state/status.ts";
import type { Route } from "../route.ts";

export const refreshConfigurationRoute: Route = {
  method: "POST",
  path: "/refresh_configuration",
  auth: false,
  handler: (_c, ctx) => {
    ctx.reportPagestreamError?.();
    const { store } = ctx;
    const status = store.status;
    if (status === "running" || status === "failed" || status === "refresh_configuration_pending") {
      store.setStatus("refresh_configuration_pending");
      return new Response(null, { status: 200 });
    }
    // Still starting: the configuration it is about to run is the fresh one.
    if (status === "init") return new Response(null, { status: 200 });
    throw new HttpError(
      500,
      `Cannot refresh compute configuration in state ${statusDebug(status)}`,
    );
  },
};
