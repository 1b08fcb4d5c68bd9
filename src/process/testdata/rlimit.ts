// Child for reaper.test.ts: tries to raise RLIMIT_CORE and reports the result.
import { readFileSync } from "node:fs";
import { setCoreRlimitUnlimited } from "../reaper.ts";

const result = setCoreRlimitUnlimited();
const limits = readFileSync("/proc/self/limits", "utf8")
  .split("\n")
  .find((l) => l.startsWith("Max core file size"));
process.stdout.write(
  `${JSON.stringify({ result, limits: limits?.split(/\s{2,}/).slice(1, 3) })}\n`,
);
