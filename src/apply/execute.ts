// Runs an ApplyPlan (upstream apply_spec_sql / apply_operations, upstream-api.md
// §3.6–3.7): the system-database phases on one connection, each database's
// phases on a connection of its own with bounded concurrency. The statements
// of a phase are pipelined on their connection, each in its own implicit
// transaction; when one fails the others of that phase still ran, so the log
// says which did and the error names the first failure.

import type { Sql } from "postgres";
import { ComputeCtlError, errorMessage } from "../errors.ts";
import type { Logger } from "../log.ts";
import type { ComputeSpec } from "../spec/schema.ts";
import { readCatalog } from "./catalog.ts";
import {
  type ConnectionTarget,
  connectionTarget,
  MAINTENANCE_OPTIONS,
  openConnection,
} from "./connection.ts";
import {
  type ApplyPlan,
  catalogQuery,
  type DatabaseTask,
  type Phase,
  planApply,
  preparedKey,
} from "./plan.ts";
import type { Statement } from "./sql.ts";

/** A failed apply: which phase, database and object, and postgres' own error. */
export class ApplyError extends ComputeCtlError {
  override readonly name = "ApplyError";
  readonly phase: string;
  readonly database: string;
  readonly sqlstate: string | undefined;

  constructor(
    message: string,
    o: { phase: string; database: string; sqlstate?: string; cause?: unknown },
  ) {
    super(message, { cause: o.cause });
    this.phase = o.phase;
    this.database = o.database;
    this.sqlstate = o.sqlstate;
  }
}

export interface ApplyOptions {
  connstr: URL;
  /** ParsedSpec.timeline_id (the spec's field or its `neon.timeline_id` setting); default the spec's field. */
  timelineId?: string;
  privilegedRoleName: string;
  /** Databases worked on at once (upstream: max_service_connections or reconfigure_concurrency). */
  concurrency: number;
  log: Logger;
  signal?: AbortSignal;
  /** Survives between applies of one process: see PlanInput.prepared. */
  prepared: Map<string, string>;
  /** Warnings already given by this process (each is logged once). */
  warned?: Set<string>;
}

export interface ApplySummary {
  /** Statements executed, by phase name. */
  statements: number;
  databasesVisited: number;
}

const APPLICATION_NAME = "compute_ctl:apply_config";

interface PgErrorLike {
  code?: unknown;
  message?: unknown;
  detail?: unknown;
}

function sqlstateOf(e: unknown): string | undefined {
  const code = (e as PgErrorLike | null)?.code;
  return typeof code === "string" && /^[0-9A-Z]{5}$/.test(code) ? code : undefined;
}

/** The first line of a statement, for an error message (DO blocks are long). */
function brief(s: Statement): string {
  const first = s.display.split("\n")[0] ?? "";
  return first.length > 200 ? `${first.slice(0, 200)}…` : first;
}

function where(database: string, systemDb: string): string {
  return database === systemDb ? "" : ` in database ${JSON.stringify(database)}`;
}

class Executor {
  private readonly target: ConnectionTarget;
  private readonly open = new Set<Sql>();
  private statements = 0;
  private visited = 0;
  private readonly onAbort = () => void this.closeAll();

  constructor(private readonly o: ApplyOptions) {
    this.target = connectionTarget(o.connstr);
    o.signal?.addEventListener("abort", this.onAbort, { once: true });
  }

  get systemDb(): string {
    return this.target.database;
  }

  connect(database: string): Sql {
    if (this.o.signal?.aborted)
      throw new ComputeCtlError("spec apply aborted: compute_ctl is shutting down");
    const sql = openConnection(this.target, {
      database,
      applicationName: APPLICATION_NAME,
      options: MAINTENANCE_OPTIONS,
      log: this.o.log,
    });
    this.open.add(sql);
    return sql;
  }

  async close(sql: Sql): Promise<void> {
    this.open.delete(sql);
    await sql.end({ timeout: 0 });
  }

