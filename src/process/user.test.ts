import { afterAll, describe, expect, test } from "bun:test";
import {
  lstatSync,
  mkdirSync,
  mkdtempSync,
  rmSync,
  statSync,
  symlinkSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import {
  chownRecursive,
  mkdirOwned,
  parseGroup,
  parsePasswd,
  resolveRunAs,
  UnknownUserError,
} from "./user.ts";

const dir = mkdtempSync(join(tmpdir(), "process-user-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const passwd = join(dir, "passwd");
const group = join(dir, "group");
writeFileSync(
  passwd,
  [
    "root:x:0:0:root:/root:/bin/bash",
    "# comment",
    "",
    "broken:line",
    "postgres:x:101:104:PostgreSQL administrator,,,:/var/lib/postgresql:/bin/bash",
    "pg2:x:2000:2000::/home/pg2:/bin/sh",
  ].join("\n"),
);
writeFileSync(group, ["root:x:0:", "postgres:x:104:", "ssl-cert:x:110:postgres,other"].join("\n"));

describe("parsers", () => {
  test("passwd", () => {
    expect(parsePasswd("a:x:1:2:gecos:/h:/bin/sh\nbad\nb:x:u:2::/h:/s\n")).toEqual([
      { name: "a", uid: 1, gid: 2, home: "/h", shell: "/bin/sh" },
    ]);
  });

  test("group", () => {
    expect(parseGroup("g:x:5:a,b\nh:x:6:\n")).toEqual([
      { name: "g", gid: 5, members: ["a", "b"] },
      { name: "h", gid: 6, members: [] },
    ]);
  });
});

describe("resolveRunAs", () => {
  const files = { passwdPath: passwd, groupPath: group };

  test("as root: the user's ids, home and groups", () => {
    expect(resolveRunAs("postgres", { ...files, euid: 0 })).toEqual({
      uid: 101,
      gid: 104,
      name: "postgres",
      home: "/var/lib/postgresql",
      groupName: "postgres",
      supplementaryGroups: [110],
    });
  });

  test("a gid without a group entry still resolves", () => {
    expect(resolveRunAs("pg2", { ...files, euid: 0 })?.groupName).toBeUndefined();
  });

  test("not root: null, children run as ourselves (upstream behaviour)", () => {
    expect(resolveRunAs("postgres", { ...files, euid: 1000 })).toBeNull();
    expect(resolveRunAs("nobody-here", { ...files, euid: 1000 })).toBeNull();
  });

  test("as root with a missing user: a clear error naming the flag", () => {
    expect(() => resolveRunAs("postgres", { passwdPath: join(dir, "empty"), euid: 0 })).toThrow(
      UnknownUserError,
    );
    expect(() => resolveRunAs("nobody-here", { ...files, euid: 0 })).toThrow(
      "compute_ctl runs as root but user 'nobody-here' does not exist; create it or pass --pg-user",
    );
    expect(() => resolveRunAs("x", { ...files, euid: 0, flag: "--user" })).toThrow(/pass --user$/);
  });

  test("the default name is postgres and the real files are read", () => {
    const r = resolveRunAs();
    if (process.getuid?.() === 0) expect(r?.name).toBe("postgres");
    else expect(r).toBeNull();
  });
});

const root = process.getuid?.() === 0;

describe("ownership", () => {
  test.skipIf(!root)("chownRecursive changes every entry and never follows symlinks", async () => {
    const top = join(dir, "tree");
    mkdirSync(join(top, "a", "b"), { recursive: true });
    writeFileSync(join(top, "a", "b", "f"), "x");
    const outside = join(dir, "outside");
    writeFileSync(outside, "y");
    symlinkSync(outside, join(top, "link"));
    await chownRecursive(top, 101, 104);
    for (const p of [top, join(top, "a"), join(top, "a", "b"), join(top, "a", "b", "f")]) {
      expect([statSync(p).uid, statSync(p).gid]).toEqual([101, 104]);
    }
    expect(lstatSync(join(top, "link")).uid).toBe(101);
    expect(statSync(outside).uid).toBe(0);
  });

  test("mkdirOwned creates with 0700 despite the umask, and fixes an existing dir", async () => {
    const d = join(dir, "p", "pgdata");
    const old = process.umask(0o077);
    try {
      await mkdirOwned(d, null, 0o750);
    } finally {
      process.umask(old);
    }
    expect(statSync(d).mode & 0o777).toBe(0o750);
    await mkdirOwned(d, null);
    expect(statSync(d).mode & 0o777).toBe(0o700);
  });

  test.skipIf(!root)("mkdirOwned chowns the leaf only", async () => {
    const d = join(dir, "q", "pgdata");
    await mkdirOwned(d, { uid: 101, gid: 104, name: "postgres", home: "/" });
    expect([statSync(d).uid, statSync(d).gid]).toEqual([101, 104]);
    expect(statSync(join(dir, "q")).uid).toBe(0);
  });
});
