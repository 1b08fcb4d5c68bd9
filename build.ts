// Builds dist/compute_ctl: one self-contained executable (`bun build --compile`).
//
//   bun run build [--target linux-x64|linux-x64-baseline|linux-arm64] [--outfile PATH]
//
// The target's Bun runtime is taken from the npm registry's @oven/bun-<target>
// package (the only registry this project may reach), cached in .cache/, and
// passed as --compile-executable-path, so a build never depends on Bun's own
// download location. The host's target reuses the running bun binary.
import { existsSync, mkdirSync, readdirSync, renameSync, rmSync } from "node:fs";
import { join } from "node:path";

const TARGETS = ["linux-x64", "linux-x64-baseline", "linux-arm64"] as const;
type Target = (typeof TARGETS)[number];

function arg(name: string): string | undefined {
  const i = process.argv.indexOf(name);
  if (i >= 0) return process.argv[i + 1];
  const eq = process.argv.find((a) => a.startsWith(`${name}=`));
  return eq?.slice(name.length + 1);
}

function fail(msg: string): never {
  console.error(`build: ${msg}`);
  process.exit(2);
}

const root = new URL(".", import.meta.url).pathname;
const target = (arg("--target") ?? "linux-x64") as Target;
if (!TARGETS.includes(target))
  fail(`--target must be one of ${TARGETS.join(", ")}, got '${target}'`);
const outfile =
  arg("--outfile") ??
  join(root, "dist", target === "linux-x64" ? "compute_ctl" : `compute_ctl-${target}`);
const buildTag = process.env.BUILD_TAG || "latest";
const pkg = await Bun.file(join(root, "package.json")).json();

function hostTarget(): Target | undefined {
  if (process.platform !== "linux") return undefined;
  if (process.arch === "x64") return "linux-x64";
  if (process.arch === "arm64") return "linux-arm64";
  return undefined;
}

/** The npm package holding a target's runtime (Bun names arm64 "aarch64" there). */
const RUNTIME_PACKAGE: Record<Target, string> = {
  "linux-x64": "@oven/bun-linux-x64",
  "linux-x64-baseline": "@oven/bun-linux-x64-baseline",
  "linux-arm64": "@oven/bun-linux-aarch64",
};

async function runtimeFor(t: Target): Promise<string> {
  if (t === hostTarget()) return process.execPath;
  const version = Bun.version;
  const dir = join(root, ".cache", "bun-runtime", `${t}-${version}`);
  const bin = join(dir, "package", "bin", "bun");
  if (existsSync(bin)) return bin;
  mkdirSync(dir, { recursive: true });
  const spec = `${RUNTIME_PACKAGE[t]}@${version}`;
  console.error(`build: fetching ${spec} from the npm registry`);
  const pack = Bun.spawnSync(["npm", "pack", "--silent", spec], {
    cwd: dir,
    stdout: "pipe",
    stderr: "pipe",
  });
  if (pack.exitCode !== 0) {
    fail(
      `npm pack ${spec} failed: ${`${pack.stdout}${pack.stderr}`.trim() || `exit ${pack.exitCode}`}`,
    );
  }
  const tgz = readdirSync(dir).find((f) => f.endsWith(".tgz"));
  if (!tgz) fail(`npm pack left no tarball in ${dir}`);
  const untar = Bun.spawnSync(["tar", "-xzf", tgz, "-C", dir], { cwd: dir, stderr: "pipe" });
  if (untar.exitCode !== 0) fail(`cannot unpack ${tgz}: ${untar.stderr.toString().trim()}`);
  rmSync(join(dir, tgz));
  if (!existsSync(bin)) fail(`${tgz} has no package/bin/bun`);
  return bin;
}

const runtime = await runtimeFor(target);
mkdirSync(join(outfile, ".."), { recursive: true });
const tmp = `${outfile}.tmp`;
const cmd = [
  process.execPath,
  "build",
  "--compile",
  `--target=bun-${target}`,
  `--compile-executable-path=${runtime}`,
  // Bytecode halves start-up; it needs ESM, and fails quietly without it.
  "--bytecode",
  "--format=esm",
  "--minify",
  // One chunk per lazily imported part: the entry chunk (CLI, memory tuning) then
  // loads no more than it needs, so the start-up re-exec (src/process/memory-tuning.ts)
  // costs ~8 ms instead of ~20, and --help/--version stay small.
  "--splitting",
  "--no-compile-autoload-dotenv",
  "--no-compile-autoload-bunfig",
  `--define=process.env.COMPUTE_CTL_BUILD_TAG=${JSON.stringify(buildTag)}`,
  `--define=process.env.COMPUTE_CTL_VERSION=${JSON.stringify(pkg.version)}`,
  `--outfile=${tmp}`,
  join(root, "src", "main.ts"),
];
const started = performance.now();
const p = Bun.spawnSync(cmd, { stdout: "pipe", stderr: "pipe" });
const out = `${p.stdout.toString()}${p.stderr.toString()}`;
// `bun build --bytecode` can print an error and still exit 0: treat any error line as failure.
if (p.exitCode !== 0 || /^error:/m.test(out)) {
  rmSync(tmp, { force: true });
  fail(`bun build failed:\n${out}`);
}
renameSync(tmp, outfile);
const size = Bun.file(outfile).size;
console.error(
  `build: ${outfile} (${target}, build_tag ${buildTag}) ${(size / 1e6).toFixed(1)} MB in ${Math.round(performance.now() - started)} ms`,
);
