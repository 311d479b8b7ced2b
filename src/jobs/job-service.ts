import { LOCAL_PRINCIPAL } from '../auth/tokens.ts';
import type { Clock } from '../clock.ts';
import type { ConnectorRegistry } from '../connectors/types.ts';
import type { Queryable, Sql } from '../db/client.ts';
import { databaseNow, deleteJobRow, deleteJobRows, insertJobs, type JobChanges, lockJob, type NewJob, updateJobRow } from '../db/jobs.ts';
import { insertLogEntries, type NewLogEntry } from '../db/log.ts';
import type { JobRow, LogRow, RunRow } from '../db/rows.ts';
import { cancelRunsOfJob, findRun, insertManualRun, lastScheduledAt, lastScheduledAtOf, requestCancel, runningCount } from '../db/runs.ts';
import { conflict, DomainError, notFound } from '../errors.ts';
import type { EventBus } from '../events/bus.ts';
import { formatExternalCall } from '../scheduling/external-call.ts';
import { accountChange, nextDueAfter, sameSchedule } from '../scheduling/changes.ts';
import { endLogEntry } from '../scheduling/outcome.ts';
import { formatPeriod } from '../scheduling/period.ts';
import { firstDueAfter, initialDue, ruleOf } from '../scheduling/schedule.ts';
import { createDefinition, type CreateJobInput, type Definition, updateDefinition, type UpdateJobInput } from './job-definition.ts';
import type { Scheduler } from '../scheduling/scheduler.ts';
import { auditEntry, describeChanges, recordChangeSkipped, scheduleOf, targetWarnings } from './job-entries.ts';
import { watchRunEnd } from './run-end-watch.ts';
import { validateJobId, validateNote, validateStartAt } from '../input.ts';

/** The error of a run ended because its job was deleted. */
export const JOB_DELETED = 'job deleted';

export type { CreateJobInput, UpdateJobInput } from './job-definition.ts';

export interface JobServiceDeps {
  sql: Sql;
  clock: Clock;
  bus: EventBus;
  registry: ConnectorRegistry;
  scheduler: Scheduler;
  /**
   * The database's clock, read in a change's transaction once the job row is locked: it decides
   * which due times are already due when the change commits (SPEC §3). Defaults to the
   * database's clock_timestamp(); tests that drive the scheduler with a controlled clock far
   * from the database's time may pass one that reads their clock.
   */
  databaseNow?: (tx: Queryable) => Promise<number>;
}

/**
 * Who asked for a change: a token's name, `local` with auth off. Every audit entry carries it as
 * `details.actor` (SPEC §8); callers other than the API (tests, tools) are `local`.
 */
const LOCAL = LOCAL_PRINCIPAL.name;

const taken = (id: string) => conflict(`A job with id "${id}" already exists.`);

/** The pending-retry columns of a job with none waiting. */
const NO_RETRY = { retryAt: null, retryAttempt: null, retryOf: null, retryScheduledAt: null } as const;

/** The fields of `changes` whose value differs from the row's: resending a value is no change. */
function onlyChanged(job: JobRow, changes: Partial<Definition>): JobChanges {
  const same = (a: unknown, b: unknown) => (a instanceof Date && b instanceof Date ? a.getTime() === b.getTime() : a === b);
  return Object.fromEntries(Object.entries(changes).filter(([key, value]) => !same(value, job[key as keyof JobRow])));
}

/** What a change does, for the WARNING about the due times it leaves behind. */
const PAUSED = 'the job was paused';
const DELETED = 'the job was deleted';

/**
 * Every change to jobs and runs that a person or program asks for. Each validates all input
 * before it writes anything, writes the change and its audit entry in one transaction, then
 * publishes its events (the scheduler and the connector registry react to those).
 */
