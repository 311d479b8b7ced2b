// A worker thread of the server-operations pool (operation-pool.ts). It loads the operation
// modules of one directory once, then runs calls handed to it. A call that blocks this thread
// holds up only this thread: the scheduler, leases and the API run on the main thread.
import fs from 'node:fs';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { MessageChannel, parentPort, threadId, workerData } from 'node:worker_threads';
import { connect } from '../db/client.ts';
import type { LogLevel } from '../db/rows.ts';
import {
  type CallResult,
  type CallTask,
  cloneable,
  type FromWorker,
  type ListResult,
  type SerializedError,
  type Task,
  type ToWorker,
  UNCLAIMED,
  type WorkerOptions,
  type WorkerNotice,
} from './operation-protocol.ts';
import type { CallContext, Operation } from './types.ts';

const options = workerData as WorkerOptions;

/** The operations' own small pool (SPEC §4); postgres.js connects on the first query only. */
const sql = connect(options.databaseUrl, { max: options.sqlMax, applicationName: `server-jobs operations ${options.instance}` }).sql;

const notify = (notice: WorkerNotice) => parentPort?.postMessage(notice);

// The main thread tells a blocked worker from a busy one by these beats.
// One channel to the main thread for every call of this worker: calls and aborts in, results and
// log entries out.
const channel = new MessageChannel();
parentPort?.postMessage({ channel: channel.port2, thread: threadId } satisfies WorkerNotice, [channel.port2]);
const port = channel.port1;
port.unref();

/** The calls running here: how to abort each, and its log entries awaiting their answer. */
const running = new Map<
  number,
  { abort: AbortController; waiting: Map<number, { resolve: () => void; reject: (error: Error) => void }> }
>();
port.on('message', (message: ToWorker) => {
  if (message.type === 'calls') {
    for (const task of message.calls) void start(task);
    return;
  }
  const call = running.get(message.call);
  if (!call) return;
  if (message.type === 'abort') {
    call.abort.abort(message.reason);
    return;
  }
  const entry = call.waiting.get(message.seq);
  call.waiting.delete(message.seq);
  if (message.error === undefined) entry?.resolve();
  else entry?.reject(new Error(message.error));
});

const beat = () => notify({ beat: threadId, at: Date.now() });
beat();
setInterval(beat, options.beatMs).unref();

// An operation that throws from a timer or leaves a rejection unhandled must not end the calls
// of the others on this thread: it is reported and the thread goes on (as the main thread did).
process.on('uncaughtException', (error) => notify({ problem: `uncaught exception in a server operation: ${describe(error)}` }));
process.on('unhandledRejection', (reason) => notify({ problem: `unhandled rejection in a server operation: ${describe(reason)}` }));

interface Loaded {
  operations: Map<string, Operation>;
  problems: ListResult['problems'];
}

const loaded: Promise<Loaded> = load(options.dir);

async function load(dir: string): Promise<Loaded> {
  const operations = new Map<string, Operation>();
  const problems: ListResult['problems'] = [];
  let files: string[] = [];
  try {
    files = (await fs.promises.readdir(dir)).filter((f) => /\.m?js$/.test(f)).sort();
  } catch (error) {
    problems.push({ file: dir, error: `the directory cannot be read: ${describe(error)}` });
  }
  for (const file of files) {
    const full = path.resolve(dir, file);
    try {
      // A worker imports each file once: a reload replaces the workers, and the old modules go with them.
      const module = (await import(pathToFileURL(full).href)) as { default?: unknown };
      const exported = module.default;
      if (!exported || typeof exported !== 'object') throw new Error('default export is not an object of operations');
      for (const [name, fn] of Object.entries(exported)) {
        if (typeof fn === 'function') operations.set(name.normalize('NFC'), fn as Operation);
      }
    } catch (error) {
      problems.push({ file: full, error: describe(error) });
    }
  }
  return { operations, problems };
}

/** piscina's task: the names of the directory's operations, and the files that failed. */
export default async function run(_task: Task): Promise<ListResult> {
  const { operations, problems } = await loaded;
  return { names: [...operations.keys()].sort(), problems };
}

/**
 * Results not sent yet: the calls that end together go back in one message. It leaves as a
 * microtask, before this thread takes its next message or timer: an operation that then blocks
 * the thread cannot hold back the results of calls that ended before it.
 */
let results: { ticket: number; result: CallResult }[] = [];

async function start(task: CallTask): Promise<void> {
  const result = await settle(task);
  if (results.length === 0) queueMicrotask(sendResults);
  results.push({ ticket: task.ticket, result });
}

function sendResults(): void {
  const message: FromWorker = { type: 'results', results };
  results = [];
  port.postMessage(message);
}

async function settle(task: CallTask): Promise<CallResult> {
  const { operations } = await loaded;
  // Handed to another worker meanwhile (this one looked blocked): not ours to run.
  if (Atomics.compareExchange(task.claim, 0, UNCLAIMED, threadId) !== UNCLAIMED) return { revoked: true };
  const operation = operations.get(task.name);
  if (!operation) {
    return { ok: false, error: { name: 'Error', message: `Server operation "${task.name}" does not exist in ${options.dir}.` } };
  }
  return call(operation, task);
}

async function call(operation: Operation, task: CallTask): Promise<CallResult> {
  const abort = new AbortController();
  if (task.aborted) abort.abort(task.aborted.reason);
  const state = { abort, waiting: new Map<number, { resolve: () => void; reject: (error: Error) => void }>() };
  running.set(task.call, state);
  let seq = 0;
  const log = (level: LogLevel, message: string, details?: unknown) =>
    new Promise<void>((resolve, reject) => {
      const request: FromWorker = { type: 'log', call: task.call, seq: ++seq, level, message: String(message), details: plain(details) };
      state.waiting.set(request.seq, { resolve, reject });
      port.postMessage(request);
    });
  const ctx: CallContext = {
    signal: abort.signal,
    log,
    jobId: task.jobId,
    runId: task.runId,
    scheduledAt: new Date(task.scheduledAt),
    sql,
  };
  try {
    const value = await operation(ctx);
    // The scheduler ignores the value; it crosses back only when it can.
    return { ok: true, value: cloneable(value) };
  } catch (error) {
    return { ok: false, error: serialize(error) };
  } finally {
    running.delete(task.call);
  }
}

/** Log details as they will be stored (JSON), so that any value an operation passes can cross. */
function plain(details: unknown): unknown {
  if (details === undefined) return undefined;
  try {
    return JSON.parse(JSON.stringify(details)) as unknown;
  } catch {
    return String(details);
  }
}

function serialize(thrown: unknown): SerializedError {
  if (thrown instanceof Error) return { name: thrown.name, message: thrown.message };
  return { name: 'Error', message: describe(thrown) };
}

function describe(thrown: unknown): string {
  return thrown instanceof Error ? thrown.message : String(thrown);
}
