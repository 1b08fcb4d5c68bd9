// PGDATA file helpers against real temp directories. As root the owner is a
// foreign uid/gid, so chown is proven; otherwise it is our own ids.
import { afterAll, beforeEach, describe, expect, test } from "bun:test";
import {
  chmod,
  lstat,
  mkdir,
  mkdtemp,
  readFile,
  readlink,
  rm,
  stat,
  symlink,
  writeFile,
} from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import {
  addStandbySignal,
  createPgdata,
  type FileOwner,
  fixNeonSignal,
  lineInFile,
  linkDynShmem,
  PG_HBA_ALL_MD5,
  PgdataError,
  updatePgHba,
  withTempOverride,
  writePostgresConf,
} from "./pgdata-files.ts";

const isRoot = process.getuid?.() === 0;
const OWNER: FileOwner = isRoot
  ? { uid: 4321, gid: 4322 }
  : { uid: process.getuid?.() ?? 0, gid: process.getgid?.() ?? 0 };

const roots: string[] = [];
let dir = "";

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), "pgdata-files-"));
  roots.push(dir);
});

afterAll(async () => {
  for (const d of roots) await rm(d, { recursive: true, force: true });
});

async function expectOwner(path: string, owner: FileOwner = OWNER): Promise<void> {
  const st = await lstat(path);
  expect({ uid: st.uid, gid: st.gid }).toEqual({ uid: owner.uid, gid: owner.gid });
}

async function rejection(p: Promise<unknown>): Promise<unknown> {
  try {
    await p;
  } catch (e) {
    return e;
  }
  throw new Error("expected a rejection");
}

describe("lineInFile (config_test.rs vectors and edges)", () => {
  test.each([
    // [initial content or null for no file, line, changed, final content]
    ["line1\nline2.1\t line2.2\nline3", "line2.1\t line2.2", false, null],
    ["line1\nline2.1\t line2.2\nline3", "line4", true, "line1\nline2.1\t line2.2\nline3\nline4"],
    [null, "line4", true, "line4"],
    ["", "line4", true, "line4"],
    // A trailing newline leaves a blank line before the appended one.
    ["line1\n", "line4", true, "line1\n\nline4"],
    ["line1\n", "line1", false, null],
    // CRLF counts as a line end; a lone final \r does not.
    ["line1\r\nline2", "line1", false, null],
    ["line1\r", "line1", true, "line1\r\nline1"],
    // An existing empty line matches an empty `line`.
    ["a\n\nb", "", false, null],
    ["a", "", true, "a\n"],
    // Only whole lines match.
    ["xline4y", "line4", true, "xline4y\nline4"],
    ["line4 ", "line4", true, "line4 \nline4"],
  ])("%j + %j -> %p", async (initial, line, changed, final) => {
    const path = join(dir, "file");
    if (initial !== null) await writeFile(path, initial);
    expect(await lineInFile(path, line)).toBe(changed);
    expect(await readFile(path, "utf8")).toBe(final ?? initial ?? "");
  });

  test("appending twice is a no-op the second time", async () => {
    const path = join(dir, "file");
    await writeFile(path, "a");
    expect(await lineInFile(path, "b")).toBe(true);
    expect(await lineInFile(path, "b")).toBe(false);
    expect(await readFile(path, "utf8")).toBe("a\nb");
  });

  test("a directory is an error", async () => {
    await mkdir(join(dir, "d"));
    expect(await rejection(lineInFile(join(dir, "d"), "x"))).toBeInstanceOf(Error);
  });
});

