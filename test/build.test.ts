// `bun run build --target …` from this host: the baseline build runs here; the
// arm64 one is checked by its ELF header (e_machine AArch64).
import { afterAll, expect, setDefaultTimeout, test } from "bun:test";
import { existsSync, readFileSync, rmSync } from "node:fs";
import { join } from "node:path";
import { REPO, tempDir } from "./helpers/binary.ts";

// Process-level: real postgres and the built binary; each wait has its own deadline.
setDefaultTimeout(60_000);

const out = tempDir("compute-ctl-build-");
afterAll(() => out.cleanup());

function build(target: string, outfile: string) {
  const p = Bun.spawnSync(
    [process.execPath, join(REPO, "build.ts"), "--target", target, "--outfile", outfile],
    {
      stdout: "pipe",
      stderr: "pipe",
      env: { ...process.env, BUILD_TAG: "test-tag" },
    },
  );
  return { code: p.exitCode, err: p.stderr.toString() };
}

test("linux-x64-baseline builds and runs", () => {
  const file = join(out.dir, "cc-baseline");
  const r = build("linux-x64-baseline", file);
  expect(r.err).not.toContain("error");
  expect(r.code).toBe(0);
  const v = Bun.spawnSync([file, "--version"]);
  expect(v.stdout.toString()).toMatch(/^compute_ctl \S+ \(build_tag test-tag, bun /);
}, 120_000);

test("linux-arm64 cross-builds to an AArch64 ELF", () => {
  const file = join(out.dir, "cc-arm64");
  const r = build("linux-arm64", file);
  expect(r.code).toBe(0);
  const head = readFileSync(file).subarray(0, 20);
  expect([...head.subarray(0, 4)]).toEqual([0x7f, 0x45, 0x4c, 0x46]);
  expect(head.readUInt16LE(18)).toBe(0xb7);
}, 120_000);

test("an unknown target is refused with the list", () => {
  const file = join(out.dir, "cc-x");
  const r = build("windows-x64", file);
  expect(r.code).toBe(2);
  expect(r.err).toContain("--target must be one of linux-x64, linux-x64-baseline, linux-arm64");
  expect(existsSync(file)).toBe(false);
  rmSync(file, { force: true });
});
