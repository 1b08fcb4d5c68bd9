// LSN lease task for static computes (upstream lsn_lease.rs, upstream-lifecycle.md
// §4.11): keeps the pageservers from garbage-collecting the static LSN by leasing
// it on every pageserver of every shard and renewing before the lease runs out.
// A refusal (the LSN is already behind the GC cutoff) is permanent: the task
// stops and the compute keeps running. The pageserver list is re-read from the
// live state before every attempt, and every wait ends early when it changes.

import { ComputeCtlError, errorMessage } from "../errors.ts";
import type { Logger } from "../log.ts";
import {
  formatTenantShardId,
  type TenantId,
  type TimelineId,
  tryParseShardIndex,
} from "../spec/ids.ts";
import { formatLsn, type Lsn } from "../spec/lsn.ts";
import type { ParsedSpec } from "../spec/parsed-spec.ts";
import type { PageserverConnectionInfo } from "../spec/schema.ts";
import type { ComputeState, ComputeStateStore } from "../state/store.ts";
import { abortableSleep } from "../state/time.ts";
import type { PgClient } from "../wire/client.ts";
import { connectConnstr } from "../wire/connect-connstr.ts";

export const LEASE_FIRST_RETRY_MS = 500;
export const LEASE_MAX_RETRY_MS = 60_000;
/** Renew this long before the lease ends (unless that is less than half of it). */
export const LEASE_RENEW_MARGIN_MS = 60_000;
/** Upstream has no timeouts here; without them one hung pageserver stops all renewals. */
export const LEASE_CONNECT_TIMEOUT_MS = 30_000;
export const LEASE_QUERY_TIMEOUT_MS = 30_000;

export const LEASE_REFUSED_MESSAGE =
  "Permanent error: lease could not be obtained, LSN is behind the GC cutoff";

/** `valid_until` in ms since the Unix epoch, or null when the lease was refused. */
export type LeaseResult = number | null;

/** One lease request, to one pageserver. */
export interface LeaseRequest {
  /** The pageserver's `libpq_url` from the spec. */
  url: string;
  /** `storage_auth_token`: replaces any password of the URL. */
  password: string | null;
  tenantShardId: string;
  timelineId: TimelineId;
  lsn: Lsn;
  signal: AbortSignal;
}

export type AcquireLease = (req: LeaseRequest) => Promise<LeaseResult>;

export interface LsnLeaseOptions {
  store: ComputeStateStore;
  log: Logger;
  /** Shutdown: ends the task at its next await. */
  signal: AbortSignal;
  /** Resolves after `ms`; may settle early either way once `signal` aborts. */
  sleep?: (ms: number, signal: AbortSignal) => Promise<void>;
  /** Wall clock in ms since the epoch (the unit of `valid_until`). */
  now?: () => number;
  acquire?: AcquireLease;
}

// ---------------------------------------------------------------------------
// Pure helpers

/** The page-service command; the trailing space is upstream's and is kept. */
export function leaseCommand(tenantShardId: string, timelineId: string, lsn: Lsn): string {
  return `lease lsn ${tenantShardId} ${timelineId} ${formatLsn(lsn)} `;
}

/** Time to sleep before renewing: max(valid − 60 s, valid / 2) of what is left. */
export function renewalDelayMs(validUntilMs: number, nowMs: number): number {
  const valid = Math.max(0, validUntilMs - nowMs);
  return Math.max(valid - LEASE_RENEW_MARGIN_MS, valid / 2);
}

/** Wait after failed attempt `n` (0-based): 500 ms × 1.5^n, capped at 60 s, whole ms. */
export function retryDelayMs(n: number): number {
  return Math.floor(Math.min(LEASE_FIRST_RETRY_MS * 1.5 ** n, LEASE_MAX_RETRY_MS));
}

/**
 * The lease that holds for the whole timeline: the earliest expiry, and a
 * refusal anywhere (null sorts below every time) refuses it all. Like
 * upstream's `min()` over Options, no leases at all counts as refused.
 */
export function combineLeases(results: readonly LeaseResult[]): LeaseResult {
  let min: number | undefined;
  for (const r of results) {
    if (r === null) return null;
    if (min === undefined || r < min) min = r;
  }
  return min ?? null;
}

// ---------------------------------------------------------------------------
// One lease over libpq

/** Sends `lease lsn` to one pageserver; rejects on any connection or protocol error. */
export async function acquireLeaseLibpq(req: LeaseRequest): Promise<LeaseResult> {
  let client: PgClient | undefined;
  try {
    // Only what the URL itself carries: upstream adds no application_name or options.
    client = await connectConnstr(req.url, {
      password: req.password,
      signal: req.signal,
      connectTimeoutMs: LEASE_CONNECT_TIMEOUT_MS,
    });
    const results = await client.simpleQuery(
      leaseCommand(req.tenantShardId, req.timelineId, req.lsn),
      { signal: req.signal, timeoutMs: LEASE_QUERY_TIMEOUT_MS },
    );
    const first = results[0];
    if (first === undefined) throw new ComputeCtlError("empty response");
    const col = first.columns.indexOf("valid_until");
    const row = first.rows[0];
    if (row === undefined || col < 0) {
      throw new ComputeCtlError("error parsing lsn lease response");
    }
    const value = row[col];
    if (value === null || value === undefined) return null;
    if (!/^\d+$/.test(value)) {
      throw new ComputeCtlError(`invalid valid_until in lsn lease response: ${value}`);
    }
    return Number(value);
  } finally {
    await client?.close().catch(() => {});
  }
}

