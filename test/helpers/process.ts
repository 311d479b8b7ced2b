// The one process helper of the tests and of the chaos harness (chaos/cluster.ts builds its
// instances on it): it runs the service as a real process (`node --import tsx src/main.ts`: the
// sources as they are on disk, with no build; or, with `compiled`, what `npm start` runs: the
// JavaScript of dist/, which the benchmark measures), reads its readiness from the structured
// `listening` record it logs, posts GraphQL to it and waits for conditions. Every wait is bounded and fails saying what it waited
// for (and, for a process, what it printed). A test's process is stopped when the test ends
// (`t.after`), and `stopAll()` (for a file's `after` hook) catches any other; both also stop an
// embedded PostgreSQL a killed service orphaned. `killEveryProcess()` is the harness's last resort.
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import fs from 'node:fs/promises';
import path from 'node:path';
import { createInterface } from 'node:readline';
import type { TestContext } from 'node:test';
import { fileURLToPath } from 'node:url';
import { SETTINGS } from '../../src/config.ts';

export const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');

/** One pino line of the service's stdout (or `{ msg: line }` for a line that is not JSON). */
export interface LogRecord {
  level?: number;
  msg?: string;
  /** What a record means to programs (e.g. 'listening'), where the service says so. */
  event?: string;
  [key: string]: unknown;
}

export interface Exit {
  code: number | null;
  signal: NodeJS.Signals | null;
}

/** Every setting the service reads (config.ts's list): the child gets none of them from this process's environment. */
const SERVICE_VARS: readonly string[] = SETTINGS;

/** Variables of this process's own runtime that must not leak into a service (one gets its own through `runtimeEnv`). */
const RUNTIME_VARS = ['NODE_TEST_CONTEXT', 'LD_PRELOAD', 'FAKETIME', 'FAKETIME_DONT_FAKE_MONOTONIC'];

/**
 * What `npm start` execs once its checks have passed (package.json's scripts.start, from
 * `exec node` on): node's arguments for the compiled service, e.g. `dist/main.js`.
 */
export const COMPILED_START: readonly string[] = (() => {
  const pkg = JSON.parse(readFileSync(path.join(repoRoot, 'package.json'), 'utf8')) as { scripts: Record<string, string> };
  const command = /(?:^|&& )exec node (.+)$/.exec(pkg.scripts['start'] ?? '')?.[1];
  if (!command) throw new Error(`package.json's start script does not end with \`exec node …\`: ${pkg.scripts['start']}`);
  return command.split(/\s+/);
})();

let built = false;
/** Builds dist/ from src/ when it is stale (as `npm start` does), once per process. */
export function buildOnce(): void {
  if (built) return;
  execFileSync(process.execPath, ['scripts/build.mjs', '--if-stale'], { cwd: repoRoot, stdio: ['ignore', 'inherit', 'inherit'] });
  built = true;
}

/** Every service process started here that has not exited. */
const live = new Set<ServiceProcess>();
/** Data directories of embedded databases started by services of this process. */
const dataDirs = new Set<string>();

/** How many of the last lines a process printed are kept for error messages. */
const TAIL_LINES = 40;

export interface ServiceProcessOptions {
  /** Variables of the process's runtime beyond the settings, e.g. libfaketime's LD_PRELOAD and FAKETIME. */
  runtimeEnv?: Record<string, string>;
  /** Called with every line the process prints, stdout and stderr alike (a log file, say). */
  onLine?: (line: string) => void;
  /** Options of node itself, before the script (e.g. `--cpu-prof` for the benchmark's profiles). */
  nodeArgs?: string[];
  /**
   * Runs what `npm start` runs, the compiled JavaScript of dist/ (built first if stale), instead
   * of src/main.ts through tsx. The benchmark does, so that its memory and CPU are the users'.
   */
  compiled?: boolean;
}

/** One service process: what it printed, its readiness, its exit, and the signals it can be sent. */
export class ServiceProcess {
  readonly child: ChildProcess;
  /** Its stdout, line by line: pino records. */
  readonly records: LogRecord[] = [];
  stdout = '';
  stderr = '';
  /** The last lines it printed, stdout and stderr as they came. */
  readonly tail: string[] = [];
  readonly exited: Promise<Exit>;
  /** The data directory of its embedded PostgreSQL, when it uses one. */
  readonly dataDir: string | undefined;
  /** The bound HTTP port, read from its `listening` record; 0 until then. */
  port = 0;
  #exit: Exit | null = null;
  #frozen = false;
  #listeners = new Set<() => void>();

