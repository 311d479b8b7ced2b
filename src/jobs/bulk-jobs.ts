/**
 * Pausing and resuming many jobs at once (SPEC §11: the dashboard's `Pause all` / `Resume all`
 * over its current filter; `pauseJobs` / `resumeJobs` for every client). All of a call in one
 * transaction: every id is validated first, the jobs are locked in id order, an id with no job
 * refuses the whole call (NOT_FOUND) before anything is written. Each job then goes through
 * job-writes.ts's `writeChange`, as pauseJob and resumeJob take it: the same due-time account,
 * audit entry (naming its actor) and events per job.
 */
import { lockJobs } from '../db/jobs.ts';
import type { JobRow } from '../db/rows.ts';
import { DomainError } from '../errors.ts';
import { validateJobId, validateNote } from '../input.ts';
import {
  type JobServiceDeps,
  PAUSED,
  type PlannedChange,
  publishChange,
  readDatabaseNow,
  resumeChanges,
  writeChange,
  type WrittenChange,
} from './job-writes.ts';

/** A pause, as pauseJob plans it: the note replaces any earlier one. */
export function planPause(job: JobRow, note: string | null, actor: string): PlannedChange {
  return {
    changes: { enabled: false, pausedNote: note },
    message: `Job "${job.id}" paused${note ? `: ${note}` : ''}`,
    details: { note, actor },
    change: PAUSED,
  };
}

/** A resume, as resumeJob plans it; nothing for a job that is not paused. */
export function planResume(job: JobRow, now: number, actor: string): PlannedChange | null {
  return job.enabled ? null : { changes: resumeChanges(job, {}, now), message: `Job "${job.id}" resumed`, details: { actor } };
}

/** Pauses the jobs of `ids` (each with `note`, which may be null) in one transaction; answers them by id. */
export function pauseJobs(deps: JobServiceDeps, ids: readonly string[], note: string | null | undefined, actor: string): Promise<JobRow[]> {
  const pausedNote = validateNote(note);
  return changeJobs(deps, ids, (job) => planPause(job, pausedNote, actor));
}

/** Resumes the jobs of `ids` in one transaction (those not paused stay as they are); answers them by id. */
export function resumeJobs(deps: JobServiceDeps, ids: readonly string[], actor: string): Promise<JobRow[]> {
  return changeJobs(deps, ids, (job, now) => planResume(job, now, actor));
}

async function changeJobs(
  deps: JobServiceDeps,
  rawIds: readonly string[],
  plan: (job: JobRow, now: number) => PlannedChange | null,
): Promise<JobRow[]> {
  const ids = [...new Set(rawIds.map((id) => validateJobId(id, 'ids')))];
  if (ids.length === 0) return [];
  const now = deps.clock.now();
  const written = await deps.sql.begin(async (tx) => {
    const rows = await lockJobs(tx, ids);
    if (rows.length < ids.length) {
      const found = new Set(rows.map((row) => row.id));
      const missing = ids.filter((id) => !found.has(id));
      const shown = missing
        .slice(0, 5)
        .map((id) => `"${id}"`)
        .join(', ');
      const message = `No job with id ${shown}${missing.length > 5 ? ` and ${missing.length - 5} more` : ''}: nothing was changed.`;
      throw new DomainError('NOT_FOUND', message, { ids: missing.slice(0, 100) });
    }
    // One reading of the database's clock for the whole call, taken with every row locked.
    let dbNow: Promise<number> | null = null;
    const readDbNow = () => (dbNow ??= readDatabaseNow(deps, tx));
    const changes: (WrittenChange | { job: JobRow; unchanged: true })[] = [];
    for (const row of rows) {
      const planned = plan(row, now);
      changes.push(planned ? await writeChange(tx, deps, row, planned, now, readDbNow) : { job: row, unchanged: true });
    }
    return changes;
  });
  for (const change of written) if (!('unchanged' in change)) publishChange(deps, change, now);
  return written.map((change) => change.job);
}
