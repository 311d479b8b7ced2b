import type { ClaimStatus, EndStatus, LogLevel } from '../db/rows.ts';

/** Why a run in progress was aborted from outside the call. */
export interface AbortReason {
  status: Extract<EndStatus, 'CANCELLED' | 'ABANDONED'>;
  error: string;
}

export interface Outcome {
  status: EndStatus;
  error: string | null;
}

export interface RunDescription {
  jobId: string;
  runId: string;
  /** `ConnectorId:MethodName`, or null when the job no longer exists. */
  externalCall: string | null;
}

/**
 * The log entry a run's end writes: an ERROR for every failure (the job, the run, the external
 * call and the error), a WARNING for a cancel, nothing for a success. Pure, so the wording is
 * tested with literals.
 */
export function endLogEntry(
  run: RunDescription,
  outcome: Outcome,
): { level: LogLevel; message: string; details: Record<string, unknown> } | undefined {
  if (outcome.status === 'SUCCEEDED') return undefined;
  const { externalCall } = run;
  const details = { jobId: run.jobId, runId: run.runId, externalCall, status: outcome.status, error: outcome.error };
  const what: Record<Exclude<EndStatus, 'SUCCEEDED'>, string> = {
    FAILED: 'failed',
    TIMED_OUT: 'timed out',
    ABANDONED: 'was abandoned',
    CANCELLED: 'was cancelled',
  };
  return {
    level: outcome.status === 'CANCELLED' ? 'WARNING' : 'ERROR',
    message: `Job "${run.jobId}" run ${run.runId} ${what[outcome.status]}${externalCall ? ` calling ${externalCall}` : ''}: ${outcome.error}`,
    details,
  };
}

/** The status a claimed due time gets: skipped while the previous run of the job still runs. */
export const claimStatus = (busy: boolean): ClaimStatus => (busy ? 'SKIPPED' : 'RUNNING');

export function describeError(error: Error): string {
  const text = error.message || error.name || 'Unknown error';
  // Bounded, so a connector that throws megabytes cannot bloat the log.
  return text.length > 2000 ? `${text.slice(0, 2000)}…` : text;
}
