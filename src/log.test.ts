import { expect, test } from "bun:test";
import { BatchedWriter, infoLine, isoTimestamp, levelFromFilter, memoryLogger } from "./log.ts";

test.each<[string | undefined, number]>([
  [undefined, 3],
  ["info", 3],
  ["debug", 4],
  ["warn", 1],
  // Per-target directives are about Rust crates: the bare one sets our level.
  ["info,tokio_postgres=warn", 3],
  ["compute_tools=debug", 3],
  ["warn,info", 3],
  ["ERROR", 0],
])("RUST_LOG=%p → level %d", (filter, level) => {
  expect(levelFromFilter(filter)).toBe(level);
});

test("BatchedWriter: one sink call per turn, in order; flush writes what is pending", () => {
  const written: string[] = [];
  const turns: (() => void)[] = [];
  const w = new BatchedWriter(
    (t) => written.push(t),
    (f) => turns.push(f),
  );
  w.write("a\n");
  w.write("b\n");
  expect(turns).toHaveLength(1); // one turn scheduled, nothing written yet
  expect(written).toEqual([]);
  turns.shift()?.();
  expect(written).toEqual(["a\nb\n"]);
  w.write("c\n");
  w.flush(); // e.g. at exit, before the scheduled turn
  expect(written).toEqual(["a\nb\n", "c\n"]);
  turns.shift()?.(); // the turn finds nothing left
  expect(written).toEqual(["a\nb\n", "c\n"]);
  w.write("d\n");
  expect(turns).toHaveLength(1);
});

test("the same line logged many times is printed every time (no consola throttling)", () => {
  const { log, lines } = memoryLogger();
  for (let i = 0; i < 10; i++) log.info("same line");
  expect(lines.filter((l) => l.endsWith("INFO same line"))).toHaveLength(10);
});

test("infoLine renders exactly as log.info, and respects the level", () => {
  const { log, lines } = memoryLogger();
  log.info("GET /status request_id=a");
  infoLine(log, "GET /status request_id=a");
  expect(lines.map((l) => l.slice(24))).toEqual([
    "  INFO GET /status request_id=a",
    "  INFO GET /status request_id=a",
  ]);
  log.level = 1;
  infoLine(log, "hidden");
  expect(lines).toHaveLength(2);
});

test("isoTimestamp: the same string within a millisecond, a new one after", () => {
  const a = new Date(1_700_000_000_123);
  expect(isoTimestamp(a)).toBe("2023-11-14T22:13:20.123Z");
  expect(isoTimestamp(new Date(1_700_000_000_123))).toBe("2023-11-14T22:13:20.123Z");
  expect(isoTimestamp(new Date(1_700_000_000_124))).toBe("2023-11-14T22:13:20.124Z");
});

test("nothing logged before process.exit is lost, even on a pipe read slowly", async () => {
  const fixture = new URL("./log-exit.fixture.ts", import.meta.url).pathname;
  const proc = Bun.spawn([process.execPath, fixture, "20000"], { stderr: "pipe" });
  // 2.6 MB: far more than a pipe holds, so the writes must wait for the reader.
  const exited = await proc.exited;
  const text = await new Response(proc.stderr).text();
  const lines = text.trimEnd().split("\n");
  expect(exited).toBe(3);
  expect(lines).toHaveLength(20_001);
  expect(lines[19_999]).toContain("INFO line 19999 ");
  expect(lines[20_000]).toBe("Error: last");
});
