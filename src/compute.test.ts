import { describe, expect, test } from "bun:test";
import { parseCli } from "./cli.ts";
import { ComputeNode, EXIT_DELAY_AFTER_FAILURE_MS, EXIT_DELAY_MS } from "./compute.ts";
import { memoryLogger } from "./log.ts";
import { FakeRunner } from "./process/fake-runner.ts";
import type { ExitStatus } from "./process/runner.ts";
import { parseComputeConfig } from "./spec/parse.ts";
import { computeSpecToJson } from "./spec/schema.ts";
import type { StartupContext } from "./startup/context.ts";
import type { StartedCompute } from "./startup/index.ts";
import { testSpec } from "./startup/testing.ts";

function options() {
  const r = parseCli(
    [
      "-D",
      "/nonexistent/pgdata",
      "-C",
      "postgresql://cloud_admin@127.0.0.1:1/postgres",
      "-i",
      "c1",
      "-c",
      "x",
      "-b",
      "/pg/bin/postgres",
      "--external-http-port",
      "0",
      "--internal-http-port",
      "0",
    ],
    {},
  );
  if (r.kind !== "run") throw new Error("cli");
  return r.options;
}

/** A started compute whose postmaster exits when the test says so. */
function fakeStarted(): { started: StartedCompute; exit: (s: ExitStatus) => void } {
  let exit: (s: ExitStatus) => void = () => {};
  const exited = new Promise<ExitStatus>((resolve) => {
    exit = resolve;
  });
  const child = {
    pid: 1,
    command: [],
    exited,
    kill: () => false,
    stdoutLines: () => [],
    stderrLines: () => [],
    stderrTail: () => [],
    stdin: null,
  };
  return { started: { postgres: { child: child as never, exited } }, exit };
}

function node(spec: unknown, startCompute: (ctx: StartupContext) => Promise<StartedCompute>) {
  const { log, lines } = memoryLogger();
  const sleeps: number[] = [];
  // The primary's shutdown sync-safekeepers answers an LSN.
  const runner = new FakeRunner().on("/pg/bin/postgres --sync-safekeepers", { stdout: ["0/1000"] });
  const n = new ComputeNode(
    options(),
    parseComputeConfig({ spec, compute_ctl_config: { jwks: { keys: [] } } }),
    {
      log,
      runner,
      runAs: null,
      startCompute,
      // No postgres behind the fake processes: the monitor has its own tests.
      monitor: false,
      sleep: async (ms) => {
        sleeps.push(ms);
      },
    },
  );
  return { n, lines, sleeps, runner };
}

describe("ComputeNode.run", () => {
  test("empty compute: waits for a spec, records wait_for_spec_ms, resets start_time, then starts", async () => {
    const { started, exit } = fakeStarted();
    let startedWith: StartupContext | undefined;
    const { n, sleeps } = node(null, async (ctx) => {
      startedWith = ctx;
      ctx.store.setStatus("running");
      return started;
    });
    const run = n.run();
    const before = n.store.state.startTime;
    await n.store.waitForStatus(["empty"]);
    expect(startedWith).toBeUndefined();
    // What /configure does: store the spec, then configuration_pending.
    n.store.update({ pspec: testSpec() });
    n.store.setStatus("configuration_pending");
    await n.store.waitForStatus(["running"], { deadline: performance.now() + 5000 });
    expect(String(startedWith?.pspec.tenant_id)).toBe("a".repeat(32));
    expect(n.store.state.startTime > before).toBe(true);
    exit({ code: 0, signal: null });
    expect(await run).toBe(0);
    expect(sleeps).toEqual([EXIT_DELAY_MS]);
    expect(n.store.state.terminateFlushLsn).toBe(0x1000n);
  });

  test("spec on the command line: init before listening, never empty", async () => {
    const seen: string[] = [];
    const { started, exit } = fakeStarted();
    const { n } = node(computeSpecToJson(testSpec().spec), async (ctx) => {
      seen.push(ctx.store.status);
      ctx.store.setStatus("running");
      return started;
    });
    const run = n.run();
    await n.store.waitForStatus(["running"]);
    expect(seen).toEqual(["init"]);
    exit({ code: null, signal: "SIGKILL" });
    // Killed by a signal: exit code 1, as upstream.
    expect(await run).toBe(1);
  });

  test("a failed start: failed with the error chain, 30 s exit delay, exit 1", async () => {
    const { n, sleeps, lines } = node(computeSpecToJson(testSpec().spec), async () => {
      throw new Error("failed to get basebackup@0/1", { cause: new Error("connection refused") });
    });
    expect(await n.run()).toBe(1);
    expect(n.store.status).toBe("failed");
    expect(n.store.state.error).toBe(
      "failed to get basebackup@0/1\n\nCaused by:\n    connection refused",
    );
    expect(sleeps).toEqual([EXIT_DELAY_AFTER_FAILURE_MS]);
    expect(
      lines.some((l) =>
        l.includes("giving control plane 30s to collect the error before shutdown"),
      ),
    ).toBe(true);
  });

  test("termination of an empty compute ends it instead of hanging (upstream bug 8.4)", async () => {
    const { n, sleeps } = node(null, async () => {
      throw new Error("must not start");
    });
    const run = n.run();
    await n.store.waitForStatus(["empty"]);
    n.store.setStatus("termination_pending_immediate");
    expect(await run).toBe(1);
    expect(n.store.status).toBe("terminated");
    expect(sleeps).toEqual([EXIT_DELAY_MS]);
  });
});
