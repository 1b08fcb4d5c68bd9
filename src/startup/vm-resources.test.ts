import { describe, expect, test } from "bun:test";
import { ComputeCtlError } from "../errors.ts";
import { type FakeChild, FakeRunner } from "../process/fake-runner.ts";
import { until } from "../testing/until.ts";
import { testContext, testSpec } from "./testing.ts";
import {
  prepareVmResources,
  RESIZE_SWAP_BIN,
  resizeSwap,
  SET_DISK_QUOTA_BIN,
  SUDO,
  setDiskQuota,
} from "./vm-resources.ts";

const GIB = 1024 ** 3;
const SWAP_CMD = `${SUDO} ${RESIZE_SWAP_BIN}`;
const QUOTA_CMD = `${SUDO} ${SET_DISK_QUOTA_BIN}`;

/** A log line's level and text, without the timestamp. */
function logged(lines: string[], level: string, text: string): boolean {
  return lines.some((l) => l.replace(/^\S+\s+/, "") === `${level} ${text}`);
}

async function rejection(p: Promise<unknown>): Promise<Error> {
  const e = await p.then(
    () => undefined,
    (err: unknown) => err,
  );
  if (!(e instanceof Error)) throw new Error(`expected a rejection with an Error, got ${e}`);
  return e;
}

/** One macrotask turn: every pending microtask (promise reaction) has run. */
const turn = () => new Promise<void>((resolve) => setImmediate(resolve));

/** Whether `p` has settled (either way) by the time it is asked. */
function settledFlag(p: Promise<unknown>): () => boolean {
  let settled = false;
  const mark = () => {
    settled = true;
  };
  p.then(mark, mark);
  return () => settled;
}

describe("resizeSwap", () => {
  test("runs sudo resize-swap with --once first, then the size in bytes; exit 0 is logged", async () => {
    const runner = new FakeRunner().on(SWAP_CMD, { exit: 0 });
    const { ctx, lines } = testContext({ runner });
    const checked: string[] = [];
    await resizeSwap(ctx, 2 * GIB, (p) => {
      checked.push(p);
      return true;
    });
    expect(runner.spawned.map((c) => c.command)).toEqual([
      ["/usr/bin/sudo", "/neonvm/bin/resize-swap", "--once", "2147483648"],
    ]);
    expect(logged(lines, "INFO", "resized swap to 2147483648 bytes")).toBe(true);
    // The helper's existence only matters after a failure.
    expect(checked).toEqual([]);
  });

  test("a size of 0 is passed on as is", async () => {
    const runner = new FakeRunner().on(SWAP_CMD, { exit: 0 });
    const { ctx } = testContext({ runner });
    await resizeSwap(ctx, 0, () => true);
    expect(runner.spawned[0]?.command).toEqual([SUDO, RESIZE_SWAP_BIN, "--once", "0"]);
  });

  test("a non-zero exit while the helper still exists fails the startup", async () => {
    const runner = new FakeRunner().on(SWAP_CMD, { exit: 1, stderr: ["swapoff failed"] });
    const { ctx, lines } = testContext({ runner });
    const checked: string[] = [];
    const err = await rejection(
      resizeSwap(ctx, GIB, (p) => {
        checked.push(p);
        return true;
      }),
    );
    expect(err).toBeInstanceOf(ComputeCtlError);
    expect(err.message).toBe(
      "failed to resize swap: could not run `/usr/bin/sudo /neonvm/bin/resize-swap --once 1073741824`: process exited with exit status: 1",
    );
    expect(checked).toEqual([RESIZE_SWAP_BIN]);
    expect(lines.some((l) => l.includes("resized swap"))).toBe(false);
  });

  test("a non-zero exit after the helper removed itself is a warning, not a failure", async () => {
    const runner = new FakeRunner().on(SWAP_CMD, { exit: 1 });
    const { ctx, lines } = testContext({ runner });
    await resizeSwap(ctx, GIB, () => false);
    expect(
      logged(
        lines,
        "WARN",
        'ignoring "not found" error from resize-swap to avoid swapoff while compute is running',
      ),
    ).toBe(true);
    expect(lines.some((l) => l.includes("resized swap to"))).toBe(false);
  });

  test("killed by a signal: the message names the signal", async () => {
    const runner = new FakeRunner().on(SWAP_CMD, { exit: { code: null, signal: "SIGKILL" } });
    const { ctx } = testContext({ runner });
    const err = await rejection(resizeSwap(ctx, GIB, () => true));
    expect(err.message).toStartWith(
      "failed to resize swap: could not run `/usr/bin/sudo /neonvm/bin/resize-swap --once 1073741824`: process exited with signal",
    );
    expect(err.message).toContain("SIGKILL");
  });

  // BUG: upstream embeds Rust's ExitStatus Display ("signal: 9 (SIGKILL)", what
  // runner.ts formatExitStatus renders); vm-resources.ts prints "signal: SIGKILL".
  test("killed by a signal: the status reads as upstream's (signal: 9 (SIGKILL))", async () => {
    const runner = new FakeRunner().on(SWAP_CMD, { exit: { code: null, signal: "SIGKILL" } });
    const { ctx } = testContext({ runner });
    const err = await rejection(resizeSwap(ctx, GIB, () => true));
    expect(err.message).toEndWith("process exited with signal: 9 (SIGKILL)");
  });

  test("a spawn failure is an error naming the command, whether or not the helper exists", async () => {
    for (const exists of [true, false]) {
      const { ctx } = testContext({ runner: new FakeRunner() });
      const err = await rejection(resizeSwap(ctx, GIB, () => exists));
      expect(err).toBeInstanceOf(ComputeCtlError);
      expect(err.message).toStartWith(
        "failed to resize swap: could not run `/usr/bin/sudo /neonvm/bin/resize-swap --once 1073741824`: ",
      );
      expect(err.message).toContain("ENOENT");
    }
  });

  // BUG: upstream wraps every resize_swap error in "failed to resize swap"
  // (compute.rs .context); a spawn failure here lacks that context, unlike the
  // non-zero exit.
  test("a spawn failure carries the 'failed to resize swap' context too", async () => {
    const { ctx } = testContext({ runner: new FakeRunner() });
    const err = await rejection(resizeSwap(ctx, GIB, () => true));
    expect(err.message).toStartWith(
      "failed to resize swap: could not run `/usr/bin/sudo /neonvm/bin/resize-swap --once 1073741824`: ",
    );
  });
});

