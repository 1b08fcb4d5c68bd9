// In-memory ProcessRunner for unit tests: scripted children (lines, exit
// status, reaction to signals) or children driven step by step by the test,
// e.g. a fake postmaster that prints "ready" and exits on SIGINT.

import {
  type ChildProcess,
  type ExitStatus,
  type ProcessRunner,
  type Signal,
  SpawnError,
  type SpawnedPids,
  type SpawnSpec,
  STDERR_TAIL_LINES,
  type StdinWriter,
  signalName,
} from "./runner.ts";

/** An async iterable of lines fed by hand: push, then end. One consumer. */
export class LineFeed implements AsyncIterable<string> {
  private readonly queue: string[] = [];
  private waiting: ((r: IteratorResult<string>) => void) | null = null;
  private closed = false;
  private taken = false;

  get ended(): boolean {
    return this.closed;
  }

  push(...lines: string[]): void {
    if (this.closed) return;
    for (const l of lines) {
      const w = this.waiting;
      if (w) {
        this.waiting = null;
        w({ value: l, done: false });
      } else {
        this.queue.push(l);
      }
    }
  }

  end(): void {
    if (this.closed) return;
    this.closed = true;
    const w = this.waiting;
    this.waiting = null;
    w?.({ value: undefined, done: true });
  }

  [Symbol.asyncIterator](): AsyncIterator<string> {
    if (this.taken) throw new Error("LineFeed has a single consumer");
    this.taken = true;
    return {
      next: () => {
        const l = this.queue.shift();
        if (l !== undefined) return Promise.resolve({ value: l, done: false });
        if (this.closed) return Promise.resolve({ value: undefined, done: true });
        return new Promise((resolve) => {
          this.waiting = resolve;
        });
      },
      return: () => {
        this.end();
        return Promise.resolve({ value: undefined, done: true });
      },
    };
  }
}

export interface FakeScript {
  stdout?: string[];
  stderr?: string[];
  /** Exit after writing the lines (default 0); "never" waits for a signal or the test. */
  exit?: number | ExitStatus | "never";
  /** Reaction to a signal; default: die from it. */
  onSignal?: (child: FakeChild, signal: string) => void;
}

/** A test drives the child itself: write lines, exit, react to signals. */
export type FakeBehaviour = (child: FakeChild) => void;

type Matcher = string | RegExp | ((cmd: readonly string[]) => boolean);

function matches(m: Matcher, cmd: readonly string[]): boolean {
  if (typeof m === "function") return m(cmd);
  const line = cmd.join(" ");
  if (typeof m === "string") return line === m || line.startsWith(`${m} `);
  return m.test(line);
}

export class FakeChild implements ChildProcess {
  readonly pid: number;
  readonly command: readonly string[];
  readonly spec: SpawnSpec;
  readonly exited: Promise<ExitStatus>;
  readonly stdin: StdinWriter | null;
  /** Signals received, by name, in order. */
  readonly signals: string[] = [];
  /** Everything written to stdin, decoded. */
  readonly stdinData: string[] = [];
  stdinEnded = false;
  status: ExitStatus | null = null;
  /** Called on kill instead of dying; set by scripts or the test. */
  onSignal: ((child: FakeChild, signal: string) => void) | null = null;

  private readonly out = new LineFeed();
  private readonly err = new LineFeed();
  private readonly tail: string[] = [];
  private resolveExit: (s: ExitStatus) => void = () => {};

  constructor(pid: number, spec: SpawnSpec, onExit: (pid: number) => void) {
    this.pid = pid;
    this.spec = spec;
    this.command = [...spec.cmd];
    this.exited = new Promise((resolve) => {
      this.resolveExit = resolve;
    }).then((s) => {
      onExit(pid);
      return s as ExitStatus;
    });
    if (spec.stdout !== "lines") this.out.end();
    if (spec.stderr !== "lines") this.err.end();
    const decoder = new TextDecoder();
    this.stdin =
      spec.stdin === "pipe"
        ? {
            write: async (data) => {
              if (this.stdinEnded || this.status) return;
              this.stdinData.push(typeof data === "string" ? data : decoder.decode(data));
            },
            end: async () => {
              this.stdinEnded = true;
            },
          }
        : null;
  }

  writeStdout(...lines: string[]): void {
    this.out.push(...lines);
  }

  writeStderr(...lines: string[]): void {
    this.err.push(...lines);
  }

  /** EOF on both pipes (a real child's pipes close when every holder is gone). */
  closeStreams(): void {
    this.out.end();
    this.err.end();
  }

