// Upstream prewarm_postgres_vm_memory: a compute started without a spec runs a
// throwaway postgres once (initdb, start, SIGQUIT) before its servers listen, so
// the VM's memory is touched before a spec arrives. Vanilla PostgreSQL has no
// `neon` library to preload: then the preload line is left out, with one warning.

import { rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { initdbPath } from "../cli.ts";
import { type ChildProcess, runToCompletion, terminate } from "../process/runner.ts";
import { mkdirOwned } from "../process/user.ts";
import { type PostmasterContext, spawnPostmaster, waitForReady } from "./postgres.ts";

export const PREWARM_PORT = 51055;

/** The three lines upstream writes (`neon` preloaded only where it exists). */
export function prewarmConf(neonAvailable: boolean): string {
  const lines = ["shared_buffers=65536", `port=${PREWARM_PORT}`];
  if (neonAvailable) lines.push("shared_preload_libraries = 'neon'");
  return `${lines.join("\n")}\n`;
}

export async function prewarmPostgresVmMemory(
  ctx: PostmasterContext,
  opts: { pgbin: string; pgdata: string; neonAvailable: boolean },
): Promise<void> {
  const dir = `${opts.pgdata}.warmup`;
  ctx.log.info(`prewarming VM memory with a throwaway postgres in ${dir}`);
  if (!opts.neonAvailable) {
    ctx.log.warn(
      "the neon library is not installed: prewarming without shared_preload_libraries = 'neon'",
    );
  }
  await rm(dir, { recursive: true, force: true });
  await mkdirOwned(dir, ctx.runAs);
  try {
    // As upstream: initdb's output and exit status are not checked; postgres will tell.
    let initdb: ChildProcess | undefined;
    try {
      await runToCompletion(
        ctx.runner,
        { cmd: [initdbPath(opts.pgbin), "--pgdata", dir], user: ctx.runAs },
        {
          allowFailure: true,
          deadline: performance.now() + 120_000,
          // A termination signal must reach initdb too (and wait for it).
          onSpawn: (child) => {
            initdb = child;
            ctx.children.tools.add(child);
          },
        },
      );
    } finally {
      if (initdb) ctx.children.tools.delete(initdb);
    }
    if (ctx.signal.aborted) return;
    await writeFile(join(dir, "postgresql.conf"), prewarmConf(opts.neonAvailable));
    const pg = spawnPostmaster(ctx, opts.pgbin, dir);
    try {
      await waitForReady(ctx, dir, pg);
    } finally {
      await terminate(pg.child, { signal: "SIGQUIT", graceMs: 5_000 });
      ctx.children.postgres = null;
    }
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}
