import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { chmod, mkdir, mkdtemp, open, rm, symlink, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ConfigError } from "../errors.ts";
import { loadConfigFile, MAX_CONFIG_FILE_BYTES, parseJsonText } from "./parse.ts";

const GOOD = {
  spec: {
    format_version: 1.0,
    cluster: { roles: [], databases: [] },
    suspend_timeout_seconds: 3600,
  },
  compute_ctl_config: { jwks: { keys: [] } },
};

let dir: string;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "spec-parse-test-"));
});

afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

async function file(name: string, content: string | Uint8Array): Promise<string> {
  const path = join(dir, name);
  await writeFile(path, content);
  return path;
}

async function loadError(path: string, opts?: { maxBytes?: number }): Promise<ConfigError> {
  try {
    await loadConfigFile(path, opts);
  } catch (e) {
    expect(e).toBeInstanceOf(ConfigError);
    const err = e as ConfigError;
    // One line, never a stack trace.
    expect(err.message).not.toContain("\n");
    expect(err.message.startsWith(`config file ${path}: `)).toBe(true);
    return err;
  }
  throw new Error("expected loadConfigFile to fail");
}

describe("parseJsonText", () => {
  test("valid JSON", () => {
    expect(parseJsonText('{"a": [1]}')).toEqual({ a: [1] });
  });

  test("says where the text is broken", () => {
    expect(() => parseJsonText('{\n  "a": 1,\n  "b": }')).toThrow(
      'invalid JSON at line 3 column 8: expected a value, found "}"',
    );
    expect(() => parseJsonText("{")).toThrow(
      "invalid JSON at line 1 column 2: expected a string key or '}', found end of input",
    );
  });
});

describe("loadConfigFile", () => {
  test("loads a valid config", async () => {
    const path = await file("good.json", JSON.stringify(GOOD, null, 2));
    const config = await loadConfigFile(path);
    expect(config.spec?.suspend_timeout_seconds).toBe(3600);
    expect(config.compute_ctl_config).toEqual({ jwks: { keys: [] }, tls: null });
  });

  test("spec null or absent means an empty compute", async () => {
    const path = await file("empty-compute.json", '{"compute_ctl_config": {"jwks": {"keys": []}}}');
    expect((await loadConfigFile(path)).spec).toBeNull();
  });

  test("missing file", async () => {
    const path = join(dir, "nope.json");
    expect((await loadError(path)).message).toBe(`config file ${path}: no such file`);
  });

  test("a directory", async () => {
    const path = join(dir, "a-dir");
    await mkdir(path);
    expect((await loadError(path)).message).toBe(`config file ${path}: is a directory, not a file`);
  });

  test("a path through a regular file", async () => {
    const parent = await file("plain", "x");
    const path = join(parent, "config.json");
    expect((await loadError(path)).message).toBe(
      `config file ${path}: a parent of this path is not a directory`,
    );
  });

  test("a symlink loop", async () => {
    const path = join(dir, "loop");
    await symlink(path, path);
    expect((await loadError(path)).message).toBe(
      `config file ${path}: too many levels of symbolic links`,
    );
  });

  test("unreadable file", async () => {
    const path = await file("secret.json", JSON.stringify(GOOD));
    await chmod(path, 0o000);
    if (process.getuid?.() !== 0) {
      expect((await loadError(path)).message).toBe(`config file ${path}: permission denied`);
      return;
    }
    // root reads anything: check as an unprivileged user in a child process.
    if (Bun.which("setpriv") === null) return;
    await chmod(dir, 0o755);
    const script = `import { loadConfigFile } from ${JSON.stringify(join(import.meta.dir, "parse.ts"))};
      loadConfigFile(${JSON.stringify(path)}).then(() => process.stdout.write("loaded"), (e) => process.stdout.write(e.message));`;
    const child = Bun.spawn(
      [
        "setpriv",
        "--reuid=65534",
        "--regid=65534",
        "--clear-groups",
        process.execPath,
        "-e",
        script,
      ],
      { stdout: "pipe", stderr: "pipe" },
    );
    const out = await new Response(child.stdout).text();
    await child.exited;
    expect(out).toBe(`config file ${path}: permission denied`);
  });

  test("empty file", async () => {
    const path = await file("empty.json", "");
    expect((await loadError(path)).message).toBe(`config file ${path}: file is empty`);
    const blank = await file("blank.json", " \n\t\n");
    expect((await loadError(blank)).message).toBe(`config file ${blank}: file is empty`);
  });

  test("invalid JSON names line and column", async () => {
    const path = await file(
      "bad.json",
      '{\n  "spec": null,\n  "compute_ctl_config": {jwks: 1}\n}\n',
    );
    expect((await loadError(path)).message).toBe(
      `config file ${path}: invalid JSON at line 3 column 26: expected a string key or '}', found "j"`,
    );
  });

  test("not UTF-8", async () => {
    const path = await file("latin1.json", new Uint8Array([0x7b, 0x22, 0xe9, 0x22, 0x7d]));
    expect((await loadError(path)).message).toBe(`config file ${path}: not valid UTF-8 text`);
  });

  test("not an object", async () => {
    const path = await file("array.json", "[1, 2]");
    expect((await loadError(path)).message).toBe(
      `config file ${path}: expected a JSON object, got array`,
    );
  });

  test("wrong shape names the JSON path and sets .path", async () => {
    const path = await file(
      "shape.json",
      JSON.stringify({ ...GOOD, spec: { ...GOOD.spec, cluster: undefined } }),
    );
    const err = await loadError(path);
    expect(err.message).toBe(`config file ${path}: spec.cluster: missing`);
    expect(err.path).toBe("spec.cluster");
    const bare = await file("bare.json", JSON.stringify(GOOD.spec));
    expect((await loadError(bare)).message).toBe(
      `config file ${bare}: compute_ctl_config: missing`,
    );
  });

  test("a 50 MB file is refused quickly, naming the limit", async () => {
    const path = join(dir, "huge.json");
    const handle = await open(path, "w");
    await handle.truncate(50 * 1024 * 1024);
    await handle.close();
    const started = performance.now();
    const err = await loadError(path);
    const elapsed = performance.now() - started;
    expect(err.message).toBe(
      `config file ${path}: file is larger than the 16 MiB limit (52428800 bytes)`,
    );
    expect(elapsed).toBeLessThan(1000);
    expect(MAX_CONFIG_FILE_BYTES).toBe(16 * 1024 * 1024);
  });

  test("a file whose size stat does not report is still bounded", async () => {
    const err = await loadError("/dev/zero", { maxBytes: 1000 });
    expect(err.message).toBe(
      "config file /dev/zero: file is larger than the 1000 bytes limit (more than 1000 bytes)",
    );
  });

  test("a file exactly at the limit is read", async () => {
    const text = JSON.stringify(GOOD);
    const path = await file("exact.json", text);
    await expect(loadConfigFile(path, { maxBytes: text.length })).resolves.toBeDefined();
    expect((await loadError(path, { maxBytes: text.length - 1 })).message).toContain(
      `file is larger than the ${text.length - 1} bytes limit (${text.length} bytes)`,
    );
  });
});
