// What the main thread and the server-operations workers say to each other (operation-pool.ts,
// operation-worker.ts): one definition that both sides import.
import type { MessagePort } from 'node:worker_threads';
import type { LogLevel } from '../db/rows.ts';

/** Handed to every worker of one pool (one load of one directory). */
export interface WorkerOptions {
  dir: string;
  databaseUrl: string;
  instance: string;
  /** Connections of each worker's own operations pool (`ctx.sql`). */
  sqlMax: number;
  /** How often a worker says it is alive. */
  beatMs: number;
}

/**
 * A call's claim, one Int32 in memory both threads share: 0 while nobody has it, the thread id
 * of the worker that started it, or -1 once the main thread took it back. A worker starts a call
 * only by moving it from 0 to its thread id, and the main thread hands a call to another worker
 * only by moving it from 0 to -1: exactly one of them wins, so a call queued behind a blocked
 * worker runs elsewhere, and never twice.
 */
export const UNCLAIMED = 0;
export const REVOKED = -1;

/** What piscina runs on a worker: loading the directory. Calls go over the worker's channel. */
export type Task = { kind: 'list' };

/** One call handed to a worker (in a `calls` message, with the others of the same moment). */
export interface CallTask {
  /** The pool's number for the call, in the messages about it (aborts, log entries). */
  call: number;
  /**
   * The pool's number for this handing-over of the call, in its result: a call taken back from a
   * worker may be handed to the same worker again, and the first one's answer must not end it.
   */
  ticket: number;
  name: string;
  jobId: string;
  runId: string;
  scheduledAt: number;
  /** Set when the run was stopped before the call was handed over. */
  aborted: { reason: unknown } | null;
  claim: Int32Array;
}

export interface ListResult {
  names: string[];
  problems: { file: string; error: string }[];
}

export interface SerializedError {
  name: string;
  message: string;
}

export type CallResult = { ok: true; value: unknown } | { ok: false; error: SerializedError } | { revoked: true };

/**
 * Worker → main, over the worker's channel: a call's log entry, or the results of the calls that
 * ended since the last such message (one message for all the calls that ended together).
 */
export type FromWorker =
  | { type: 'log'; call: number; seq: number; level: LogLevel; message: string; details: unknown }
  | { type: 'results'; results: { ticket: number; result: CallResult }[] };
/**
 * Main → worker, over the worker's channel: the calls handed to it since the last such message
 * (one message for all the calls started together: a message costs more than a no-op call), an
 * abort, or the answer to a log entry.
 */
export type ToWorker =
  | { type: 'calls'; calls: CallTask[] }
  | { type: 'abort'; call: number; reason: unknown }
  | { type: 'logged'; call: number; seq: number; error?: string };

/**
 * Worker → main, through piscina (the pool's 'message' event): its channel once at start (one
 * channel per worker, not per call: a channel costs more than a no-op call), beats, problems.
 */
export type WorkerNotice = { channel: MessagePort; thread: number } | { beat: number; at: number } | { problem: string };

/** A value as it can cross between the threads (abort reasons, return values), else undefined. */
export function cloneable(value: unknown): unknown {
  try {
    return structuredClone(value);
  } catch {
    return undefined;
  }
}

/**
 * Why a call that had started fails when its worker went away: the pool replaced the worker
 * (`replacedBecause`) for another call's sake, or because this call ignored its abort
 * (`abandoned`); or the operation ended the worker itself.
 */
export function lostCallMessage(name: string, replacedBecause: string | undefined, abandoned: boolean, error: Error): string {
  if (replacedBecause === undefined) return `Server operation "${name}" ended its worker thread (${error.message})`;
  return abandoned
    ? `Server operation "${name}" did not stop when its run was aborted; its worker thread was replaced`
    : `Server operation "${name}" was stopped: its worker thread was replaced because ${replacedBecause}`;
}
