import { describe, expect, test } from "bun:test";
import { COMPUTE_STATUSES } from "../state/status.ts";
import { ComputeCtlMetrics, Counter, CounterVec } from "./registry.ts";

const TAG = "test-tag";

// Every always-present family, in upstream's collect() order, HELP verbatim.
const ALWAYS = [
  ["compute_audit_log_dir_size", "gauge", "Size of audit log directory in bytes"],
  [
    "compute_pg_current_downtime_ms",
    "gauge",
    "Non-cumulative duration of Postgres downtime in ms; resets after successful check",
  ],
  ["compute_pg_downtime_ms_total", "counter", "Cumulative duration of Postgres downtime in ms"],
  [
    "compute_ctl_lfc_prewarms_total",
    "counter",
    "Total number of LFC prewarms requested by compute_ctl or autoprewarm option",
  ],
  ["compute_ctl_lfc_prewarm_errors_total", "counter", "Total number of LFC prewarm errors"],
  [
    "compute_ctl_lfc_offloads_total",
    "counter",
    "Total number of LFC offloads requested by compute_ctl or lfc_offload_period_seconds option",
  ],
  ["compute_ctl_lfc_offload_errors_total", "counter", "Total number of LFC offload errors"],
  [
    "pg_cctl_pagestream_request_errors_total",
    "counter",
    "Number of PageStream request errors reported by the postgres process",
  ],
  [
    "pg_cctl_configure_statement_timeout_errors_total",
    "counter",
    "Number of compute configuration errors due to Postgres statement timeouts.",
  ],
] as const;

function familyNames(text: string): string[] {
  return text
    .split("\n")
    .filter((l) => l.startsWith("# TYPE "))
    .map((l) => l.split(" ")[2] ?? "");
}

function sampleLines(text: string, name: string): string[] {
  return text.split("\n").filter((l) => l.startsWith(`${name}{`) || l.startsWith(`${name} `));
}

