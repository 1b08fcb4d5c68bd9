// Child for signals.test.ts: reports the first termination signal, then
// uninstalls its handlers so the next SIGTERM kills it.
import { onTerminationSignals } from "../signals.ts";

// Keeps the process alive until a signal kills it.
setInterval(() => {}, 1000);
const uninstall = onTerminationSignals((sig) => {
  process.stdout.write(`got ${sig}\n`);
  uninstall();
  process.stdout.write("uninstalled\n");
});
process.stdout.write("ready\n");
