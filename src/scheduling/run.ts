import type { Logger } from 'pino';
import { type Clock, sleepFor } from '../clock.ts';
import { CallTimeoutError, type CallContext, type ConnectorRegistry } from '../connectors/types.ts';
import type { Sql } from '../db/client.ts';
import { insertRunLogEntry } from '../db/log.ts';
import { type JobRow, LOG_LEVELS, type LogLevel, type RunRow } from '../db/rows.ts';
import { type FinishedRun, finishRun, type RunEnd } from '../db/runs.ts';
import { toError } from '../errors.ts';
import type { EventBus } from '../events/bus.ts';
import { type AbortReason, describeError, endLogEntry, type Outcome } from './outcome.ts';
import { formatExternalCall } from './external-call.ts';
import { planEnd } from './run-end-plan.ts';
import { defaultTimeoutMs, ruleOf } from './schedule.ts';

export interface RunDeps {
  sql: Sql;
  /** The operations' own small pool. */
  operationsSql: Sql;
  clock: Clock;
  bus: EventBus;
  registry: ConnectorRegistry;
  log: Logger;
  token: string;
  /** Aborted when the instance stops waiting for its runs: retries of their ends stop too. */
  halted?: AbortSignal;
  /** Writes a run's end on its first try, with others' (the scheduler's group commit); else `finishRun` alone. */
  endRun?: (runId: string, end: RunEnd) => Promise<FinishedRun | null>;
  /**
   * Told of every end written, with what it did to its job (a retry waiting, a failure counted).
   * The run is done once what this returns has settled (its connector's circuit counted); it never rejects.
   */
  ended?: (run: RunRow, job: RunJob, finished: FinishedRun) => Promise<void> | void;
  /** In [0, 1): the jitter of retry backoffs. */
  random?: () => number;
}

export type RunJob = JobRow;

/**
 * Performs one run the scheduler has claimed: calls the connector with an AbortSignal, bounded
 * by the job's timeout, then records the end (fenced by the lease token) and publishes it. It
 * never throws: every failure of the call becomes the run's status and an ERROR entry.
 * `abort` ends the run from outside (cancel, shutdown, lost lease) with the reason's status.
 */
export async function executeRun(deps: RunDeps, run: RunRow, job: RunJob, abort: AbortController): Promise<RunRow | null> {
  const { clock, bus } = deps;
  // No call reaches its connector before its due time by the clock (SPEC §3). A claim takes only
  // due times its clock has reached, so this waits only if something launched a run early.
  const dueMs = run.scheduledAt.getTime();
  if (clock.now() < dueMs) await clock.sleepUntil(dueMs, abort.signal);
  bus.publish('run:started', { at: new Date(clock.now()), run });
  const outcome = await callWithTimeout(deps, run, job, abort);
  // Whatever ended the run, the connector is told to stop, with the run's own outcome as the reason.
  if (!abort.signal.aborted) abort.abort({ status: outcome.status, error: outcome.error ?? 'run ended' });
  return recordEnd(deps, run, job, outcome);
}

const CALL_SETTLED = 'call settled';

async function callWithTimeout(deps: RunDeps, run: RunRow, job: RunJob, abort: AbortController): Promise<Outcome> {
  const { clock } = deps;
  const timeoutSeconds = job.timeoutSeconds ?? defaultTimeoutMs(ruleOf(job), run.scheduledAt.getTime()) / 1000;
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
    // Aborted before it began (a cancel while it waited for its due time): the call is not made.
    const call = abort.signal.aborted ? new Promise<never>(() => {}) : invoke(deps, run, job, abort.signal);
    return await Promise.race([call, aborted, timedOut]);
  } finally {
    // A reason of its own: abort() without one builds a DOMException, stack and all, per run.
    timerStop.abort(CALL_SETTLED);
  }
}

