// Logs N lines, then one more straight to the writer, then exits 3 at once:
// src/log.test.ts checks that all of them reach a slow stderr pipe.
import { log, stderr } from "./log.ts";

const n = Number(process.argv[2] ?? 20_000);
for (let i = 0; i < n; i++) log.info(`line ${i} ${"x".repeat(100)}`);
stderr.write("Error: last\n");
process.exit(3);