describe("setDiskQuota", () => {
  test.each<[number, string]>([
    [10 * GIB, "10485760"],
    [1024, "1"],
    [1023, "0"], // floor(bytes / 1024)
    [2047, "1"],
    [0, "0"], // 0 removes the quota
  ])("%p bytes -> %p KiB", async (bytes, kib) => {
    const runner = new FakeRunner().on(QUOTA_CMD, { exit: 0 });
    const { ctx, lines } = testContext({ runner });
    await setDiskQuota(ctx, bytes, "/var/db/postgres/compute");
    expect(runner.spawned.map((c) => c.command)).toEqual([
      ["/usr/bin/sudo", "/neonvm/bin/set-disk-quota", kib, "/var/db/postgres/compute"],
    ]);
    expect(
      logged(lines, "INFO", `set disk quota of /var/db/postgres/compute to ${bytes} bytes`),
    ).toBe(true);
  });

  test("a non-zero exit fails with the exit status; the log has the full command", async () => {
    const runner = new FakeRunner().on(QUOTA_CMD, { exit: 3 });
    const { ctx, lines } = testContext({ runner });
    const err = await rejection(setDiskQuota(ctx, 4096, "/mnt/data"));
    expect(err).toBeInstanceOf(ComputeCtlError);
    expect(err.message).toEndWith("process exited with exit status: 3");
    expect(
      lines.some((l) => l.includes("set-disk-quota 4 /mnt/data exited with exit status: 3")),
    ).toBe(true);
    expect(lines.some((l) => l.includes("set disk quota of"))).toBe(false);
  });

  // DIVERGENCE: upstream's context is "could not run `/usr/bin/sudo
  // /neonvm/bin/set-disk-quota`" without the arguments (disk_quota.rs, lifecycle §10.4).
  test("a non-zero exit reads as upstream's message (no arguments)", async () => {
    const runner = new FakeRunner().on(QUOTA_CMD, { exit: 3 });
    const { ctx } = testContext({ runner });
    const err = await rejection(setDiskQuota(ctx, 4096, "/mnt/data"));
    expect(err.message).toBe(
      "failed to set disk quota: could not run `/usr/bin/sudo /neonvm/bin/set-disk-quota`: process exited with exit status: 3",
    );
  });

  test("a mountpoint with a space is passed as one argument and quoted in the log", async () => {
    const runner = new FakeRunner().on(QUOTA_CMD, { exit: 1 });
    const { ctx, lines } = testContext({ runner });
    await rejection(setDiskQuota(ctx, 2048, "/mnt/my disk"));
    expect(runner.spawned[0]?.command).toEqual([SUDO, SET_DISK_QUOTA_BIN, "2", "/mnt/my disk"]);
    expect(lines.some((l) => l.includes("set-disk-quota 2 '/mnt/my disk' exited with"))).toBe(true);
  });

  test("killed by a signal: the message names the signal", async () => {
    const runner = new FakeRunner().on(QUOTA_CMD, { exit: { code: null, signal: "SIGTERM" } });
    const { ctx } = testContext({ runner });
    const err = await rejection(setDiskQuota(ctx, 4096, "/mnt/data"));
    expect(err.message).toStartWith("failed to set disk quota: ");
    expect(err.message).toContain("process exited with signal");
    expect(err.message).toContain("SIGTERM");
  });

  test("a spawn failure is an error naming the command", async () => {
    const { ctx } = testContext({ runner: new FakeRunner() });
    const err = await rejection(setDiskQuota(ctx, 4096, "/mnt/data"));
    expect(err).toBeInstanceOf(ComputeCtlError);
    expect(err.message).toContain("`/usr/bin/sudo /neonvm/bin/set-disk-quota 4 /mnt/data`");
    expect(err.message).toContain("ENOENT");
  });
});

