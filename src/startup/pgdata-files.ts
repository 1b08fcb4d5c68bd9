// The files compute_ctl touches in PGDATA around the basebackup
// (upstream-lifecycle.md §4.3, §4.4.2, §4.4.3, §4.6.2). compute_ctl may run as
// root while postgres runs as `postgres`, so every file or directory created
// here is handed to `owner` when one is given.
import { constants } from "node:fs";
import {
  chmod,
  chown,
  copyFile,
  lchown,
  lstat,
  mkdir,
  open,
  rm,
  stat,
  symlink,
  writeFile,
} from "node:fs/promises";
import { join } from "node:path";
import { ComputeCtlError } from "../errors.ts";
import { TEMP_OVERRIDE_FILE } from "./postgres-conf.ts";

/** uid/gid that postgres runs as (`RunAs` fits). */
export interface FileOwner {
  readonly uid: number;
  readonly gid: number;
}

/** A PGDATA file operation failed; `path` is the file it was about. */
export class PgdataError extends ComputeCtlError {
  override readonly name = "PgdataError";
  readonly path: string;

  constructor(message: string, path: string, options?: { cause?: unknown }) {
    super(message, options);
    this.path = path;
  }
}

/** `pg_hba.conf` line letting every user in from anywhere with a password. */
export const PG_HBA_ALL_MD5 = "host\tall\t\tall\t\tall\t\tmd5";

/** Where dynamic shared memory segments go (the trailing slash is upstream's). */
export const DYNSHMEM_TARGET = "/dev/shm/";

async function own(path: string, owner: FileOwner | undefined): Promise<void> {
  if (owner !== undefined) await chown(path, owner.uid, owner.gid);
}

function errnoCode(e: unknown): string | undefined {
  if (typeof e === "object" && e !== null && "code" in e && typeof e.code === "string") {
    return e.code;
  }
  return undefined;
}

/**
 * Ensures `line` is a line of the file at `path` (created if missing).
 * Returns false when an identical line already exists (nothing written), true
 * when it was appended: after a `\n` if the file had any line, and without a
 * newline of its own. A file ending in `\n` thus gets a blank line before it.
 * Lines are compared as Rust's `BufRead::lines` yields them: split on `\n`,
 * with one `\r` dropped before each `\n`.
 */
export async function lineInFile(path: string, line: string): Promise<boolean> {
  // a+: created if missing, read from the start, every write at the end.
  const handle = await open(path, "a+");
  try {
    const pieces = (await handle.readFile("utf8")).split("\n");
    const last = pieces.pop() ?? "";
    const lines = pieces.map((l) => (l.endsWith("\r") ? l.slice(0, -1) : l));
    if (last !== "") lines.push(last);
    if (lines.includes(line)) return false;
    await handle.write(lines.length > 0 ? `\n${line}` : line);
    return true;
  } finally {
    await handle.close();
  }
}

/**
 * Adds the md5-for-everyone line to `pg_hba.conf`. Returns whether the file
 * changed (`updated pg_hba.conf to allow external connections` upstream) or
 * was already up to date.
 */
export async function updatePgHba(pgdata: string, owner?: FileOwner): Promise<boolean> {
  const path = join(pgdata, "pg_hba.conf");
  const changed = await lineInFile(path, PG_HBA_ALL_MD5);
  await own(path, owner);
  return changed;
}

async function isFile(path: string): Promise<boolean> {
  try {
    return (await stat(path)).isFile();
  } catch {
    return false;
  }
}

/**
 * Older pageservers only send `zenith.signal`; newer postgres reads
 * `neon.signal`. Copies the former to the latter when only the former is a
 * regular file. Returns whether it copied.
 */
export async function fixNeonSignal(pgdata: string, owner?: FileOwner): Promise<boolean> {
  const neon = join(pgdata, "neon.signal");
  const zenith = join(pgdata, "zenith.signal");
  if (await isFile(neon)) return false;
  if (!(await isFile(zenith))) return false;
  await copyFile(zenith, neon);
  await own(neon, owner);
  return true;
}

