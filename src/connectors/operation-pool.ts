import { type MessagePort, SHARE_ENV } from 'node:worker_threads';
import { Piscina } from 'piscina';
import type { Logger } from 'pino';
import { toError } from '../errors.ts';
import {
  type CallResult,
  type CallTask,
  cloneable,
  type FromWorker,
  type ListResult,
  REVOKED,
  type Task,
  type ToWorker,
  lostCallMessage,
  UNCLAIMED,
  type WorkerNotice,
  type WorkerOptions,
} from './operation-protocol.ts';
import type { CallContext } from './types.ts';
import { pickWorker, WorkerLiveness, type WorkerState } from './worker-choice.ts';

/**
 * The worker's module, beside this one: operation-worker.js when this runs compiled (dist/, what
 * `npm start` runs), operation-worker.ts when it runs from src/ through tsx (the tests).
 */
const WORKER_FILE = new URL(`./operation-worker${import.meta.url.endsWith('.ts') ? '.ts' : '.js'}`, import.meta.url).href;

/** piscina does not export its worker type; it is the balancer's second argument. */
type Balancer = NonNullable<NonNullable<ConstructorParameters<typeof Piscina>[0]>['loadBalancer']>;
type PiscinaWorker = Parameters<Balancer>[1][number];

export interface OperationPoolOptions {
  dir: string;
  databaseUrl: string;
  instance: string;
  /** Worker threads (SERVER_OPERATIONS_WORKERS). */
  workers: number;
  log: Logger;
}

/** How often a worker says it is alive. */
const BEAT_MS = 50;
/** A worker silent this long is taken as blocked: it gets no new calls, and the calls queued on it move. */
const STALL_MS = 300;
/** How long an aborted call on a live worker may take to stop before that worker is replaced. */
const ABORT_GRACE_MS = 1000;
/** Calls one worker holds at once: operations mostly wait on I/O, so a worker interleaves many. */
const CALLS_PER_WORKER = 256;
/** Loading the modules of a directory longer than this fails the load. */
const LOAD_TIMEOUT_MS = 30_000;
/** Connections of each worker's `ctx.sql`. */
const SQL_PER_WORKER = 2;

interface Call {
  id: number;
  name: string;
  ctx: CallContext;
  resolve(value: unknown): void;
  reject(error: Error): void;
  /** The latest hand-over to a worker. */
  current: Submission | null;
  settled: boolean;
  /** Aborted and not stopped within the grace: its worker is to be replaced. */
  abandoned: boolean;
  unlisten(): void;
}

interface Submission {
  /** Its number, in the worker's answer. */
  ticket: number;
  call: Call;
  claim: Int32Array;
  /** When it was handed to its worker. */
  at: number;
  /** The worker it was handed to; null while it waits for one. */
  thread: Thread | null;
}

/** A worker as the pool sees it: its channel, and the calls handed to it that have not come back. */
class Thread implements WorkerState {
  /** Calls handed to it and not returned, by ticket. */
  readonly calls = new Map<number, Submission>();
  /** Calls for its next `calls` message. */
  outbox: CallTask[] = [];
  terminating = false;
  /** Its channel closed: the thread has ended (or is ending). */
  destroyed = false;

  constructor(
    readonly id: number,
    readonly channel: MessagePort,
    /** Its exit code once it has exited (the channel closes first). */
    readonly exited: Promise<number | undefined>,
  ) {}

  get currentUsage(): number {
    return this.calls.size;
  }
}

/**
 * The worker threads that run server operations (SPEC §8: isolated from the scheduler's event
 * loop). piscina keeps the threads (and replaces one that exits) and loads the directory; calls
 * go over each worker's own channel, those made together in one message a worker (and their
 * results back in one message), since a message and the wake-up of a thread cost far more than a
 * no-op call. This class adds what a scheduler needs of them:
 * - a call reaches the operation at most once: a worker starts it only by claiming it in shared
 *   memory, and a call queued behind a worker that has gone silent (a synchronous loop) is taken
 *   back and handed to another worker;
 * - an aborted call (timeout, cancel, shutdown) is told to stop; one that does not within
 *   ABORT_GRACE_MS, or whose worker is blocked, gets its worker terminated and replaced, and
 *   the other calls that worker was running fail saying why;
 * - a call whose operation ends its worker (process.exit) fails with a clear error.
 */