async function invoke(deps: RunDeps, run: RunRow, job: RunJob, signal: AbortSignal): Promise<Outcome> {
  const connector = deps.registry.get(job.connectorId);
  if (!connector) {
    return {
      status: 'FAILED',
      error: `Unknown connector "${job.connectorId}" (known: ${deps.registry
        .list()
        .map((c) => c.id)
        .join(', ')})`,
    };
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
  if (!LOG_LEVELS.includes(level)) throw new Error(`Unknown log level "${String(level)}"`);
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

/** The longest pause between two tries of writing a run's end while the database is away. */
const MAX_END_RETRY_MS = 2000;

/**
 * Records the end, retrying while the database is away: the outcome is known and worth keeping.
 * It keeps trying (backoff capped at MAX_END_RETRY_MS) until the write lands, the fence refuses
 * it, or the instance halts (shutdown past its grace period; a halt during a pause gets one
 * last try).
 *
 * There is no deadline: "lease lost" is what the fence in finishRun says, not what the clock
 * says. finishRun requires only that the run is still RUNNING under this process's token, not
 * that its lease is unexpired, so the end is refused exactly when another instance has taken
 * the run over (marked it ABANDONED after its lease expired) or it was ended for it (a cancel,
 * a deleted job). SPEC §3 refuses a run's writes once its lease is LOST; an expired lease that
 * nobody took over is not lost, and the run's real outcome beats ABANDONED. Waiting costs
 * nothing meanwhile: no instance claims anything while the database is away, and once it is
 * back whichever write commits first decides — another instance's ABANDONED (then ours is
 * refused) or our end.
 */
async function recordEnd(deps: RunDeps, run: RunRow, job: RunJob, outcome: Outcome): Promise<RunRow | null> {
  const entry = endLogEntry({ jobId: run.jobId, runId: run.id, externalCall: formatExternalCall(job) }, outcome);
  // When the outcome became known, not when the database took it: an outage does not stretch the run.
  const now = new Date(deps.clock.now());
  const planned = planEnd(job, run, outcome.status, now.getTime(), (deps.random ?? Math.random)());
  // A success of a job with no failures counted changes nothing: its end stays one statement. The
  // count read at the claim is current unless other runs of the job can end meanwhile (ALLOW).
  const idle =
    !planned.retry && (planned.final === null || (planned.final === 'success' && job.consecutiveFailures === 0 && job.overlap !== 'ALLOW'));
  const effects = idle ? undefined : planned;
  for (let attempt = 1; ; attempt++) {
    try {
      const end: RunEnd = { ...outcome, now, log: entry, effects };
      // Only a first try goes with others: a retry must recognise an end its lost reply committed.
      const result = attempt === 1 && deps.endRun ? await deps.endRun(run.id, end) : await finishRun(deps.sql, run.id, deps.token, end);
      if (!result) {
        // Fenced out: another instance took the run over (marked it ABANDONED), or it was cancelled for us.
        deps.log.warn(
          { runId: run.id, jobId: run.jobId, status: outcome.status },
          'run end refused: the run is no longer held by this process',
        );
        return null;
      }
      // Also when an earlier try committed this end and its reply was lost (`repeated`): the
      // event was not published then, so it is now, from the stored row.
      if (result.repeated)
        deps.log.info({ runId: run.id, status: outcome.status }, 'run end was recorded by an earlier try whose reply was lost');
      deps.bus.publish('run:finished', { at: now, run: result.run });
      if (result.entry) deps.bus.publish('log:added', { entry: result.entry });
      if (result.dropped) deps.bus.publish('log:added', { entry: result.dropped });
      await deps.ended?.(result.run, job, result);
      return result.run;
    } catch (error) {
      if (deps.halted?.aborted) {
        // Left RUNNING, its lease lapses and any instance marks it ABANDONED (and says so) — unless
        // a try committed with its reply lost: then its end event would never come. This process
        // cannot tell which, so subscribers here and elsewhere are told that events were lost.
        deps.log.error(
          { err: error, runId: run.id, status: outcome.status },
          'recording the end of a run failed; the instance is stopping',
        );
        deps.bus.lost(`the end of run ${run.id} may have been recorded without its event`);
        return null;
      }
      if (attempt === 1)
        deps.log.warn(
          { err: error, runId: run.id, status: outcome.status },
          'recording the end of a run failed; retrying until the database is back',
        );
      await sleepFor(deps.clock, Math.min(MAX_END_RETRY_MS, 100 * 2 ** attempt), deps.halted);
    }
  }
}
