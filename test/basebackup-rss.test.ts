// A 1 GiB basebackup is streamed to disk: compute_ctl's peak RSS (VmHWM) stays
// under 100 MB whatever the archive size.
import { afterAll, expect, setDefaultTimeout, test } from "bun:test";
import { readFileSync, statSync } from "node:fs";
import { join } from "node:path";
import { encodeTarHeader, gzip, streamFrom, tarDirectory } from "../src/dev/tar-writer.ts";
import { ensureTemplateCluster } from "../src/dev/template.ts";
import { PG_BIN_DIR, RUN_AS, startCompute, workDir } from "./helpers/compute.ts";

// Process-level: real postgres and the built binary; each wait has its own deadline.
setDefaultTimeout(60_000);

const root = workDir("compute-ctl-rss-");
afterAll(() => root.cleanup());

const GiB = 1 << 30;
const CHUNK = 1 << 20;
const FILLER = "base/filler.dat";

/** The template (as the pageserver ships it) plus a 1 GiB file, as one gzip'd tar. */
async function bigArchive(templateDir: string): Promise<Uint8Array> {
  async function* entries(): AsyncGenerator<Uint8Array> {
    const reader = tarDirectory(templateDir, {
      endOfArchive: false,
      owner: { uid: 0, gid: 0 },
      exclude: (rel) => rel === "postgresql.conf",
    }).getReader();
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      yield value;
    }
    yield encodeTarHeader({
      name: FILLER,
      kind: "file",
      mode: 0o600,
      uid: 0,
      gid: 0,
      size: GiB,
      mtime: 0,
    });
    const block = new Uint8Array(CHUNK);
    for (let i = 0; i < GiB / CHUNK; i++) {
      // Compressible but not constant: a counter per chunk.
      new DataView(block.buffer).setUint32(0, i);
      yield block;
    }
  }
  // Compressed once, up front: the test measures compute_ctl, not the stand-in.
  return new Uint8Array(await new Response(gzip(streamFrom(entries()))).arrayBuffer());
}

function vmHwmKiB(pid: number): number {
  const m = /^VmHWM:\s+(\d+) kB$/m.exec(readFileSync(`/proc/${pid}/status`, "utf8"));
  return Number(m?.[1] ?? Number.NaN);
}

test("1 GiB archive: running, file complete, compute_ctl peak RSS < 100 MB", async () => {
  // The same cached template startCompute's environment will use.
  const template = await ensureTemplateCluster({
    pgBinDir: PG_BIN_DIR,
    cacheDir: join(root.dir, "template-cache"),
    runAs: RUN_AS,
  });
  const archive = await bigArchive(template.dir);
  const c = await startCompute(root.dir, "rss", {
    envOptions: {
      pageserverFaults: { chunkSize: 65536 },
      archiveOverride: () => new Blob([archive]).stream(),
    },
  });
  try {
    await c.waitForStatus(["running"], 120_000);
    expect(statSync(join(c.pgdata, FILLER)).size).toBe(GiB);
    const m = await c.metrics();
    expect(m.basebackup_bytes).toBe(archive.length);
    const peakMiB = vmHwmKiB(c.child.proc.pid) / 1024;
    expect(peakMiB).toBeLessThan(100);
  } finally {
    await c.stop();
  }
}, 180_000);
