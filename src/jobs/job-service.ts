import { LOCAL_PRINCIPAL } from '../auth/tokens.ts';
import { deleteJobRows, lockJob } from '../db/jobs.ts';
import { insertLogEntries, type NewLogEntry } from '../db/log.ts';
import type { JobRow, LogRow, RunRow } from '../db/rows.ts';
import { findRun, insertManualRun, requestCancel, runningCount } from '../db/runs.ts';
import { conflict, DomainError, notFound } from '../errors.ts';
import { validateJobId, validateNote, validateStartAt } from '../input.ts';
import { applyJobs, type ApplyJobsInput, type ApplyJobsResult } from './apply-jobs.ts';
import { pauseJobs, resumeJobs } from './bulk-jobs.ts';
import { type CreateJobInput, onlyChanged, updateDefinition, type UpdateJobInput } from './job-definition.ts';
import { describeChanges } from './job-entries.ts';
import {
  insertPlanned,
  type JobServiceDeps,
  PAUSED,
  planCreate,
  type PlannedChange,
  type PlannedJob,
  planUpdate,
  publishChange,
  publishCreated,
  publishDelete,
  readDatabaseNow,
  resumeChanges,
  taken,
  writeChange,
  writeDelete,
} from './job-writes.ts';
import { watchRunEnd } from './run-end-watch.ts';

export type { CreateJobInput, UpdateJobInput } from './job-definition.ts';
export { JOB_DELETED, type JobServiceDeps } from './job-writes.ts';

/**
 * Who asked for a change: a token's name, `local` with auth off. Every audit entry carries it as
 * `details.actor` (SPEC §8); callers other than the API (tests, tools) are `local`.
 */
const LOCAL = LOCAL_PRINCIPAL.name;

/**
 * Every change to jobs and runs that a person or program asks for. Each validates all input
 * before it writes anything, writes the change and its audit entry in one transaction, then
 * publishes its events (the scheduler and the connector registry react to those). The steps
 * inside the transaction are job-writes.ts's, shared with applyJobs.
 */
export class JobService {
  constructor(private readonly deps: JobServiceDeps) {}

  /** "Now" as every decision of the service takes it: its clock, the database's in production. */
  now(): number {
    return this.deps.clock.now();
  }

  async create(input: CreateJobInput, actor: string = LOCAL): Promise<JobRow> {
    const { created, refused } = await this.createMany([input], actor);
    if (refused) throw refused;
    return created[0]!;
  }

  /**
   * Creates jobs in the order given up to the first one refused (bad input, or an id taken, also
   * by an earlier job of the list), which is answered as `refused`: those after it are not
   * created, as when creating them one by one stops at the first error. All in one transaction,
   * one commit for all: many jobs cost a few round trips, not a few per job. Each created job has
   * its audit entry and its events, as from `create`.
   */
  async createMany(inputs: readonly CreateJobInput[], actor: string = LOCAL): Promise<{ created: JobRow[]; refused: DomainError | null }> {
    const now = this.deps.clock.now();
    const planned: PlannedJob[] = [];
    let refused: DomainError | null = null;
    const ids = new Set<string>();
    for (const input of inputs) {
      try {
        const plan = planCreate(input, now);
        if (ids.has(plan.job.id)) throw taken(plan.job.id);
        ids.add(plan.job.id);
        planned.push(plan);
      } catch (error) {
        if (!(error instanceof DomainError)) throw error;
        refused = error;
        break;
      }
    }
    if (planned.length === 0) return { created: [], refused };
    const { created, entries, takenAt } = await this.deps.sql.begin(async (tx) => {
      const inserted = await insertPlanned(tx, this.deps, planned, now, actor);
      // An id taken by a stored job refuses its job, and the jobs after it were not to be created:
      // their rows go again, uncommitted, so no one ever saw them.
      await deleteJobRows(tx, inserted.insertedAfter);
      return inserted;
    });
    publishCreated(this.deps, created, entries, now);
    return { created, refused: takenAt >= 0 ? taken(planned[takenAt]!.job.id) : refused };
  }

