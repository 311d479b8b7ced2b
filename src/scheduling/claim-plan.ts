/**
 * What a claim does with one due job (SPEC §3 and §3b), decided by pure functions over the job's
 * row, how many of its runs are in progress and the clock: which runs it records (a due time run,
 * skipped, queued or coalesced; a waiting QUEUE_ONE due time or retry started) and where the
 * job's bookkeeping columns go. The claim transaction only writes what this says.
 */
import type { NewLogEntry } from '../db/log.ts';
import type { JobRow, RunRow } from '../db/rows.ts';
import { planClaim, ruleOf } from './schedule.ts';

/** A job as the claim sees it, locked: its row and how many of its runs are in progress. */
export interface ClaimJob extends JobRow {
  running: number;
}

export interface PlannedRun {
  jobId: string;
  trigger: 'SCHEDULE' | 'RETRY';
  scheduledAt: Date;
  missed: number;
  status: 'RUNNING' | 'SKIPPED';
  attempt: number;
  retryOf: string | null;
  /** Why a SKIPPED run did not run: its WARNING (and, for a closed connector, its error) says so. */
  skippedBecause: 'overlap' | 'misfire' | null;
  /** The error a SKIPPED run records (e.g. a connector's circuit is open); null otherwise. */
  error: string | null;
}

/** The job's columns as the claim leaves them. */
export interface JobAfterClaim {
  id: string;
  nextDueAt: Date | null;
  queuedDueAt: Date | null;
  queuedMissed: number;
  /** The waiting retry was started or dropped: its columns are cleared. */
  retryCleared: boolean;
  /** It was dropped: the attempt it would have followed is the due time's last, a final failure (SPEC §3b). */
  retryDropped: boolean;
}

export interface JobClaimPlan {
  job: ClaimJob;
  runs: PlannedRun[];
  after: JobAfterClaim;
  /** Entries about the job rather than one of its runs (a retry dropped). */
  entries: NewLogEntry[];
}

/**
 * Plans the claim of a locked job at `now`. Null when nothing is to be done (nothing due, nothing
 * waiting that can start). In order: a due time that has arrived drops a retry still waiting; a
 * waiting QUEUE_ONE due time (dropping a retry still waiting, of an earlier due time), then a
 * retry whose backoff has passed, start when the overlap policy lets a run start; the due times that have arrived coalesce into one (SPEC §3), skipped
 * whole under the misfire policy SKIP, run, queued (QUEUE_ONE) or skipped (SKIP) by the overlap
 * policy.
 */
export function planJobClaim(job: ClaimJob, nowMs: number): JobClaimPlan | null {
  const runs: PlannedRun[] = [];
  const entries: NewLogEntry[] = [];
  let started = 0;
  const canStart = () => job.overlap === 'ALLOW' || job.running + started === 0;
  const run = (fields: Partial<PlannedRun> & Pick<PlannedRun, 'scheduledAt' | 'status'>): PlannedRun => {
    if (fields.status === 'RUNNING') started++;
    return { jobId: job.id, trigger: 'SCHEDULE', missed: 0, attempt: 1, retryOf: null, skippedBecause: null, error: null, ...fields };
  };
  let queued = job.queuedDueAt ? { at: job.queuedDueAt, missed: job.queuedMissed } : null;
  let retryCleared = false;
  let retryDropped = false;
  const due =
    job.enabled && job.nextDueAt && job.nextDueAt.getTime() <= nowMs ? planClaim(ruleOf(job), job.nextDueAt.getTime(), nowMs) : null;

  if (job.retryAt && due) {
    // A retry never shifts the schedule: the next due time comes first, and the retry is dropped.
    entries.push(retryDroppedEntry(job, nowMs));
    retryCleared = retryDropped = true;
  }
  if (queued && canStart()) {
    runs.push(run({ scheduledAt: queued.at, missed: queued.missed, status: 'RUNNING' }));
    queued = null;
    // The waiting due time came during the failed run, so after the retry's: it runs first and
    // the retry is dropped (kept, it would be overwritten unlogged should this run fail too).
    if (job.retryAt && !retryCleared) {
      entries.push(retryDroppedEntry(job, nowMs));
      retryCleared = retryDropped = true;
    }
  }
  if (job.retryAt && !retryCleared && job.retryAt.getTime() <= nowMs && canStart()) {
    runs.push(
      run({ trigger: 'RETRY', scheduledAt: job.retryScheduledAt!, attempt: job.retryAttempt!, retryOf: job.retryOf, status: 'RUNNING' }),
    );
    retryCleared = true;
  }
  if (due) {
    const scheduledAt = new Date(due.scheduledMs);
    if (due.missed > 0 && job.misfire === 'SKIP')
      runs.push(run({ scheduledAt, missed: due.missed, status: 'SKIPPED', skippedBecause: 'misfire' }));
    else if (canStart()) runs.push(run({ scheduledAt, missed: due.missed, status: 'RUNNING' }));
    else if (job.overlap === 'QUEUE_ONE' && !queued) queued = { at: scheduledAt, missed: due.missed };
    else runs.push(run({ scheduledAt, missed: due.missed, status: 'SKIPPED', skippedBecause: 'overlap' }));
  }
  const changed = due || retryCleared || runs.length > 0 || (queued?.at ?? null) !== job.queuedDueAt;
  if (!changed) return null;
  return {
    job,
    runs,
    entries,
    after: {
      id: job.id,
      nextDueAt: due ? (due.nextDueMs === null ? null : new Date(due.nextDueMs)) : job.nextDueAt,
      queuedDueAt: queued?.at ?? null,
      queuedMissed: queued?.missed ?? 0,
      retryCleared,
      retryDropped,
    },
  };
}

function retryDroppedEntry(job: ClaimJob, nowMs: number): NewLogEntry {
  return {
    at: new Date(nowMs),
    level: 'WARNING',
    message: `Job "${job.id}" dropped its retry (attempt ${job.retryAttempt}) of the run due at ${job.retryScheduledAt!.toISOString()}: its next due time arrived first`,
    jobId: job.id,
    details: { retryOf: job.retryOf, attempt: job.retryAttempt, scheduledAt: job.retryScheduledAt!.toISOString() },
  };
}

/** The log entries a claimed run writes: a WARNING for a skipped due time and for coalesced misses. */
export function claimLogEntries(run: RunRow, planned: PlannedRun, nowMs: number): NewLogEntry[] {
  const at = new Date(nowMs);
  const entries: NewLogEntry[] = [];
  const due = run.scheduledAt.toISOString();
  const details = { scheduledAt: due, missed: run.missed };
  if (run.status === 'SKIPPED') {
    const why = planned.error ?? (planned.skippedBecause === 'misfire' ? 'misfire skipped' : 'the previous run is still in progress');
    entries.push({
      at,
      level: 'WARNING',
      message:
        planned.skippedBecause === 'misfire'
          ? `Job "${run.jobId}" skipped its run due at ${due} and ${run.missed} earlier due time${run.missed === 1 ? '' : 's'}: misfire skipped`
          : `Job "${run.jobId}" skipped its run due at ${due}: ${why}`,
      jobId: run.jobId,
      runId: run.id,
      details,
    });
  }
  if (run.missed > 0 && planned.skippedBecause !== 'misfire') {
    entries.push({
      at,
      level: 'WARNING',
      message: `Job "${run.jobId}" missed ${run.missed} due time${run.missed === 1 ? '' : 's'}; coalesced into the run due at ${due}`,
      jobId: run.jobId,
      runId: run.id,
      details,
    });
  }
  return entries;
}
