/**
 * What a run's end does to its job (SPEC §3b), decided by a pure function: whether a failed
 * attempt is retried, and when; whether the end is a final outcome that counts toward (or resets)
 * the job's consecutive failures, which may auto-pause it.
 */
import type { EndStatus, JobRow, RunRow } from '../db/rows.ts';

export interface PlannedRetry {
  at: Date;
  attempt: number;
  /** The first attempt's run id. */
  retryOf: string;
  scheduledAt: Date;
}

export interface EndEffects {
  retry: PlannedRetry | null;
  /** A final outcome: a due time's last attempt, or a manual run. Null: neither counts (a retry follows, or it was cancelled or abandoned). */
  final: 'failure' | 'success' | null;
}

export const isFailure = (status: EndStatus): boolean => status === 'FAILED' || status === 'TIMED_OUT';

/** ±10% jitter: a share of the backoff in [-0.1, 0.1) from `random` in [0, 1). */
const JITTER = 0.1;

/** The backoff before attempt `attempt + 1`: backoffSeconds × factor^(attempt − 1), capped, with ±10% jitter. */
export function retryBackoffMs(
  job: Pick<JobRow, 'retryBackoffSeconds' | 'retryBackoffFactor' | 'retryMaxBackoffSeconds'>,
  attempt: number,
  random: number,
): number {
  const seconds = Math.min(job.retryMaxBackoffSeconds, job.retryBackoffSeconds * job.retryBackoffFactor ** (attempt - 1));
  return Math.round(seconds * 1000 * (1 + JITTER * (2 * random - 1)));
}

export function planEnd(
  job: Pick<JobRow, 'retryMaxAttempts' | 'retryBackoffSeconds' | 'retryBackoffFactor' | 'retryMaxBackoffSeconds'>,
  run: Pick<RunRow, 'id' | 'trigger' | 'attempt' | 'retryOf' | 'scheduledAt'>,
  status: EndStatus,
  nowMs: number,
  random: number,
): EndEffects {
  const failed = isFailure(status);
  if (failed && run.trigger !== 'MANUAL' && run.attempt < job.retryMaxAttempts) {
    const at = new Date(nowMs + retryBackoffMs(job, run.attempt, random));
    return { retry: { at, attempt: run.attempt + 1, retryOf: run.retryOf ?? run.id, scheduledAt: run.scheduledAt }, final: null };
  }
  return { retry: null, final: failed ? 'failure' : status === 'SUCCEEDED' ? 'success' : null };
}

/** The pause note of a job auto-paused after `count` consecutive failures (SPEC §3b). */
export function autoPauseNote(count: number, lastError: string | null): string {
  return `auto-paused after ${count} consecutive failures: ${lastError ?? 'no error text'}`;
}
