// A cluster of service instances as separate processes (`node --import tsx src/main.ts`, the
// sources as the tests run them) on one PostgreSQL, for the fault harness: start, stop, kill,
// freeze, resume and restart each instance, with its own environment (and, for the clock-skew
// scenario, a system clock shifted by libfaketime through LD_PRELOAD — no switch in the service
// itself).
// Each process is a ServiceProcess of the tests' process helper: one way to spawn the service,
// read its readiness and stop it, for the tests and the harness alike.
import fs from 'node:fs';
import path from 'node:path';
import { type Exit, ServiceProcess } from '../test/helpers/process.ts';

export const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

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

/** One instance: a sequence of processes with the same INSTANCE_ID (a restart is a new process). */
export class Instance {
  readonly id: string;
  readonly options: InstanceOptions;
  /** The current process (or the last one, once it exited). */
  process: ServiceProcess | null = null;
  port = 0;
  state: InstanceState = 'exited';
  /** How many processes this instance has had. */
  generation = 0;
  /** Exits nobody asked for (a crash), with the output before them. */
  readonly crashes: { at: number; exit: Exit; tail: string[] }[] = [];
  #expectExit = false;
  #log: fs.WriteStream | undefined;

  constructor(options: InstanceOptions) {
    this.id = options.id;
    this.options = options;
    if (options.logFile) this.#log = fs.createWriteStream(options.logFile, { flags: 'a' });
  }

  get pid(): number | undefined {
    return this.process?.pid;
  }

  /** The last lines the current process printed, for error messages. */
  get tail(): string[] {
    return this.process?.tail ?? [];
  }

  /** Starts a new process and waits for its `listening` record. */
  async start(timeoutMs = 90_000): Promise<void> {
    if (this.state !== 'exited') throw new Error(`instance ${this.id} is ${this.state}`);
    let runtimeEnv: Record<string, string> = {};
    if (this.options.clockOffset) {
      const lib = findLibfaketime();
      if (!lib) throw new Error(`instance ${this.id} needs libfaketime for its clock offset: ${faketimeMissing()}`);
      // The process's wall clock is shifted; its monotonic clock (timers) is left alone.
      runtimeEnv = { LD_PRELOAD: lib, FAKETIME: this.options.clockOffset, FAKETIME_DONT_FAKE_MONOTONIC: '1' };
    }
    this.generation++;
    this.#expectExit = false;
    this.state = 'starting';
    this.port = 0;
    const child = new ServiceProcess(
      { ...this.options.env, INSTANCE_ID: this.id },
      { runtimeEnv, onLine: (line) => this.#write(`${line}\n`) },
    );
    this.process = child;
    this.#write(`--- ${new Date().toISOString()} process ${child.pid} (generation ${this.generation}) started\n`);
    void child.exited.then((exit) => {
      if (this.process === child) {
        this.state = 'exited';
        if (!this.#expectExit) this.crashes.push({ at: Date.now(), exit, tail: [...child.tail] });
      }
      this.#write(`--- ${new Date().toISOString()} process ${child.pid} exited (${exit.signal ?? `code ${exit.code}`})\n`);
    });
    try {
      this.port = await child.waitUntilListening(timeoutMs);
    } catch (error) {
      throw new Error(`instance ${this.id} did not start: ${(error as Error).message}`);
    }
    this.state = 'running';
  }

  /** Resolves when the current process ends. */
  get exited(): Promise<Exit> {
    return this.process?.exited ?? Promise.resolve({ code: null, signal: null });
  }

  /** SIGKILL: the process dies at once, leaving its runs RUNNING for others to abandon. */
  async kill(): Promise<Exit> {
    this.#expectExit = true;
    return (await this.process?.kill()) ?? { code: null, signal: null };
  }

  /** SIGSTOP: the process stops where it is, holding its connections, locks and runs. */
  freeze(): void {
    if (this.state !== 'running') throw new Error(`cannot freeze instance ${this.id}: it is ${this.state}`);
    this.process!.freeze();
    this.state = 'frozen';
  }

  /** SIGCONT after a freeze. */
  resume(): void {
    if (this.state !== 'frozen') return;
    this.process!.resume();
    this.state = 'running';
  }

  /** Graceful stop (SIGTERM); SIGKILL when it has not exited within `timeoutMs`. */
  async stop(timeoutMs = 30_000): Promise<Exit> {
    if (this.state === 'exited' || !this.process) return this.exited;
    this.#expectExit = true;
    await this.process.stop(timeoutMs);
    return this.exited;
  }

  /** Ends the log file. */
  close(): void {
    this.#log?.end();
  }

  #write(text: string): void {
    this.#log?.write(text);
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
