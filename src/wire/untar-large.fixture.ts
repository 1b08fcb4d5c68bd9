// A large archive streamed from a generator, never held in memory, and an RSS
// probe. Run in a child process by untar-large.test.ts: RSS is per process, and
// other test files in the runner's process would blur it.

import { gunzip } from "./gunzip.ts";
import { header } from "./tar-fixtures.ts";
import { extractTar } from "./untar.ts";

export const MiB = 1 << 20;
const CHUNK = 64 * 1024;

export interface FileSpec {
  name: string;
  size: number;
  random: boolean;
}

export const files: FileSpec[] = [
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

export const total = files.reduce((n, f) => n + f.size, 0);

async function measure(run: (onChunk: () => void) => Promise<{ entries: number; bytes: number }>) {
  Bun.gc(true);
  const base = process.memoryUsage.rss();
  let peak = base;
  let chunks = 0;
  const result = await run(() => {
    if (++chunks % 16 === 0) peak = Math.max(peak, process.memoryUsage.rss());
  });
  return { ...result, growthMiB: (peak - base) / MiB };
}

// `bun untar-large.fixture.ts <plain|gzip> <outdir>` prints {entries, bytes, growthMiB}.
if (import.meta.main) {
  const [mode, out] = process.argv.slice(2);
  if ((mode !== "plain" && mode !== "gzip") || out === undefined) {
    process.stderr.write("usage: untar-large.fixture.ts plain|gzip OUTDIR\n");
    process.exit(2);
  }
  const r = await measure((onChunk) => {
    if (mode === "plain") return extractTar(generatedTar(onChunk), out);
    const gz = generatedTar(onChunk).pipeThrough(
      new CompressionStream("gzip") as unknown as ReadableWritablePair<Uint8Array, Uint8Array>,
    );
    return extractTar(gunzip(gz), out);
  });
  process.stdout.write(`${JSON.stringify(r)}\n`);
}
