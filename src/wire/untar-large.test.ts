// Extraction must keep memory bounded by a few chunks, not by file or archive
// size. Measured in a child process (see untar-large.fixture.ts).

import { afterAll, beforeAll, expect, test } from "bun:test";
import * as fs from "node:fs";
import * as path from "node:path";
import { removeTree, tempDir } from "./tar-fixtures.ts";
import { files, MiB, total } from "./untar-large.fixture.ts";

let work = "";
beforeAll(() => {
  work = tempDir("untar-large");
});
afterAll(() => {
  removeTree(work);
});

async function runFixture(mode: "plain" | "gzip", out: string) {
  const script = new URL("./untar-large.fixture.ts", import.meta.url).pathname;
  const p = Bun.spawn([process.execPath, script, mode, out], {
    stdout: "pipe",
    stderr: "pipe",
    timeout: 110_000,
  });
  const [stdout, stderr, code] = await Promise.all([
    new Response(p.stdout).text(),
    new Response(p.stderr).text(),
    p.exited,
  ]);
  if (code !== 0) throw new Error(`fixture exited ${code}: ${stderr}`);
  return JSON.parse(stdout) as { entries: number; bytes: number; growthMiB: number };
}

test("350 MB tar from a generator: RSS grows by less than 60 MiB", async () => {
  const out = path.join(work, "plain");
  const r = await runFixture("plain", out);
  expect({ entries: r.entries, bytes: r.bytes }).toEqual({ entries: files.length, bytes: total });
  expect(fs.statSync(path.join(out, "random/4")).size).toBe(10 * MiB + 123);
  expect(r.growthMiB).toBeLessThan(60);
}, 60_000);

test("the same through CompressionStream and gunzip: RSS grows by less than 60 MiB", async () => {
  const out = path.join(work, "gzip");
  const r = await runFixture("gzip", out);
  expect({ entries: r.entries, bytes: r.bytes }).toEqual({ entries: files.length, bytes: total });
  const sample = fs.readFileSync(path.join(out, "base/5/16390")).subarray(4, 40);
  expect(new TextDecoder().decode(sample)).toBe("ressible row of a relation page, com");
  expect(r.growthMiB).toBeLessThan(60);
}, 120_000);