  /**
   * Starts `node --import tsx src/main.ts` (with `compiled`: what `npm start` runs) with these
   * settings (PORT defaults to 0: a free port).
   */
  constructor(env: Record<string, string>, options: ServiceProcessOptions = {}) {
    const inherited = Object.fromEntries(
      Object.entries(process.env).filter(
        ([key, value]) => value !== undefined && !SERVICE_VARS.includes(key) && !RUNTIME_VARS.includes(key),
      ),
    ) as Record<string, string>;
    if (options.compiled) buildOnce();
    const entry = options.compiled ? COMPILED_START : ['--import', 'tsx', 'src/main.ts'];
    this.child = spawn(process.execPath, [...(options.nodeArgs ?? []), ...entry], {
      cwd: repoRoot,
      env: { ...inherited, PORT: '0', LOG_LEVEL: 'info', ...env, ...options.runtimeEnv },
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
        this.#remember(String(error), options.onLine);
        done({ code: null, signal: null });
      });
      // 'close': the process ended and its output has been read to the end.
      this.child.once('close', (code, signal) => done({ code, signal }));
    });
    createInterface({ input: this.child.stdout! }).on('line', (line) => {
      this.stdout += `${line}\n`;
      this.#remember(line, options.onLine);
      this.records.push(parseRecord(line));
      this.#notify();
    });
    createInterface({ input: this.child.stderr! }).on('line', (line) => {
      this.stderr += `${line}\n`;
      this.#remember(line, options.onLine);
    });
  }

  get pid(): number {
    return this.child.pid!;
  }

  /** Exit code and signal once the process has ended, else null. */
  get exit(): Exit | null {
    return this.#exit;
  }

  /** Stopped by `freeze()` and not resumed. */
  get frozen(): boolean {
    return this.#frozen;
  }

  /** Everything the process wrote, for assertion messages. */
  get output(): string {
    const tail = (text: string) => text.split('\n').slice(-TAIL_LINES).join('\n');
    return `--- stdout (last lines) ---\n${tail(this.stdout)}\n--- stderr ---\n${tail(this.stderr)}`;
  }

  /** Resolves with the first log record (already printed or coming) that matches. */
  waitForLog(match: (record: LogRecord) => boolean, timeoutMs: number, what: string): Promise<LogRecord> {
    return new Promise((resolve, reject) => {
      const check = () => {
        const found = this.records.find(match);
        if (found) return finish(() => resolve(found));
        if (this.#exit) {
          return finish(() =>
            reject(new Error(`the service exited (${describeExit(this.#exit!)}) before logging ${what}\n${this.output}`)),
          );
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

  /** Waits for its `listening` record (main.ts logs it once it serves); resolves with the bound HTTP port. */
  async waitUntilListening(timeoutMs = 60_000): Promise<number> {
    const record = await this.waitForLog(isListening, timeoutMs, 'that it is listening');
    this.port = record['port'] as number;
    return this.port;
  }

  /** Waits for the process to end; fails when it does not within the time. */
  async waitForExit(timeoutMs: number): Promise<Exit> {
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(
        () => reject(new Error(`the service (pid ${this.pid}) did not exit within ${timeoutMs} ms\n${this.output}`)),
        timeoutMs,
      );
    });
    try {
      return await Promise.race([this.exited, timeout]);
    } finally {
      clearTimeout(timer);
    }
  }

  /** Sends a signal (none once it exited). */
  signal(signal: NodeJS.Signals): void {
    if (this.#exit) return;
    try {
      this.child.kill(signal);
    } catch {
      /* already gone */
    }
  }

  /** SIGSTOP: the process stops where it is, holding its connections, locks and runs. */
  freeze(): void {
    this.signal('SIGSTOP');
    this.#frozen = true;
  }

  /** SIGCONT after a freeze. */
  resume(): void {
    if (!this.#frozen) return;
    this.signal('SIGCONT');
    this.#frozen = false;
  }

  /** SIGKILL (resumed first, should it be frozen): it dies at once, leaving its runs RUNNING. */
  kill(): Promise<Exit> {
    this.resume();
    this.signal('SIGKILL');
    return this.exited;
  }

  /**
   * Ends the process if it still runs (resumed, SIGTERM, SIGKILL after `graceMs`), then any
   * embedded PostgreSQL it left behind. Resolves with its exit (null: even SIGKILL did not end it in 5 s).
   */
  async stop(graceMs = 5_000): Promise<Exit | null> {
    if (!this.#exit) {
      this.resume();
      this.signal('SIGTERM');
      await this.waitForExit(graceMs).catch(() => {
        this.signal('SIGKILL');
        return this.waitForExit(5_000).catch(() => {});
      });
    }
    // Unless another service is using the directory now.
    const dir = this.dataDir;
    if (dir && ![...live].some((other) => other.dataDir === dir)) await stopStrayPostgres(dir);
    return this.#exit;
  }

  #remember(line: string, onLine: ((line: string) => void) | undefined): void {
    if (this.tail.push(line) > TAIL_LINES) this.tail.shift();
    onLine?.(line);
  }

  #notify(): void {
    for (const listener of [...this.#listeners]) listener();
  }
}

function parseRecord(line: string): LogRecord {
  try {
    const parsed: unknown = JSON.parse(line);
    if (parsed && typeof parsed === 'object' && !Array.isArray(parsed)) return parsed as LogRecord;
  } catch {
    /* not JSON */
  }
  return { msg: line };
}

/** The record main.ts logs once the service serves (see there): its fields, never its words. */
export const isListening = (record: LogRecord): boolean => record.event === 'listening' && typeof record['port'] === 'number';

const describeExit = (exit: Exit) => (exit.signal ? `signal ${exit.signal}` : `code ${exit.code}`);

/**
 * Starts the service with these settings (PORT defaults to 0: a free port, read from its log);
 * it is stopped when test `t` ends, whether it passed or not.
 */
export function startServiceProcess(t: TestContext, env: Record<string, string>, options: ServiceProcessOptions = {}): ServiceProcess {
  const service = new ServiceProcess(env, options);
  t.after(() => service.stop());
  return service;
}

/** Starts the service and waits until it serves; resolves with the process and its port. */
export async function runService(
  t: TestContext,
  env: Record<string, string>,
  options: ServiceProcessOptions & { timeoutMs?: number } = {},
): Promise<{ service: ServiceProcess; port: number }> {
  const service = startServiceProcess(t, env, options);
  const port = await service.waitUntilListening(options.timeoutMs);
  return { service, port };
}

/** Stops every service still running and any embedded PostgreSQL they left. For a file's `after`. */
export async function stopAll(): Promise<void> {
  await Promise.all([...live].map((service) => service.stop()));
  for (const dir of dataDirs) await stopStrayPostgres(dir);
}

/** SIGKILLs every service process still alive, at once (the harness itself is being interrupted). */
export function killEveryProcess(): void {
  for (const service of live) {
    try {
      process.kill(service.pid, 'SIGCONT');
      process.kill(service.pid, 'SIGKILL');
    } catch {
      /* gone */
    }
  }
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
  const gone = await waitFor(async () => !(await isAlive(pid)), 'a stray PostgreSQL to stop', { timeoutMs: 10_000 }).catch(() => false);
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

export interface GraphQLErrorJson {
  message: string;
  path?: (string | number)[];
  extensions?: { code?: string; [key: string]: unknown };
}

export interface GraphQLResult<T> {
  data?: T | null;
  errors?: GraphQLErrorJson[];
}

/**
 * POSTs one operation to the /graphql of the service on `port` and resolves with its answer,
 * errors included; rejects when no answer came (unreachable, or `timeoutMs` passed: a
 * TimeoutError) or the answer is not JSON.
 */
export async function gqlResult<T = Record<string, unknown>>(
  port: number,
  query: string,
  variables: Record<string, unknown> = {},
  timeoutMs = 30_000,
): Promise<GraphQLResult<T>> {
  const response = await fetch(`http://127.0.0.1:${port}/graphql`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', accept: 'application/json' },
    body: JSON.stringify({ query, variables }),
    signal: AbortSignal.timeout(timeoutMs),
  });
  const text = await response.text();
  try {
    return JSON.parse(text) as GraphQLResult<T>;
  } catch {
    throw new Error(`/graphql on port ${port} answered ${response.status}: ${text.slice(0, 500)}`);
  }
}

/** Like `gqlResult`, but resolves with the data; throws on HTTP or GraphQL errors. */
export async function gql<T = Record<string, unknown>>(
  port: number,
  query: string,
  variables: Record<string, unknown> = {},
  timeoutMs = 30_000,
): Promise<T> {
  const result = await gqlResult<T>(port, query, variables, timeoutMs);
  if (result.errors?.length || !result.data)
    throw new Error(`GraphQL errors from port ${port}: ${JSON.stringify(result.errors ?? result).slice(0, 1000)}`);
  return result.data;
}

/**
 * Checks `predicate` every `intervalMs` until it answers something truthy, and resolves with
 * that; fails after `timeoutMs` naming `what` (and the last error the predicate threw, if any).
 * `what` may be a function, to describe the state at the time of failure.
 */
export async function waitFor<T>(
  predicate: () => T | Promise<T>,
  what: string | (() => string),
  { timeoutMs = 10_000, intervalMs = 10 }: { timeoutMs?: number; intervalMs?: number } = {},
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
      const described = typeof what === 'function' ? what() : what;
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${described}${lastError ? ` (last error: ${String(lastError)})` : ''}`);
    }
    await new Promise((resolve) => setTimeout(resolve, intervalMs));
  }
}
