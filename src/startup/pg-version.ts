// `pg_config --version` at start (upstream get_pg_version_string): the major
// version must be 14–17; it names remote-extension paths and the binaries'
// expectations. Upstream panics (exit 101) on failure; we fail with a message.

import { pgConfigPath } from "../cli.ts";
import { ComputeCtlError, errorMessage } from "../errors.ts";
import { type ProcessRunner, runToCompletion } from "../process/runner.ts";

export const SUPPORTED_PG_MAJORS = [14, 15, 16, 17] as const;

/** `PostgreSQL 15.18 (Debian …)` → 15; as upstream, something must follow the major. */
export function parsePgVersionString(text: string): number {
  const m = /^PostgreSQL (\d+).+/.exec(text.trim());
  const major = m?.[1] === undefined ? undefined : Number(m[1]);
  if (major === undefined)
    throw new ComputeCtlError(`cannot parse pg_config --version output '${text.trim()}'`);
  if (!(SUPPORTED_PG_MAJORS as readonly number[]).includes(major)) {
    throw new ComputeCtlError(`Unsupported postgres version ${major} (supported: 14, 15, 16, 17)`);
  }
  return major;
}

export interface PgInstall {
  major: number;
  /** `pg_config --pkglibdir`: where `neon.so` would be. */
  pkglibdir: string;
}

export async function getPgVersion(runner: ProcessRunner, pgbin: string): Promise<number> {
  return (await getPgInstall(runner, pgbin)).major;
}

/** One `pg_config --version --pkglibdir` run: the version check and where libraries live. */
export async function getPgInstall(runner: ProcessRunner, pgbin: string): Promise<PgInstall> {
  const bin = pgConfigPath(pgbin);
  let out: string[];
  try {
    out = (
      await runToCompletion(
        runner,
        { cmd: [bin, "--version", "--pkglibdir"] },
        { deadline: performance.now() + 10_000 },
      )
    ).stdout;
  } catch (e) {
    throw new ComputeCtlError(
      `pg_config error: ${errorMessage(e)} (is --pgbin the absolute path of postgres?)`,
      {
        cause: e,
      },
    );
  }
  return { major: parsePgVersionString(out[0] ?? ""), pkglibdir: (out[1] ?? "").trim() };
}
