import type { NewLogEntry } from '../db/log.ts';
import type { RunRow } from '../db/rows.ts';
import type { DueJob, NewScheduledRun } from '../db/runs.ts';
import { planClaim } from './grid.ts';
import { claimStatus } from './outcome.ts';

/** What a claim at `now` records for a due job: its due time, the due times it coalesces, its next due time. */
export function planDueClaim(job: DueJob, now: number): NewScheduledRun {
  const plan = planClaim(job.nextDueAt.getTime(), job.periodSeconds * 1000, now)!;
  return {
    jobId: job.id,
    scheduledAt: new Date(plan.scheduledMs),
    missed: plan.missed,
    nextDueAt: new Date(plan.nextDueMs),
    status: claimStatus(job.busy),
  };
}

/** The log entries a claim writes: a WARNING for a skipped due time and for coalesced misses. */
export function claimLogEntries(run: RunRow, nowMs: number): NewLogEntry[] {
  const at = new Date(nowMs);
  const entries: NewLogEntry[] = [];
  const due = run.scheduledAt.toISOString();
  if (run.status === 'SKIPPED') {
    entries.push({
      at,
      level: 'WARNING',
      message: `Job "${run.jobId}" skipped its run due at ${due}: the previous run is still in progress`,
      jobId: run.jobId,
      runId: run.id,
      details: { scheduledAt: due, missed: run.missed },
    });
  }
  if (run.missed > 0) {
    entries.push({
      at,
      level: 'WARNING',
      message: `Job "${run.jobId}" missed ${run.missed} due time${run.missed === 1 ? '' : 's'}; coalesced into the run due at ${due}`,
      jobId: run.jobId,
      runId: run.id,
      details: { scheduledAt: due, missed: run.missed },
    });
  }
  return entries;
}
