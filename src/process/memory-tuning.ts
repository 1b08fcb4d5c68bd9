// The Bun runtime's commit charge. A NeonVM compute runs with vm.overcommit_memory=2,
// where every private writable mapping counts against the commit limit, touched or
// not. Bun reserves three large regions before any of our code runs: JSC's Structure
// heap (4 GiB), JSC's executable-memory pool (1 GiB) and mimalloc's first arena
// (1 GiB, PROT_NONE until used under strict overcommit). Measured: starting the
// binary raised Committed_AS by ~5 GiB. Their sizes are read from the environment at
// start-up only, so compute_ctl re-executes itself once (same PID: it is PID 1) with
// them set, marked so it does not loop, and removes what it added before it spawns
// anything. See docs/PERFORMANCE.md "Memory footprint".

import { existsSync, readFileSync } from "node:fs";

/** Present in the re-executed process: the names of the variables we added. */
export const TUNED_MARKER = "COMPUTE_CTL_MEMORY_TUNED";

const MiB = 1024 * 1024;

/** What we set unless the operator already set it (an operator's value wins). */
export const MEMORY_SETTINGS: Readonly<Record<string, string>> = {
  // JSC's Structure heap (object shapes), 4 GiB by default and halved only when the
  // reservation fails. A power of two of at least 64 MiB (32 MiB aborts in mimalloc).
  // Running out of it aborts the process: a running compute uses ~0.6 MiB of it,
  // also after thousands of API requests and /configure calls, so 64 MiB is ~100x.
  BUN_JSC_structureHeapSizeInKB: String((64 * MiB) / 1024),
  // JSC's JIT code pool, 1 GiB by default; ~1.6 MiB used after the same load. A full
  // pool makes JIT compilations fail and code stay in the lower tiers (by JSC's
  // design; not exercised here), unlike the Structure heap.
  BUN_JSC_jitMemoryReservationSize: String(32 * MiB),
  // mimalloc's arena reservation, 1 GiB by default, taken before main().
  MIMALLOC_ARENA_RESERVE: "64M",
};

export type Env = Record<string, string | undefined>;

export type MemoryTuningPlan =
  /** Replace this process image: `execve(file, args, env)`. */
  | { action: "exec"; file: string; args: string[]; env: Record<string, string> }
  /** Run on; delete `strip` from the environment first so children never see them. */
  | { action: "continue"; strip: string[] };

export interface MemoryTuningInput {
  env: Env;
  /** The exact argv this process was started with (/proc/self/cmdline), or undefined. */
  cmdline: string[] | undefined;
  /** The executable to re-run: /proc/self/exe, the very inode even if replaced on disk. */
  exe: string | undefined;
  canExec: boolean;
}

/** Pure: what to do about the runtime's reservations, given the process's start state. */
export function planMemoryTuning(input: MemoryTuningInput): MemoryTuningPlan {
  const { env } = input;
  const marker = env[TUNED_MARKER];
  if (marker !== undefined) {
    // The second run (or an operator opting out with an empty marker): drop only
    // what we added, so children get the operator's environment exactly.
    const added = marker.split(",").filter((k) => Object.hasOwn(MEMORY_SETTINGS, k));
    return { action: "continue", strip: [TUNED_MARKER, ...added] };
  }
  const missing = Object.keys(MEMORY_SETTINGS).filter((k) => env[k] === undefined);
  if (missing.length === 0 || !input.canExec || !input.cmdline?.length || !input.exe) {
    return { action: "continue", strip: [] };
  }
  const next: Record<string, string> = {};
  for (const [k, v] of Object.entries(env)) if (v !== undefined) next[k] = v;
  for (const k of missing) next[k] = MEMORY_SETTINGS[k] as string;
  next[TUNED_MARKER] = missing.join(",");
  return { action: "exec", file: input.exe, args: input.cmdline, env: next };
}

/** argv exactly as the kernel has it (runtime flags and argv[0] included), or undefined. */
function readCmdline(): string[] | undefined {
  try {
    const raw = readFileSync("/proc/self/cmdline", "utf8");
    const args = raw.split("\0");
    if (args.at(-1) === "") args.pop();
    return args;
  } catch {
    return undefined;
  }
}

/**
 * Re-executes this process with MEMORY_SETTINGS once, or (in the re-executed
 * process) removes what was added. Returns only when no re-exec happened. Call
 * it before anything is spawned or listened on; never for --help or --version.
 */
export function applyMemoryTuning(): void {
  const execve = process.execve?.bind(process);
  const canExec = process.platform === "linux" && execve !== undefined;
  const plan = planMemoryTuning({
    env: process.env,
    cmdline: canExec ? readCmdline() : undefined,
    exe: canExec && existsSync("/proc/self/exe") ? "/proc/self/exe" : undefined,
    canExec,
  });
  if (plan.action === "continue") {
    for (const k of plan.strip) delete process.env[k];
    return;
  }
  try {
    // Returns only on failure (canExec made sure it exists).
    execve?.(plan.file, plan.args, plan.env);
  } catch (e) {
    // Still correct, only heavier: say so once and run on with the runtime's defaults.
    const why = e instanceof Error ? e.message : String(e);
    process.stderr.write(
      `compute_ctl: could not re-execute with smaller runtime reservations (${why}); continuing without\n`,
    );
  }
}
