import { expect, test } from "bun:test";
import { memoryLogger } from "../../log.ts";
import type { ComputeStatus } from "../../state/status.ts";
import { ComputeStateStore } from "../../state/store.ts";
import { buildApp } from "../server.ts";
import { refreshConfigurationRoute } from "./refresh-configuration.ts";

/** A store walked to `status` through legal transitions. */
function storeIn(path: ComputeStatus[]) {
  const { log } = memoryLogger();
  const store = new ComputeStateStore({ log });
  for (const s of path) expect(store.setStatus(s)).toBe(true);
  let reports = 0;
  const app = buildApp([refreshConfigurationRoute], {
    store,
    log,
    computeId: "compute-1",
    forwardTermination: () => {},
    reportPagestreamError: () => {
      reports++;
    },
  });
  const post = () => app.request("/refresh_configuration", { method: "POST" });
  return { store, post, reports: () => reports };
}

test.each<[string, ComputeStatus[], ComputeStatus]>([
  ["running", ["init", "running"], "refresh_configuration_pending"],
  [
    "failed",
    ["init", "running", "configuration_pending", "configuration", "failed"],
    "refresh_configuration_pending",
  ],
  [
    "already pending",
    ["init", "running", "refresh_configuration_pending"],
    "refresh_configuration_pending",
  ],
  // Still starting: nothing to refresh yet, but not an error either.
  ["init", ["init"], "init"],
])("%s: 200 with an empty body, then %s", async (_name, path, after) => {
  const h = storeIn(path);
  const res = await h.post();
  expect(res.status).toBe(200);
  expect(await res.text()).toBe("");
  expect(h.store.status).toBe(after);
  expect(h.reports()).toBe(1);
});

test.each<[ComputeStatus[], string]>([
  [[], "Empty"],
  [["init", "running", "configuration_pending"], "ConfigurationPending"],
  [["init", "running", "termination_pending_fast"], "TerminationPendingFast"],
])("refused in %p: 500 naming the state; the report still counts", async (path, debug) => {
  const h = storeIn(path);
  const before = h.store.status;
  const res = await h.post();
  expect(res.status).toBe(500);
  expect(await res.json()).toEqual({
    error: `Cannot refresh compute configuration in state ${debug}`,
  });
  expect(h.store.status).toBe(before);
  expect(h.reports()).toBe(1);
});
