// Runs the service as a real process (`node --import tsx src/main.ts`, what `npm start` runs) and
// talks to it over HTTP. Every wait is bounded and fails with what the process printed. Every
// process is stopped when the test that started it ends (`t.after`), and `stopAll()` (for a file's
// `after` hook) catches any other; both also stop an embedded PostgreSQL a killed service orphaned.
import { type ChildProcess, spawn } from 'node:child_process';
import fs from 'node:fs/promises';
import path from 'node:path';
import { createInterface } from 'node:readline';
import type { TestContext } from 'node:test';
import { fileURLToPath } from 'node:url';

export const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');

/** One pino line of the service's stdout (or `{ msg: line }` for a line that is not JSON). */
export interface LogRecord {
  level?: number;
  msg?: string;
  [key: string]: unknown;
}

export interface Exit {
  code: number | null;
  signal: NodeJS.Signals | null;
}

/** Every setting the service reads: the child gets none of them from this process's environment. */
const SERVICE_VARS = [
  'PORT', 'HOST', 'DATABASE_URL', 'DATA_DIR', 'EMBEDDED_PG_PORT', 'SERVER_OPERATIONS_DIR', 'SERVER_OPERATIONS_WORKERS', 'INSTANCE_ID',
  'LEASE_SECONDS', 'SHUTDOWN_GRACE_SECONDS', 'LOG_RETENTION_DAYS', 'RUN_RETENTION_DAYS', 'LOG_LEVEL',
  'AUTH_TOKENS', 'HTTP_CONNECTOR_ALLOW_HOSTS',
];

const live = new Set<ServiceProcess>();
/** Data directories of embedded databases started by services of this test file. */
const dataDirs = new Set<string>();

const RUNNING = /^Server Jobs is running: GraphiQL at http:\/\/[^/]+:(\d+)\/graphql/;

export class ServiceProcess {
  readonly child: ChildProcess;
  readonly records: LogRecord[] = [];
  stdout = '';
  stderr = '';
  readonly exited: Promise<Exit>;
  /** The data directory of its embedded PostgreSQL, when it uses one. */
  readonly dataDir: string | undefined;
  #exit: Exit | null = null;
  #listeners = new Set<() => void>();

