// ComputeStatus and its three upstream renderings. JSON (snake_case) goes to
// /status; Display (kebab-case) to logs, 412 errors and the compute_ctl_up label;
// Debug (PascalCase) to the refresh_configuration error.

export const COMPUTE_STATUSES = [
  "empty",
  "configuration_pending",
  "init",
  "running",
  "configuration",
  "failed",
  "termination_pending_fast",
  "termination_pending_immediate",
  "terminated",
  "refresh_configuration_pending",
  "refresh_configuration",
] as const;

/** The JSON (serde snake_case) form is the canonical value. */
export type ComputeStatus = (typeof COMPUTE_STATUSES)[number];

export function statusDisplay(s: ComputeStatus): string {
  return s.replaceAll("_", "-");
}

export function statusDebug(s: ComputeStatus): string {
  return s
    .split("_")
    .map((w) => w.charAt(0).toUpperCase() + w.slice(1))
    .join("");
}

/**
 * Legal transitions, from upstream's state diagram. Anything else is a
 * programming error: logged and refused by the store.
 * Ours adds empty → terminated's path via termination_pending_* (upstream hangs).
 */
export const TRANSITIONS: Readonly<Record<ComputeStatus, readonly ComputeStatus[]>> = {
  empty: [
    "init",
    "configuration_pending",
    "termination_pending_fast",
    "termination_pending_immediate",
  ],
  configuration_pending: ["init", "configuration", "configuration_pending"],
  init: ["running", "failed"],
  running: [
    "configuration_pending",
    "refresh_configuration_pending",
    "termination_pending_fast",
    "termination_pending_immediate",
  ],
  configuration: ["running", "failed"],
  failed: ["refresh_configuration_pending"],
  refresh_configuration_pending: ["refresh_configuration", "refresh_configuration_pending"],
  refresh_configuration: ["running", "refresh_configuration_pending"],
  termination_pending_fast: ["terminated"],
  termination_pending_immediate: ["terminated"],
  terminated: [],
};

export function canTransition(from: ComputeStatus, to: ComputeStatus): boolean {
  return TRANSITIONS[from].includes(to);
}
