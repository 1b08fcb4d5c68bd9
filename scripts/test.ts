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

// Mirror bun test's stderr while keeping it to read the summary.
// Per-test timeout: process-level tests start real postgres; each wait inside
// them has its own deadline.
const proc = Bun.spawn([process.execPath, "test", "--timeout=60000", ...testArgs], {
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
const passed = count("pass");
// Load errors (a file that throws while loading) count as failures.
const failed = count("fail") + count("errors?");
const badExit = code !== 0 && failed === 0;
console.log(`${passed} passed, ${failed + (badExit ? 1 : 0)} failed`);
process.exit(code === 0 && failed === 0 ? 0 : 1);