  constructor(env: Record<string, string>) {
    const inherited = Object.fromEntries(
      Object.entries(process.env).filter(
        ([key, value]) => value !== undefined && !SERVICE_VARS.includes(key) && key !== 'NODE_TEST_CONTEXT',
      ),
    ) as Record<string, string>;
    this.child = spawn(process.execPath, ['--import', 'tsx', 'src/main.ts'], {
      cwd: repoRoot,
      env: { ...inherited, PORT: '0', LOG_LEVEL: 'info', ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    this.dataDir = env['DATABASE_URL'] ? undefined : path.resolve(repoRoot, env['DATA_DIR'] ?? 'data');
    if (this.dataDir) dataDirs.add(this.dataDir);
    live.add(this);
    this.exited = new Promise<Exit>((resolve) => {
      const done = (exit: Exit) => {
        if (this.#exit) return;
        this.#exit = exit;
        live.delete(this);
        this.#notify();
        resolve(exit);
      };
      this.child.once('error', (error) => {
        this.stderr += `${String(error)}\n`;
        done({ code: null, signal: null });
      });
      // 'close': the process ended and its output has been read to the end.
      this.child.once('close', (code, signal) => done({ code, signal }));
    });
    createInterface({ input: this.child.stdout! }).on('line', (line) => {
      this.stdout += `${line}\n`;
      let record: LogRecord;
      try {
        const parsed: unknown = JSON.parse(line);
        record = parsed && typeof parsed === 'object' ? (parsed as LogRecord) : { msg: line };
      } catch {
        record = { msg: line };
      }
      this.records.push(record);
      this.#notify();
    });
    this.child.stderr!.setEncoding('utf8').on('data', (chunk: string) => {
      this.stderr += chunk;
    });
  }

  get pid(): number {
    return this.child.pid!;
  }

  /** Exit code and signal once the process has ended, else null. */
  get exit(): Exit | null {
    return this.#exit;
  }

  /** Everything the process wrote, for assertion messages. */
  get output(): string {
    const tail = (text: string) => text.split('\n').slice(-40).join('\n');
    return `--- stdout (last lines) ---\n${tail(this.stdout)}\n--- stderr ---\n${tail(this.stderr)}`;
  }

  /** Resolves with the first log record (already printed or coming) that matches. */
  waitForLog(match: (record: LogRecord) => boolean, timeoutMs: number, what: string): Promise<LogRecord> {
    return new Promise((resolve, reject) => {
      const check = () => {
        const found = this.records.find(match);
        if (found) return finish(() => resolve(found));
        if (this.#exit) {
          return finish(() => reject(new Error(`the service exited (${describeExit(this.#exit!)}) before logging ${what}\n${this.output}`)));
        }
      };
      const timer = setTimeout(
        () => finish(() => reject(new Error(`the service did not log ${what} within ${timeoutMs} ms\n${this.output}`))),
        timeoutMs,
      );
      const finish = (settle: () => void) => {
        clearTimeout(timer);
        this.#listeners.delete(check);
        settle();
      };
      this.#listeners.add(check);
      check();
    });
  }

  /** Waits for the "Server Jobs is running" line; resolves with the bound HTTP port. */
  async waitUntilRunning(timeoutMs = 60_000): Promise<number> {
    const record = await this.waitForLog((r) => RUNNING.test(r.msg ?? ''), timeoutMs, 'that it is running');
    return Number(RUNNING.exec(record.msg!)![1]);
  }

  /** Waits for the process to end; fails when it does not within the time. */
  async waitForExit(timeoutMs: number): Promise<Exit> {
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`the service (pid ${this.pid}) did not exit within ${timeoutMs} ms\n${this.output}`)), timeoutMs);
    });
    try {
      return await Promise.race([this.exited, timeout]);
    } finally {
      clearTimeout(timer);
    }
  }

  signal(signal: NodeJS.Signals): void {
    if (!this.#exit) this.child.kill(signal);
  }

  /** Ends the process if it still runs (SIGTERM, SIGKILL after 5 s) and any PostgreSQL it left behind. */
  async stop(): Promise<void> {
    if (!this.#exit) {
      this.signal('SIGTERM');
      await this.waitForExit(5_000).catch(() => {
        this.signal('SIGKILL');
        return this.waitForExit(5_000).catch(() => {});
      });
    }
    // Unless another service of this file is using the directory now.
    const dir = this.dataDir;
    if (dir && ![...live].some((other) => other.dataDir === dir)) await stopStrayPostgres(dir);
  }

  #notify(): void {
    for (const listener of [...this.#listeners]) listener();
  }
}

const describeExit = (exit: Exit) => (exit.signal ? `signal ${exit.signal}` : `code ${exit.code}`);

/**
 * Starts the service with these settings (PORT defaults to 0: a free port, read from its log);
 * it is stopped when test `t` ends, whether it passed or not.
 */
export function startServiceProcess(t: TestContext, env: Record<string, string>): ServiceProcess {
  const service = new ServiceProcess(env);
  t.after(() => service.stop());
  return service;
}

/** Starts the service and waits until it serves; resolves with the process and its port. */
export async function runService(
  t: TestContext,
  env: Record<string, string>,
  timeoutMs = 60_000,
): Promise<{ service: ServiceProcess; port: number }> {
  const service = startServiceProcess(t, env);
  const port = await service.waitUntilRunning(timeoutMs);
  return { service, port };
}

/** Stops every service of this file still running and any embedded PostgreSQL they left. For `after`. */
export async function stopAll(): Promise<void> {
  await Promise.all([...live].map((service) => service.stop()));
  for (const dir of dataDirs) await stopStrayPostgres(dir);
}

/** The pid in `${dataDir}/pg/postmaster.pid` while that process is alive, else undefined. */
export async function postmasterPid(dataDir: string): Promise<number | undefined> {
  const text = await fs.readFile(path.join(dataDir, 'pg', 'postmaster.pid'), 'utf8').catch(() => '');
  const pid = Number.parseInt(text, 10);
  return pid > 0 && (await isAlive(pid)) ? pid : undefined;
}

/** Stops a PostgreSQL a killed service left running in `dataDir` (fast shutdown, then its group is killed). */
export async function stopStrayPostgres(dataDir: string): Promise<void> {
  const pid = await postmasterPid(dataDir);
  if (pid === undefined) return;
  try {
    process.kill(pid, 'SIGINT');
  } catch {
    return;
  }
  const gone = await waitFor(async () => !(await isAlive(pid)), { timeoutMs: 10_000, what: 'a stray PostgreSQL to stop' }).catch(() => false);
  if (!gone) {
    try {
      process.kill(-pid, 'SIGKILL'); // it leads a process group of its own
    } catch {
      /* gone */
    }
  }
}

/** Alive and not a zombie (an orphan's new parent may take a while to reap it). */
export async function isAlive(pid: number): Promise<boolean> {
  try {
    process.kill(pid, 0);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'EPERM') return false;
  }
  const stat = await fs.readFile(`/proc/${pid}/stat`, 'utf8').catch(() => '');
  return !/\) Z /.test(stat);
}

export interface GraphQLResult<T> {
  data?: T;
  errors?: { message: string; extensions?: { code?: string } }[];
}

/** POSTs one operation to /graphql; throws on HTTP or GraphQL errors. */
export async function gql<T = Record<string, unknown>>(port: number, query: string, variables: Record<string, unknown> = {}): Promise<T> {
  const result = await gqlResult<T>(port, query, variables);
  if (result.errors?.length || !result.data) throw new Error(`GraphQL errors: ${JSON.stringify(result.errors ?? result)}`);
  return result.data;
}

/** POSTs one operation to /graphql and answers the whole result, errors included. */
export async function gqlResult<T>(port: number, query: string, variables: Record<string, unknown> = {}): Promise<GraphQLResult<T>> {
  const response = await fetch(`http://127.0.0.1:${port}/graphql`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', accept: 'application/json' },
    body: JSON.stringify({ query, variables }),
    signal: AbortSignal.timeout(10_000),
  });
  const text = await response.text();
  try {
    return JSON.parse(text) as GraphQLResult<T>;
  } catch {
    throw new Error(`/graphql answered ${response.status}: ${text.slice(0, 500)}`);
  }
}

/**
 * Polls `predicate` every `intervalMs` until it answers something truthy, and resolves with that;
 * fails after `timeoutMs` naming `what` (and the last error the predicate threw, if any).
 */
export async function waitFor<T>(
  predicate: () => T | Promise<T>,
  { timeoutMs, intervalMs = 100, what }: { timeoutMs: number; intervalMs?: number; what: string },
): Promise<NonNullable<T>> {
  const deadline = Date.now() + timeoutMs;
  let lastError: unknown;
  for (;;) {
    try {
      const value = await predicate();
      if (value) return value as NonNullable<T>;
      lastError = undefined;
    } catch (error) {
      lastError = error;
    }
    if (Date.now() >= deadline) {
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${lastError ? ` (last error: ${String(lastError)})` : ''}`);
    }
    await new Promise((resolve) => setTimeout(resolve, intervalMs));
  }
}
