// A cluster of service instances as separate processes (`node --import tsx src/main.ts`, what
// `npm start` runs) on one PostgreSQL, for the fault harness: start, stop, kill, freeze, resume
// and restart each instance, with its own environment (and, for the clock-skew scenario, a
// system clock shifted by libfaketime through LD_PRELOAD — no switch in the service itself).
import { type ChildProcess, spawn } from 'node:child_process';
import fs from 'node:fs';
import { createInterface } from 'node:readline';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

/** Every setting the service reads: an instance gets none of them from the harness's own environment. */
const SERVICE_VARS = [
  'PORT', 'HOST', 'DATABASE_URL', 'DATA_DIR', 'EMBEDDED_PG_PORT', 'SERVER_OPERATIONS_DIR', 'SERVER_OPERATIONS_WORKERS', 'INSTANCE_ID',
  'LEASE_SECONDS', 'SHUTDOWN_GRACE_SECONDS', 'LOG_RETENTION_DAYS', 'RUN_RETENTION_DAYS', 'LOG_LEVEL',
  'AUTH_TOKENS', 'HTTP_CONNECTOR_ALLOW_HOSTS',
];
/** Variables of the harness's own runtime that must not leak into an instance. */
const HARNESS_VARS = ['NODE_TEST_CONTEXT', 'LD_PRELOAD', 'FAKETIME', 'FAKETIME_DONT_FAKE_MONOTONIC'];

const RUNNING = /^Server Jobs is running: GraphiQL at http:\/\/[^/]+:(\d+)\/graphql/;

/** Every process this module started and that has not exited, for a last-resort cleanup. */
const liveProcesses = new Set<ChildProcess>();

/** SIGKILLs every instance process still alive (e.g. when the harness itself is interrupted). */
export function killEveryProcess(): void {
  for (const child of liveProcesses) {
    try {
      process.kill(child.pid!, 'SIGCONT');
      process.kill(child.pid!, 'SIGKILL');
    } catch {
      /* gone */
    }
  }
}

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/** Where Debian's libfaketime lives, when it is installed (`apt-get install faketime`). */
export function findLibfaketime(): string | undefined {
  const candidates = [
    `/usr/lib/${process.arch === 'arm64' ? 'aarch64' : 'x86_64'}-linux-gnu/faketime/libfaketime.so.1`,
    '/usr/lib/faketime/libfaketime.so.1',
    '/usr/local/lib/faketime/libfaketime.so.1',
  ];
  try {
    for (const dir of fs.readdirSync('/usr/lib')) candidates.push(`/usr/lib/${dir}/faketime/libfaketime.so.1`);
  } catch {
    /* no /usr/lib: not Linux */
  }
  return candidates.find((file) => fs.existsSync(file));
}

/** Why the clock-skew scenario cannot run on this machine, or undefined when it can. */
export function faketimeMissing(): string | undefined {
  const onPath = (process.env['PATH'] ?? '').split(path.delimiter).some((dir) => dir && fs.existsSync(path.join(dir, 'faketime')));
  if (!onPath) return 'faketime is not installed: `apt-get install -y faketime` (Debian) provides it';
  if (!findLibfaketime()) return 'faketime is installed but libfaketime.so.1 was not found';
  return undefined;
}

export interface InstanceOptions {
  id: string;
  /** Settings of this instance (DATABASE_URL, LEASE_SECONDS, …); PORT defaults to 0 (any free port). */
  env: Record<string, string>;
  /** A libfaketime offset for this process's clock, e.g. '+5m' or '-300s'. */
  clockOffset?: string;
  /** Append the process's output here (kept across restarts). */
  logFile?: string;
}

export type InstanceState = 'starting' | 'running' | 'frozen' | 'exited';

export interface Exit {
  code: number | null;
  signal: NodeJS.Signals | null;
}

/** One instance: a sequence of processes with the same INSTANCE_ID (a restart is a new process). */
export class Instance {
  readonly id: string;
  readonly options: InstanceOptions;
  /** The current process (or the last one, once it exited). */
  child: ChildProcess | null = null;
  port = 0;
  state: InstanceState = 'exited';
  /** How many processes this instance has had. */
  generation = 0;
  /** The last lines the current process printed, for error messages. */
  readonly tail: string[] = [];
  /** Exits nobody asked for (a crash), with the output before them. */
  readonly crashes: { at: number; exit: Exit; tail: string[] }[] = [];
  #exited: Promise<Exit> = Promise.resolve({ code: null, signal: null });
  #expectExit = false;
  #onLine = new Set<(line: string) => void>();
  #log: fs.WriteStream | undefined;

