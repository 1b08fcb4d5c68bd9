// NeonVM pre-start tasks (upstream swap.rs and disk_quota.rs; lifecycle §10.3–10.4):
// resize swap and set the disk quota through the VM's sudo helpers, before
// postgres starts, so `swapoff` never hits a running postgres. Startup only.

import { existsSync } from "node:fs";
import { ComputeCtlError, errorMessage } from "../errors.ts";
import {
  type ExitStatus,
  formatCommand,
  formatExitStatus,
  runToCompletion,
} from "../process/runner.ts";
import type { StartupContext } from "./context.ts";

export const SUDO = "/usr/bin/sudo";
export const RESIZE_SWAP_BIN = "/neonvm/bin/resize-swap";
export const SET_DISK_QUOTA_BIN = "/neonvm/bin/set-disk-quota";

/** The helpers are quick; a hung one must not hold the startup forever. */
const HELPER_DEADLINE_MS = 120_000;

/** Runs a helper; `context` prefixes every failure, as upstream's anyhow context does. */
async function runHelper(ctx: StartupContext, cmd: string[], context: string): Promise<ExitStatus> {
  try {
    const r = await runToCompletion(
      ctx.runner,
      { cmd },
      { allowFailure: true, deadline: performance.now() + HELPER_DEADLINE_MS },
    );
    return r.status;
  } catch (e) {
    throw new ComputeCtlError(
      `${context}: could not run \`${formatCommand(cmd)}\`: ${errorMessage(e)}`,
      { cause: e },
    );
  }
}

/**
 * `sudo resize-swap --once <bytes>` (`--once` first: the helper removes
 * itself afterwards). A failure after the helper is gone means it already ran.
 */
export async function resizeSwap(
  ctx: StartupContext,
  sizeBytes: number,
  helperExists: (path: string) => boolean = existsSync,
): Promise<void> {
  const cmd = [SUDO, RESIZE_SWAP_BIN, "--once", String(sizeBytes)];
  const status = await runHelper(ctx, cmd, "failed to resize swap");
  if (status.code === 0) {
    ctx.log.info(`resized swap to ${sizeBytes} bytes`);
    return;
  }
  if (!helperExists(RESIZE_SWAP_BIN)) {
    ctx.log.warn(
      'ignoring "not found" error from resize-swap to avoid swapoff while compute is running',
    );
    return;
  }
  throw new ComputeCtlError(
    `failed to resize swap: could not run \`${formatCommand(cmd)}\`: process exited with ${formatExitStatus(status)}`,
  );
}

/** `sudo set-disk-quota <KiB> <mountpoint>` (0 removes the quota). */
export async function setDiskQuota(
  ctx: StartupContext,
  sizeBytes: number,
  mountpoint: string,
): Promise<void> {
  const cmd = [SUDO, SET_DISK_QUOTA_BIN, String(Math.floor(sizeBytes / 1024)), mountpoint];
  const status = await runHelper(ctx, cmd, "failed to set disk quota");
  if (status.code !== 0) {
    // Upstream's text names the helper without its arguments; the log has them.
    ctx.log.error(`${formatCommand(cmd)} exited with ${formatExitStatus(status)}`);
    throw new ComputeCtlError(
      `failed to set disk quota: could not run \`${SUDO} ${SET_DISK_QUOTA_BIN}\`: process exited with ${formatExitStatus(status)}`,
    );
  }
  ctx.log.info(`set disk quota of ${mountpoint} to ${sizeBytes} bytes`);
}

/** The pre-start tasks the spec and flags ask for, together (as upstream). */
export async function prepareVmResources(
  ctx: StartupContext,
  flags: { resizeSwapOnBind: boolean; setDiskQuotaForFs?: string | undefined },
): Promise<void> {
  const spec = ctx.pspec.spec;
  const tasks: Promise<void>[] = [];
  if (spec.swap_size_bytes !== null && flags.resizeSwapOnBind) {
    tasks.push(resizeSwap(ctx, spec.swap_size_bytes));
  }
  if (spec.disk_quota_bytes !== null && flags.setDiskQuotaForFs !== undefined) {
    tasks.push(setDiskQuota(ctx, spec.disk_quota_bytes, flags.setDiskQuotaForFs));
  }
  const results = await Promise.allSettled(tasks);
  const failed = results.find((r) => r.status === "rejected");
  if (failed) throw failed.reason;
}