describe("ComputeCtlMetrics", () => {
  test("fresh registry: compute_ctl_up empty, unlabelled families at 0, vectors omitted", () => {
    const m = new ComputeCtlMetrics({ buildTag: TAG });
    const want = [
      "# HELP compute_ctl_up Whether compute_ctl is running",
      "# TYPE compute_ctl_up gauge",
      'compute_ctl_up{build_tag="test-tag",status="empty"} 1',
      ...ALWAYS.flatMap(([name, type, help]) => [
        `# HELP ${name} ${help}`,
        `# TYPE ${name} ${type}`,
        `${name} 0`,
      ]),
      "",
    ].join("\n");
    expect(m.render()).toBe(want);
  });

  test("build_tag defaults to BUILD_TAG", async () => {
    const { BUILD_TAG } = await import("../version.ts");
    expect(new ComputeCtlMetrics().buildTag).toBe(BUILD_TAG);
  });

  test("exactly one compute_ctl_up sample after several setStatus calls, hyphenated", () => {
    const m = new ComputeCtlMetrics({ buildTag: TAG });
    m.setStatus("configuration_pending");
    m.setStatus("init");
    m.setStatus("running");
    m.setStatus("configuration_pending");
    m.setStatus("configuration_pending");
    expect(sampleLines(m.render(), "compute_ctl_up")).toEqual([
      'compute_ctl_up{build_tag="test-tag",status="configuration-pending"} 1',
    ]);
  });

  const displays: Record<string, string> = {
    empty: "empty",
    configuration_pending: "configuration-pending",
    init: "init",
    running: "running",
    configuration: "configuration",
    failed: "failed",
    termination_pending_fast: "termination-pending-fast",
    termination_pending_immediate: "termination-pending-immediate",
    terminated: "terminated",
    refresh_configuration_pending: "refresh-configuration-pending",
    refresh_configuration: "refresh-configuration",
  };
  for (const s of COMPUTE_STATUSES) {
    test(`status label for ${s}`, () => {
      const m = new ComputeCtlMetrics({ buildTag: TAG });
      m.setStatus(s);
      expect(sampleLines(m.render(), "compute_ctl_up")).toEqual([
        `compute_ctl_up{build_tag="test-tag",status="${displays[s]}"} 1`,
      ]);
    });
  }

  test("build_tag is escaped like any label value", () => {
    const m = new ComputeCtlMetrics({ buildTag: 'a"b\\c\nd' });
    expect(sampleLines(m.render(), "compute_ctl_up")).toEqual([
      'compute_ctl_up{build_tag="a\\"b\\\\c\\nd",status="empty"} 1',
    ]);
  });

  test("vector families appear, in upstream order, once touched", () => {
    const m = new ComputeCtlMetrics({ buildTag: TAG });
    m.migrationFailed(3);
    m.remoteExtRequest("200 OK", "anon.tar.zst");
    m.cplaneRequest("503 Service Unavailable");
    m.setInstalledExtensions([
      { extname: "plpgsql", version: "1.0", n_databases: 3, owned_by_superuser: "1" },
    ]);
    expect(familyNames(m.render())).toEqual([
      "compute_ctl_up",
      "compute_installed_extensions",
      "compute_ctl_cplane_requests_total",
      "compute_ctl_remote_ext_requests_total",
      "compute_ctl_db_migration_failed_total",
      ...ALWAYS.map(([name]) => name),
    ]);
  });

  test("control-plane attempts count per status label, labels sorted", () => {
    const m = new ComputeCtlMetrics({ buildTag: TAG });
    const onAttempt = (label: string) => m.cplaneRequest(label);
    onAttempt("unknown");
    onAttempt("503 Service Unavailable");
    onAttempt("503 Service Unavailable");
    onAttempt("200 OK");
    const text = m.render();
    expect(text).toContain(
      "# HELP compute_ctl_cplane_requests_total Total number of control plane requests made by compute_ctl by status\n# TYPE compute_ctl_cplane_requests_total counter\n",
    );
    expect(sampleLines(text, "compute_ctl_cplane_requests_total")).toEqual([
      'compute_ctl_cplane_requests_total{http_status="unknown",rpc="GetConfig"} 1',
      'compute_ctl_cplane_requests_total{http_status="503 Service Unavailable",rpc="GetConfig"} 2',
      'compute_ctl_cplane_requests_total{http_status="200 OK",rpc="GetConfig"} 1',
    ]);
    expect(m.cplaneRequests.get({ rpc: "GetConfig", http_status: "503 Service Unavailable" })).toBe(
      2,
    );
  });

  test("remote extension requests and failed migrations", () => {
    const m = new ComputeCtlMetrics({ buildTag: TAG });
    m.remoteExtRequest("200 OK", "test_extension_sql_only.tar.zst");
    m.remoteExtRequest("404 Not Found", "nope.tar.zst");
    m.migrationFailed(5);
    m.migrationFailed("5");
    const text = m.render();
    expect(sampleLines(text, "compute_ctl_remote_ext_requests_total")).toEqual([
      'compute_ctl_remote_ext_requests_total{filename="test_extension_sql_only.tar.zst",http_status="200 OK"} 1',
      'compute_ctl_remote_ext_requests_total{filename="nope.tar.zst",http_status="404 Not Found"} 1',
    ]);
    expect(sampleLines(text, "compute_ctl_db_migration_failed_total")).toEqual([
      'compute_ctl_db_migration_failed_total{migration_id="5"} 2',
    ]);
  });

  test("setInstalledExtensions replaces the previous scan", () => {
    const m = new ComputeCtlMetrics({ buildTag: TAG });
    m.setInstalledExtensions([
      { extname: "plpgsql", version: "1.0", n_databases: 2, owned_by_superuser: "1" },
      { extname: "neon", version: "1.0", n_databases: 1, owned_by_superuser: "1" },
    ]);
    m.setInstalledExtensions([
      { extname: "plpgsql", version: "1.0", n_databases: 3, owned_by_superuser: "1" },
      { extname: "pg_trgm", version: "1.6", n_databases: 1, owned_by_superuser: "0" },
    ]);
    expect(sampleLines(m.render(), "compute_installed_extensions")).toEqual([
      'compute_installed_extensions{extension_name="plpgsql",owned_by_superuser="1",version="1.0"} 3',
      'compute_installed_extensions{extension_name="pg_trgm",owned_by_superuser="0",version="1.6"} 1',
    ]);
    m.setInstalledExtensions([]);
    expect(familyNames(m.render())).not.toContain("compute_installed_extensions");
  });

  test("downtime: float gauge and float counter", () => {
    const m = new ComputeCtlMetrics({ buildTag: TAG });
    m.pgCurrentDowntimeMs.set(1500.25);
    m.pgDowntimeMsTotal.inc(1500.25);
    m.pgDowntimeMsTotal.inc(0.5);
    let text = m.render();
    expect(sampleLines(text, "compute_pg_current_downtime_ms")).toEqual([
      "compute_pg_current_downtime_ms 1500.25",
    ]);
    expect(sampleLines(text, "compute_pg_downtime_ms_total")).toEqual([
      "compute_pg_downtime_ms_total 1500.75",
    ]);
    m.pgCurrentDowntimeMs.set(0);
    text = m.render();
    expect(sampleLines(text, "compute_pg_current_downtime_ms")).toEqual([
      "compute_pg_current_downtime_ms 0",
    ]);
    expect(m.pgDowntimeMsTotal.value).toBe(1500.75);
  });

  test("unlabelled counters count", () => {
    const m = new ComputeCtlMetrics({ buildTag: TAG });
    m.lfcPrewarms.inc();
    m.lfcPrewarms.inc();
    m.lfcOffloadErrors.inc(3);
    const text = m.render();
    expect(sampleLines(text, "compute_ctl_lfc_prewarms_total")).toEqual([
      "compute_ctl_lfc_prewarms_total 2",
    ]);
    expect(sampleLines(text, "compute_ctl_lfc_offload_errors_total")).toEqual([
      "compute_ctl_lfc_offload_errors_total 3",
    ]);
  });

  test("counters refuse negative and NaN increments", () => {
    const c = new Counter("x_total", "x");
    expect(() => c.inc(-1)).toThrow(RangeError);
    expect(() => c.inc(Number.NaN)).toThrow(RangeError);
    const v = new CounterVec("y_total", "y", ["a"]);
    expect(() => v.inc({ a: "1" }, -0.5)).toThrow(RangeError);
    expect(c.value).toBe(0);
    expect(v.collect().samples).toEqual([]);
  });

  test("a wider label object cannot add labels", () => {
    const v = new CounterVec("z_total", "z", ["a"]);
    const wide = { a: "1", extra: "no" };
    v.inc(wide);
    expect(v.collect().samples).toEqual([{ labels: { a: "1" }, value: 1 }]);
  });
});