  closeAll(): Promise<unknown> {
    const ending = [...this.open].map((sql) => sql.end({ timeout: 0 }));
    this.open.clear();
    return Promise.allSettled(ending);
  }

  /** Nothing of the apply is left open when it returns. */
  async dispose(): Promise<void> {
    this.o.signal?.removeEventListener("abort", this.onAbort);
    await this.closeAll();
  }

  summary(): ApplySummary {
    return { statements: this.statements, databasesVisited: this.visited };
  }

  async runPhase(
    sql: Sql,
    phase: Phase,
    database: string,
    onSuccess?: (s: Statement) => void,
  ): Promise<void> {
    const { log } = this.o;
    if (phase.statements.length === 0) return;
    const at = where(database, this.systemDb);
    log.info(`applying ${phase.name}${at}: ${phase.statements.length} statement(s)`);
    for (const s of phase.statements) log.info(`  ${s.display}`);
    const results = await Promise.allSettled(
      phase.statements.map((s) =>
        sql.unsafe(s.sql).then((r) => {
          onSuccess?.(s);
          return r;
        }),
      ),
    );
    this.statements += phase.statements.length;
    const failed = results.flatMap((r, i) =>
      r.status === "rejected" ? [{ i, reason: r.reason }] : [],
    );
    const first = failed[0];
    if (first === undefined) return;
    for (const f of failed) {
      log.error(
        `${phase.name}${at}: statement ${f.i + 1} of ${results.length} failed: ${errorMessage(f.reason)}: ${brief(phase.statements[f.i] as Statement)}`,
      );
    }
    log.error(
      `${phase.name}${at}: ${results.length - failed.length} of ${results.length} statement(s) succeeded`,
    );
    const s = phase.statements[first.i] as Statement;
    const code = sqlstateOf(first.reason);
    const detail = (first.reason as PgErrorLike | null)?.detail;
    throw new ApplyError(
      `apply_spec_sql: ${phase.name}${at} failed on ${s.object}: ${errorMessage(first.reason)}${
        typeof detail === "string" && detail !== "" ? ` (${detail})` : ""
      }${code ? ` [SQLSTATE ${code}]` : ""}; statement: ${brief(s)}`,
      { phase: phase.name, database, sqlstate: code, cause: first.reason },
    );
  }

  /** One database's phases on its own connection; records ChangeSchemaPerms as done. */
  async runTask(task: DatabaseTask): Promise<void> {
    const sql = this.connect(task.database);
    this.visited++;
    try {
      for (const phase of task.phases) await this.runPhase(sql, phase, task.database);
      if (task.prepare) {
        const [row] = await sql.unsafe<{ oid: string }[]>(
          "SELECT oid::pg_catalog.text AS oid FROM pg_catalog.pg_database WHERE datname OPERATOR(pg_catalog.=) pg_catalog.current_database()",
        );
        if (row) this.o.prepared.set(task.database, preparedKey(row.oid, task.prepare));
      }
    } catch (e) {
      if (e instanceof ApplyError) throw e;
      const phase = task.phases[0]?.name ?? "RunInEachDatabase";
      throw new ApplyError(
        `apply_spec_sql: ${phase}${where(task.database, this.systemDb)}: ${errorMessage(e)}${
          sqlstateOf(e) ? ` [SQLSTATE ${sqlstateOf(e)}]` : ""
        }`,
        { phase, database: task.database, sqlstate: sqlstateOf(e), cause: e },
      );
    } finally {
      await this.close(sql);
    }
  }

