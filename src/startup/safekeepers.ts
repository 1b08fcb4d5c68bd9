// Start LSN of a primary: the fast path asks every safekeeper TIMELINE_STATUS
// (100 ms each) and skips the sync when a quorum agrees; otherwise
// `postgres --sync-safekeepers` runs, with upstream's retries and backoff.

import { errorMessage } from "../errors.ts";
import { relayPostgresLog } from "../process/pg-log.ts";
import {
  ChildError,
  type ChildProcess,
  type ExitStatus,
  formatExitStatus,
} from "../process/runner.ts";
import { formatLsn, type Lsn, parseLsn } from "../spec/lsn.ts";
import { connect, type PgClient } from "../wire/client.ts";
import type { StartupContext } from "./context.ts";

export const SAFEKEEPER_CHECK_TIMEOUT_MS = 100;
export const SYNC_SAFEKEEPERS_RETRIES = 5;

export type TimelineStatus = { found: true; flushLsn: Lsn; commitLsn: Lsn } | { found: false };

/**
 * Quorum decision over the answers collected so far (upstream check_if_synced):
 * synced when every answer found the timeline and all flush and commit LSNs
 * are one and the same value.
 */
export function syncedLsn(answers: readonly TimelineStatus[]): Lsn | null {
  let lsn: Lsn | null = null;
  for (const a of answers) {
    if (!a.found || a.flushLsn !== a.commitLsn) return null;
    if (lsn !== null && a.flushLsn !== lsn) return null;
    lsn = a.flushLsn;
  }
  return lsn;
}

export type TimelineStatusProbe = (connstr: string, signal: AbortSignal) => Promise<TimelineStatus>;

/** TIMELINE_STATUS over the wire protocol, as upstream's ping_safekeeper. */
export function timelineStatusProbe(ctx: Pick<StartupContext, "pspec">): TimelineStatusProbe {
  const { tenant_id, timeline_id, storage_auth_token } = ctx.pspec;
  return async (hostPort, signal) => {
    const { host, port } = splitHostPort(hostPort);
    let client: PgClient | undefined;
    try {
      client = await connect({
        host,
        port,
        user: "no_user",
        password: storage_auth_token ?? undefined,
        params: { options: `-c timeline_id=${timeline_id} tenant_id=${tenant_id}` },
        signal,
      });
      const [res] = await client.simpleQuery("TIMELINE_STATUS", { signal });
      const row = res?.rows[0];
      if (!res || !row) return { found: false };
      const col = (name: string) => {
        const i = res.columns.indexOf(name);
        const v = i >= 0 ? row[i] : null;
        if (v === null || v === undefined) throw new Error(`TIMELINE_STATUS answer has no ${name}`);
        return parseLsn(v);
      };
      return { found: true, flushLsn: col("flush_lsn"), commitLsn: col("commit_lsn") };
    } finally {
      void client?.close().catch(() => {});
    }
  };
}

function splitHostPort(s: string): { host: string; port: number } {
  const i = s.lastIndexOf(":");
  const host = i > 0 ? s.slice(0, i).replace(/^\[(.*)\]$/, "$1") : s;
  const port = i > 0 ? Number(s.slice(i + 1)) : 5432;
  if (!Number.isInteger(port) || port <= 0 || port > 65535)
    throw new Error(`invalid safekeeper address '${s}'`);
  return { host, port };
}

/**
 * Upstream check_safekeepers_synced: stops at a quorum of answers or a quorum
 * of failures; fewer answers than a quorum means "not known", i.e. null.
 */