// ---------------------------------------------------------------------------
// Validation by an independent parser: Debian's python3-prometheus-client
// (Python's reference client), or else promtool from Debian's `prometheus`.

const PARSE_PY = `
import json, sys
from prometheus_client.parser import text_string_to_metric_families
out = []
for f in text_string_to_metric_families(sys.stdin.read()):
    out.append({"name": f.name, "type": f.type, "help": f.documentation,
                "samples": [{"name": s.name, "labels": s.labels, "value": s.value} for s in f.samples]})
print(json.dumps(out))
`;

/** Debian installs the module for /usr/bin/python3; a pyenv python3 on PATH won't see it. */
function findPython(): string | null {
  const candidates = ["/usr/bin/python3", Bun.which("python3")];
  for (const py of candidates) {
    if (py === null) continue;
    try {
      const r = Bun.spawnSync([py, "-c", "import prometheus_client.parser"], { stderr: "ignore" });
      if (r.exitCode === 0) return py;
    } catch {
      // not executable here
    }
  }
  return null;
}

const PYTHON = findPython();
const PROMTOOL = Bun.which("promtool");

interface ParsedFamily {
  name: string;
  type: string;
  help: string;
  samples: { name: string; labels: Record<string, string>; value: number }[];
}

async function run(cmd: string[], input: string): Promise<{ code: number; out: string }> {
  const p = Bun.spawn(cmd, { stdin: new Blob([input]), stdout: "pipe", stderr: "pipe" });
  const [out, err, code] = await Promise.all([
    new Response(p.stdout).text(),
    new Response(p.stderr).text(),
    p.exited,
  ]);
  return { code, out: out + err };
}

/** A registry with every family populated, awkward label values included. */
function busyRegistry(): ComputeCtlMetrics {
  const m = new ComputeCtlMetrics({ buildTag: 'rel-1.2 "q" \\ \nx' });
  m.setStatus("init");
  m.setStatus("termination_pending_immediate");
  m.setInstalledExtensions([
    { extname: "plpgsql", version: "1.0", n_databases: 3, owned_by_superuser: "1" },
    { extname: 'odd"name\\', version: "1\n2", n_databases: 1, owned_by_superuser: "0" },
  ]);
  m.cplaneRequest("200 OK");
  m.cplaneRequest("unknown");
  m.remoteExtRequest("200 OK", "test_extension_sql_only.tar.zst");
  m.migrationFailed(7);
  m.pgCurrentDowntimeMs.set(0.125);
  m.pgDowntimeMsTotal.inc(1e-7);
  m.lfcPrewarms.inc(2);
  return m;
}

