// A large archive streamed from a generator, never held in memory: extraction
// must keep memory bounded by a few chunks, not by file or archive size.

import { afterAll, beforeAll, expect, test } from "bun:test";
import * as fs from "node:fs";
import * as path from "node:path";
import { gunzip } from "./gunzip.ts";
import { header, removeTree, tempDir } from "./tar-fixtures.ts";
import { extractTar } from "./untar.ts";

const MiB = 1 << 20;
const CHUNK = 64 * 1024;

interface FileSpec {
  name: string;
  size: number;
  random: boolean;
}

const files: FileSpec[] = [
  ...Array.from({ length: 30 }, (_, i) => ({
    name: `base/5/${16384 + i}`,
    size: 10 * MiB,
    random: false,
  })),
  ...Array.from({ length: 5 }, (_, i) => ({
    name: `random/${i}`,
    size: 10 * MiB + 123,
    random: true,
  })),
];

/** The tar stream for `files`, produced chunk by chunk on demand (no end-of-archive blocks). */
function generatedTar(onChunk: () => void): ReadableStream<Uint8Array> {
  const template = new TextEncoder().encode(
    "compressible row of a relation page, ".repeat(CHUNK / 37 + 1),
  );
  let fileIndex = 0;
  let written = -1; // -1: header not sent yet
  let counter = 0;
  return new ReadableStream<Uint8Array>(
    {
      pull(controller) {
        onChunk();
        const f = files[fileIndex];
        if (f === undefined) {
          controller.close();
          return;
        }
        if (written < 0) {
          controller.enqueue(header({ name: f.name, size: f.size, mode: 0o600, magic: "gnu" }));
          written = 0;
          return;
        }
        const padded = Math.ceil(f.size / 512) * 512;
        const n = Math.min(CHUNK, padded - written);
        const chunk = new Uint8Array(n);
        const data = Math.max(0, Math.min(n, f.size - written));
        if (f.random) {
          for (let off = 0; off < data; off += 65536) {
            crypto.getRandomValues(chunk.subarray(off, Math.min(data, off + 65536)));
          }
        } else {
          chunk.set(template.subarray(0, data));
          new DataView(chunk.buffer).setUint32(0, counter++);
        }
        controller.enqueue(chunk);
        written += n;
        if (written === padded) {
          fileIndex++;
          written = -1;
        }
      },
    },
    { highWaterMark: 0 },
  );
}

let work = "";
beforeAll(() => {
  work = tempDir("untar-large");
});
afterAll(() => {
  removeTree(work);
});

const total = files.reduce((n, f) => n + f.size, 0);

async function measure(run: (onChunk: () => void) => Promise<{ entries: number; bytes: number }>) {
  Bun.gc(true);
  const base = process.memoryUsage.rss();
  let peak = base;
  let chunks = 0;
  const result = await run(() => {
    if (++chunks % 16 === 0) peak = Math.max(peak, process.memoryUsage.rss());
  });
  return { result, growthMiB: (peak - base) / MiB };
}

test("350 MB tar from a generator: RSS grows by less than 60 MiB", async () => {
  const out = path.join(work, "plain");
  const { result, growthMiB } = await measure((onChunk) => extractTar(generatedTar(onChunk), out));
  expect(result).toEqual({ entries: files.length, bytes: total });
  expect(fs.statSync(path.join(out, "random/4")).size).toBe(10 * MiB + 123);
  expect(growthMiB).toBeLessThan(60);
}, 60_000);

test("the same through CompressionStream and gunzip: RSS grows by less than 60 MiB", async () => {
  const out = path.join(work, "gzip");
  const { result, growthMiB } = await measure((onChunk) => {
    const gz = generatedTar(onChunk).pipeThrough(
      new CompressionStream("gzip") as unknown as ReadableWritablePair<Uint8Array, Uint8Array>,
    );
    return extractTar(gunzip(gz), out);
  });
  expect(result).toEqual({ entries: files.length, bytes: total });
  const sample = fs.readFileSync(path.join(out, "base/5/16390")).subarray(4, 40);
  expect(new TextDecoder().decode(sample)).toBe("ressible row of a relation page, com");
  expect(growthMiB).toBeLessThan(60);
}, 120_000);