describe("prepareVmResources", () => {
  const both = { swap_size_bytes: GIB, disk_quota_bytes: 8 * GIB };
  const helpers = (runner: FakeRunner) =>
    runner.spawned.map((c) => c.command[1]).sort((a, b) => String(a).localeCompare(String(b)));

  test.each<
    [string, Record<string, unknown>, { resizeSwapOnBind: boolean; fs?: string }, string[]]
  >([
    ["nothing in the spec", {}, { resizeSwapOnBind: true, fs: "/mnt" }, []],
    ["swap size without --resize-swap-on-bind", both, { resizeSwapOnBind: false }, []],
    [
      "--resize-swap-on-bind without a swap size",
      { disk_quota_bytes: GIB },
      { resizeSwapOnBind: true },
      [],
    ],
    [
      "quota without --set-disk-quota-for-fs",
      { disk_quota_bytes: GIB },
      { resizeSwapOnBind: false },
      [],
    ],
    [
      "--set-disk-quota-for-fs without a quota",
      { swap_size_bytes: GIB },
      { resizeSwapOnBind: false, fs: "/mnt" },
      [],
    ],
    ["swap only", both, { resizeSwapOnBind: true }, [RESIZE_SWAP_BIN]],
    ["quota only", both, { resizeSwapOnBind: false, fs: "/mnt" }, [SET_DISK_QUOTA_BIN]],
    ["both", both, { resizeSwapOnBind: true, fs: "/mnt" }, [RESIZE_SWAP_BIN, SET_DISK_QUOTA_BIN]],
    [
      "zero sizes still count as set",
      { swap_size_bytes: 0, disk_quota_bytes: 0 },
      { resizeSwapOnBind: true, fs: "/mnt" },
      [RESIZE_SWAP_BIN, SET_DISK_QUOTA_BIN],
    ],
  ])("%s", async (_, spec, flags, want) => {
    const runner = new FakeRunner().on(SUDO, { exit: 0 });
    const { ctx } = testContext({ runner, pspec: testSpec(spec) });
    await prepareVmResources(ctx, {
      resizeSwapOnBind: flags.resizeSwapOnBind,
      setDiskQuotaForFs: flags.fs,
    });
    expect(helpers(runner)).toEqual(want);
  });

  test("passes the spec's sizes and the mountpoint on", async () => {
    const runner = new FakeRunner().on(SUDO, { exit: 0 });
    const { ctx } = testContext({ runner, pspec: testSpec(both) });
    await prepareVmResources(ctx, { resizeSwapOnBind: true, setDiskQuotaForFs: "/mnt/pg" });
    expect(runner.last(SWAP_CMD)?.command).toEqual([SUDO, RESIZE_SWAP_BIN, "--once", String(GIB)]);
    expect(runner.last(QUOTA_CMD)?.command).toEqual([
      SUDO,
      SET_DISK_QUOTA_BIN,
      String(8 * 1024 * 1024),
      "/mnt/pg",
    ]);
  });

  test("both helpers run concurrently", async () => {
    const children: FakeChild[] = [];
    const runner = new FakeRunner().on(SUDO, (c) => children.push(c)); // exit when told
    const { ctx } = testContext({ runner, pspec: testSpec(both) });
    const done = prepareVmResources(ctx, { resizeSwapOnBind: true, setDiskQuotaForFs: "/mnt" });
    // Both are started while neither has exited.
    await until("both helpers started", () => children.length === 2, 1000);
    expect(children.every((c) => c.status === null)).toBe(true);
    for (const c of children) c.exit(0);
    await done;
  });

  test("a disk quota failure is thrown only after the swap resize settled", async () => {
    let swap: FakeChild | undefined;
    const runner = new FakeRunner()
      .on(SWAP_CMD, (c) => {
        swap = c;
      })
      .on(QUOTA_CMD, { exit: 1 });
    const { ctx } = testContext({ runner, pspec: testSpec(both) });
    const done = prepareVmResources(ctx, { resizeSwapOnBind: true, setDiskQuotaForFs: "/mnt" });
    const settled = settledFlag(done);
    await until("set-disk-quota exited", () => runner.last(QUOTA_CMD)?.status, 1000);
    await turn();
    expect(settled()).toBe(false);
    swap?.exit(0);
    const err = await rejection(done);
    expect(err.message).toStartWith("failed to set disk quota: ");
  });

  test("a swap failure is thrown only after the disk quota settled", async () => {
    let quota: FakeChild | undefined;
    // No rule for resize-swap: it fails to spawn (an error whatever the helper's state).
    const runner = new FakeRunner().on(QUOTA_CMD, (c) => {
      quota = c;
    });
    const { ctx } = testContext({ runner, pspec: testSpec(both) });
    const done = prepareVmResources(ctx, { resizeSwapOnBind: true, setDiskQuotaForFs: "/mnt" });
    const settled = settledFlag(done);
    await until("set-disk-quota started", () => quota, 1000);
    await turn();
    expect(settled()).toBe(false);
    quota?.exit(0);
    const err = await rejection(done);
    expect(err.message).toContain("/neonvm/bin/resize-swap --once 1073741824");
  });
});
