// Helpers for this folder's tests: wait for a condition with a deadline
// (never a bare sleep), and look at processes through /proc.

import { readFileSync } from "node:fs";
import { parseProcStat } from "./reaper.ts";

export { until } from "../testing/until.ts";

/** "R", "S", "Z", ... or null when the pid no longer exists. */
export function procState(pid: number): string | null {
  try {
    return parseProcStat(readFileSync(`/proc/${pid}/stat`, "utf8"))?.state ?? null;
  } catch {
    return null;
  }
}

/** Gone, or a zombie waiting for a parent that is not us. */
export function isDead(pid: number): boolean {
  const s = procState(pid);
  return s === null || s === "Z";
}

/** Resolves with the promise's value, or with `fallback` when it takes longer than `ms`. */
export async function within<T, F>(p: Promise<T>, ms: number, fallback: F): Promise<T | F> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const t = new Promise<F>((resolve) => {
    timer = setTimeout(() => resolve(fallback), ms);
  });
  try {
    return await Promise.race([p, t]);
  } finally {
    clearTimeout(timer);
  }
}