// ---------------------------------------------------------------------------
// The task

/** Every pageserver of every shard, as upstream's try_acquire_lsn_lease visits them. */
function leaseTargets(
  info: PageserverConnectionInfo,
  tenantId: TenantId,
): { tenantShardId: string; url: string }[] {
  if (info.prefer_protocol === "grpc") {
    throw new ComputeCtlError(
      "the gRPC pageserver protocol is not supported by this compute_ctl; use libpq",
    );
  }
  const out: { tenantShardId: string; url: string }[] = [];
  // Sorted for a stable order (upstream iterates a HashMap).
  for (const key of Object.keys(info.shards).sort()) {
    const index = tryParseShardIndex(key);
    if (index === undefined) throw new ComputeCtlError(`invalid shard index ${key}`);
    const tenantShardId = formatTenantShardId(
      tenantId,
      info.shard_count === 0 ? { shardNumber: 0, shardCount: 0 } : index,
    );
    for (const ps of info.shards[key]?.pageservers ?? []) {
      if (ps.libpq_url === null) throw new ComputeCtlError(`no libpq_url for shard ${key}`);
      out.push({ tenantShardId, url: ps.libpq_url });
    }
  }
  return out;
}

/**
 * Upstream launch_lsn_lease_bg_task_for_static: a no-op unless the state's
 * spec is `static`; otherwise leases its LSN until `signal` aborts or the
 * lease is refused. Never rejects; failures are logged.
 */
export async function launchLsnLeaseTask(opts: LsnLeaseOptions): Promise<void> {
  const { store, log, signal } = opts;
  const pspec = store.state.pspec;
  if (pspec === null || pspec.mode.kind !== "static") return;
  const { tenant_id: tenantId, timeline_id: timelineId } = pspec;
  const lsn = pspec.mode.lsn;
  const sleep = opts.sleep ?? abortableSleep;
  const now = opts.now ?? Date.now;
  const acquire = opts.acquire ?? acquireLeaseLibpq;

  /** Sleeps `ms` unless the live conninfo stops equalling `used`; false on shutdown. */
  const waitUnlessChanged = async (
    ms: number,
    used: PageserverConnectionInfo,
  ): Promise<boolean> => {
    if (signal.aborted) return false;
    const inner = new AbortController();
    const onAbort = () => inner.abort(signal.reason);
    signal.addEventListener("abort", onAbort, { once: true });
    const changed = (s: ComputeState) =>
      s.pspec !== null && !Bun.deepEquals(s.pspec.pageserver_conninfo, used);
    try {
      const woke = await Promise.race([
        store.waitFor(changed, { signal: inner.signal }).then(
          () => "changed" as const,
          () => "aborted" as const,
        ),
        sleep(ms, inner.signal).then(
          () => "elapsed" as const,
          () => "aborted" as const,
        ),
      ]);
      if (signal.aborted) return false;
      if (woke === "changed") log.info("Pageserver config changed");
      return true;
    } finally {
      // Ends whichever of the two is still pending.
      inner.abort();
      signal.removeEventListener("abort", onAbort);
    }
  };

  /** One pass over every pageserver of `live`; null when any refused. */
  const attempt = async (live: ParsedSpec): Promise<LeaseResult> => {
    const leases: LeaseResult[] = [];
    for (const t of leaseTargets(live.pageserver_conninfo, tenantId)) {
      leases.push(
        await acquire({
          url: t.url,
          password: live.storage_auth_token,
          tenantShardId: t.tenantShardId,
          timelineId,
          lsn,
          signal,
        }),
      );
    }
    return combineLeases(leases);
  };

  let failures = 0;
  while (!signal.aborted) {
    // The live spec, not the launch one: /configure may have moved the pageservers.
    const live = store.state.pspec ?? pspec;
    let delayMs: number;
    try {
      const lease = await attempt(live);
      if (lease === null) {
        log.warn(`Exited with error: ${LEASE_REFUSED_MESSAGE}`);
        return;
      }
      failures = 0;
      delayMs = renewalDelayMs(lease, now());
      log.info(`Request succeeded, sleeping for ${Math.floor(delayMs / 1000)} seconds`);
    } catch (e) {
      if (signal.aborted) break;
      log.warn(`Failed to acquire lsn lease: ${errorMessage(e)} (attempt ${failures})`);
      delayMs = retryDelayMs(failures);
      failures++;
    }
    // Compared with what this attempt used, so a change made during it wakes at once.
    if (!(await waitUnlessChanged(delayMs, live.pageserver_conninfo))) break;
  }
}
