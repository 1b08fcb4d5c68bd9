// A test-only pgbin directory for vanilla PostgreSQL (docs/upstream-lifecycle.md §13
// item 1): its `postgres` is a POSIX sh script that answers `--sync-safekeepers`
// like Neon's walproposer (an LSN on stdout, exit 0), or fails as told, and execs
// the real postgres for anything else. The tools compute_ctl resolves next to
// --pgbin are symlinks to the real ones. Every sync call is logged for assertions.

import { constants } from "node:fs";
import {
  access,
  chmod,
  chown,
  mkdir,
  readFile,
  rm,
  stat,
  symlink,
  writeFile,
} from "node:fs/promises";
import { dirname, join, resolve } from "node:path";
import { type RunAs, resolveRunAs } from "../process/user.ts";
import { tryParseLsn } from "../spec/lsn.ts";

export interface SyncSafekeepersBehaviour {
  exitCode: number;
  /** Printed as is (add the newline yourself). */
  stdout?: string;
  stderr?: string;
  /** Behave like this for the first N calls only, then print the LSN. */
  failTimes?: number;
}

export interface FakePgbinOptions {
  dir: string;
  realPgBinDir: string;
  /** Printed (with a newline) by a successful `--sync-safekeepers`. */
  lsn?: string;
  behaviour?: SyncSafekeepersBehaviour;
  /** Sleep before answering, e.g. to test that compute_ctl forwards SIGTERM. */
  sleepMs?: number;
  /** Also require `$PGDATA/postgresql.conf` to contain this text (e.g. `neon.safekeepers`). */
  confMustContain?: string;
  /** Who will run the script (owns its state files); default postgres when we are root. */
  runAs?: RunAs | null;
}

export interface SyncSafekeepersCall {
  n: number;
  args: string[];
  /** Undefined when the variable was not set at all. */
  pgdata: string | undefined;
  neonAuthToken: string | undefined;
  uid: number;
  cwd: string;
  /** Undefined while the call runs, or when it was killed by a signal it did not trap. */
  exitCode: number | undefined;
  /** Set when a SIGTERM/SIGINT arrived during `sleepMs`. */
  signal: string | undefined;
}

export interface FakePgbin {
  dir: string;
  /** The path to pass as compute_ctl's `--pgbin`. */
  postgres: string;
  calls(): Promise<SyncSafekeepersCall[]>;
  /** Forget the calls made so far (and restart the failTimes count). */
  reset(): Promise<void>;
}

/** Tools compute_ctl runs from the --pgbin directory. */
export const LINKED_TOOLS = [
  "pg_ctl",
  "pg_config",
  "initdb",
  "pg_isready",
  "pg_controldata",
  "pg_dump",
];

const STATE = ".sync-safekeepers";

