// The test command: type-check, lint, build the binary, then `bun test`, ending
// with one line `N passed, N failed` (CI reads it). Bun has no custom reporter,
// so we mirror its output and read its summary.
const root = new URL("..", import.meta.url).pathname;
process.chdir(root);

async function step(name: string, cmd: string[]): Promise<boolean> {
  console.error(`==> ${name}: ${cmd.join(" ")}`);
  const p = Bun.spawn(cmd, { stdout: "inherit", stderr: "inherit" });
  const code = await p.exited;
  if (code !== 0) console.error(`==> ${name} failed (exit ${code})`);
  return code === 0;
}

const skipPre = process.argv.includes("--no-check");
const testArgs = process.argv.slice(2).filter((a) => a !== "--no-check");

if (!skipPre) {
  const pre: [string, string[]][] = [
    ["typecheck", ["./node_modules/.bin/tsc", "--noEmit", "-p", "."]],
    [
      "lint+format",
      ["./node_modules/.bin/biome", "ci", "--error-on-warnings", "--colors=off", "."],
    ],
    ["build", [process.execPath, "build.ts"]],
  ];
  for (const [name, cmd] of pre) {
    if (!(await step(name, cmd))) {
      console.log("0 passed, 1 failed");
      process.exit(1);
    }
  }
}

interface RunSummary {
  passed: number;
  failed: number;
  ok: boolean;
}

/** Runs `bun test` with `args`, mirroring its stderr while reading its summary. */
async function bunTest(args: string[]): Promise<RunSummary> {
  const proc = Bun.spawn([process.execPath, "test", ...args], {
    stdout: "inherit",
    stderr: "pipe",
    env: { ...process.env, FORCE_COLOR: "0", NO_COLOR: "1" },
  });
  let text = "";
  const decoder = new TextDecoder();
  for await (const chunk of proc.stderr) {
    process.stderr.write(chunk);
    text += decoder.decode(chunk, { stream: true });
  }
  const code = await proc.exited;
  const count = (word: string): number => {
    const m = text.match(new RegExp(`^\\s*(\\d+) ${word}$`, "m"));
    return m ? Number(m[1]) : 0;
  };
  // Load errors (a file that throws while loading) count as failures.
  const failed = count("fail") + count("errors?");
  const badExit = code !== 0 && failed === 0;
  return {
    passed: count("pass"),
    failed: failed + (badExit ? 1 : 0),
    ok: code === 0 && failed === 0,
  };
}

// Unit tests (src/) must pass first time. Process-level tests (test/) run the
// built binary with real postgres on a 2-core machine, so each gets one retry
// for timing; a retried test still fails if it fails twice. Each wait inside
// them has its own deadline; the per-test timeout is a backstop.
const runs =
  testArgs.length > 0
    ? [await bunTest(["--timeout=60000", ...testArgs])]
    : [
        await bunTest(["--timeout=60000", "./src/"]),
        await bunTest(["--timeout=60000", "--retry=1", "./test/"]),
      ];
const passed = runs.reduce((n, r) => n + r.passed, 0);
const failed = runs.reduce((n, r) => n + r.failed, 0);
console.log(`${passed} passed, ${failed} failed`);
process.exit(runs.every((r) => r.ok) ? 0 : 1);