export async function checkSafekeepersSynced(
  ctx: Pick<StartupContext, "pspec" | "log" | "store" | "signal">,
  probe: TimelineStatusProbe = timelineStatusProbe(ctx),
  timeoutMs = SAFEKEEPER_CHECK_TIMEOUT_MS,
): Promise<Lsn | null> {
  const started = performance.now();
  const sks = ctx.pspec.safekeeper_connstrings;
  const quorum = Math.floor(sks.length / 2) + 1;
  const answers: TimelineStatus[] = [];
  const failures: string[] = [];
  const abort = new AbortController();
  const onShutdown = () => abort.abort(ctx.signal.reason);
  ctx.signal.addEventListener("abort", onShutdown, { once: true });
  try {
    await new Promise<void>((resolve) => {
      let pending = sks.length;
      const settle = () => {
        pending--;
        if (answers.length >= quorum || failures.length >= quorum || pending === 0) resolve();
      };
      for (const sk of sks) {
        const timeout = AbortSignal.timeout(timeoutMs);
        const signal = AbortSignal.any([abort.signal, timeout]);
        const timer = new Promise<never>((_, reject) =>
          signal.addEventListener(
            "abort",
            () => reject(new Error(`timed out after ${timeoutMs} ms`)),
            { once: true },
          ),
        );
        Promise.race([probe(sk, signal), timer]).then(
          (a) => {
            answers.push(a);
            settle();
          },
          (e) => {
            failures.push(`${sk}: ${errorMessage(e)}`);
            settle();
          },
        );
      }
    });
  } finally {
    abort.abort();
    ctx.signal.removeEventListener("abort", onShutdown);
    ctx.store.setMetric("sync_sk_check_ms", performance.now() - started);
  }
  if (answers.length < quorum) {
    ctx.log.info(
      `failed sync safekeepers check: ${answers.length} of ${quorum} needed answered; ${failures.join("; ")}`,
    );
    return null;
  }
  const lsn = syncedLsn(answers.slice(0, quorum));
  if (lsn === null)
    ctx.log.info("not synced. safekeepers disagree or have not committed everything flushed");
  return lsn;
}

/** One `postgres --sync-safekeepers` run (upstream sync_safekeepers). */
export async function syncSafekeepers(ctx: StartupContext): Promise<Lsn> {
  const started = performance.now();
  const env: Record<string, string> = { PGDATA: ctx.params.pgdata };
  if (ctx.pspec.storage_auth_token) env.NEON_AUTH_TOKEN = ctx.pspec.storage_auth_token;
  const cmd = ctx.wrap([ctx.params.pgbin, "--sync-safekeepers"]);
  const child: ChildProcess = ctx.runner.spawn({
    cmd,
    env,
    user: ctx.runAs,
    stdout: "lines",
    stderr: "lines",
  });
  ctx.children.syncSafekeepers = child;
  const stdout: string[] = [];
  let status: ExitStatus;
  try {
    const collect = (async () => {
      for await (const l of child.stdoutLines()) stdout.push(l);
    })();
    const relay = relayPostgresLog(child.stderrLines());
    // One await for all three, so a failing pipe read is never an unhandled rejection.
    [status] = await Promise.all([child.exited, collect, relay]);
  } finally {
    ctx.children.syncSafekeepers = null;
  }
  const out = stdout.join("\n");
  if (status.code !== 0) {
    throw new ChildError(cmd, status, {
      message: `postgres --sync-safekeepers exited with non-zero status: ${formatExitStatus(status)}. stdout: ${out}`,
      stderrTail: child.stderrTail(),
    });
  }
  const lsn = parseLsn(out.trim());
  ctx.store.setMetric("sync_safekeepers_ms", performance.now() - started);
  return lsn;
}

/** Backoff before retry n (0-based failed attempt): 0 s, then min(1.1^n, 3) s. */
export function syncBackoffMs(n: number): number {
  return n === 0 ? 0 : Math.min(1.1 ** n, 3) * 1000;
}

export async function syncSafekeepersWithRetries(ctx: StartupContext): Promise<Lsn> {
  for (let attempt = 0; ; attempt++) {
    try {
      return await syncSafekeepers(ctx);
    } catch (e) {
      if (ctx.signal.aborted || attempt >= SYNC_SAFEKEEPERS_RETRIES) {
        ctx.log.error(
          `sync_safekeepers still failed after ${attempt} retries, giving up: ${errorMessage(e)}`,
        );
        throw e;
      }
      ctx.log.warn(`sync_safekeepers failed, will retry (attempt ${attempt}): ${errorMessage(e)}`);
      await ctx.sleep(syncBackoffMs(attempt));
    }
  }
}

/** Start LSN of a primary: fast path, else the sync (upstream prepare_pgdata step 3). */
export async function primaryStartLsn(ctx: StartupContext): Promise<Lsn> {
  ctx.log.info("checking if safekeepers are synced");
  let lsn = await checkSafekeepersSynced(ctx).catch((e) => {
    ctx.log.warn(`safekeepers check failed: ${errorMessage(e)}`);
    return null;
  });
  if (lsn === null) {
    ctx.log.info("starting safekeepers syncing");
    try {
      lsn = await syncSafekeepersWithRetries(ctx);
    } catch (e) {
      throw new Error("failed to sync safekeepers", { cause: e });
    }
  }
  ctx.log.info(`safekeepers synced at LSN ${formatLsn(lsn)}`);
  return lsn;
}
