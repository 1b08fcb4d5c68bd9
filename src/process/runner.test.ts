import { describe, expect, test } from "bun:test";
import {
  ChildError,
  childEnv,
  formatCommand,
  formatExitStatus,
  isSuccess,
  SpawnError,
  shellExitCode,
  signalName,
  signalNumber,
} from "./runner.ts";

describe("exit status helpers", () => {
  test.each([
    [{ code: 0, signal: null }, 0, "exit status: 0"],
    [{ code: 3, signal: null }, 3, "exit status: 3"],
    [{ code: null, signal: "SIGTERM" }, 143, "signal: 15 (SIGTERM)"],
    [{ code: null, signal: "SIGKILL" }, 137, "signal: 9 (SIGKILL)"],
    [{ code: null, signal: "SIG64" }, 192, "signal: 64 (SIG64)"],
  ])("%j -> %d, %s", (st, code, text) => {
    expect(shellExitCode(st)).toBe(code);
    expect(formatExitStatus(st)).toBe(text);
  });

  test("only code 0 is success", () => {
    expect(isSuccess({ code: 0, signal: null })).toBe(true);
    expect(isSuccess({ code: 1, signal: null })).toBe(false);
    expect(isSuccess({ code: null, signal: "SIGINT" })).toBe(false);
  });

  test("signal names and numbers", () => {
    expect(signalNumber("SIGINT")).toBe(2);
    expect(signalNumber("SIGQUIT")).toBe(3);
    expect(signalNumber("NOPE")).toBeUndefined();
    expect(signalName(15)).toBe("SIGTERM");
    expect(signalName(64)).toBe("SIG64");
  });
});

describe("formatCommand", () => {
  test.each([
    [["postgres", "-D", "/pgdata"], "postgres -D /pgdata"],
    [["sh", "-c", "exit 1"], "sh -c 'exit 1'"],
    [["echo", "it's"], "echo 'it'\\''s'"],
    [["x", ""], "x ''"],
  ])("%j", (cmd, want) => {
    expect(formatCommand(cmd)).toBe(want);
  });
});

describe("childEnv", () => {
  const user = { uid: 101, gid: 104, name: "postgres", home: "/var/lib/postgresql" };

  test("inherited, then identity, then the spec's additions", () => {
    const env = childEnv(
      { user, env: { PGDATA: "/pgdata", LOGNAME: "override" } },
      { PATH: "/bin", HOME: "/root", USER: "root", GONE: undefined },
    );
    expect(env).toEqual({
      PATH: "/bin",
      HOME: "/var/lib/postgresql",
      USER: "postgres",
      LOGNAME: "override",
      PGDATA: "/pgdata",
    });
  });

  test("without a user the environment is ours plus additions", () => {
    expect(childEnv({ env: { A: "1" } }, { HOME: "/root" })).toEqual({ HOME: "/root", A: "1" });
  });
});

describe("errors", () => {
  test("SpawnError keeps the command, errno code and cause", () => {
    const cause = Object.assign(new Error("ENOENT: no such file"), { code: "ENOENT" });
    const e = new SpawnError(["postgres", "-D", "/d"], cause);
    expect(e.message).toBe("failed to start postgres -D /d: ENOENT: no such file");
    expect(e.code).toBe("ENOENT");
    expect(e.cause).toBe(cause);
    expect(e.exitCode).toBe(1);
  });

  test("ChildError carries status and tail; message in upstream's shape", () => {
    const e = new ChildError(
      ["postgres", "--sync-safekeepers"],
      { code: null, signal: "SIGKILL" },
      {
        stderrTail: ["FATAL: x"],
      },
    );
    expect(e.message).toBe(
      "postgres --sync-safekeepers exited with non-zero status: signal: 9 (SIGKILL)",
    );
    expect(e.childCode).toBeNull();
    expect(e.signal).toBe("SIGKILL");
    expect(e.stderrTail).toEqual(["FATAL: x"]);
    expect(new ChildError(["x"], { code: 1, signal: null }, { message: "custom" }).message).toBe(
      "custom",
    );
  });
});