export class JobService {
  constructor(private readonly deps: JobServiceDeps) {}

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
    const planned: { job: Omit<NewJob, 'nextDueAt'>; nextDueMs: number | null }[] = [];
    let refused: DomainError | null = null;
    const ids = new Set<string>();
    for (const input of inputs) {
      try {
        const plan = this.#planCreate(input, now);
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
    const { created, entries, takenId } = await this.deps.sql.begin(async (tx) => {
      // Runs of a deleted job with one of these ids stay: its new grid starts after their due
      // times, so no claim of it clashes with their (job, due time) key.
      const recorded = await lastScheduledAtOf(tx, [...ids]);
      const jobs = planned.map(({ job, nextDueMs }) => {
        const next = nextDueAfter({ rule: ruleOf(job), nextDueMs }, recorded.get(job.id) ?? null);
        return { ...job, nextDueAt: next === null ? null : new Date(next) };
      });
      const rows = new Map((await insertJobs(tx, jobs)).map((row) => [row.id, row]));
      // An id taken by a stored job refuses its job, and the jobs after it were not to be created:
      // their rows go again, uncommitted, so no one ever saw them.
      const takenAt = jobs.findIndex((job) => !rows.has(job.id));
      if (takenAt >= 0)
        await deleteJobRows(
          tx,
          jobs.slice(takenAt + 1).map((job) => job.id),
        );
      const created = (takenAt >= 0 ? jobs.slice(0, takenAt) : jobs).map((job) => rows.get(job.id)!);
      const written = created.flatMap((row) => [
        auditEntry(row, now, `Job "${row.id}" created`, {
          externalCall: formatExternalCall(row),
          ...(row.periodSeconds !== null ? { period: formatPeriod(row.periodSeconds) } : { cron: row.cron, timeZone: row.timeZone }),
          enabled: row.enabled,
          actor,
        }),
        ...targetWarnings(row, this.deps.registry.get(row.connectorId), now),
      ]);
      return { created, entries: await insertLogEntries(tx, written), takenId: takenAt >= 0 ? jobs[takenAt]!.id : null };
    });
    const entriesOf = new Map<string, LogRow[]>(created.map((job) => [job.id, []]));
    for (const entry of entries) entriesOf.get(entry.jobId!)!.push(entry);
    for (const job of created) this.#announce('job:created', job, now, entriesOf.get(job.id)!);
    return { created, refused: takenId === null ? refused : taken(takenId) };
  }

  /** A new job's row from its input (validated, all of it, before anything is written), and its first due time. */
  #planCreate(input: CreateJobInput, now: number): { job: Omit<NewJob, 'nextDueAt'>; nextDueMs: number | null } {
    const { id, enabled, startAt, definition } = createDefinition(input);
    const { anchorMs, nextDueMs } = initialDue(ruleOf({ ...definition, anchorAt: new Date(now) }), now, startAt?.getTime() ?? null);
    return { job: { id, ...definition, enabled, anchorAt: new Date(anchorMs), now: new Date(now) }, nextDueMs };
  }