const parserName =
  PYTHON !== null
    ? `python prometheus_client (${PYTHON})`
    : PROMTOOL !== null
      ? `promtool check metrics (${PROMTOOL})`
      : null;

describe("independent parser", () => {
  test.skipIf(parserName === null)(
    parserName === null
      ? "SKIPPED: no parser; apt-get install python3-prometheus-client (or prometheus for promtool)"
      : `whole output accepted by ${parserName}`,
    async () => {
      const text = busyRegistry().render();
      if (PYTHON === null) {
        // promtool: 0 = clean, 3 = lint remarks only (e.g. `_ms` units); 1 = unparsable.
        const r = await run([PROMTOOL ?? "promtool", "check", "metrics"], text);
        expect([0, 3]).toContain(r.code);
        return;
      }
      const r = await run([PYTHON, "-c", PARSE_PY], text);
      expect(r.code).toBe(0);
      const fams = JSON.parse(r.out) as ParsedFamily[];
      // The Python parser drops `_total` from counter family names.
      expect(fams.map((f) => [f.name, f.type])).toEqual([
        ["compute_ctl_up", "gauge"],
        ["compute_installed_extensions", "gauge"],
        ["compute_ctl_cplane_requests", "counter"],
        ["compute_ctl_remote_ext_requests", "counter"],
        ["compute_ctl_db_migration_failed", "counter"],
        ...ALWAYS.map(([name, type]) => [
          type === "counter" ? name.replace(/_total$/, "") : name,
          type,
        ]),
      ]);
      const byName = new Map(fams.map((f) => [f.name, f]));
      expect(byName.get("compute_ctl_up")?.samples).toEqual([
        {
          name: "compute_ctl_up",
          labels: { build_tag: 'rel-1.2 "q" \\ \nx', status: "termination-pending-immediate" },
          value: 1,
        },
      ]);
      expect(byName.get("compute_ctl_up")?.help).toBe("Whether compute_ctl is running");
      expect(byName.get("compute_installed_extensions")?.samples).toEqual([
        {
          name: "compute_installed_extensions",
          labels: { extension_name: "plpgsql", version: "1.0", owned_by_superuser: "1" },
          value: 3,
        },
        {
          name: "compute_installed_extensions",
          labels: { extension_name: 'odd"name\\', version: "1\n2", owned_by_superuser: "0" },
          value: 1,
        },
      ]);
      expect(byName.get("compute_ctl_cplane_requests")?.samples).toEqual([
        {
          name: "compute_ctl_cplane_requests_total",
          labels: { http_status: "200 OK", rpc: "GetConfig" },
          value: 1,
        },
        {
          name: "compute_ctl_cplane_requests_total",
          labels: { http_status: "unknown", rpc: "GetConfig" },
          value: 1,
        },
      ]);
      expect(byName.get("compute_ctl_remote_ext_requests")?.samples).toEqual([
        {
          name: "compute_ctl_remote_ext_requests_total",
          labels: { http_status: "200 OK", filename: "test_extension_sql_only.tar.zst" },
          value: 1,
        },
      ]);
      expect(byName.get("compute_ctl_db_migration_failed")?.samples).toEqual([
        { name: "compute_ctl_db_migration_failed_total", labels: { migration_id: "7" }, value: 1 },
      ]);
      expect(byName.get("compute_pg_current_downtime_ms")?.samples[0]?.value).toBe(0.125);
      expect(byName.get("compute_pg_downtime_ms")?.samples[0]?.value).toBe(1e-7);
      expect(byName.get("compute_ctl_lfc_prewarms")?.samples[0]?.value).toBe(2);
      for (const [name, type, help] of ALWAYS) {
        const f = byName.get(type === "counter" ? name.replace(/_total$/, "") : name);
        expect(f?.help).toBe(help);
        expect(f?.samples).toHaveLength(1);
      }
    },
  );
});
