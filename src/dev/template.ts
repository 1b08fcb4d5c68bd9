// The data directory the pageserver stand-in serves as a "basebackup": a vanilla
// cluster made by initdb with the superuser compute_ctl expects, shaped like what a
// real pageserver ships (no postgresql.conf, an empty postgresql.auto.conf,
// pg_dynshmem/, neon.signal and zenith.signal). Built once per PG major version and
// cached; concurrent builders race on an atomic rename.

import { randomBytes } from "node:crypto";
import {
  chmod,
  chown,
  copyFile,
  lstat,
  mkdir,
  mkdtemp,
  readdir,
  readFile,
  readlink,
  rename,
  rm,
  symlink,
  utimes,
  writeFile,
} from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ComputeCtlError } from "../errors.ts";
import { identityEnv, type RunAs, resolveRunAs } from "../process/user.ts";
import { formatLsn, tryParseLsn } from "../spec/lsn.ts";

/** Bump when the template's content changes, so stale caches are not reused. */
export const TEMPLATE_FORMAT_VERSION = 1;

/** The superuser compute_ctl connects as (`-c role=cloud_admin`, the `--connstr` user). */
export const TEMPLATE_SUPERUSER = "cloud_admin";

export interface TemplateCluster {
  /** The data directory to archive. Read-only: shared by every user of the cache. */
  dir: string;
  /** `Latest checkpoint location`: a static compute's LSN must not be below it. */
  checkpointLsn: string;
  checkpointLsnValue: bigint;
  /** PG major version, e.g. 15. */
  pgVersion: number;
}

export interface TemplateOptions {
  pgBinDir: string;
  cacheDir: string;
  /** Who runs initdb; default the `postgres` user when we are root, else ourselves. */
  runAs?: RunAs | null;
}

export class TemplateError extends ComputeCtlError {
  override readonly name = "TemplateError";
}

interface Manifest {
  format: number;
  pgVersion: number;
  checkpointLsn: string;
}

const MANIFEST = "template.json";
const PGDATA = "pgdata";

/** Runs a tool to completion; throws with its output on failure. */
async function run(cmd: string[], runAs: RunAs | null): Promise<string> {
  const env: Record<string, string> = {
    PATH: process.env.PATH ?? "/usr/bin:/bin",
    // pg_controldata's labels are translated; we parse them.
    LC_ALL: "C",
    LANG: "C",
    ...(runAs ? identityEnv(runAs) : { HOME: process.env.HOME ?? "/" }),
  };
  const proc = Bun.spawn(cmd, {
    env,
    stdin: "ignore",
    stdout: "pipe",
    stderr: "pipe",
    ...(runAs ? { uid: runAs.uid, gid: runAs.gid } : {}),
  });
  const [out, err, code] = await Promise.all([
    new Response(proc.stdout).text(),
    new Response(proc.stderr).text(),
    proc.exited,
  ]);
  if (code !== 0) {
    throw new TemplateError(`${cmd.join(" ")} exited with ${code}: ${err.trim() || out.trim()}`);
  }
  return out;
}

/** The major version from `postgres --version` ("postgres (PostgreSQL) 15.18 ..."). */
export function parsePgVersion(text: string): number | undefined {
  const m = /\(PostgreSQL\) (\d+)/.exec(text);
  return m?.[1] === undefined ? undefined : Number(m[1]);
}

/** `Database cluster state` and `Latest checkpoint location` from pg_controldata's output. */
export function parseControlData(text: string): { state: string; checkpointLsn: bigint } {
  const field = (label: string): string | undefined => {
    for (const line of text.split("\n")) {
      const at = line.indexOf(":");
      if (at > 0 && line.slice(0, at).trim() === label) return line.slice(at + 1).trim();
    }
    return undefined;
  };
  const state = field("Database cluster state");
  const lsnText = field("Latest checkpoint location");
  const checkpointLsn = lsnText === undefined ? undefined : tryParseLsn(lsnText);
  if (state === undefined || checkpointLsn === undefined) {
    throw new TemplateError(`cannot read pg_controldata output:\n${text}`);
  }
  return { state, checkpointLsn };
}

async function readManifest(dir: string): Promise<TemplateCluster | undefined> {
  try {
    const m = JSON.parse(await readFile(join(dir, MANIFEST), "utf8")) as Partial<Manifest>;
    const lsn = typeof m.checkpointLsn === "string" ? tryParseLsn(m.checkpointLsn) : undefined;
    if (m.format !== TEMPLATE_FORMAT_VERSION || typeof m.pgVersion !== "number" || !lsn) {
      return undefined;
    }
    await lstat(join(dir, PGDATA, "PG_VERSION"));
    return {
      dir: join(dir, PGDATA),
      checkpointLsn: formatLsn(lsn),
      checkpointLsnValue: lsn,
      pgVersion: m.pgVersion,
    };
  } catch {
    return undefined;
  }
}

