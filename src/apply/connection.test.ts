// --connstr as the apply reads it (upstream-api.md §3.2).
import { describe, expect, test } from "bun:test";
import { ConfigError } from "../errors.ts";
import { connectionTarget } from "./connection.ts";

describe("connectionTarget", () => {
  test.each([
    [
      "postgresql://cloud_admin@localhost:55432/postgres",
      {
        host: "localhost",
        port: 55432,
        user: "cloud_admin",
        password: undefined,
        database: "postgres",
        urlOptions: "",
      },
    ],
    [
      "postgres://cloud_admin@127.0.0.1:5432/postgres",
      {
        host: "127.0.0.1",
        port: 5432,
        user: "cloud_admin",
        password: undefined,
        database: "postgres",
        urlOptions: "",
      },
    ],
    [
      "postgresql://cloud_admin@[::1]:55433/postgres",
      {
        host: "::1",
        port: 55433,
        user: "cloud_admin",
        password: undefined,
        database: "postgres",
        urlOptions: "",
      },
    ],
    [
      "postgresql://us%40er:p%3Ass%2Fw%20rd@db.local:6000/my%20db",
      {
        host: "db.local",
        port: 6000,
        user: "us@er",
        password: "p:ss/w rd",
        database: "my db",
        urlOptions: "",
      },
    ],
    [
      // libpq: the database defaults to the user name.
      "postgresql://alice@localhost:5433",
      {
        host: "localhost",
        port: 5433,
        user: "alice",
        password: undefined,
        database: "alice",
        urlOptions: "",
      },
    ],
    [
      "postgresql://alice@localhost:5433/",
      {
        host: "localhost",
        port: 5433,
        user: "alice",
        password: undefined,
        database: "alice",
        urlOptions: "",
      },
    ],
    [
      "postgresql://cloud_admin@localhost/postgres",
      {
        host: "localhost",
        port: 5432,
        user: "cloud_admin",
        password: undefined,
        database: "postgres",
        urlOptions: "",
      },
    ],
    [
      "postgresql://cloud_admin@localhost:55432/postgres?options=-c%20foo%3Dbar",
      {
        host: "localhost",
        port: 55432,
        user: "cloud_admin",
        password: undefined,
        database: "postgres",
        urlOptions: "-c foo=bar",
      },
    ],
  ])("%s", (url, target) => {
    expect(connectionTarget(new URL(url))).toEqual(target);
  });

  test.each([
    "http://cloud_admin@localhost:55432/postgres",
    "postgresx://cloud_admin@localhost:55432/postgres",
    "grpc://localhost:51051",
  ])("rejects %s", (url) => {
    expect(() => connectionTarget(new URL(url))).toThrow(ConfigError);
  });

  // A bad escape must surface as a ConfigError naming --connstr, not a URIError.
  test("malformed percent-encoding is a ConfigError", () => {
    expect(() => connectionTarget(new URL("postgresql://a%zz@localhost/postgres"))).toThrow(
      ConfigError,
    );
  });

  test("a bad password escape is reported without the password", () => {
    const err = (() => {
      try {
        connectionTarget(new URL("postgresql://u:s3cret%zz@localhost/postgres"));
      } catch (e) {
        return e;
      }
    })();
    expect(err).toBeInstanceOf(ConfigError);
    expect((err as Error).message).toContain("password");
    expect((err as Error).message).not.toContain("s3cret");
  });
});

describe("connectionTarget: query parameters", () => {
  test("a socket directory, as ?host= or percent-encoded, and the other libpq keys", () => {
    expect(connectionTarget(new URL("postgresql:///postgres?host=/tmp&port=55432"))).toMatchObject({
      host: "/tmp",
      port: 55432,
      database: "postgres",
    });
    expect(
      connectionTarget(new URL("postgresql://cloud_admin@%2Fvar%2Frun:5432/db")),
    ).toMatchObject({
      host: "/var/run",
      database: "db",
    });
    expect(
      connectionTarget(
        new URL("postgresql://h:1/x?user=u&dbname=d&sslmode=disable&application_name=a"),
      ),
    ).toMatchObject({ host: "h", port: 1, user: "u", database: "d" });
  });

  test.each([
    ["postgresql://h/x?target_session_attrs=any", 'query parameter "target_session_attrs"'],
    ["postgresql://h/x?sslmode=verify-full", "sslmode=verify-full"],
    ["postgresql://h/x?port=99999", "invalid port"],
  ])("%s is refused, naming what", (url, what) => {
    expect(() => connectionTarget(new URL(url))).toThrow(what);
  });
});