/** A single-quoted sh word. */
export function shQuote(s: string): string {
  return `'${s.replaceAll("'", `'\\''`)}'`;
}

function script(opts: FakePgbinOptions, stateDir: string): string {
  const realPostgres = shQuote(join(resolve(opts.realPgBinDir), "postgres"));
  const b = opts.behaviour;
  // How many calls misbehave: all of them without failTimes.
  const failing =
    b === undefined ? "false" : b.failTimes === undefined ? "true" : `[ "$n" -le ${b.failTimes} ]`;
  const lines = [
    "#!/bin/sh",
    "# Written by makeSyncSafekeepersPgbin (compute_ctl dev tests). Not a real postgres.",
    'if [ "$1" != "--sync-safekeepers" ]; then',
    `  exec ${realPostgres} "$@"`,
    "fi",
    `state=${shQuote(stateDir)}`,
    'log="$state/calls.log"',
    'finish() { echo "exit $n $1" >> "$log"; exit "$1"; }',
    'n=$(( $(cat "$state/count" 2>/dev/null || echo 0) + 1 ))',
    'echo "$n" > "$state/count"',
    // Traps go in before the call is logged: once the log shows it, signals are caught.
    ...(opts.sleepMs !== undefined && opts.sleepMs > 0
      ? [
          'trap \'kill "$pid" 2>/dev/null; echo "signal $n TERM" >> "$log"; finish 143\' TERM',
          'trap \'kill "$pid" 2>/dev/null; echo "signal $n INT" >> "$log"; finish 130\' INT',
        ]
      : []),
    "{",
    '  echo "call $n"',
    '  for a in "$@"; do printf \'arg %s\\n\' "$a"; done',
    // printenv tells unset from empty.
    "  if printenv PGDATA >/dev/null; then printf 'env PGDATA=%s\\n' \"$PGDATA\"; fi",
    "  if printenv NEON_AUTH_TOKEN >/dev/null; then",
    "    printf 'env NEON_AUTH_TOKEN=%s\\n' \"$NEON_AUTH_TOKEN\"",
    "  fi",
    "  printf 'uid %s\\n' \"$(id -u)\"",
    "  printf 'cwd %s\\n' \"$(pwd)\"",
    '} >> "$log"',
    'if [ -z "$PGDATA" ]; then',
    '  echo "fake sync-safekeepers: PGDATA is not set" >&2',
    "  finish 2",
    "fi",
    'if [ ! -f "$PGDATA/postgresql.conf" ]; then',
    '  echo "fake sync-safekeepers: $PGDATA/postgresql.conf does not exist" >&2',
    "  finish 2",
    "fi",
  ];
  if (opts.confMustContain !== undefined) {
    const needle = shQuote(opts.confMustContain);
    lines.push(
      `if ! grep -qF -- ${needle} "$PGDATA/postgresql.conf"; then`,
      `  echo "fake sync-safekeepers: postgresql.conf lacks "${needle} >&2`,
      "  finish 2",
      "fi",
    );
  }
  if (opts.sleepMs !== undefined && opts.sleepMs > 0) {
    const seconds = (opts.sleepMs / 1000).toFixed(3);
    // The sleep runs in the background so a trapped signal is handled at once.
    lines.push(`sleep ${seconds} & pid=$!`, 'wait "$pid"', "trap - TERM INT");
  }
  if (b !== undefined) {
    lines.push(
      `if ${failing}; then`,
      ...(b.stdout ? [`  printf '%s' ${shQuote(b.stdout)}`] : []),
      ...(b.stderr ? [`  printf '%s' ${shQuote(b.stderr)} >&2`] : []),
      `  finish ${b.exitCode}`,
      "fi",
    );
  }
  if (opts.lsn !== undefined) lines.push(`printf '%s\\n' ${shQuote(opts.lsn)}`, "finish 0");
  else lines.push('echo "fake sync-safekeepers: no LSN configured" >&2', "finish 1");
  return `${lines.join("\n")}\n`;
}

/** Whether `who` may search (x) directory `path`, judging by mode bits only. */
async function canTraverse(path: string, who: RunAs | null): Promise<boolean> {
  const st = await stat(path);
  const uid = who?.uid ?? process.getuid?.() ?? 0;
  const gid = who?.gid ?? process.getgid?.() ?? 0;
  if (uid === 0) return true;
  if (st.uid === uid) return (st.mode & 0o100) !== 0;
  if (st.gid === gid) return (st.mode & 0o010) !== 0;
  return (st.mode & 0o001) !== 0;
}

export function parseCalls(log: string): SyncSafekeepersCall[] {
  const calls: SyncSafekeepersCall[] = [];
  const byN = new Map<number, SyncSafekeepersCall>();
  for (const line of log.split("\n")) {
    const sp = line.indexOf(" ");
    const key = sp < 0 ? line : line.slice(0, sp);
    const rest = sp < 0 ? "" : line.slice(sp + 1);
    const current = calls[calls.length - 1];
    if (key === "call") {
      const c: SyncSafekeepersCall = {
        n: Number(rest),
        args: [],
        pgdata: undefined,
        neonAuthToken: undefined,
        uid: -1,
        cwd: "",
        exitCode: undefined,
        signal: undefined,
      };
      calls.push(c);
      byN.set(c.n, c);
    } else if (key === "exit" || key === "signal") {
      const [n, v] = rest.split(" ");
      const c = byN.get(Number(n));
      if (c && key === "exit") c.exitCode = Number(v);
      if (c && key === "signal") c.signal = v;
    } else if (current) {
      if (key === "arg") current.args.push(rest);
      else if (key === "uid") current.uid = Number(rest);
      else if (key === "cwd") current.cwd = rest;
      else if (key === "env" && rest.startsWith("PGDATA=")) current.pgdata = rest.slice(7);
      else if (key === "env" && rest.startsWith("NEON_AUTH_TOKEN="))
        current.neonAuthToken = rest.slice(16);
    }
  }
  return calls;
}

/**
 * Write the fake pgbin directory. `dir` and its parents must be searchable by the
 * user that will run it (a private mkdtemp dir is not: chmod it 0755).
 */
export async function makeSyncSafekeepersPgbin(opts: FakePgbinOptions): Promise<FakePgbin> {
  if (
    opts.lsn === undefined &&
    (opts.behaviour === undefined || opts.behaviour.failTimes !== undefined)
  ) {
    throw new Error("makeSyncSafekeepersPgbin: an lsn is needed unless every call fails");
  }
  if (opts.lsn !== undefined && tryParseLsn(opts.lsn) === undefined) {
    throw new Error(`makeSyncSafekeepersPgbin: bad LSN ${opts.lsn} (use behaviour for garbage)`);
  }
  const runAs = opts.runAs === undefined ? resolveRunAs() : opts.runAs;
  const dir = resolve(opts.dir);
  await mkdir(dir, { recursive: true });
  await chmod(dir, 0o755);
  for (let p = dirname(dir); ; p = dirname(p)) {
    if (!(await canTraverse(p, runAs))) {
      throw new Error(
        `makeSyncSafekeepersPgbin: ${p} is not searchable by ${runAs?.name ?? "us"}; the fake postgres could not run`,
      );
    }
    if (dirname(p) === p) break;
  }
  const stateDir = join(dir, STATE);
  await rm(stateDir, { recursive: true, force: true });
  await mkdir(stateDir, { mode: 0o755 });
  if (runAs) await chown(stateDir, runAs.uid, runAs.gid);

  const postgres = join(dir, "postgres");
  await rm(postgres, { force: true });
  await writeFile(postgres, script(opts, stateDir), { mode: 0o755 });
  await chmod(postgres, 0o755);
  for (const tool of LINKED_TOOLS) {
    const link = join(dir, tool);
    await rm(link, { force: true });
    await symlink(join(resolve(opts.realPgBinDir), tool), link);
  }
  await access(postgres, constants.X_OK);

  return {
    dir,
    postgres,
    async calls() {
      try {
        return parseCalls(await readFile(join(stateDir, "calls.log"), "utf8"));
      } catch {
        return [];
      }
    },
    async reset() {
      await rm(join(stateDir, "calls.log"), { force: true });
      await rm(join(stateDir, "count"), { force: true });
    },
  };
}
