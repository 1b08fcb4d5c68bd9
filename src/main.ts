// Entry point of the compute_ctl binary. Parses the command line, then loads
// the rest lazily, so `--help`, `--version` and usage errors stay instant and the
// first /status answer is not held up by modules it does not need.
import { parseCli, usageText } from "./cli.ts";
import { ComputeCtlError, errorMessage, UsageError } from "./errors.ts";
import { applyMemoryTuning } from "./process/memory-tuning.ts";
import { BUILD_TAG, VERSION } from "./version.ts";

async function main(argv: string[]): Promise<number> {
  let parsed: ReturnType<typeof parseCli>;
  try {
    parsed = parseCli(argv, process.env);
  } catch (e) {
    if (e instanceof UsageError) {
      process.stderr.write(`error: ${e.message}\n\n${usageText()}\n`);
      return e.exitCode;
    }
    throw e;
  }
  switch (parsed.kind) {
    case "help":
      process.stdout.write(`${parsed.text}\n`);
      return 0;
    case "version":
      process.stdout.write(`compute_ctl ${VERSION} (build_tag ${BUILD_TAG}, bun ${Bun.version})\n`);
      return 0;
    case "dev": {
      applyMemoryTuning();
      const { runDev } = await import("./dev/dev-command.ts");
      return runDev(parsed.options);
    }
    case "run": {
      // Before anything is spawned: re-executes once with smaller runtime reservations.
      applyMemoryTuning();
      const { runComputeCtl } = await import("./compute-ctl.ts");
      return runComputeCtl(parsed.options);
    }
  }
}

try {
  process.exit(await main(process.argv.slice(2)));
} catch (e) {
  // Last resort: one line, never a stack trace (set COMPUTE_CTL_DEBUG=1 for one).
  // Through the log's writer, so it comes after the lines still pending there
  // (imported here: --help, --version and the memory re-exec need no logger).
  const { stderr } = await import("./log.ts");
  stderr.write(`Error: ${errorMessage(e)}\n`);
  if (process.env.COMPUTE_CTL_DEBUG && e instanceof Error) stderr.write(`${e.stack}\n`);
  process.exit(e instanceof ComputeCtlError ? e.exitCode : 1);
}
