// What upstream's main() does once the command line is parsed: logging,
// signal handling, rlimits, obtaining the config, then ComputeNode::run().

import { existsSync } from "node:fs";
import { join } from "node:path";
import type { CliOptions } from "./cli.ts";
import { ComputeNode } from "./compute.ts";
import { ConfigError, errorMessage } from "./errors.ts";
import { log } from "./log.ts";
import { ComputeCtlMetrics } from "./metrics/registry.ts";
import { BunRunner } from "./process/bun-runner.ts";
import { Reaper, setCoreRlimitUnlimited } from "./process/reaper.ts";
import { onTerminationSignals } from "./process/signals.ts";
import { resolveRunAs } from "./process/user.ts";
import { fetchConfigFromControlPlane } from "./spec/control-plane.ts";
import { loadConfigFile } from "./spec/parse.ts";
import type { ComputeConfig } from "./spec/schema.ts";
import { getPgInstall } from "./startup/pg-version.ts";
import { BUILD_TAG } from "./version.ts";

/** Upstream get_config: `-c FILE` or `-p URI` (the CLI guarantees one of them). */
async function getConfig(opts: CliOptions, metrics: ComputeCtlMetrics): Promise<ComputeConfig> {
  if (opts.config !== undefined) return loadConfigFile(opts.config);
  if (opts.controlPlaneUri !== undefined) {
    return fetchConfigFromControlPlane({
      baseUri: opts.controlPlaneUri,
      computeId: opts.computeId,
      token: process.env.NEON_CONTROL_PLANE_TOKEN ?? "",
      log,
      onAttempt: (label) => metrics.cplaneRequest(label),
    });
  }
  throw new ConfigError("either --config or --control-plane-uri must be given");
}

export async function runComputeCtl(opts: CliOptions): Promise<number> {
  let node: ComputeNode | undefined;
  // Signals end the process with status 1, as upstream. As PID 1 a handler is
  // required anyway: the kernel ignores an unhandled SIGTERM for init.
  onTerminationSignals((sig) => {
    if (!node) log.info(`received ${sig} termination signal`);
    const forwarded = node ? node.onTerminationSignal(sig) : Promise.resolve();
    void forwarded.finally(() => process.exit(1));
  });
  log.info(`compute build_tag: ${BUILD_TAG}`);

  // Upstream exits when RLIMIT_CORE cannot be raised; an unprivileged run
  // (tests, dev) usually cannot, so we warn instead.
  const rlimit = setCoreRlimitUnlimited();
  if (!rlimit.ok) log.warn(`could not set RLIMIT_CORE to unlimited: ${rlimit.message}`);

  // As PID 1 we must reap orphans; our own children stay Bun's to wait for.
  const reaper = new Reaper({ onError: (e) => log.warn(`reaper: ${errorMessage(e)}`) });
  const started = reaper.start();
  if (!started.ok) log.warn(`running as PID 1 without a reaper: ${started.message}`);

  const runner = new BunRunner({ spawnedPids: reaper });
  // compute_ctl_up says `empty` from the first scrape on.
  const metrics = new ComputeCtlMetrics();
  // pg_config runs while the config loads: both come before the servers listen.
  const pgVersion = getPgInstall(runner, opts.pgbin).then(
    (v) => ({ ok: true as const, v }),
    (e: unknown) => ({ ok: false as const, e }),
  );
  let config: ComputeConfig;
  try {
    config = await getConfig(opts, metrics);
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

  const pg = await pgVersion;
  if (!pg.ok) {
    log.error(errorMessage(pg.e));
    return 1;
  }
  log.info(`postgres major version ${pg.v.major}`);
  const neonAvailable = existsSync(join(pg.v.pkglibdir, "neon.so"));

  let runAs: ReturnType<typeof resolveRunAs>;
  try {
    runAs = resolveRunAs(opts.pgUser);
  } catch (e) {
    log.error(errorMessage(e));
    return 1;
  }

  try {
    node = new ComputeNode(opts, config, {
      log,
      metrics,
      runner,
      runAs,
      fetchConfig: () => getConfig(opts, metrics),
      // The pipeline's modules load after the servers listen: the first /status waits for none of them.
      startCompute: async (ctx) => {
        const [{ startCompute }, { configureAsPrimary }] = await Promise.all([
          import("./startup/index.ts"),
          import("./startup/configure.ts"),
        ]);
        return startCompute(ctx, configureAsPrimary);
      },
      prewarm: async (ctx) => {
        if (opts.lakebaseMode) return log.info("Skipping postgres prewarming in Hadron mode");
        const { prewarmPostgresVmMemory } = await import("./startup/prewarm.ts");
        await prewarmPostgresVmMemory(ctx, {
          pgbin: opts.pgbin,
          pgdata: opts.pgdata,
          neonAvailable,
        });
      },
    });
  } catch (e) {
    // ParsedSpec errors keep upstream's text; the path says where to look.
    const where = e instanceof ConfigError && e.path ? ` (at ${e.path})` : "";
    log.error(`invalid compute spec: ${errorMessage(e)}${where}`);
    return 1;
  }
  // Idle memory: what start-up left resident goes back once the compute settles.
  const { startFootprintTrimmer } = await import("./background/footprint-trim.ts");
  const trimmer = startFootprintTrimmer({ store: node.store, log, env: process.env });
  try {
    return await node.run();
  } finally {
    trimmer?.stop();
  }
}
