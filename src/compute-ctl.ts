// What upstream's main() does once the command line is parsed: logging,
// signal handling, obtaining the config, then ComputeNode::run().

import type { CliOptions } from "./cli.ts";
import { ComputeNode } from "./compute.ts";
import { ConfigError, errorMessage } from "./errors.ts";
import { log } from "./log.ts";
import { fetchConfigFromControlPlane } from "./spec/control-plane.ts";
import { loadConfigFile } from "./spec/parse.ts";
import type { ComputeConfig } from "./spec/schema.ts";
import { startCompute } from "./startup/index.ts";
import { BUILD_TAG } from "./version.ts";

const EXIT_SIGNALS = ["SIGINT", "SIGTERM", "SIGQUIT"] as const;

/** Upstream get_config: `-c FILE` or `-p URI` (the CLI guarantees one of them). */
async function getConfig(opts: CliOptions): Promise<ComputeConfig> {
  if (opts.config !== undefined) return loadConfigFile(opts.config);
  if (opts.controlPlaneUri !== undefined) {
    return fetchConfigFromControlPlane({
      baseUri: opts.controlPlaneUri,
      computeId: opts.computeId,
      token: process.env.NEON_CONTROL_PLANE_TOKEN ?? "",
      log,
    });
  }
  throw new ConfigError("either --config or --control-plane-uri must be given");
}

export async function runComputeCtl(opts: CliOptions): Promise<number> {
  // Signals end the process at once with status 1, as upstream. As PID 1 a
  // handler is required: the kernel ignores an unhandled SIGTERM for init.
  for (const sig of EXIT_SIGNALS) {
    process.on(sig, () => {
      log.info(`received ${sig} termination signal`);
      process.exit(1);
    });
  }
  log.info(`compute build_tag: ${BUILD_TAG}`);

  let config: ComputeConfig;
  try {
    config = await getConfig(opts);
  } catch (e) {
    if (opts.controlPlaneUri !== undefined) {
      log.error(
        `cannot get response from control plane: ${errorMessage(e)}\nneither spec nor confirmation that compute is in the Empty state was received`,
      );
    } else {
      log.error(errorMessage(e));
    }
    return 1;
  }

  let node: ComputeNode;
  try {
    node = new ComputeNode(opts, config, { log, startCompute });
  } catch (e) {
    log.error(`invalid compute spec: ${errorMessage(e)}`);
    return 1;
  }
  return node.run();
}