export class OperationPool {
  readonly #piscina: Piscina;
  readonly #log: Logger;
  readonly #liveness = new WorkerLiveness(STALL_MS);
  /** Threads given no new calls: replaced once no other live call runs on them. */
  readonly #retiring = new Set<number>();
  /** Threads this pool terminated, and why: their other calls fail saying so. */
  readonly #replaced = new Map<number, string>();
  /** Calls not yet settled, by their number. */
  readonly #active = new Map<number, Call>();
  /** The workers whose channel has come, by thread id. */
  readonly #threads = new Map<number, Thread>();
  /** Calls not yet handed to a worker, in order. */
  #waiting: Submission[] = [];
  #dispatchQueued = false;
  #nextCall = 1;
  #nextTicket = 1;
  readonly #watchdog: NodeJS.Timeout;
  #closing = false;
  #drained: (() => void) | null = null;

  constructor(options: OperationPoolOptions) {
    this.#log = options.log;
    const workerData: WorkerOptions = {
      dir: options.dir,
      databaseUrl: options.databaseUrl,
      instance: options.instance,
      sqlMax: SQL_PER_WORKER,
      beatMs: BEAT_MS,
    };
    this.#piscina = new Piscina({
      filename: WORKER_FILE,
      minThreads: options.workers,
      maxThreads: options.workers,
      idleTimeout: Infinity,
      // Workers keep sockets and timers between calls: they must never sleep on Atomics.wait.
      atomics: 'disabled',
      concurrentTasksPerWorker: CALLS_PER_WORKER,
      recordTiming: false,
      workerData,
      // Operations read their settings from the environment, as they did on the main thread.
      env: SHARE_ENV,
      // piscina runs only the loading of the directory; calls go over the channels.
      loadBalancer: (_task, workers) => this.#pick(workers),
    });
    this.#piscina.on('message', (notice: WorkerNotice) => {
      if ('beat' in notice) this.#liveness.beat(notice.beat, notice.at);
      else if ('channel' in notice) this.#connect(notice.thread, notice.channel);
      else this.#log.error({ problem: notice.problem }, 'server operation problem (its worker goes on)');
    });
    this.#piscina.on('error', (error: unknown) => this.#log.error({ err: error }, 'server operations worker failed'));
    this.#watchdog = setInterval(() => {
      // The workers' messages sent before now are read in this turn's poll phase, which comes
      // before setImmediate's: by then, beats sent before `at` have been heard.
      const at = Date.now();
      setImmediate(() => this.#liveness.heard(at));
      this.#rescue();
    }, BEAT_MS);
    this.#watchdog.unref();
  }

  /** Loads the directory's modules in a worker: the operation names, and the files that failed. */
  async list(): Promise<ListResult> {
    let timer: NodeJS.Timeout | undefined;
    const expired = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`loading server operations took more than ${LOAD_TIMEOUT_MS / 1000} s`)), LOAD_TIMEOUT_MS);
    });
    try {
      return (await Promise.race([this.#piscina.run({ kind: 'list' } satisfies Task), expired])) as ListResult;
    } finally {
      clearTimeout(timer);
    }
  }

  /** Runs operation `name` on a worker; settles with its result or its error. */
  call(name: string, ctx: CallContext): Promise<unknown> {
    if (this.#closing) return Promise.reject(new Error(`Server operation "${name}" not started: its workers are stopping`));
    return new Promise((resolve, reject) => {
      const onAbort = () => this.#abort(call);
      const call: Call = {
        id: this.#nextCall++,
        name,
        ctx,
        resolve,
        reject,
        current: null,
        settled: false,
        abandoned: false,
        unlisten: () => ctx.signal.removeEventListener('abort', onAbort),
      };
      // A signal aborted already is handed over as it is: the operation sees it aborted, as in-process.
      if (!ctx.signal.aborted) ctx.signal.addEventListener('abort', onAbort, { once: true });
      this.#active.set(call.id, call);
      this.#submit(call);
    });
  }

  /** Takes no new calls; resolves when the calls in flight have ended, then stops the workers. */
  async drain(): Promise<void> {
    this.#closing = true;
    if (this.#active.size > 0) await new Promise<void>((resolve) => (this.#drained = resolve));
    await this.close();
  }

  /** Stops the workers now; calls still in flight fail. */
  async close(): Promise<void> {
    this.#closing = true;
    clearInterval(this.#watchdog);
    const waiting = this.#waiting;
    this.#waiting = [];
    for (const { call } of waiting)
      this.#finish(call, { error: new Error(`Server operation "${call.name}" not started: its workers are stopping`) });
    await this.#piscina.destroy();
  }

  /** Queues the call for a worker: the calls made in one go leave together, as a microtask. */
  #submit(call: Call): void {
    const submission: Submission = {
      ticket: this.#nextTicket++,
      call,
      claim: new Int32Array(new SharedArrayBuffer(4)),
      at: 0,
      thread: null,
    };
    call.current = submission;
    this.#waiting.push(submission);
    this.#queueDispatch();
  }

  #queueDispatch(): void {
    if (this.#dispatchQueued || this.#waiting.length === 0) return;
    this.#dispatchQueued = true;
    queueMicrotask(() => {
      this.#dispatchQueued = false;
      this.#dispatch();
    });
  }

  /** Hands the waiting calls to the least busy workers, one `calls` message a worker. */
  #dispatch(): void {
    const now = Date.now();
    const waiting = this.#waiting;
    this.#waiting = [];
    const used = new Set<Thread>();
    for (const [i, submission] of waiting.entries()) {
      const { call } = submission;
      if (call.settled || call.current !== submission) continue; // aborted while it waited
      const thread = this.#pickThread();
      if (!thread) {
        // Every worker is full, or none has started yet: the rest wait for a call to end or a worker to come.
        this.#waiting = waiting.slice(i).concat(this.#waiting);
        break;
      }
      submission.thread = thread;
      submission.at = now;
      thread.calls.set(submission.ticket, submission);
      const { ctx } = call;
      thread.outbox.push({
        call: call.id,
        ticket: submission.ticket,
        name: call.name,
        jobId: ctx.jobId,
        runId: ctx.runId,
        scheduledAt: ctx.scheduledAt.getTime(),
        aborted: ctx.signal.aborted ? { reason: cloneable(ctx.signal.reason) } : null,
        claim: submission.claim,
      });
      used.add(thread);
    }
    for (const thread of used) {
      const message: ToWorker = { type: 'calls', calls: thread.outbox };
      thread.outbox = [];
      // While it holds calls, its channel keeps the process alive, as a pending task of piscina's did.
      thread.channel.ref();
      thread.channel.postMessage(message);
    }
  }

  #connect(id: number, channel: MessagePort): void {
    const worker = this.#piscina.threads.find((w) => w.threadId === id);
    const exited = worker ? new Promise<number | undefined>((resolve) => worker.once('exit', resolve)) : Promise.resolve(undefined);
    const thread = new Thread(id, channel, exited);
    this.#threads.set(id, thread);
    channel.unref();
    channel.on('message', (message: FromWorker) => {
      if (message.type === 'results') {
        for (const { ticket, result } of message.results) {
          const submission = thread.calls.get(ticket);
          if (submission) this.#returned(submission, result);
        }
        return;
      }
      const call = this.#active.get(message.call);
      const answer = (reply: ToWorker) => channel.postMessage(reply);
      if (!call) return answer({ type: 'logged', call: message.call, seq: message.seq, error: 'the run has ended' });
      call.ctx.log(message.level, message.message, message.details).then(
        () => answer({ type: 'logged', call: message.call, seq: message.seq }),
        (error: unknown) => answer({ type: 'logged', call: message.call, seq: message.seq, error: toError(error).message }),
      );
    });
    // A channel closes once the messages its worker sent have all come, then the worker exits.
    channel.once('close', () => void this.#gone(thread));
    this.#queueDispatch();
  }

  /** The worker ended (exited, was terminated, or the pool stopped): its calls that did not answer are lost. */
  async #gone(thread: Thread): Promise<void> {
    thread.destroyed = true;
    if (this.#threads.get(thread.id) === thread) this.#threads.delete(thread.id);
    const code = await thread.exited;
    const error = new Error(
      this.#closing ? 'Terminating worker thread' : code === undefined ? 'worker exited' : `worker exited with code: ${code}`,
    );
    for (const submission of [...thread.calls.values()]) this.#lost(submission, error);
  }

  /** The worker answered. */
  #returned(submission: Submission, result: CallResult): void {
    this.#forget(submission);
    if ('revoked' in result) return; // handed to another worker meanwhile
    const { call } = submission;
    if (result.ok) this.#finish(call, { value: result.value });
    else this.#finish(call, { error: Object.assign(new Error(result.error.message), { name: result.error.name }) });
  }

  /** The worker went away (exited, was terminated, or the pool stopped) without answering. */
  #lost(submission: Submission, error: Error): void {
    this.#forget(submission);
    const { call } = submission;
    const state = Atomics.compareExchange(submission.claim, 0, UNCLAIMED, REVOKED);
    if (state === REVOKED) return; // handed to another worker before
    if (state === UNCLAIMED) {
      // Never started: it may still run elsewhere.
      if (!this.#closing && !call.ctx.signal.aborted) this.#submit(call);
      else
        this.#finish(call, {
          error: new Error(
            `Server operation "${call.name}" not started: ${this.#closing ? 'its workers are stopping' : 'the run was stopped'}`,
          ),
        });
      return;
    }
    this.#finish(call, { error: new Error(lostCallMessage(call.name, this.#replaced.get(state), call.abandoned, error)) });
  }

  /** The call is no longer its worker's (it answered, went away, or was taken back). */
  #forget(submission: Submission): void {
    const { thread } = submission;
    if (!thread?.calls.delete(submission.ticket)) return;
    if (thread.calls.size === 0) thread.channel.unref();
    // A worker had no room: the calls waiting for one may go now.
    this.#queueDispatch();
  }

  #finish(call: Call, outcome: { value: unknown } | { error: Error }): void {
    if (call.settled) return;
    call.settled = true;
    call.unlisten();
    this.#active.delete(call.id);
    if ('error' in outcome) call.reject(outcome.error);
    else call.resolve(outcome.value);
    this.#replaceRetired();
    if (this.#drained && this.#active.size === 0) this.#drained();
  }

  #abort(call: Call): void {
    const submission = call.current;
    if (call.settled || !submission) return;
    const state = Atomics.compareExchange(submission.claim, 0, UNCLAIMED, REVOKED);
    if (state === UNCLAIMED) {
      this.#forget(submission);
      this.#finish(call, { error: new Error(`Server operation "${call.name}" not started: the run was stopped`) });
      return;
    }
    this.#threads
      .get(state)
      ?.channel.postMessage({ type: 'abort', call: call.id, reason: cloneable(call.ctx.signal.reason) } satisfies ToWorker);
    const why = `server operation "${call.name}" (run ${call.ctx.runId})`;
    if (!this.#isAlive(state)) {
      call.abandoned = true;
      this.#replace(state, `${why} blocked it`);
      return;
    }
    setTimeout(() => {
      if (call.settled) return;
      call.abandoned = true;
      this.#retiring.add(state);
      this.#log.warn(
        { thread: state, operation: call.name, runId: call.ctx.runId },
        'server operation ignored its abort; its worker will be replaced',
      );
      this.#replaceRetired(`${why} did not stop when its run was aborted`);
    }, ABORT_GRACE_MS).unref();
  }

  /** Replaces each retiring thread that runs no live call any more. */
  #replaceRetired(why = 'a server operation on it did not stop when its run was aborted'): void {
    for (const thread of this.#retiring) {
      const calls = this.#threads.get(thread)?.calls.values() ?? [];
      const busy = [...calls].some((s) => Atomics.load(s.claim, 0) === thread && !s.call.abandoned && !s.call.settled);
      if (!busy) this.#replace(thread, why);
    }
  }

  #replace(thread: number, why: string): void {
    this.#retiring.delete(thread);
    if (this.#replaced.has(thread)) return;
    this.#replaced.set(thread, why);
    this.#log.warn({ thread, reason: why }, 'replacing a server operations worker');
    const state = this.#threads.get(thread);
    if (state) state.terminating = true;
    // Its channel closes (#gone fails the calls it held) and piscina starts a new worker.
    void this.#piscina.threads.find((worker) => worker.threadId === thread)?.terminate();
  }

  #isAlive(thread: number): boolean {
    return this.#liveness.isAlive(thread);
  }

  /** For the loading of the directory: the least busy worker that is alive and not retiring. */
  #pick(workers: PiscinaWorker[]): PiscinaWorker | null {
    return pickWorker(workers, {
      isAlive: (id) => this.#isAlive(id),
      excluded: (id) => this.#retiring.has(id) || this.#replaced.has(id),
      maxUsage: CALLS_PER_WORKER,
    });
  }

  /** For a call: the worker with the fewest calls that is alive and not retiring; a silent one only when none is alive. */
  #pickThread(): Thread | null {
    return pickWorker(this.#threads.values(), {
      isAlive: (id) => this.#isAlive(id),
      excluded: (id) => this.#retiring.has(id) || this.#replaced.has(id),
      maxUsage: CALLS_PER_WORKER,
    });
  }

  /** Takes back the calls still queued on a silent worker and hands them to a live one. */
  #rescue(): void {
    const now = Date.now();
    const threads = new Set(this.#piscina.threads.map((worker) => worker.threadId));
    this.#liveness.keepOnly(threads);
    for (const thread of this.#replaced.keys()) if (!threads.has(thread)) this.#replaced.delete(thread);
    // A worker piscina no longer has whose channel is still open: closing it ends its calls (#gone).
    for (const thread of this.#threads.values()) if (!threads.has(thread.id)) thread.channel.close();
    if (![...threads].some((thread) => this.#isAlive(thread) && !this.#retiring.has(thread))) return;
    for (const thread of [...this.#threads.values()]) {
      for (const submission of [...thread.calls.values()]) {
        if (now - submission.at <= STALL_MS || submission.call.settled) continue;
        if (Atomics.compareExchange(submission.claim, 0, UNCLAIMED, REVOKED) !== UNCLAIMED) continue;
        this.#forget(submission);
        this.#submit(submission.call);
      }
    }
  }
}
