// Time from exec to the first answered GET /status, for the built binary and,
// in the same run, for a baseline: a compiled bare Bun.serve that answers the
// same bytes (the floor any Bun binary pays). Also prints the binary's size.
//
//   bun run build && bun bench/first-status.ts [runs]

import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { bearer, makeTestKeys } from "../src/testing/jwt.ts";
import { minimalSpecJson } from "../src/testing/specs.ts";
import { BINARY, freePort, pct, pgBinDir, table, tempWorkDir } from "./lib.ts";

// With a key and a token: the first answer includes the JWT check (and jose's load).
const keys = await makeTestKeys();
const auth = bearer(await keys.sign({ compute_id: "bench" }));

const runs = Number(process.argv[2] ?? 20);
const binary = BINARY;
const work = tempWorkDir("bench-first-status-");

// Baseline binary: same bytes as an empty compute's /status.
const baselineSrc = join(work, "baseline.ts");
writeFileSync(
  baselineSrc,
  `const body = JSON.stringify({start_time: new Date().toISOString(), tenant: null, timeline: null, status: "init", last_active: null, error: null});
Bun.serve({ port: Number(process.argv[2]), hostname: "::", fetch: () => new Response(body, { headers: { "content-type": "application/json" } }) });`,
);
const baseline = join(work, "baseline");
const b = Bun.spawnSync(
  [
    process.execPath,
    "build",
    "--compile",
    "--bytecode",
    "--format=esm",
    "--minify",
    `--outfile=${baseline}`,
    baselineSrc,
  ],
  { stderr: "pipe" },
);
if (b.exitCode !== 0) throw new Error(`baseline build failed: ${b.stderr}`);

const pgbin = join(pgBinDir(), "postgres");
const config = join(work, "config.json");
// A spec on the command line, as neon_local starts computes: /status answers
// `init` at once while the pipeline runs (here against nothing: it is stopped
// right after the first answer).
writeFileSync(
  config,
  JSON.stringify({
    spec: minimalSpecJson({ skip_pg_catalog_updates: true }),
    compute_ctl_config: { jwks: keys.jwks },
  }),
);
mkdirSync(join(work, "pgdata"));

async function timeToFirstStatus(cmd: (port: number) => string[]): Promise<number> {
  const port = await freePort();
  const t0 = performance.now();
  const proc = Bun.spawn(cmd(port), { stdout: "ignore", stderr: "ignore" });
  try {
    const deadline = t0 + 10_000;
    while (performance.now() < deadline) {
      try {
        const res = await fetch(`http://127.0.0.1:${port}/status`, { headers: auth });
        if (res.ok) {
          await res.arrayBuffer();
          return performance.now() - t0;
        }
      } catch {
        // not listening yet
      }
    }
    throw new Error("no answer within 10 s");
  } finally {
    // SIGTERM: compute_ctl forwards it to the sync-safekeepers it may have started.
    proc.kill("SIGTERM");
    await proc.exited;
  }
}

const ours = (port: number) => [
  binary,
  "-b",
  pgbin,
  "-D",
  join(work, "pgdata"),
  "-C",
  "postgresql://cloud_admin@127.0.0.1:1/postgres",
  "-i",
  "bench",
  "-c",
  config,
  "--external-http-port",
  String(port),
  "--internal-http-port",
  "0",
];
const base = (port: number) => [baseline, String(port)];

// Warm the page cache for both, then interleave runs so noise hits both alike.
await timeToFirstStatus(ours);
await timeToFirstStatus(base);
const a: number[] = [];
const bl: number[] = [];
for (let i = 0; i < runs; i++) {
  a.push(await timeToFirstStatus(ours));
  bl.push(await timeToFirstStatus(base));
}

const size = Bun.file(binary).size;
const row = (name: string, xs: number[]) => [name, pct(xs, 50).toFixed(1), pct(xs, 90).toFixed(1)];
console.log(`binary: ${binary} ${(size / 1e6).toFixed(1)} MB; ${runs} runs each, interleaved`);
console.log(
  table(
    ["program", "p50 ms", "p90 ms"],
    [
      row("compute_ctl (spec on the command line)", a),
      row("baseline: compiled bare Bun.serve", bl),
    ],
  ),
);
console.log(
  `ratio p50 compute_ctl / baseline: ${(pct(a, 50) / pct(bl, 50)).toFixed(2)}x; overhead ${(pct(a, 50) - pct(bl, 50)).toFixed(1)} ms`,
);
