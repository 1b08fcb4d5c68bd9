// The stand-in storage a compute needs, on loopback: a template cluster served
// by a pageserver stand-in, safekeeper stand-ins that agree on its LSN, and a
// pgbin directory whose `postgres --sync-safekeepers` answers with that LSN.
// Used by `compute_ctl dev` and by the process-level tests, so both exercise
// the same code paths as production.

import { randomBytes } from "node:crypto";
import { mkdir, rm } from "node:fs/promises";
import { join } from "node:path";
import type { RunAs } from "../process/runner.ts";
import {
  type FakePgbin,
  makeSyncSafekeepersPgbin,
  type SyncSafekeepersBehaviour,
} from "./fake-pgbin.ts";
import {
  type PageserverFaults,
  type PageserverHandle,
  type PageserverOptions,
  startPageserver,
} from "./pageserver.ts";
import { type SafekeeperAnswer, type SafekeeperHandle, startSafekeeper } from "./safekeeper.ts";
import { ensureTemplateCluster, type TemplateCluster } from "./template.ts";

export interface DevEnvironmentOptions {
  /** Directory of the real PostgreSQL binaries. */
  pgBinDir: string;
  /** Work directory: template cache, fake pgbin. Must be traversable by `runAs`. */
  workDir: string;
  runAs: RunAs | null;
  safekeepers?: number;
  /** Default: all safekeepers agree on the template's checkpoint LSN. */
  safekeeperAnswer?: SafekeeperAnswer;
  pageserverFaults?: PageserverFaults;
  /** A storage token both stand-ins require as cleartext password. */
  storageAuthToken?: string;
  syncSafekeepers?: { behaviour?: SyncSafekeepersBehaviour; sleepMs?: number };
  /** Serve these bytes as the basebackup's CopyData payload instead of the template. */
  archiveOverride?: PageserverOptions["archiveOverride"];
}

export interface DevEnvironment {
  template: TemplateCluster;
  pageserver: PageserverHandle;
  safekeepers: SafekeeperHandle[];
  pgbin: FakePgbin;
  tenantId: string;
  timelineId: string;
  /** Removes the fake pgbin directory (after close; tests read its call log first). */
  removeFiles(): Promise<void>;
  /** The storage fields of a spec pointing at these stand-ins. */
  storageSpec(): Record<string, unknown>;
  close(): Promise<void>;
}

export async function startDevEnvironment(opts: DevEnvironmentOptions): Promise<DevEnvironment> {
  await mkdir(opts.workDir, { recursive: true, mode: 0o755 });
  const template = await ensureTemplateCluster({
    pgBinDir: opts.pgBinDir,
    cacheDir: join(opts.workDir, "template-cache"),
    runAs: opts.runAs,
  });
  const tenantId = randomBytes(16).toString("hex");
  const timelineId = randomBytes(16).toString("hex");
  const lsn = template.checkpointLsn;
  const auth = opts.storageAuthToken ? { password: opts.storageAuthToken } : undefined;
  const pageserver = startPageserver({
    template,
    auth,
    faults: opts.pageserverFaults,
    archiveOverride: opts.archiveOverride,
    tenantId,
    timelineId,
  });
  const safekeepers: SafekeeperHandle[] = [];
  for (let i = 0; i < (opts.safekeepers ?? 3); i++) {
    safekeepers.push(
      startSafekeeper({ answer: opts.safekeeperAnswer ?? { flushLsn: lsn, commitLsn: lsn }, auth }),
    );
  }
  const pgbin = await makeSyncSafekeepersPgbin({
    dir: join(opts.workDir, `pgbin-${process.pid}-${randomBytes(4).toString("hex")}`),
    realPgBinDir: opts.pgBinDir,
    lsn,
    runAs: opts.runAs,
    ...opts.syncSafekeepers,
  });
  return {
    template,
    pageserver,
    safekeepers,
    pgbin,
    tenantId,
    timelineId,
    storageSpec: () => ({
      tenant_id: tenantId,
      timeline_id: timelineId,
      pageserver_connection_info: {
        shard_count: 0,
        stripe_size: null,
        shards: { "0000": { pageservers: [{ id: 1, libpq_url: pageserver.url, grpc_url: null }] } },
        prefer_protocol: "libpq",
      },
      safekeeper_connstrings: safekeepers.map((s) => s.connstring),
      ...(opts.storageAuthToken ? { storage_auth_token: opts.storageAuthToken } : {}),
    }),
    removeFiles: () => rm(pgbin.dir, { recursive: true, force: true }),
    close: async () => {
      await Promise.all([pageserver.close(), ...safekeepers.map((s) => s.close())]);
    },
  };
}
