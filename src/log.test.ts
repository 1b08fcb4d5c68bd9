import { expect, test } from "bun:test";
import { levelFromFilter } from "./log.ts";

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
