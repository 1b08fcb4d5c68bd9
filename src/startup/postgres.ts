// Starting the postmaster and waiting for it: ready when the last line of
// postmaster.pid says `ready` (60 s limit, polled every 100 ms); an early exit
// fails at once. Unlike upstream, a postmaster that did not get ready is
// stopped rather than left behind as an orphan.

import { type FSWatcher, watch } from "node:fs";
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { ComputeCtlError } from "../errors.ts";
import { relayPostgresLog } from "../process/pg-log.ts";
import { type ChildProcess, type ExitStatus, terminate } from "../process/runner.ts";
import type { StartupContext } from "./context.ts";

export const POSTGRES_WAIT_TIMEOUT_MS = 60_000;
export const POSTGRES_POLL_MS = 100;

export interface RunningPostgres {
  child: ChildProcess;
  /** Resolves when the postmaster has exited and its stderr relay reached EOF. */
  exited: Promise<ExitStatus>;
}

/** Last line of postmaster.pid, trimmed, is `ready` (what postgres writes for primaries and hot standbys). */
export function postmasterPidSaysReady(text: string): boolean {
  const lines = text.trimEnd().split("\n");
  return lines.at(-1)?.trim() === "ready";
}

/** What spawning and waiting need: also satisfied by the prewarm instance. */
export type PostmasterContext = Pick<
  StartupContext,
  "runner" | "runAs" | "log" | "children" | "wrap" | "signal" | "sleep"
>;

/** `<pgbin> -D <pgdata>` with its stderr relayed as `PG:` records. */
export function spawnPostmaster(
  ctx: PostmasterContext,
  pgbin: string,
  pgdata: string,
  env: Record<string, string> = {},
): RunningPostgres {
  const cmd = ctx.wrap([pgbin, "-D", pgdata]);
  const child = ctx.runner.spawn({ cmd, env, user: ctx.runAs, stdout: "inherit", stderr: "lines" });
  // Published at once, so a termination signal reaches it even before `ready`.
  ctx.children.postgres = child;
  const relay = relayPostgresLog(child.stderrLines()).catch((e) =>
    ctx.log.warn(`postgres log relay: ${String(e)}`),
  );
  // Backends inherit the postmaster's stderr: its EOF can only come after they are all gone.
  const exited = child.exited.then(async (status) => {
    await relay;
    if (ctx.children.postgres === child) ctx.children.postgres = null;
    return status;
  });
  return { child, exited };
}

/** Upstream start_postgres: the compute's postmaster, with the storage token in its env. */
export function startPostgres(ctx: StartupContext): RunningPostgres {
  const env: Record<string, string> = {};
  if (ctx.pspec.storage_auth_token) env.NEON_AUTH_TOKEN = ctx.pspec.storage_auth_token;
  return spawnPostmaster(ctx, ctx.params.pgbin, ctx.params.pgdata, env);
}

function exitCodeForMessage(status: ExitStatus): number {
  return status.code ?? -1;
}

/** Waits for `ready`; on timeout or shutdown stops the postmaster before failing. */
export function waitForPostgres(
  ctx: StartupContext,
  pg: RunningPostgres,
  timeoutMs = POSTGRES_WAIT_TIMEOUT_MS,
): Promise<void> {
  return waitForReady(ctx, ctx.params.pgdata, pg, timeoutMs);
}

/** Upstream wait_for_postgres for any data directory. */
export async function waitForReady(
  ctx: Pick<StartupContext, "signal" | "sleep">,
  pgdata: string,
  pg: RunningPostgres,
  timeoutMs = POSTGRES_WAIT_TIMEOUT_MS,
): Promise<void> {
  const pidFile = join(pgdata, "postmaster.pid");
  const deadline = performance.now() + timeoutMs;
  let exitStatus: ExitStatus | null = null;
  void pg.child.exited.then((s) => {
    exitStatus = s;
  });
  // As upstream: inotify on PGDATA wakes us when postmaster.pid changes, and the
  // 100 ms poll covers anything a watch can miss.
  let wake: (() => void) | null = null;
  let watcher: FSWatcher | undefined;
  try {
    watcher = watch(pgdata, (_event, name) => {
      if (name === "postmaster.pid") wake?.();
    });
  } catch {
    watcher = undefined;
  }
  try {
    await pollReady();
  } finally {
    watcher?.close();
  }

  async function pollReady(): Promise<void> {
    for (;;) {
      if (exitStatus !== null) {
        throw new ComputeCtlError(
          `Postgres exited unexpectedly with code ${exitCodeForMessage(exitStatus)}`,
        );
      }
      const text = await readFile(pidFile, "utf8").catch(() => "");
      if (postmasterPidSaysReady(text)) return;
      if (ctx.signal.aborted || performance.now() >= deadline) {
        await terminate(pg.child, { signal: "SIGQUIT", graceMs: 5_000 });
        throw new ComputeCtlError(
          ctx.signal.aborted
            ? "shutdown requested while waiting for Postgres to start"
            : "timed out while waiting for Postgres to start",
        );
      }
      // Wake on the child's exit and on file changes too, not just the poll tick.
      const changed = new Promise<void>((resolve) => {
        wake = resolve;
      });
      await Promise.race([ctx.sleep(POSTGRES_POLL_MS), pg.child.exited, changed]);
      wake = null;
    }
  }
}
