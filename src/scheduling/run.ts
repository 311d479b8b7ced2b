import type { Logger } from 'pino';
import type { Clock } from '../clock.ts';
import { CallTimeoutError, type CallContext, type ConnectorRegistry } from '../connectors/types.ts';
import type { Sql } from '../db/client.ts';
import { insertRunLogEntry } from '../db/log.ts';
import type { JobRow, LogLevel, RunRow } from '../db/rows.ts';
import { finishRun } from '../db/runs.ts';
import { toError } from '../errors.ts';
import type { EventBus } from '../events/bus.ts';
import { type AbortReason, describeError, endLogEntry, type Outcome } from './outcome.ts';
import { formatExternalCall } from './external-call.ts';
import { defaultTimeoutSeconds } from './period.ts';

export interface RunDeps {
  sql: Sql;
  /** The operations' own small pool. */
  operationsSql: Sql;
  clock: Clock;
  bus: EventBus;
  registry: ConnectorRegistry;
  log: Logger;
  token: string;
  /** The lease length: how long the end of a run is worth retrying while the database is away. */
  leaseMs: number;
  /** Aborted when the instance stops waiting for its runs: retries of their ends stop too. */
  halted?: AbortSignal;
}

export type RunJob = Pick<JobRow, 'id' | 'connectorId' | 'method' | 'periodSeconds' | 'timeoutSeconds'>;

/**
 * Performs one run the scheduler has claimed: calls the connector with an AbortSignal, bounded
 * by the job's timeout, then records the end (fenced by the lease token) and publishes it. It
 * never throws: every failure of the call becomes the run's status and an ERROR entry.
 * `abort` ends the run from outside (cancel, shutdown, lost lease) with the reason's status.
 */
export async function executeRun(deps: RunDeps, run: RunRow, job: RunJob, abort: AbortController): Promise<RunRow | null> {
  const { clock, bus } = deps;
  bus.publish('run:started', { at: new Date(clock.now()), run });
  const outcome = await callWithTimeout(deps, run, job, abort);
  // Whatever ended the run, the connector is told to stop.
  if (!abort.signal.aborted) abort.abort({ status: 'ABANDONED', error: 'run ended' } satisfies AbortReason);
  return recordEnd(deps, run, job, outcome);
}

async function callWithTimeout(deps: RunDeps, run: RunRow, job: RunJob, abort: AbortController): Promise<Outcome> {
  const { clock } = deps;
  const timeoutSeconds = job.timeoutSeconds ?? defaultTimeoutSeconds(job.periodSeconds);
  const startedMs = run.startedAt?.getTime() ?? clock.now();
  const timerStop = new AbortController();
  const aborted = new Promise<Outcome>((resolve) => {
    const onAbort = () => {
      const reason = abort.signal.reason as AbortReason;
      resolve({ status: reason.status, error: reason.error });
    };
    if (abort.signal.aborted) onAbort();
    else abort.signal.addEventListener('abort', onAbort, { once: true });
  });
  const timedOut = clock
    .sleepUntil(startedMs + timeoutSeconds * 1000, timerStop.signal)
    .then((): Outcome | Promise<never> =>
      timerStop.signal.aborted ? new Promise<never>(() => {}) : { status: 'TIMED_OUT', error: `No answer within ${timeoutSeconds} s` },
    );
  try {
    return await Promise.race([invoke(deps, run, job, abort.signal), aborted, timedOut]);
  } finally {
    timerStop.abort();
  }
}

async function invoke(deps: RunDeps, run: RunRow, job: RunJob, signal: AbortSignal): Promise<Outcome> {
  const connector = deps.registry.get(job.connectorId);
  if (!connector) {
    return { status: 'FAILED', error: `Unknown connector "${job.connectorId}" (known: ${deps.registry.list().map((c) => c.id).join(', ')})` };
  }
  const ctx: CallContext = {
    signal,
    jobId: run.jobId,
    runId: run.id,
    scheduledAt: run.scheduledAt,
    sql: deps.operationsSql,
    log: (level, message, details) => writeRunLog(deps, run, level, message, details),
  };
  try {
    await connector.call(job.method, ctx);
    return { status: 'SUCCEEDED', error: null };
  } catch (thrown) {
    const error = toError(thrown);
    return { status: error instanceof CallTimeoutError ? 'TIMED_OUT' : 'FAILED', error: describeError(error) };
  }
}

async function writeRunLog(deps: RunDeps, run: RunRow, level: LogLevel, message: string, details?: unknown): Promise<void> {
  if (!['DEBUG', 'INFO', 'WARNING', 'ERROR'].includes(level)) throw new Error(`Unknown log level "${String(level)}"`);
  const entry = await insertRunLogEntry(deps.sql, deps.token, {
    at: new Date(deps.clock.now()),
    level,
    message: String(message),
    runId: run.id,
    details,
  });
  if (entry) deps.bus.publish('log:added', { entry });
  else deps.log.warn({ runId: run.id }, 'log entry refused: the run is no longer held by this process');
}

/**
 * Records the end, retrying while the database is away: the outcome is known and worth keeping.
 * Past two leases another instance has marked the run ABANDONED (or will), so retrying stops.
 */
async function recordEnd(deps: RunDeps, run: RunRow, job: RunJob, outcome: Outcome): Promise<RunRow | null> {
  const entry = endLogEntry({ jobId: run.jobId, runId: run.id, externalCall: formatExternalCall(job) }, outcome);
  const giveUpAt = Date.now() + 2 * deps.leaseMs;
  for (let attempt = 1; ; attempt++) {
    try {
      const now = new Date(deps.clock.now());
      const result = await finishRun(deps.sql, run.id, deps.token, { ...outcome, now, log: entry });
      if (!result) {
        // Fenced out: another instance took the run over (it was marked ABANDONED).
        deps.log.warn({ runId: run.id, jobId: run.jobId }, 'run end refused: lease lost');
        return null;
      }
      deps.bus.publish('run:finished', { at: now, run: result.run });
      if (result.entry) deps.bus.publish('log:added', { entry: result.entry });
      return result.run;
    } catch (error) {
      if (Date.now() >= giveUpAt || deps.halted?.aborted) {
        // Left RUNNING; its lease lapses and any instance marks it ABANDONED.
        deps.log.error({ err: error, runId: run.id, status: outcome.status }, 'recording the end of a run failed');
        return null;
      }
      await new Promise((resolve) => setTimeout(resolve, Math.min(2000, 100 * 2 ** attempt)));
    }
  }
}
