import { describe, expect, test } from "bun:test";
import { ConfigError } from "../errors.ts";
import { parseKeywordValueConninfo, parsePageserverConnstr } from "./connstr.ts";

describe("parsePageserverConnstr", () => {
  test.each<[string, Record<string, unknown>]>([
    [
      "postgres://no_user@localhost:64000",
      { protocol: "libpq", host: "localhost", port: 64000, user: "no_user" },
    ],
    [
      "postgresql://u:p%40ss@127.0.0.1:6400/db?options=-c%20x%3D1+y&application_name=a",
      {
        host: "127.0.0.1",
        port: 6400,
        user: "u",
        password: "p@ss",
        dbname: "db",
        options: "-c x=1+y",
        extra: { application_name: "a" },
      },
    ],
    ["postgres://[::1]:6400", { host: "::1", port: 6400 }],
    ["postgres://pageserver", { host: "pageserver", port: 5432 }],
    [
      "grpc://no_user@localhost:51051",
      { protocol: "grpc", host: "localhost", port: 51051, user: "no_user" },
    ],
    ["host=127.0.0.1 port=6400", { protocol: "libpq", host: "127.0.0.1", port: 6400, extra: {} }],
    [
      "  host = pageserver   port=6400 user=cloud_admin ",
      { host: "pageserver", port: 6400, user: "cloud_admin" },
    ],
    [
      "host=h options='-c a=b\\'c' sslmode=disable",
      { host: "h", port: 5432, options: "-c a=b'c", extra: { sslmode: "disable" } },
    ],
  ])("%p", (connstr, expected) => {
    expect(parsePageserverConnstr(connstr)).toMatchObject(expected);
  });

  test.each<[string, string]>([
    ["port=6400", "no host"],
    ["host=h port=x", 'invalid port "x"'],
    ["host=h port=70000", 'invalid port "70000"'],
    ["host h", 'missing "=" after "host"'],
    ["host='h", "unterminated quoted string"],
    ["grpc://h", "no port"],
    ["http://h:1", "unsupported URL scheme"],
    ["postgres://h:99999", "not a valid URL"],
  ])("rejects %p", (connstr, reason) => {
    expect(() => parsePageserverConnstr(connstr)).toThrow(ConfigError);
    expect(() => parsePageserverConnstr(connstr)).toThrow(
      `invalid pageserver connection string ${JSON.stringify(connstr)}: ${reason}`,
    );
  });

  test("keyword/value backslash escapes outside quotes", () => {
    expect(parseKeywordValueConninfo("a=x\\ y b=''")).toEqual(
      new Map([
        ["a", "x y"],
        ["b", ""],
      ]),
    );
  });
});
