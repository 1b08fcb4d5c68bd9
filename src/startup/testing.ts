// A StartupContext for unit tests: fake runner, no sleeping, memory logger.
import { memoryLogger } from "../log.ts";
import { FakeRunner } from "../process/fake-runner.ts";
import { parseComputeSpec } from "../spec/parse.ts";
import { type ParsedSpec, toParsedSpec } from "../spec/parsed-spec.ts";
import { ComputeStateStore } from "../state/store.ts";
import { minimalSpecJson } from "../testing/specs.ts";
import { newCatalogState, type StartupContext, type StartupParams } from "./context.ts";

export { TEST_TENANT as TENANT, TEST_TIMELINE as TIMELINE } from "../testing/specs.ts";

/** A minimal valid spec; `extra` overrides top-level fields. */
export function testSpec(extra: Record<string, unknown> = {}): ParsedSpec {
  return toParsedSpec(
    parseComputeSpec(
      minimalSpecJson({
        cluster: { roles: [], databases: [], settings: [] },
        pageserver_connstring: "postgres://no_user@127.0.0.1:64000",
        safekeeper_connstrings: ["127.0.0.1:5454", "127.0.0.1:5455", "127.0.0.1:5456"],
        ...extra,
      }),
    ),
  );
}

export function testContext(
  opts: { pspec?: ParsedSpec; runner?: FakeRunner; pgdata?: string } = {},
) {
  const { log, lines } = memoryLogger();
  const runner = opts.runner ?? new FakeRunner();
  const sleeps: number[] = [];
  const shutdown = new AbortController();
  const params: StartupParams = {
    pgbin: "/pg/bin/postgres",
    pgBinDir: "/pg/bin",
    pgdata: opts.pgdata ?? "/nonexistent/pgdata",
    connstr: new URL("postgresql://cloud_admin@127.0.0.1:55432/postgres"),
    privilegedRoleName: "neon_superuser",
    internalHttpPort: 3081,
    lakebaseMode: false,
    resizeSwapOnBind: false,
  };
  const ctx: StartupContext = {
    params,
    pspec: opts.pspec ?? testSpec(),
    store: new ComputeStateStore({ log }),
    log,
    runner,
    runAs: null,
    children: { postgres: null, syncSafekeepers: null, tools: new Set() },
    sleep: async (ms) => {
      sleeps.push(ms);
    },
    signal: shutdown.signal,
    wrap: (cmd) => cmd,
    catalog: newCatalogState(),
  };
  return { ctx, runner, lines, sleeps, shutdown };
}