  /**
   * Database tasks under one limit of `concurrency` connections. A task may be
   * started early (`start`), e.g. as soon as its database exists; `finish`
   * starts the rest and takes the results in task order. Unlike upstream
   * nothing keeps running after the apply returns: every task settles before
   * the first failure is reported.
   */
  taskGroup(tasks: DatabaseTask[], ignore?: (e: unknown) => boolean) {
    const limit = new Limiter(Math.max(1, Math.floor(this.o.concurrency)));
    const started = new Map<DatabaseTask, Promise<void>>();
    const start = (task: DatabaseTask): Promise<void> => {
      let p = started.get(task);
      if (p === undefined) {
        p = limit.run(() => this.runTask(task));
        p.catch(() => {});
        started.set(task, p);
      }
      return p;
    };
    /** Waits for the tasks already started; their failures are logged (another error wins). */
    const settle = async () => {
      for (const r of await Promise.allSettled(started.values())) {
        if (r.status === "rejected") this.o.log.error(errorMessage(r.reason));
      }
    };
    const finish = async () => {
      const results = tasks.map(start);
      await Promise.allSettled(results);
      for (const [i, r] of results.entries()) {
        try {
          await r;
        } catch (e) {
          if (ignore?.(e)) {
            this.o.log.warn(
              `ignoring ${errorMessage(e)} (database ${JSON.stringify(tasks[i]?.database)})`,
            );
            continue;
          }
          throw e;
        }
      }
    };
    return { start, settle, finish };
  }
}

/** At most `n` of the functions given to `run` at a time, in the order given. */
class Limiter {
  private active = 0;
  private readonly queue: (() => void)[] = [];

  constructor(private readonly n: number) {}

  async run<T>(fn: () => Promise<T>): Promise<T> {
    if (this.active >= this.n) await new Promise<void>((r) => this.queue.push(r));
    this.active++;
    try {
      return await fn();
    } finally {
      this.active--;
      this.queue.shift()?.();
    }
  }
}

/** A database that went away between the catalog read and the connection. */
function isMissingDatabase(e: unknown): boolean {
  return (
    sqlstateOf((e as { cause?: unknown }).cause) === "3D000" ||
    errorMessage(e).includes("does not exist")
  );
}

/** Reads the catalog, plans and runs the apply; throws ApplyError on the first failure. */
export async function applySpecSql(spec: ComputeSpec, o: ApplyOptions): Promise<ApplySummary> {
  const ex = new Executor(o);
  try {
    const main = ex.connect(ex.systemDb);
    const catalog = await readCatalog(
      main,
      catalogQuery(spec, o.timelineId ?? spec.timeline_id ?? ""),
    ).catch((e: unknown) => {
      throw new ApplyError(`apply_spec_sql: reading the catalog: ${errorMessage(e)}`, {
        phase: "ReadCatalog",
        database: ex.systemDb,
        sqlstate: sqlstateOf(e),
        cause: e,
      });
    });
    const plan: ApplyPlan = planApply({
      spec,
      catalog,
      privilegedRoleName: o.privilegedRoleName,
      systemDb: ex.systemDb,
      prepared: o.prepared,
    });
    for (const w of plan.warnings) {
      if (o.warned?.has(w)) continue;
      o.warned?.add(w);
      o.log.warn(w);
    }
    // Step 0: errors about a database that is already gone are not failures (as upstream).
    await ex.taskGroup(plan.preDrop, isMissingDatabase).finish();
    // A database created by this apply gets its own phases (schema grants) as
    // soon as it exists: they overlap the CREATE DATABASE of the next ones.
    const perDatabase = ex.taskGroup(plan.perDatabase);
    const byDatabase = new Map(plan.perDatabase.map((t) => [t.database, t]));
    const unlock = (s: Statement) => {
      const task = s.unlocks === undefined ? undefined : byDatabase.get(s.unlocks);
      if (task !== undefined) void perDatabase.start(task);
    };
    try {
      for (const phase of plan.before) await ex.runPhase(main, phase, ex.systemDb, unlock);
    } catch (e) {
      await perDatabase.settle();
      throw e;
    }
    await perDatabase.finish();
    for (const phase of plan.after) await ex.runPhase(main, phase, ex.systemDb);
    const summary = ex.summary();
    o.log.info(
      `spec applied: ${summary.statements} statement(s), ${summary.databasesVisited} database connection(s)`,
    );
    return summary;
  } finally {
    await ex.dispose();
  }
}