  async update(rawId: string, input: UpdateJobInput, actor: string = LOCAL): Promise<JobRow> {
    const startAt = input.startAt == null ? null : validateStartAt(input.startAt).getTime();
    return this.#change(rawId, (job, now) => {
      const changes: JobChanges = onlyChanged(job, updateDefinition(job, input));
      const rule = ruleOf({ ...job, ...changes });
      // The grid moves when the schedule itself or the start changes; name, call and policies keep it.
      const moved = ['periodSeconds', 'cron', 'timeZone'].filter((key) => key in changes);
      if (moved.length > 0 || startAt !== null) {
        const { anchorMs, nextDueMs } = initialDue(rule, now, startAt);
        changes.anchorAt = new Date(anchorMs);
        changes.nextDueAt = nextDueMs === null ? null : new Date(nextDueMs);
      } else if ('endAt' in changes) {
        // A new end keeps the grid: the next due time stays while it lies within it; a job that
        // had ended goes on from now when the end moves later.
        const kept = job.nextDueAt && (rule.endMs === null || job.nextDueAt.getTime() <= rule.endMs) ? job.nextDueAt : null;
        const next = job.nextDueAt === null ? firstDueAfter({ ...rule, anchorMs: job.anchorAt.getTime() }, now) : null;
        changes.nextDueAt = kept ?? (next === null ? null : new Date(next));
      }
      if (input.enabled === false && job.enabled) changes.enabled = false;
      if (input.enabled === true && !job.enabled) Object.assign(changes, this.#resumeChanges(job, changes, now));
      const change = [
        changes.enabled === false ? PAUSED : null,
        'periodSeconds' in changes ? "the job's period changed" : null,
        'cron' in changes || 'timeZone' in changes ? "the job's cron schedule changed" : null,
        startAt !== null ? "the job's start time changed" : null,
        'endAt' in changes ? "the job's end time changed" : null,
      ].filter((c) => c !== null);
      return { changes, message: `Job "${job.id}" updated`, details: { ...describeChanges(input), actor }, change: change.join(' and ') };
    });
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
      job.enabled
        ? { changes: { enabled: false, pausedNote: note }, message: `Job "${job.id}" ${note}`, details: { note, actor: 'auto-pause' }, change: PAUSED, level: 'WARNING' as const }
        : null,
    ).catch((error: unknown) => {
      if (!(error instanceof DomainError && error.code === 'NOT_FOUND')) throw error;
    });
  }

  resume(rawId: string, actor: string = LOCAL): Promise<JobRow> {
    return this.#change(rawId, (job, now) =>
      job.enabled ? null : { changes: this.#resumeChanges(job, {}, now), message: `Job "${job.id}" resumed`, details: { actor } },
    );
  }

  async delete(rawId: string, actor: string = LOCAL): Promise<string> {
    const id = validateJobId(rawId);
    const now = new Date(this.deps.clock.now());
    const { cancelled, skipped, entries } = await this.deps.sql.begin(async (tx) => {
      const job = await lockJob(tx, id);
      if (!job) throw notFound(`No job with id "${id}".`);
      // Its due times already due and not claimed are recorded before it goes.
      const account = accountChange(scheduleOf(job), null, await this.#databaseNow(tx));
      const skipped =
        account.skipped &&
        (await recordChangeSkipped(tx, {
          jobId: job.id,
          skipped: account.skipped,
          change: DELETED,
          now: now.getTime(),
          instance: this.#instance,
        }));
      await deleteJobRow(tx, id);
      // Its run in flight ends with it, in this transaction: the holder's later writes are refused
      // by the lease fence, and a job re-created with this id does not inherit a running run.
      const cancelled = await cancelRunsOfJob(tx, { jobId: id, now, error: JOB_DELETED });
      const externalCall = formatExternalCall(job);
      const runEntries = cancelled.map((run): NewLogEntry => {
        const entry = endLogEntry({ jobId: id, runId: run.id, externalCall }, { status: 'CANCELLED', error: JOB_DELETED })!;
        return { at: now, jobId: id, runId: run.id, ...entry };
      });
      const audit: NewLogEntry = { at: now, level: 'INFO', message: `Job "${id}" deleted`, jobId: id, details: { actor } };
      const skippedEntries = skipped ? [skipped.entry] : [];
      return { cancelled, skipped: skipped?.run ?? null, entries: await insertLogEntries(tx, [audit, ...skippedEntries, ...runEntries]) };
    });
    if (skipped) this.deps.bus.publish('run:skipped', { at: now, run: skipped });
    for (const run of cancelled) {
      this.deps.bus.publish('run:finished', { at: now, run });
      this.#abortCall(run.id, now);
    }
    this.deps.bus.publish('job:deleted', { at: now, jobId: id });
    for (const entry of entries) this.deps.bus.publish('log:added', { entry });
    return id;
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
        const inserted = await insertManualRun(tx, { jobId: id, now, holder: scheduler.holder, leaseMs: scheduler.leaseMs });
        // The run's id goes in details: entries with a runId are what happened in the run itself.
        const audit: NewLogEntry = {
          at: now,
          level: 'INFO',
          message: `Job "${id}" run ${inserted.id} started by request`,
          jobId: id,
          details: { runId: inserted.id, actor },
        };
        return { job: locked, run: inserted, entries: await insertLogEntries(tx, [audit]) };
      }),
    );
    void scheduler.launch(run, job);
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

  /** Aborts a run's call wherever it runs: here directly, elsewhere through a cancel request. */
  #abortCall(runId: string, now: Date): void {
    // Its end is refused (the run is no longer RUNNING); the holder only stops calling.
    if (this.deps.scheduler.cancelLocal(runId)) return;
    // An instance that misses this event notices at its next lease renewal, which no longer finds the run.
    this.deps.bus.publish('run:cancel-requested', { at: now, runId });
  }

  #resumeChanges(job: JobRow, changes: JobChanges, now: number): JobChanges {
    // Due times while paused are not due; the grid stays, and the next due time is the first after now.
    const next = firstDueAfter(ruleOf({ ...job, ...changes }), now);
    const nextDueAt = changes.nextDueAt !== undefined ? changes.nextDueAt : next === null ? null : new Date(next);
    // A resume starts the count of failures afresh (SPEC §3b).
    return { enabled: true, pausedNote: null, nextDueAt, consecutiveFailures: 0 };
  }

  /**
   * Applies a planned change under the job row lock. A change away from the job's enabled
   * schedule (a pause, a new period or start) records, in its own transaction, the due times
   * already due by the database's clock and not yet claimed (SPEC §3: a change never loses a
   * due time), and keeps the next due time after every due time recorded for the job.
   */
  async #change(
    rawId: string,
    plan: (
      job: JobRow,
      now: number,
    ) => { changes: JobChanges; message: string; details: Record<string, unknown>; change?: string; level?: 'WARNING' } | null,
  ): Promise<JobRow> {
    const id = validateJobId(rawId);
    const now = this.deps.clock.now();
    const result = await this.deps.sql.begin(async (tx) => {
      const job = await lockJob(tx, id);
      if (!job) throw notFound(`No job with id "${id}".`);
      const planned = plan(job, now);
      if (!planned) return { job, skipped: null, entries: [] as LogRow[] };
      const changes = { ...planned.changes };
      const before = scheduleOf(job);
      const after = scheduleOf({ ...job, ...changes });
      let skipped: { run: RunRow | null; entry: NewLogEntry } | null = null;
      if (!sameSchedule(before, after)) {
        const account = accountChange(before, after, await this.#databaseNow(tx), await lastScheduledAt(tx, id));
        if (account.nextDueMs !== after.nextDueMs) changes.nextDueAt = account.nextDueMs === null ? null : new Date(account.nextDueMs);
        // A due time waiting under QUEUE_ONE is accounted with the others (in `account.skipped`).
        Object.assign(changes, { queuedDueAt: null, queuedMissed: 0 });
        // A retry waiting for its backoff does not outlive a pause.
        if (changes.enabled === false) Object.assign(changes, NO_RETRY);
        if (account.skipped)
          skipped = await recordChangeSkipped(tx, {
            jobId: id,
            skipped: account.skipped,
            change: planned.change ?? 'the job changed',
            now,
            instance: this.#instance,
          });
      }
      const updated = (await updateJobRow(tx, id, changes, new Date(now)))!;
      const audit: NewLogEntry = { ...auditEntry(updated, now, planned.message, planned.details), level: planned.level ?? 'INFO' };
      const warnings =
        changes.connectorId || changes.method ? targetWarnings(updated, this.deps.registry.get(updated.connectorId), now) : [];
      const entries = await insertLogEntries(tx, [audit, ...(skipped ? [skipped.entry] : []), ...warnings]);
      return { job: updated, skipped: skipped?.run ?? null, entries };
    });
    if (result.skipped) this.deps.bus.publish('run:skipped', { at: new Date(now), run: result.skipped });
    if (result.entries.length > 0) this.#announce('job:updated', result.job, now, result.entries);
    return result.job;
  }

  get #instance(): string {
    return this.deps.scheduler.holder.instance;
  }

  #databaseNow(tx: Queryable): Promise<number> {
    return (this.deps.databaseNow ?? databaseNow)(tx);
  }

  #announce(topic: 'job:created' | 'job:updated', job: JobRow, now: number, entries: LogRow[]): void {
    this.deps.bus.publish(topic, { at: new Date(now), job });
    for (const entry of entries) this.deps.bus.publish('log:added', { entry });
  }
}
