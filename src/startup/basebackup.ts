// Basebackup from the pageserver (shard 0) over the Postgres wire protocol:
// CopyOut → gunzip → tar extraction, streamed to disk as bytes arrive, read to
// the end of the protocol so an ErrorResponse after the tar data fails the
// attempt. 10 retries at 500 ms × 1.5, as upstream.

import { readdir, rm } from "node:fs/promises";
import { join } from "node:path";
import { ComputeCtlError, errorMessage } from "../errors.ts";
import { formatLsn, type Lsn } from "../spec/lsn.ts";
import { type ParsedSpec, shardUrl } from "../spec/parsed-spec.ts";
import { computeModeTypeStr } from "../spec/schema.ts";
import type { PgClient } from "../wire/client.ts";
import { connectConnstr } from "../wire/connect-connstr.ts";
import { countBytes, gunzip } from "../wire/gunzip.ts";
import { extractTar } from "../wire/untar.ts";
import type { StartupContext } from "./context.ts";
import { fixNeonSignal } from "./pgdata-files.ts";

export const BASEBACKUP_RETRIES = 10;
export const BASEBACKUP_FIRST_RETRY_MS = 500;

/** Files compute_ctl wrote before the basebackup: kept when a failed attempt is cleaned up. */
const KEEP_ON_RETRY = new Set(["postgresql.conf", "compute_ctl_temp_override.conf"]);

/** The command text, as upstream sends it (`--replica` unless primary; no LSN when 0/0). */
export function basebackupCommand(
  pspec: Pick<ParsedSpec, "tenant_id" | "timeline_id" | "mode">,
  lsn: Lsn,
): string {
  const parts = ["basebackup", pspec.tenant_id, pspec.timeline_id];
  if (lsn !== 0n) parts.push(formatLsn(lsn));
  parts.push("--gzip");
  if (pspec.mode.kind !== "primary") parts.push("--replica");
  return parts.join(" ");
}

/** Retry count: upstream's testing builds read this variable; so do we, for tests and dev. */
export function basebackupRetries(env: Record<string, string | undefined>): number {
  const v = env.NEON_COMPUTE_TESTING_BASEBACKUP_RETRIES;
  if (v !== undefined && /^\d+$/.test(v)) return Number(v);
  return BASEBACKUP_RETRIES;
}

/** One attempt (upstream try_get_basebackup + try_get_basebackup_libpq). */
export async function tryGetBasebackup(ctx: StartupContext, lsn: Lsn): Promise<void> {
  const { pspec, params } = ctx;
  if (pspec.pageserver_conninfo.prefer_protocol === "grpc") {
    throw new ComputeCtlError(
      "the gRPC pageserver protocol is not supported by this compute_ctl; use libpq",
    );
  }
  const started = performance.now();
  let client: PgClient | undefined;
  try {
    client = await connectConnstr(shardUrl(pspec.pageserver_conninfo, 0, "libpq"), {
      // The storage token replaces any password of the URL (pageserver JWT auth).
      password: pspec.storage_auth_token,
      params: {
        application_name: "compute_ctl",
        options: `-c neon.compute_mode=${computeModeTypeStr(pspec.mode)}`,
      },
      signal: ctx.signal,
      connectTimeoutMs: 30_000,
    });
    const connected = performance.now();
    let bytes = 0;
    const copy = await client.copyOut(basebackupCommand(pspec, lsn), { signal: ctx.signal });
    const counted = countBytes(copy, (_n, total) => {
      bytes = total;
    });
    const owner = ctx.runAs ? { uid: ctx.runAs.uid, gid: ctx.runAs.gid } : undefined;
    await extractTar(gunzip(counted), params.pgdata, { chown: owner, signal: ctx.signal });
    await fixNeonSignal(params.pgdata, owner);
    ctx.store.setMetric("pageserver_connect_micros", (connected - started) * 1000);
    ctx.store.setMetric("basebackup_bytes", bytes);
    ctx.store.setMetric("basebackup_ms", performance.now() - started);
  } finally {
    await client?.close().catch(() => {});
  }
}

/** Removes what a failed attempt extracted, keeping the files written before it. */
async function cleanPgdata(pgdata: string): Promise<void> {
  const entries = await readdir(pgdata).catch(() => [] as string[]);
  await Promise.all(
    entries
      .filter((e) => !KEEP_ON_RETRY.has(e))
      .map((e) => rm(join(pgdata, e), { recursive: true, force: true })),
  );
}

/** Upstream get_basebackup: the retry loop; the error names the LSN. */
export async function getBasebackup(
  ctx: StartupContext,
  lsn: Lsn,
  retries = basebackupRetries(process.env),
): Promise<void> {
  let waitMs = BASEBACKUP_FIRST_RETRY_MS;
  for (let attempt = 0; ; attempt++) {
    try {
      await tryGetBasebackup(ctx, lsn);
      return;
    } catch (e) {
      if (ctx.signal.aborted || attempt >= retries) {
        throw new ComputeCtlError(`failed to get basebackup@${formatLsn(lsn)}`, { cause: e });
      }
      ctx.log.warn(
        `Failed to get basebackup: ${errorMessage(e)} (attempt ${attempt + 1}/${retries})`,
      );
      await cleanPgdata(ctx.params.pgdata);
      await ctx.sleep(waitMs);
      waitMs *= 1.5;
    }
  }
}