  constructor(options: InstanceOptions) {
    this.id = options.id;
    this.options = options;
    if (options.logFile) this.#log = fs.createWriteStream(options.logFile, { flags: 'a' });
  }

  get pid(): number | undefined {
    return this.child?.pid;
  }

  /** Starts a new process and waits for its "Server Jobs is running" line. */
  async start(timeoutMs = 90_000): Promise<void> {
    if (this.state !== 'exited') throw new Error(`instance ${this.id} is ${this.state}`);
    const inherited = Object.fromEntries(
      Object.entries(process.env).filter(([key, value]) => value !== undefined && !SERVICE_VARS.includes(key) && !HARNESS_VARS.includes(key)),
    ) as Record<string, string>;
    const env: Record<string, string> = { ...inherited, PORT: '0', LOG_LEVEL: 'info', ...this.options.env, INSTANCE_ID: this.id };
    if (this.options.clockOffset) {
      const lib = findLibfaketime();
      if (!lib) throw new Error(`instance ${this.id} needs libfaketime for its clock offset: ${faketimeMissing()}`);
      // The process's wall clock is shifted; its monotonic clock (timers) is left alone.
      Object.assign(env, { LD_PRELOAD: lib, FAKETIME: this.options.clockOffset, FAKETIME_DONT_FAKE_MONOTONIC: '1' });
    }
    this.generation++;
    this.tail.length = 0;
    this.#expectExit = false;
    this.state = 'starting';
    this.port = 0;
    const child = spawn(process.execPath, ['--import', 'tsx', 'src/main.ts'], { cwd: repoRoot, env, stdio: ['ignore', 'pipe', 'pipe'] });
    this.child = child;
    if (child.pid) liveProcesses.add(child);
    this.#write(`--- ${new Date().toISOString()} process ${child.pid} (generation ${this.generation}) started\n`);
    this.#exited = new Promise<Exit>((resolve) => {
      let done = false;
      const finish = (exit: Exit) => {
        if (done) return;
        done = true;
        liveProcesses.delete(child);
        if (this.child === child) {
          this.state = 'exited';
          if (!this.#expectExit) this.crashes.push({ at: Date.now(), exit, tail: [...this.tail] });
        }
        this.#write(`--- ${new Date().toISOString()} process ${child.pid} exited (${exit.signal ?? `code ${exit.code}`})\n`);
        for (const listener of [...this.#onLine]) listener('');
        resolve(exit);
      };
      child.once('error', (error) => {
        this.#remember(String(error));
        finish({ code: null, signal: null });
      });
      child.once('close', (code, signal) => finish({ code, signal }));
    });
    for (const stream of [child.stdout!, child.stderr!]) {
      createInterface({ input: stream }).on('line', (line) => {
        this.#write(`${line}\n`);
        this.#remember(line);
        for (const listener of [...this.#onLine]) listener(line);
      });
    }
    this.port = await this.#waitForRunning(child, timeoutMs);
    this.state = 'running';
  }

  /** Resolves when the current process ends. */
  get exited(): Promise<Exit> {
    return this.#exited;
  }

  /** Sends a signal to the current process (no-op once it exited). */
  signal(sig: NodeJS.Signals): void {
    if (this.state === 'exited' || !this.child?.pid) return;
    try {
      process.kill(this.child.pid, sig);
    } catch {
      /* already gone */
    }
  }

  /** SIGKILL: the process dies at once, leaving its runs RUNNING for others to abandon. */
  async kill(): Promise<Exit> {
    this.#expectExit = true;
    if (this.state === 'frozen') this.signal('SIGCONT');
    this.signal('SIGKILL');
    return this.#exited;
  }

  /** SIGSTOP: the process stops where it is, holding its connections, locks and runs. */
  freeze(): void {
    if (this.state !== 'running') throw new Error(`cannot freeze instance ${this.id}: it is ${this.state}`);
    this.signal('SIGSTOP');
    this.state = 'frozen';
  }

  /** SIGCONT after a freeze. */
  resume(): void {
    if (this.state !== 'frozen') return;
    this.signal('SIGCONT');
    this.state = 'running';
  }

  /** Graceful stop (SIGTERM); SIGKILL when it has not exited within `timeoutMs`. */
  async stop(timeoutMs = 30_000): Promise<Exit> {
    if (this.state === 'exited') return this.#exited;
    this.#expectExit = true;
    if (this.state === 'frozen') this.resume();
    this.signal('SIGTERM');
    const timer = setTimeout(() => this.signal('SIGKILL'), timeoutMs);
    try {
      return await this.#exited;
    } finally {
      clearTimeout(timer);
    }
  }

  /** Ends the log file. */
  close(): void {
    this.#log?.end();
  }

  #remember(line: string): void {
    if (this.tail.push(line) > 40) this.tail.shift();
  }

  #write(text: string): void {
    this.#log?.write(text);
  }

  #waitForRunning(child: ChildProcess, timeoutMs: number): Promise<number> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => finish(new Error(`instance ${this.id} did not start within ${timeoutMs} ms`)), timeoutMs);
      const finish = (result: number | Error) => {
        clearTimeout(timer);
        this.#onLine.delete(check);
        if (typeof result === 'number') resolve(result);
        else reject(new Error(`${result.message}\n--- last output ---\n${this.tail.join('\n')}`));
      };
      const check = (line: string) => {
        if (this.child !== child || child.exitCode !== null || child.signalCode !== null) {
          return finish(new Error(`instance ${this.id} exited while starting`));
        }
        if (!line) return;
        let msg = line;
        try {
          const record = JSON.parse(line) as { msg?: unknown };
          if (typeof record.msg === 'string') msg = record.msg;
        } catch {
          /* not JSON */
        }
        const match = RUNNING.exec(msg);
        if (match) finish(Number(match[1]));
      };
      this.#onLine.add(check);
    });
  }
}

