/**
 * What a change to a job does to its due times (SPEC §3, "a change never loses a due time"):
 * pure functions over epoch milliseconds, so they can be tested with literal instants.
 */
import type { NewLogEntry } from '../db/log.ts';
import { type DueRule, firstDueAfter, planClaim, sameRule } from './schedule.ts';

/** A job's schedule as the jobs row holds it. */
export interface Schedule {
  enabled: boolean;
  rule: DueRule;
  /** The oldest due time not yet claimed; null when none is left (past `endAt`). */
  nextDueMs: number | null;
  /** QUEUE_ONE: a due time waiting for the run in progress, and the due times coalesced into it. */
  queued?: { scheduledMs: number; missed: number } | null;
}

export interface ChangeAccounting {
  /**
   * The due times already due when the change commits and not yet claimed, as one SKIPPED run
   * on the latest of them (`missed` counting the others, on the grid they belonged to); null
   * when there are none, or when the change keeps the schedule.
   */
  skipped: { scheduledMs: number; missed: number } | null;
  /** The job's next due time after the change (null when the job is deleted). */
  nextDueMs: number | null;
}

/**
 * Accounts a change of `before` into `after` (null: the job is deleted) that commits at
 * `dbNowMs`, the database's clock read in the change's transaction with the job row locked (so
 * `before.nextDueMs` is what no claim has taken yet).
 *
 * - A change away from an enabled schedule (a pause, a delete, a new period or start) records
 *   the due times in [before.nextDueMs, dbNowMs]. A paused job has none (its due times are not
 *   due), nor does a change that keeps the schedule (a name, a call, a timeout).
 * - The next due time never lies at or before a due time already recorded for the job
 *   (`lastRecordedMs`, the latest SCHEDULE run of its id, or the SKIPPED run this change
 *   records): a later claim of it would clash with that run's key. A pause moves it past the
 *   due times it records, so the row tells which due times are accounted.
 */
export function accountChange(
  before: Schedule,
  after: Schedule | null,
  dbNowMs: number,
  lastRecordedMs: number | null = null,
): ChangeAccounting {
  const changed = !(after && sameSchedule(before, after));
  const due = before.enabled && changed && before.nextDueMs !== null ? planClaim(before.rule, before.nextDueMs, dbNowMs) : null;
  const skipped = withQueued(due && { scheduledMs: due.scheduledMs, missed: due.missed }, changed ? before.queued : null);
  if (!after) return { skipped, nextDueMs: null };
  return { skipped, nextDueMs: nextDueAfter(after, Math.max(skipped?.scheduledMs ?? -Infinity, lastRecordedMs ?? -Infinity)) };
}

/**
 * A due time waiting under QUEUE_ONE has not run either: a change that records the due times it
 * leaves behind counts it (and the due times coalesced into it) with them, on the latest.
 */
function withQueued(
  skipped: { scheduledMs: number; missed: number } | null,
  queued: { scheduledMs: number; missed: number } | null | undefined,
): { scheduledMs: number; missed: number } | null {
  if (!queued) return skipped;
  if (!skipped) return queued;
  return { scheduledMs: Math.max(skipped.scheduledMs, queued.scheduledMs), missed: skipped.missed + queued.missed + 1 };
}

/** True when a change leaves the schedule as it was (it renames, changes the call or the timeout). */
export function sameSchedule(a: Schedule, b: Schedule): boolean {
  // A new end alone keeps the due times before it (the claim stops at the end): nothing to account,
  // and a due time waiting under QUEUE_ONE still waits.
  const endOnly = a.rule.endMs !== b.rule.endMs && sameRule({ ...a.rule, endMs: null }, { ...b.rule, endMs: null });
  return a.enabled === b.enabled && (endOnly || (sameRule(a.rule, b.rule) && a.nextDueMs === b.nextDueMs));
}

/** The schedule's next due time, or its first due time after `recordedMs` when that is not later. */
export function nextDueAfter(schedule: Pick<Schedule, 'rule' | 'nextDueMs'>, recordedMs: number | null): number | null {
  if (recordedMs === null || schedule.nextDueMs === null || schedule.nextDueMs > recordedMs) return schedule.nextDueMs;
  return firstDueAfter(schedule.rule, recordedMs);
}

/** The WARNING that says which due times a change recorded without a run, naming the change. */
export function changeSkippedMessage(jobId: string, skipped: { missed: number }, change: string): string {
  const count = skipped.missed + 1;
  return count === 1
    ? `1 due time of job "${jobId}" was not run: ${change}`
    : `${count} due times of job "${jobId}" were not run: ${change}`;
}

/**
 * The WARNING of a claimed due time whose run could not be inserted: a run of the job's id for
 * that due time exists already (its key is taken). Not expected (see `accountChange`), never silent.
 */
export function clashLogEntry(planned: { jobId: string; scheduledAt: Date; missed: number }, nowMs: number): NewLogEntry {
  const due = planned.scheduledAt.toISOString();
  const coalesced =
    planned.missed > 0 ? ` (with ${planned.missed} earlier due time${planned.missed === 1 ? '' : 's'} coalesced into it)` : '';
  return {
    at: new Date(nowMs),
    level: 'WARNING',
    message: `Job "${planned.jobId}" already has a run for its due time ${due}; that due time${coalesced} was not run again`,
    jobId: planned.jobId,
    details: { scheduledAt: due, missed: planned.missed },
  };
}