/**
 * Replaces the basebackup's `pg_dynshmem` directory with a symlink to
 * `/dev/shm/`, so mmap'd dynamic shared memory lives in tmpfs. The directory
 * must exist: its absence means a broken basebackup.
 */
export async function linkDynShmem(pgdata: string, owner?: FileOwner): Promise<void> {
  const path = join(pgdata, "pg_dynshmem");
  let st: Awaited<ReturnType<typeof lstat>>;
  try {
    st = await lstat(path);
  } catch (e) {
    if (errnoCode(e) === "ENOENT") {
      throw new PgdataError("pg_dynshmem is missing from the basebackup", path, { cause: e });
    }
    throw e;
  }
  // A directory, or a symlink left by an earlier start: the link itself goes.
  if (!st.isDirectory() && !st.isSymbolicLink()) {
    throw new PgdataError("pg_dynshmem in the basebackup is not a directory", path);
  }
  await rm(path, { recursive: true });
  await symlink(DYNSHMEM_TARGET, path);
  if (owner !== undefined) await lchown(path, owner.uid, owner.gid);
}

/**
 * Creates an empty `standby.signal` (replica and static computes) unless one
 * exists. Returns true when it created the file, false when one was there.
 */
export async function addStandbySignal(pgdata: string, owner?: FileOwner): Promise<boolean> {
  const path = join(pgdata, "standby.signal");
  try {
    await writeFile(path, "", { flag: "wx" });
  } catch (e) {
    if (errnoCode(e) === "EEXIST") return false;
    throw e;
  }
  await own(path, owner);
  return true;
}

/**
 * A fresh, empty PGDATA with mode 0700: nothing survives from an earlier
 * run. Removal errors are ignored as upstream does (the mkdir then reports
 * the real problem); lakebase tolerates a directory that is still there.
 */
export async function createPgdata(
  pgdata: string,
  owner?: FileOwner,
  options: { allowExisting?: boolean } = {},
): Promise<void> {
  await rm(pgdata, { recursive: true, force: true }).catch(() => undefined);
  try {
    await mkdir(pgdata);
  } catch (e) {
    if (!(options.allowExisting === true && errnoCode(e) === "EEXIST")) {
      throw new PgdataError(`could not create data directory ${pgdata}`, pgdata, { cause: e });
    }
  }
  // Explicit chmod: mkdir's mode is filtered by the umask, postgres insists on 0700.
  await chmod(pgdata, 0o700);
  await own(pgdata, owner);
}

/**
 * Runs `fn` with `options` (e.g. `neon.max_cluster_size=-1`) in the override
 * file that postgresql.conf includes last, then empties the file again, also
 * when `fn` fails. The file is left behind, empty. As upstream, an error while
 * emptying it wins over `fn`'s own result.
 */
export async function withTempOverride<T>(
  pgdata: string,
  options: string,
  fn: () => Promise<T>,
  owner?: FileOwner,
): Promise<T> {
  const path = join(pgdata, TEMP_OVERRIDE_FILE);
  const handle = await open(path, constants.O_WRONLY | constants.O_CREAT | constants.O_TRUNC);
  try {
    try {
      await own(path, owner);
      await handle.writeFile(options);
      return await fn();
    } finally {
      await handle.truncate(0);
    }
  } finally {
    await handle.close();
  }
}

/**
 * Writes `postgresql.conf`, truncating it in place as upstream does. The mode
 * of a new file is 0666 minus the umask (upstream's `File::create`); PGDATA's
 * 0700 is what keeps it private.
 */
export async function writePostgresConf(
  pgdata: string,
  text: string,
  owner?: FileOwner,
): Promise<void> {
  const path = join(pgdata, "postgresql.conf");
  await writeFile(path, text);
  await own(path, owner);
}