/** Copy a tree keeping modes, mtimes and symlinks; files end up owned by us. */
async function copyTree(from: string, to: string): Promise<void> {
  const st = await lstat(from);
  if (st.isSymbolicLink()) {
    await symlink(await readlink(from), to);
    return;
  }
  if (st.isDirectory()) {
    await mkdir(to);
    for (const name of await readdir(from)) await copyTree(join(from, name), join(to, name));
  } else if (st.isFile()) {
    await copyFile(from, to);
  } else {
    throw new TemplateError(`unexpected file type in the template: ${from}`);
  }
  await chmod(to, st.mode & 0o7777);
  await utimes(to, st.atime, st.mtime);
}

/** initdb into a scratch dir, shape it like a basebackup and check it is shut down. */
async function build(
  pgBinDir: string,
  runAs: RunAs | null,
  pgVersion: number,
  into: string,
): Promise<Manifest> {
  // A scratch dir under the system tmp, which the postgres user can always reach
  // (the cache dir's parents may be private to us).
  const scratch = await mkdtemp(join(tmpdir(), "compute-ctl-template-"));
  try {
    if (runAs) await chown(scratch, runAs.uid, runAs.gid);
    const pgdata = join(scratch, PGDATA);
    await run(
      [
        join(pgBinDir, "initdb"),
        "-D",
        pgdata,
        "-U",
        TEMPLATE_SUPERUSER,
        "--encoding=UTF8",
        "--locale=C",
        "--auth=trust",
        "--no-instructions",
        "--no-sync",
      ],
      runAs,
    );
    const control = parseControlData(await run([join(pgBinDir, "pg_controldata"), pgdata], runAs));
    if (control.state !== "shut down") {
      throw new TemplateError(`initdb left the cluster in state "${control.state}"`);
    }
    const version = (await readFile(join(pgdata, "PG_VERSION"), "utf8")).trim();
    if (Number(version) !== pgVersion) {
      throw new TemplateError(`initdb made a PG ${version} cluster, expected ${pgVersion}`);
    }
    // compute_ctl writes postgresql.conf before unpacking; the tarball must not carry one.
    await rm(join(pgdata, "postgresql.conf"), { force: true });
    await writeFile(join(pgdata, "postgresql.auto.conf"), "");
    // compute_ctl replaces it with a symlink and fails when it is missing.
    await mkdir(join(pgdata, "pg_dynshmem"), { recursive: true, mode: 0o700 });
    // What the pageserver writes for a timeline created from initdb: the previous
    // record is the shutdown checkpoint. Vanilla postgres ignores both files.
    const signal = `PREV LSN: ${formatLsn(control.checkpointLsn)}`;
    await writeFile(join(pgdata, "neon.signal"), signal, { mode: 0o600 });
    await writeFile(join(pgdata, "zenith.signal"), signal, { mode: 0o600 });
    await copyTree(pgdata, join(into, PGDATA));
    const manifest: Manifest = {
      format: TEMPLATE_FORMAT_VERSION,
      pgVersion,
      checkpointLsn: formatLsn(control.checkpointLsn),
    };
    await writeFile(join(into, MANIFEST), `${JSON.stringify(manifest, null, 2)}\n`);
    return manifest;
  } finally {
    await rm(scratch, { recursive: true, force: true });
  }
}

/**
 * The cached template for the postgres in `pgBinDir`, built on first use. Safe when
 * several processes call it at once: each builds in its own directory and the first
 * rename into place wins; the others use the winner's.
 */
export async function ensureTemplateCluster(opts: TemplateOptions): Promise<TemplateCluster> {
  const runAs = opts.runAs === undefined ? resolveRunAs() : opts.runAs;
  const versionText = await run([join(opts.pgBinDir, "postgres"), "--version"], runAs);
  const pgVersion = parsePgVersion(versionText);
  if (pgVersion === undefined) {
    throw new TemplateError(`cannot tell the PG version from "${versionText.trim()}"`);
  }
  await mkdir(opts.cacheDir, { recursive: true });
  const final = join(opts.cacheDir, `template-pg${pgVersion}-f${TEMPLATE_FORMAT_VERSION}`);
  const cached = await readManifest(final);
  if (cached) return cached;

  const tmp = join(opts.cacheDir, `.build-${process.pid}-${randomBytes(6).toString("hex")}`);
  await mkdir(tmp, { mode: 0o755 });
  try {
    await build(opts.pgBinDir, runAs, pgVersion, tmp);
    try {
      await rename(tmp, final);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code !== "ENOTEMPTY" && code !== "EEXIST") throw err;
      // Someone else got there first, or a broken leftover sits in the way.
      const winner = await readManifest(final);
      if (winner) return winner;
      const stale = `${final}.stale-${randomBytes(6).toString("hex")}`;
      try {
        await rename(final, stale);
        await rename(tmp, final);
      } catch {
        // Lost another race: whatever is in place now is checked below.
      }
      await rm(stale, { recursive: true, force: true });
    }
  } finally {
    await rm(tmp, { recursive: true, force: true });
  }
  const built = await readManifest(final);
  if (!built) throw new TemplateError(`template cache at ${final} is unreadable after building`);
  return built;
}
