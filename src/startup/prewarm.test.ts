import { expect, test } from "bun:test";
import { prewarmConf } from "./prewarm.ts";

test("the prewarm instance's postgresql.conf, with and without the neon library", () => {
  expect(prewarmConf(true)).toBe(
    "shared_buffers=65536\nport=51055\nshared_preload_libraries = 'neon'\n",
  );
  expect(prewarmConf(false)).toBe("shared_buffers=65536\nport=51055\n");
});
