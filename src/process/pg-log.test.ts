import { describe, expect, test } from "bun:test";
import { LineFeed, ManualScheduler } from "./fake-runner.ts";
import { PG_RECORD_START, PgLogRelay, relayPostgresLog } from "./pg-log.ts";
import { until } from "./testing.ts";

const ZWSP = "\u200B";
const T1 = "2024-05-01 10:00:00.123 UTC [42] LOG:  statement: SELECT 1";
const T2 = "2024-05-01 10:00:01.000 UTC [42] LOG:  database system is ready to accept connections";

function relay() {
  const out: string[] = [];
  const sched = new ManualScheduler();
  const r = new PgLogRelay({ write: (l) => out.push(l), scheduler: sched });
  return { r, out, sched };
}

describe("PG_RECORD_START", () => {
  test.each([
    [T1, true],
    ["2024-05-01 10:00:00 UTC", true],
    ["12024-05-01 10:00:00", true],
    ["\tFROM pg_class", false],
    ["DETAIL:  x", false],
    ["2024-5-01 10:00:00", false],
    [" 2024-05-01 10:00:00", false],
  ])("%j starts a record: %p", (line, want) => {
    expect(PG_RECORD_START.test(line)).toBe(want);
  });
});

describe("PgLogRelay", () => {
  test("continuation lines are joined with U+200B and flushed by the next record", () => {
    const { r, out } = relay();
    r.line(T1);
    r.line("\tFROM pg_class");
    r.line("\tWHERE true");
    expect(out).toEqual([]);
    r.line(T2);
    expect(out).toEqual([`PG:${T1}${ZWSP}\tFROM pg_class${ZWSP}\tWHERE true`]);
    r.end();
    expect(out).toEqual([`PG:${T1}${ZWSP}\tFROM pg_class${ZWSP}\tWHERE true`, `PG:${T2}`]);
  });

  test("100 ms without input flushes; not a moment before", () => {
    const { r, out, sched } = relay();
    r.line(T1);
    sched.advance(60);
    r.line("more");
    sched.advance(99);
    expect(out).toEqual([]);
    sched.advance(1);
    expect(out).toEqual([`PG:${T1}${ZWSP}more`]);
    expect(sched.pending).toBe(0);
  });

  test("a continuation after an idle flush starts a record of its own", () => {
    const { r, out, sched } = relay();
    r.line(T1);
    sched.advance(100);
    r.line("late detail");
    r.end();
    expect(out).toEqual([`PG:${T1}`, "PG:late detail"]);
  });

  test("leading lines without a timestamp form a record", () => {
    const { r, out } = relay();
    r.line("could not open file");
    r.line(T1);
    r.end();
    expect(out).toEqual(["PG:could not open file", `PG:${T1}`]);
  });

  test("empty lines are kept as parts of a record", () => {
    const { r, out } = relay();
    r.line(T1);
    r.line("");
    r.end();
    expect(out).toEqual([`PG:${T1}${ZWSP}`]);
  });

  test("end with nothing pending writes nothing and leaves no timer", () => {
    const { r, out, sched } = relay();
    r.end();
    r.line(T1);
    r.end();
    expect(out).toEqual([`PG:${T1}`]);
    expect(sched.pending).toBe(0);
  });
});

describe("relayPostgresLog", () => {
  test("flushes at EOF", async () => {
    const out: string[] = [];
    async function* lines() {
      yield T1;
      yield "detail";
    }
    await relayPostgresLog(lines(), {
      write: (l) => out.push(l),
      scheduler: new ManualScheduler(),
    });
    expect(out).toEqual([`PG:${T1}${ZWSP}detail`]);
  });

  test("flushes on idle while waiting for the next line", async () => {
    const out: string[] = [];
    const sched = new ManualScheduler();
    const feed = new LineFeed();
    const done = relayPostgresLog(feed, { write: (l) => out.push(l), scheduler: sched });
    feed.push(T1);
    await until("the relay to arm its idle timer", () => sched.pending === 1);
    sched.advance(100);
    expect(out).toEqual([`PG:${T1}`]);
    feed.push(T2);
    feed.end();
    await done;
    expect(out).toEqual([`PG:${T1}`, `PG:${T2}`]);
  });

  test("a read error still flushes the pending record, then propagates", async () => {
    const out: string[] = [];
    async function* lines() {
      yield T1;
      throw new Error("read failed");
    }
    await expect(
      relayPostgresLog(lines(), { write: (l) => out.push(l), scheduler: new ManualScheduler() }),
    ).rejects.toThrow("read failed");
    expect(out).toEqual([`PG:${T1}`]);
  });

  test("real postgres-like stderr through the default scheduler", async () => {
    const out: string[] = [];
    async function* lines() {
      yield T1;
    }
    await relayPostgresLog(lines(), { write: (l) => out.push(l) });
    expect(out).toEqual([`PG:${T1}`]);
  });
});
