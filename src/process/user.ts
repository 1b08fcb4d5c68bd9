// "Run postgres as the postgres user when we are root." Upstream compute_ctl
// never switches user (the image starts it as postgres); we accept being
// started as root, e.g. as PID 1, and drop to the user for every child.
// Lookups read /etc/passwd and /etc/group directly: no getent, no shell.

import { readFileSync } from "node:fs";
import { chmod, chown, lchown, mkdir, readdir } from "node:fs/promises";
import { join } from "node:path";
import { ComputeCtlError } from "../errors.ts";
import type { RunAs } from "./runner.ts";

export { identityEnv, type RunAs } from "./runner.ts";

/** We run as root and the user to run children as is missing. */
export class UnknownUserError extends ComputeCtlError {
  override readonly name = "UnknownUserError";
  readonly user: string;

  constructor(user: string, flag: string, options?: { cause?: unknown }) {
    super(
      `compute_ctl runs as root but user '${user}' does not exist; create it or pass ${flag}`,
      options,
    );
    this.user = user;
  }
}

export interface PasswdEntry {
  name: string;
  uid: number;
  gid: number;
  home: string;
  shell: string;
}

export interface GroupEntry {
  name: string;
  gid: number;
  members: string[];
}

/** passwd(5) lines; comments, blanks and malformed lines are skipped. */
export function parsePasswd(text: string): PasswdEntry[] {
  const out: PasswdEntry[] = [];
  for (const line of text.split("\n")) {
    if (line === "" || line.startsWith("#")) continue;
    const f = line.split(":");
    if (f.length < 7) continue;
    const [name = "", , uid = "", gid = "", , home = "", shell = ""] = f;
    if (!/^\d+$/.test(uid) || !/^\d+$/.test(gid)) continue;
    out.push({ name, uid: Number(uid), gid: Number(gid), home, shell });
  }
  return out;
}

/** group(5) lines. */
export function parseGroup(text: string): GroupEntry[] {
  const out: GroupEntry[] = [];
  for (const line of text.split("\n")) {
    if (line === "" || line.startsWith("#")) continue;
    const f = line.split(":");
    if (f.length < 4) continue;
    const [name = "", , gid = "", members = ""] = f;
    if (!/^\d+$/.test(gid)) continue;
    out.push({ name, gid: Number(gid), members: members === "" ? [] : members.split(",") });
  }
  return out;
}

export interface ResolvedUser extends RunAs {
  /** Primary group name from /etc/group (undefined when the gid has no entry). */
  readonly groupName: string | undefined;
  /**
   * Supplementary groups listed in /etc/group. Bun.spawn clears supplementary
   * groups, so the child will NOT have these (e.g. ssl-cert for TLS keys).
   */
  readonly supplementaryGroups: readonly number[];
}

export interface ResolveOptions {
  /** The flag named in the error message (default "--pg-user"). */
  flag?: string;
  passwdPath?: string;
  groupPath?: string;
  /** Effective uid; default ours. Tests pass it to exercise the non-root path. */
  euid?: number;
}

/**
 * The identity to run children as: null when we are not root (behave as
 * upstream: children run as ourselves). As root, the user must exist.
 * Uses the effective uid: setuid in the child needs it to be 0.
 */
export function resolveRunAs(name = "postgres", options: ResolveOptions = {}): ResolvedUser | null {
  const euid = options.euid ?? process.geteuid?.() ?? process.getuid?.() ?? 0;
  if (euid !== 0) return null;
  const flag = options.flag ?? "--pg-user";
  let passwd: string;
  try {
    passwd = readFileSync(options.passwdPath ?? "/etc/passwd", "utf8");
  } catch (err) {
    throw new UnknownUserError(name, flag, { cause: err });
  }
  const entry = parsePasswd(passwd).find((e) => e.name === name);
  if (!entry) throw new UnknownUserError(name, flag);
  let groups: GroupEntry[] = [];
  try {
    groups = parseGroup(readFileSync(options.groupPath ?? "/etc/group", "utf8"));
  } catch {
    // A missing /etc/group only loses the informational fields below.
  }
  return {
    uid: entry.uid,
    gid: entry.gid,
    name: entry.name,
    home: entry.home,
    groupName: groups.find((g) => g.gid === entry.gid)?.name,
    supplementaryGroups: groups
      .filter((g) => g.gid !== entry.gid && g.members.includes(name))
      .map((g) => g.gid),
  };
}

/**
 * chown -R without following symlinks (the links themselves are changed), so
 * a link in pgdata cannot make us chown something outside it.
 */
export async function chownRecursive(dir: string, uid: number, gid: number): Promise<void> {
  await lchown(dir, uid, gid);
  const entries = await readdir(dir, { withFileTypes: true });
  for (const e of entries) {
    const p = join(dir, e.name);
    if (e.isDirectory()) await chownRecursive(p, uid, gid);
    else await lchown(p, uid, gid);
  }
}

/**
 * Creates `path` (and missing parents) and makes it `mode` (default 0700,
 * what postgres demands of PGDATA) and owned by `owner`; an existing directory
 * is fixed up the same way. Parents keep our ownership. `owner` null: ours.
 */
export async function mkdirOwned(
  path: string,
  owner: RunAs | null,
  mode: number = 0o700,
): Promise<void> {
  await mkdir(path, { recursive: true, mode });
  // mkdir's mode is filtered by the umask and ignored for an existing directory.
  await chmod(path, mode);
  if (owner) await chown(path, owner.uid, owner.gid);
}
