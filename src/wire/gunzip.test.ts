import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import * as fs from "node:fs";
import * as path from "node:path";
import { countBytes, GzipError, gunzip } from "./gunzip.ts";
import {
  buildSourceTree,
  chunked,
  concat,
  diffTrees,
  gnuExtract,
  IS_ROOT,
  removeTree,
  run,
  tempDir,
} from "./tar-fixtures.ts";
import { extractTar } from "./untar.ts";

let work = "";
beforeAll(() => {
  work = tempDir("gunzip");
});
afterAll(() => {
  removeTree(work);
});

async function collect(stream: ReadableStream<Uint8Array>): Promise<Uint8Array> {
  const parts: Uint8Array[] = [];
  for await (const chunk of stream) parts.push(chunk);
  return concat(parts);
}

/** Compress `data` with the gzip CLI, so we test against a foreign encoder. */
function gzipCli(name: string, data: Uint8Array | string): Uint8Array {
  const file = path.join(work, name);
  fs.writeFileSync(file, data);
  run(["gzip", "-f", "-n", file]);
  return new Uint8Array(fs.readFileSync(`${file}.gz`));
}

const dec = new TextDecoder();

describe("gunzip", () => {
  test("one member, fed in 1-byte and 64 KiB chunks", async () => {
    const text = "hello gzip\n".repeat(10_000);
    const gz = gzipCli("one", text);
    expect(dec.decode(await collect(gunzip(chunked(gz, 1))))).toBe(text);
    expect(dec.decode(await collect(gunzip(chunked(gz, 65536))))).toBe(text);
  });

  test("concatenated members (cat a.gz b.gz) decompress to both", async () => {
    const random = new Uint8Array(200_000);
    crypto.getRandomValues(random);
    const a = gzipCli("a", random);
    const b = gzipCli("b", "second member\n");
    const out = await collect(gunzip(chunked(concat([a, b]), 777)));
    expect(out.byteLength).toBe(200_000 + 14);
    expect(out.subarray(0, 200_000)).toEqual(random);
    expect(dec.decode(out.subarray(200_000))).toBe("second member\n");
  });

  test("a truncated stream is a GzipError", async () => {
    const gz = gzipCli("t", "some text that compresses ".repeat(1000));
    const err = await collect(gunzip(chunked(gz.subarray(0, gz.byteLength - 6), 100))).catch(
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(GzipError);
    expect(String(err)).toContain("invalid gzip stream:");
  });

  test("data that is not gzip is a GzipError", async () => {
    const err = await collect(gunzip(chunked(new TextEncoder().encode("plain tar? no."), 5))).catch(
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(GzipError);
  });

  test("an error of the input passes through as is", async () => {
    const gz = gzipCli("p", "x".repeat(100_000));
    const boom = new Error("pageserver: ErrorResponse XX000");
    let sent = false;
    const input = new ReadableStream<Uint8Array>({
      pull(c) {
        if (!sent) {
          sent = true;
          c.enqueue(gz.subarray(0, 20));
        } else c.error(boom);
      },
    });
    expect(await collect(gunzip(input)).catch((e: unknown) => e)).toBe(boom);
  });

  test("cancelling the output cancels the input", async () => {
    let cancelled: unknown = "no";
    const gz = gzipCli("c", "y".repeat(100_000));
    const input = new ReadableStream<Uint8Array>(
      {
        pull(c) {
          c.enqueue(gz.slice(0, 1000));
        },
        cancel(reason) {
          cancelled = reason;
        },
      },
      { highWaterMark: 0 },
    );
    const reader = gunzip(input).getReader();
    await reader.read();
    await reader.cancel("stop");
    expect(cancelled).toBe("stop");
  });
});

describe("countBytes", () => {
  test("reports each chunk and the running total, data unchanged", async () => {
    const data = new Uint8Array(10_000).map((_, i) => i % 251);
    const calls: Array<[number, number]> = [];
    const out = await collect(
      countBytes(chunked(data, 3000), (n, total) => calls.push([n, total])),
    );
    expect(out).toEqual(data);
    expect(calls).toEqual([
      [3000, 3000],
      [3000, 6000],
      [3000, 9000],
      [1000, 10_000],
    ]);
  });

  test("errors pass through", async () => {
    const boom = new Error("reset");
    const input = new ReadableStream<Uint8Array>({
      pull(c) {
        c.error(boom);
      },
    });
    expect(await collect(countBytes(input, () => {})).catch((e: unknown) => e)).toBe(boom);
  });
});

test("tar -czf output through countBytes, gunzip and extractTar equals GNU tar's extraction", async () => {
  const src = path.join(work, "src");
  fs.mkdirSync(src);
  buildSourceTree(src);
  const archive = path.join(work, "tree.tar.gz");
  run(["tar", "--format=gnu", "-C", src, "-czf", archive, "."]);
  const ref = path.join(work, "ref");
  gnuExtract(archive, ref);
  let compressed = 0;
  const out = path.join(work, "out");
  const gz = new Uint8Array(fs.readFileSync(archive));
  const counted = countBytes(chunked(gz, 4096), (n) => {
    compressed += n;
  });
  await extractTar(gunzip(counted), out, IS_ROOT ? { chown: "preserve" } : {});
  expect(compressed).toBe(gz.byteLength);
  expect(diffTrees(ref, out)).toEqual([]);
});