export interface ClusterOptions {
  /** How many instances; they are named `${prefix}-1` … `${prefix}-n`. */
  size: number;
  prefix?: string;
  /** Settings every instance gets. */
  env: Record<string, string>;
  /** Per-instance clock offsets by index (0-based), e.g. { 2: '+5m' }. */
  clockOffsets?: Record<number, string>;
  /** A directory for one log file per instance. */
  logDir?: string;
}

/** N instances sharing one database. */
export class Cluster {
  readonly instances: Instance[];

  constructor(options: ClusterOptions) {
    const prefix = options.prefix ?? 'chaos';
    this.instances = Array.from({ length: options.size }, (_, i) => {
      const id = `${prefix}-${i + 1}`;
      return new Instance({
        id,
        env: options.env,
        ...(options.clockOffsets?.[i] ? { clockOffset: options.clockOffsets[i] } : {}),
        ...(options.logDir ? { logFile: path.join(options.logDir, `${id}.log`) } : {}),
      });
    });
  }

  /** Starts every instance, side by side; fails (stopping those that started) when one cannot start. */
  async start(): Promise<void> {
    const results = await Promise.allSettled(this.instances.map((instance) => instance.start()));
    const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
    if (failed) {
      await this.stop();
      throw failed.reason;
    }
  }

  /** The instances whose process is up and not frozen. */
  get running(): Instance[] {
    return this.instances.filter((i) => i.state === 'running');
  }

  /** A running instance's port, round robin over calls: the API is reachable through any of them. */
  #next = 0;
  anyPort(): number {
    const running = this.running;
    if (running.length === 0) throw new Error('no instance is running');
    return running[this.#next++ % running.length]!.port;
  }

  /** Graceful stop of every instance, side by side. */
  async stop(timeoutMs = 30_000): Promise<void> {
    await Promise.all(this.instances.map((instance) => instance.stop(timeoutMs)));
  }

  /** SIGKILL to every instance still running: the last resort of a cleanup. */
  async killAll(): Promise<void> {
    await Promise.all(this.instances.map((instance) => (instance.state === 'exited' ? undefined : instance.kill())));
  }

  close(): void {
    for (const instance of this.instances) instance.close();
  }
}

export { sleep };