  /**
   * Exits with a code or status; closes the pipes too unless `keepStreamsOpen`
   * (a grandchild still holding them). Later calls are ignored.
   */
  exit(status: number | ExitStatus = 0, options?: { keepStreamsOpen?: boolean }): void {
    if (this.status) return;
    if (!options?.keepStreamsOpen) this.closeStreams();
    this.status = typeof status === "number" ? { code: status, signal: null } : status;
    this.resolveExit(this.status);
  }

  kill(signal: Signal = "SIGTERM", _options?: { group?: boolean }): boolean {
    if (this.status) return false;
    const name = typeof signal === "number" ? signalName(signal) : signal;
    this.signals.push(name);
    if (name !== "SIGKILL" && this.onSignal) this.onSignal(this, name);
    else this.exit({ code: null, signal: name });
    return true;
  }

  stdoutLines(): AsyncIterable<string> {
    this.requireLines("stdout");
    return this.out;
  }

  stderrLines(): AsyncIterable<string> {
    this.requireLines("stderr");
    const feed = this.err;
    const tail = this.tail;
    return (async function* () {
      for await (const l of feed) {
        tail.push(l);
        if (tail.length > STDERR_TAIL_LINES) tail.shift();
        yield l;
      }
    })();
  }

  stderrTail(): string[] {
    return [...this.tail];
  }

  private requireLines(which: "stdout" | "stderr"): void {
    if (this.spec[which] !== "lines") {
      throw new Error(`${which} of ${this.command[0]} was not spawned with "lines"`);
    }
  }
}

export class FakeRunner implements ProcessRunner {
  /** Every child started, in order. */
  readonly spawned: FakeChild[] = [];
  private readonly rules: { match: Matcher; run: FakeScript | FakeBehaviour }[] = [];
  private nextPid: number;
  private readonly spawnedPids: SpawnedPids | undefined;

  constructor(options: { firstPid?: number; spawnedPids?: SpawnedPids } = {}) {
    this.nextPid = options.firstPid ?? 1000;
    this.spawnedPids = options.spawnedPids;
  }

  /**
   * What a command does. A string matches the whole command line or its
   * prefix up to a space; the first matching rule wins. Unmatched commands fail
   * to spawn with ENOENT, like a missing binary.
   */
  on(match: Matcher, run: FakeScript | FakeBehaviour): this {
    this.rules.push({ match, run });
    return this;
  }

  spawn(spec: SpawnSpec): FakeChild {
    const rule = this.rules.find((r) => matches(r.match, spec.cmd));
    if (!rule) {
      const err = Object.assign(new Error(`ENOENT: no such file or directory, posix_spawn`), {
        code: "ENOENT",
      });
      throw new SpawnError(spec.cmd, err);
    }
    const pid = this.nextPid++;
    const child = new FakeChild(pid, spec, (p) => this.spawnedPids?.delete(p));
    this.spawnedPids?.add(pid);
    this.spawned.push(child);
    const run = rule.run;
    if (typeof run === "function") {
      run(child);
    } else {
      child.onSignal = run.onSignal ?? null;
      // Lines are available at once; exit after the caller had a chance to attach.
      child.writeStdout(...(run.stdout ?? []));
      child.writeStderr(...(run.stderr ?? []));
      const exit = run.exit ?? 0;
      if (exit !== "never") queueMicrotask(() => child.exit(exit));
    }
    return child;
  }

  /** The last child whose command matches. */
  last(match: Matcher): FakeChild | undefined {
    return this.spawned.findLast((c) => matches(match, c.command));
  }
}

/** A hand-cranked setTimeout/clearTimeout for code that takes a Scheduler (pg-log.ts). */
export class ManualScheduler {
  private now = 0;
  private seq = 0;
  private readonly timers = new Map<number, { at: number; fn: () => void }>();

  get pending(): number {
    return this.timers.size;
  }

  setTimeout(fn: () => void, ms: number): unknown {
    const id = ++this.seq;
    this.timers.set(id, { at: this.now + ms, fn });
    return id;
  }

  clearTimeout(handle: unknown): void {
    if (typeof handle === "number") this.timers.delete(handle);
  }

  /** Moves time forward, running due timers in order. */
  advance(ms: number): void {
    const until = this.now + ms;
    for (;;) {
      let next: [number, { at: number; fn: () => void }] | undefined;
      for (const e of this.timers)
        if (e[1].at <= until && (!next || e[1].at < next[1].at)) next = e;
      if (!next) break;
      this.timers.delete(next[0]);
      this.now = next[1].at;
      next[1].fn();
    }
    this.now = until;
  }
}