  async update(rawId: string, input: UpdateJobInput, actor: string = LOCAL): Promise<JobRow> {
    const startAtMs = input.startAt == null ? null : validateStartAt(input.startAt).getTime();
    return this.#change(rawId, (job, now) =>
      planUpdate(job, now, {
        changes: onlyChanged(job, updateDefinition(job, input)),
        enabled: input.enabled,
        startAtMs,
        details: { ...describeChanges(input), actor },
      }),
    );
  }

  pause(rawId: string, rawNote?: string | null, actor: string = LOCAL): Promise<JobRow> {
    const pausedNote = validateNote(rawNote);
    return this.#change(rawId, (job) => ({
      changes: { enabled: false, pausedNote },
      message: `Job "${job.id}" paused${pausedNote ? `: ${pausedNote}` : ''}`,
      details: { note: pausedNote, actor },
      change: PAUSED,
    }));
  }

  /**
   * Pauses a job whose consecutive failures reached its `autoPauseAfterFailures` (SPEC §3b): a
   * WARNING entry, a JOB_UPDATED event. A job paused or deleted meanwhile is left as it is.
   */
  async autoPause(id: string, note: string): Promise<void> {
    await this.#change(id, (job) =>
      // Checked again under the row lock: a resume (which resets the count) meanwhile wins.
      job.enabled && job.autoPauseAfterFailures !== null && job.consecutiveFailures >= job.autoPauseAfterFailures
        ? {
            changes: { enabled: false, pausedNote: note },
            message: `Job "${job.id}" ${note}`,
            details: { note, actor: 'auto-pause' },
            change: PAUSED,
            level: 'WARNING' as const,
          }
        : null,
    ).catch((error: unknown) => {
      if (!(error instanceof DomainError && error.code === 'NOT_FOUND')) throw error;
    });
  }

  resume(rawId: string, actor: string = LOCAL): Promise<JobRow> {
    return this.#change(rawId, (job, now) =>
      job.enabled ? null : { changes: resumeChanges(job, {}, now), message: `Job "${job.id}" resumed`, details: { actor } },
    );
  }

  async delete(rawId: string, actor: string = LOCAL): Promise<string> {
    const id = validateJobId(rawId);
    const now = this.deps.clock.now();
    const written = await this.deps.sql.begin(async (tx) => {
      const job = await lockJob(tx, id);
      if (!job) throw notFound(`No job with id "${id}".`);
      return writeDelete(tx, this.deps, job, now, await readDatabaseNow(this.deps, tx), actor);
    });
    publishDelete(this.deps, written, now);
    return id;
  }

  /**
   * Makes the stored jobs match a list, in one transaction (SPEC §3b, apply-jobs.ts): creates,
   * updates and (with `prune`) deletes through the same steps as create, update and delete.
   */
  apply(input: ApplyJobsInput, actor: string = LOCAL): Promise<ApplyJobsResult> {
    return applyJobs(this.deps, input, actor);
  }

  /** Pauses many jobs in one transaction, each as `pause` would (bulk-jobs.ts); NOT_FOUND for an unknown id, nothing changed. */
  pauseMany(ids: readonly string[], note?: string | null, actor: string = LOCAL): Promise<JobRow[]> {
    return pauseJobs(this.deps, ids, note, actor);
  }

  /** Resumes many jobs in one transaction, each as `resume` would (bulk-jobs.ts); NOT_FOUND for an unknown id, nothing changed. */
  resumeMany(ids: readonly string[], actor: string = LOCAL): Promise<JobRow[]> {
    return resumeJobs(this.deps, ids, actor);
  }

  /** Starts a MANUAL run at once, also while the job is paused; CONFLICT while one is in progress. */
  async runNow(rawId: string, actor: string = LOCAL): Promise<RunRow> {
    const id = validateJobId(rawId);
    const { scheduler } = this.deps;
    const now = new Date(this.deps.clock.now());
    // Tracked by the scheduler: if the reply is lost after the commit, it ends the run rather than leave it unlaunched.
    const { job, run, entries } = await scheduler.claiming(
      this.deps.sql.begin(async (tx) => {
        // The job row lock orders this against a concurrent claim of the same job.
        const locked = await lockJob(tx, id);
        if (!locked) throw notFound(`No job with id "${id}".`);
        // Under SKIP and QUEUE_ONE one run at a time (SPEC §3b); ALLOW lets a manual run start beside others.
        if (locked.overlap !== 'ALLOW' && (await runningCount(tx, id)) > 0) throw conflict(`A run of job "${id}" is already in progress.`);
        // Its connector's breaker and limit of calls (SPEC §3b): while the circuit is open, the run is recorded SKIPPED.
        const skipped = (await scheduler.gate.admitManual?.(tx, locked, now)) ?? null;
        const inserted = await insertManualRun(tx, { jobId: id, now, holder: scheduler.holder, leaseMs: scheduler.leaseMs, skipped });
        // The run's id goes in details: entries with a runId are what happened in the run itself.
        const audit: NewLogEntry = skipped
          ? {
              at: now,
              level: 'WARNING',
              message: `Job "${id}" skipped its manual run ${inserted.id}: ${skipped}`,
              jobId: id,
              runId: inserted.id,
              details: { runId: inserted.id, actor },
            }
          : {
              at: now,
              level: 'INFO',
              message: `Job "${id}" run ${inserted.id} started by request`,
              jobId: id,
              details: { runId: inserted.id, actor },
            };
        return { job: locked, run: inserted, entries: await insertLogEntries(tx, [audit]) };
      }),
    );
    if (run.status === 'RUNNING') void scheduler.launch(run, job);
    else this.deps.bus.publish('run:skipped', { at: now, run });
    for (const entry of entries) this.deps.bus.publish('log:added', { entry });
    return run;
  }

  /**
   * Cancels a run in progress on whichever instance holds it, and answers its final row: at once
   * when this instance holds it; otherwise once the holder has ended it, waiting at most one
   * lease (after that, the row as it stands).
   */
  async cancelRun(runId: string, actor: string = LOCAL): Promise<RunRow> {
    const run = await findRun(this.deps.sql, runId);
    if (!run) throw notFound(`No run with id "${runId}".`);
    if (run.status !== 'RUNNING') throw conflict(`Run ${runId} is not in progress (it is ${run.status}).`);
    const local = this.deps.scheduler.cancelLocal(run.id);
    if (local) {
      const ended = (await local) ?? (await findRun(this.deps.sql, run.id)) ?? run;
      await this.#auditCancel(run, actor);
      return ended;
    }
    // Held by another instance. Watch for its end before asking, so that an end arriving at once is not missed.
    const end = watchRunEnd(this.deps, run.id);
    try {
      const now = new Date(this.deps.clock.now());
      const requested = await requestCancel(this.deps.sql, run.id, now);
      if (!requested) throw conflict(`Run ${runId} is not in progress.`);
      await this.#auditCancel(run, actor);
      // The holder aborts at once on this event, or at its next lease renewal if it missed it.
      this.deps.bus.publish('run:cancel-requested', { at: now, runId: run.id });
      return await end.wait(requested, this.deps.scheduler.leaseMs);
    } finally {
      end.stop();
    }
  }

  /** The audit entry of a cancel that took effect (SPEC §8: it names its actor). */
  async #auditCancel(run: RunRow, actor: string): Promise<void> {
    const at = new Date(this.deps.clock.now());
    const message = `Job "${run.jobId}" run ${run.id} cancelled by request`;
    const entries = await insertLogEntries(this.deps.sql, [
      { at, level: 'INFO', message, jobId: run.jobId, details: { runId: run.id, actor } },
    ]);
    for (const entry of entries) this.deps.bus.publish('log:added', { entry });
  }

  /** Applies a planned change of one job under its row lock, in a transaction of its own. */
  async #change(rawId: string, plan: (job: JobRow, now: number) => PlannedChange | null): Promise<JobRow> {
    const id = validateJobId(rawId);
    const now = this.deps.clock.now();
    const written = await this.deps.sql.begin(async (tx) => {
      const job = await lockJob(tx, id);
      if (!job) throw notFound(`No job with id "${id}".`);
      const planned = plan(job, now);
      if (!planned) return { job, skipped: null, entries: [] as LogRow[] };
      return writeChange(tx, this.deps, job, planned, now, () => readDatabaseNow(this.deps, tx));
    });
    publishChange(this.deps, written, now);
    return written.job;
  }
}
