// The PostgreSQL server binaries tests run against: the newest installed
// Debian major that compute_ctl supports (14–17).
import { existsSync, readdirSync } from "node:fs";
import { join } from "node:path";

const BASE = "/usr/lib/postgresql";
const SUPPORTED = new Set(["14", "15", "16", "17"]);

export function findTestPgBinDir(): string {
  const majors = existsSync(BASE)
    ? readdirSync(BASE)
        .filter((v) => SUPPORTED.has(v) && existsSync(join(BASE, v, "bin", "postgres")))
        .sort((a, b) => Number(b) - Number(a))
    : [];
  if (majors[0] === undefined) {
    throw new Error(
      `no PostgreSQL 14–17 server binaries under ${BASE}: apt-get install postgresql`,
    );
  }
  return join(BASE, majors[0], "bin");
}

export const TEST_PG_BIN_DIR: string = findTestPgBinDir();
