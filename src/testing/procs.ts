// Looking at processes through /proc, for tests and benchmarks that must prove
// nothing of theirs is left running.
import { readdirSync, readFileSync } from "node:fs";

/** Live (non-zombie) postmasters: `…/postgres` with an argument `match` accepts, e.g. its -D dir. */
export function postmasterPids(match: (arg: string) => boolean): number[] {
  const pids: number[] = [];
  for (const d of readdirSync("/proc")) {
    if (!/^\d+$/.test(d)) continue;
    try {
      const cmd = readFileSync(`/proc/${d}/cmdline`, "utf8").split("\0");
      const stat = readFileSync(`/proc/${d}/stat`, "utf8");
      if (stat.slice(stat.lastIndexOf(")") + 2).startsWith("Z")) continue;
      if (cmd[0]?.endsWith("postgres") && cmd.slice(1).some(match)) pids.push(Number(d));
    } catch {
      // gone meanwhile
    }
  }
  return pids;
}