describe("updatePgHba", () => {
  const BASEBACKUP_HBA = "local all all trust\nhost all all 127.0.0.1/32 trust\n";

  test("appends the md5 line with its exact tabs, once", async () => {
    const path = join(dir, "pg_hba.conf");
    await writeFile(path, BASEBACKUP_HBA);
    expect(await updatePgHba(dir, OWNER)).toBe(true);
    expect(await readFile(path, "utf8")).toBe(`${BASEBACKUP_HBA}\nhost\tall\t\tall\t\tall\t\tmd5`);
    expect(await updatePgHba(dir, OWNER)).toBe(false);
    expect(PG_HBA_ALL_MD5).toBe("host\tall\t\tall\t\tall\t\tmd5");
    await expectOwner(path);
  });

  test("creates a missing pg_hba.conf", async () => {
    expect(await updatePgHba(dir)).toBe(true);
    expect(await readFile(join(dir, "pg_hba.conf"), "utf8")).toBe(PG_HBA_ALL_MD5);
  });

  test("a line with spaces instead of tabs does not count", async () => {
    const path = join(dir, "pg_hba.conf");
    await writeFile(path, "host all all all md5");
    expect(await updatePgHba(dir)).toBe(true);
  });
});

describe("fixNeonSignal", () => {
  test.each([
    // [zenith.signal, neon.signal, copied, resulting neon.signal]
    ["zenith only", "PREV LSN: 0/1", null, true, "PREV LSN: 0/1"],
    ["both", "PREV LSN: 0/1", "PREV LSN: 0/2", false, "PREV LSN: 0/2"],
    ["neon only", null, "PREV LSN: 0/2", false, "PREV LSN: 0/2"],
    ["neither", null, null, false, null],
  ])("%s", async (_name, zenith, neon, copied, result) => {
    if (zenith !== null) await writeFile(join(dir, "zenith.signal"), zenith);
    if (neon !== null) await writeFile(join(dir, "neon.signal"), neon);
    expect(await fixNeonSignal(dir, OWNER)).toBe(copied);
    const after = await readFile(join(dir, "neon.signal"), "utf8").catch(() => null);
    expect(after).toBe(result);
    if (copied) await expectOwner(join(dir, "neon.signal"));
  });

  test("a zenith.signal directory is not a file: nothing copied", async () => {
    await mkdir(join(dir, "zenith.signal"));
    expect(await fixNeonSignal(dir)).toBe(false);
  });
});

describe("linkDynShmem", () => {
  test("replaces the directory (and its content) with a symlink to /dev/shm/", async () => {
    const path = join(dir, "pg_dynshmem");
    await mkdir(join(path, "sub"), { recursive: true });
    await writeFile(join(path, "sub", "seg"), "x");
    await linkDynShmem(dir, OWNER);
    expect((await lstat(path)).isSymbolicLink()).toBe(true);
    expect(await readlink(path)).toBe("/dev/shm/");
    await expectOwner(path);
  });

  test("a missing directory is a clear error", async () => {
    const err = await rejection(linkDynShmem(dir));
    expect(err).toBeInstanceOf(PgdataError);
    expect((err as PgdataError).message).toBe("pg_dynshmem is missing from the basebackup");
    expect((err as PgdataError).path).toBe(join(dir, "pg_dynshmem"));
  });

  test("a regular file is an error and stays", async () => {
    await writeFile(join(dir, "pg_dynshmem"), "");
    expect(await rejection(linkDynShmem(dir))).toBeInstanceOf(PgdataError);
    expect((await lstat(join(dir, "pg_dynshmem"))).isFile()).toBe(true);
  });

  test("an existing symlink is replaced, not followed", async () => {
    const elsewhere = join(dir, "elsewhere");
    await mkdir(elsewhere);
    await writeFile(join(elsewhere, "keep"), "k");
    await symlink(elsewhere, join(dir, "pg_dynshmem"));
    await linkDynShmem(dir);
    expect(await readlink(join(dir, "pg_dynshmem"))).toBe("/dev/shm/");
    expect(await readFile(join(elsewhere, "keep"), "utf8")).toBe("k");
  });
});

