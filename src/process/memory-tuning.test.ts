import { afterEach, describe, expect, test } from "bun:test";
import {
  applyMemoryTuning,
  MEMORY_SETTINGS,
  type MemoryTuningInput,
  planMemoryTuning,
  TUNED_MARKER,
} from "./memory-tuning.ts";

const KEYS = Object.keys(MEMORY_SETTINGS);
const ARGV = ["/usr/local/bin/compute_ctl", "-D", "/pgdata", "--spec-path", "a b", ""];

function input(env: Record<string, string | undefined>, extra: Partial<MemoryTuningInput> = {}) {
  return { env, cmdline: ARGV, exe: "/proc/self/exe", canExec: true, ...extra };
}

describe("planMemoryTuning", () => {
  test("first start: re-exec the same file with the same argv, every setting added and listed", () => {
    const plan = planMemoryTuning(input({ PATH: "/bin", HOME: "/root", UNSET: undefined }));
    expect(plan).toEqual({
      action: "exec",
      file: "/proc/self/exe",
      args: ARGV,
      env: {
        PATH: "/bin",
        HOME: "/root",
        ...MEMORY_SETTINGS,
        [TUNED_MARKER]: KEYS.join(","),
      },
    });
  });

  test("the sizes are ones the runtime accepts", () => {
    const kb = Number(MEMORY_SETTINGS.BUN_JSC_structureHeapSizeInKB);
    // A power of two, at least 64 MiB: 32 MiB and non-powers of two abort at start-up.
    expect(kb >= 64 * 1024 && (kb & (kb - 1)) === 0).toBe(true);
    expect(Number(MEMORY_SETTINGS.BUN_JSC_jitMemoryReservationSize)).toBeGreaterThanOrEqual(
      16 * 1024 * 1024,
    );
    expect(MEMORY_SETTINGS.MIMALLOC_ARENA_RESERVE).toMatch(/^\d+[KMG]$/);
  });

  test("an operator's own value wins and is not listed for removal", () => {
    const plan = planMemoryTuning(input({ BUN_JSC_jitMemoryReservationSize: "67108864" }));
    if (plan.action !== "exec") throw new Error(`expected exec, got ${plan.action}`);
    expect(plan.env.BUN_JSC_jitMemoryReservationSize).toBe("67108864");
    expect(plan.env[TUNED_MARKER]?.split(",")).toEqual(
      KEYS.filter((k) => k !== "BUN_JSC_jitMemoryReservationSize"),
    );
  });

  test.each<[string, Record<string, string | undefined>, string[]]>([
    [
      "re-executed: strips the marker and what it lists",
      { [TUNED_MARKER]: KEYS.join(",") },
      [TUNED_MARKER, ...KEYS],
    ],
    [
      "re-executed after an operator set one: keeps the operator's",
      { [TUNED_MARKER]: "MIMALLOC_ARENA_RESERVE" },
      [TUNED_MARKER, "MIMALLOC_ARENA_RESERVE"],
    ],
    [
      "an empty marker opts out: nothing but the marker goes",
      { [TUNED_MARKER]: "" },
      [TUNED_MARKER],
    ],
    [
      "names the marker lists that are not ours are never stripped",
      { [TUNED_MARKER]: "PATH,LD_PRELOAD" },
      [TUNED_MARKER],
    ],
    ["every setting already given: nothing to do", { ...MEMORY_SETTINGS }, []],
  ])("%s", (_name, env, strip) => {
    expect(planMemoryTuning(input(env))).toEqual({ action: "continue", strip });
  });

  test.each<[string, Partial<MemoryTuningInput>]>([
    ["no execve (not Linux, or an older Bun)", { canExec: false }],
    ["argv unknown (no /proc)", { cmdline: undefined }],
    ["argv empty", { cmdline: [] }],
    ["no executable to re-run", { exe: undefined }],
  ])("cannot re-exec: runs on untouched (%s)", (_name, extra) => {
    expect(planMemoryTuning(input({ PATH: "/bin" }, extra))).toEqual({
      action: "continue",
      strip: [],
    });
  });
});

describe("applyMemoryTuning", () => {
  const saved = { ...process.env };
  afterEach(() => {
    for (const k of [TUNED_MARKER, ...KEYS]) {
      if (saved[k] === undefined) delete process.env[k];
      else process.env[k] = saved[k];
    }
  });

  test("in the re-executed process it removes what was added, and only that", () => {
    process.env[TUNED_MARKER] = "MIMALLOC_ARENA_RESERVE,BUN_JSC_structureHeapSizeInKB";
    process.env.MIMALLOC_ARENA_RESERVE = "64M";
    process.env.BUN_JSC_structureHeapSizeInKB = "65536";
    process.env.BUN_JSC_jitMemoryReservationSize = "1234";
    applyMemoryTuning();
    expect(process.env[TUNED_MARKER]).toBeUndefined();
    expect(process.env.MIMALLOC_ARENA_RESERVE).toBeUndefined();
    expect(process.env.BUN_JSC_structureHeapSizeInKB).toBeUndefined();
    expect(process.env.BUN_JSC_jitMemoryReservationSize).toBe("1234");
  });
});