describe("addStandbySignal", () => {
  test("creates an empty file, then reuses it", async () => {
    const path = join(dir, "standby.signal");
    expect(await addStandbySignal(dir, OWNER)).toBe(true);
    expect(await readFile(path, "utf8")).toBe("");
    await expectOwner(path);
    expect(await addStandbySignal(dir, OWNER)).toBe(false);
  });

  test("keeps the content of an existing file", async () => {
    await writeFile(join(dir, "standby.signal"), "keep");
    expect(await addStandbySignal(dir)).toBe(false);
    expect(await readFile(join(dir, "standby.signal"), "utf8")).toBe("keep");
  });

  test("a missing PGDATA is an error", async () => {
    expect(await rejection(addStandbySignal(join(dir, "absent")))).toBeInstanceOf(Error);
  });
});

describe("createPgdata", () => {
  test("wipes an existing directory and recreates it 0700, owned", async () => {
    const pgdata = join(dir, "pgdata");
    await mkdir(join(pgdata, "base"), { recursive: true });
    await writeFile(join(pgdata, "base", "old"), "x");
    await chmod(pgdata, 0o755);
    await createPgdata(pgdata, OWNER);
    const st = await stat(pgdata);
    expect(st.isDirectory()).toBe(true);
    expect(st.mode & 0o7777).toBe(0o700);
    expect(await Array.fromAsync(new Bun.Glob("**").scan({ cwd: pgdata, dot: true }))).toEqual([]);
    await expectOwner(pgdata);
  });

  test("creates a missing directory", async () => {
    const pgdata = join(dir, "new");
    await createPgdata(pgdata);
    expect((await stat(pgdata)).mode & 0o7777).toBe(0o700);
  });

  test("a missing parent is a PgdataError", async () => {
    const err = await rejection(createPgdata(join(dir, "no", "such", "pgdata")));
    expect(err).toBeInstanceOf(PgdataError);
  });

  test("a regular file in the way is replaced", async () => {
    const pgdata = join(dir, "file");
    await writeFile(pgdata, "x");
    await createPgdata(pgdata);
    expect((await stat(pgdata)).isDirectory()).toBe(true);
  });
});

describe("withTempOverride", () => {
  const overridePath = () => join(dir, "compute_ctl_temp_override.conf");

  test("the options are in the file (no newline) while fn runs, then it is emptied", async () => {
    let during = "";
    const result = await withTempOverride(
      dir,
      "neon.max_cluster_size=-1",
      async () => {
        during = await readFile(overridePath(), "utf8");
        return 42;
      },
      OWNER,
    );
    expect(result).toBe(42);
    expect(during).toBe("neon.max_cluster_size=-1");
    expect(await readFile(overridePath(), "utf8")).toBe("");
    await expectOwner(overridePath());
  });

  test("truncates earlier content before writing", async () => {
    await writeFile(overridePath(), "a much longer leftover line from an earlier run");
    let during = "";
    await withTempOverride(dir, "x=1", async () => {
      during = await readFile(overridePath(), "utf8");
    });
    expect(during).toBe("x=1");
  });

  test("fn's failure is passed on and the file is still emptied", async () => {
    const boom = new Error("boom");
    const err = await rejection(
      withTempOverride(dir, "neon.max_cluster_size=-1", async () => {
        throw boom;
      }),
    );
    expect(err).toBe(boom);
    expect(await readFile(overridePath(), "utf8")).toBe("");
  });

  test("a missing PGDATA fails before fn runs", async () => {
    let ran = false;
    const err = await rejection(
      withTempOverride(join(dir, "absent"), "x=1", async () => {
        ran = true;
      }),
    );
    expect(err).toBeInstanceOf(Error);
    expect(ran).toBe(false);
  });
});

describe("writePostgresConf", () => {
  test("writes the text exactly, truncating older content, owned", async () => {
    const path = join(dir, "postgresql.conf");
    await writeFile(path, "old content that is longer than the new one\n".repeat(10));
    await writePostgresConf(dir, "a=1\n", OWNER);
    expect(await readFile(path, "utf8")).toBe("a=1\n");
    await expectOwner(path);
  });

  test("a new file gets 0666 minus the umask, as File::create", async () => {
    await writePostgresConf(dir, "a=1\n");
    expect((await stat(join(dir, "postgresql.conf"))).mode & 0o777).toBe(0o666 & ~process.umask());
  });
});
