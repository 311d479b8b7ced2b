/**
 * Declarative job sets (SPEC §3b, `applyJobs`): the stored jobs are made to match a list, in one
 * transaction. What to do is decided by pure functions over the validated list and the locked
 * rows (`desiredJobs`, `diffJob`, `planApply`), so a dry run answers exactly the diff a real run
 * would make; the writes are job-writes.ts's steps, the same as createJob, updateJob and
 * deleteJob take, so every grid rule, audit entry, due-time account and event is theirs.
 */
import { lockJobs } from '../db/jobs.ts';
import type { JobRow, LogRow } from '../db/rows.ts';
import { badInput, DomainError } from '../errors.ts';
import { createDefinition, type CreateJobInput, type Definition, onlyChanged } from './job-definition.ts';
import { describeChanges } from './job-entries.ts';
import {
  insertPlanned,
  type JobServiceDeps,
  planNewJob,
  planUpdate,
  publishChange,
  publishCreated,
  publishDelete,
  readDatabaseNow,
  taken,
  writeChange,
  writeDelete,
  type WrittenChange,
  type WrittenDelete,
} from './job-writes.ts';

export interface ApplyJobsInput {
  jobs: readonly CreateJobInput[];
  prune?: boolean | null;
  dryRun?: boolean | null;
}

/** A stored job the list changes, and the input fields whose stored value changes. */
export interface JobChange {
  id: string;
  fields: JobField[];
}

export interface ApplyJobsResult {
  created: string[];
  updated: JobChange[];
  deleted: string[];
  unchanged: string[];
}

/** A job's input fields, in the order the API lists them: what a JobChange names. */
export const JOB_FIELDS = [
  'name',
  'externalCall',
  'period',
  'cron',
  'timeZone',
  'enabled',
  'startAt',
  'endAt',
  'timeoutSeconds',
  'overlap',
  'misfire',
  'retry',
  'autoPauseAfterFailures',
] as const;
export type JobField = (typeof JOB_FIELDS)[number];

/** The input field each stored column of a definition comes from. */
const FIELD_OF: Record<keyof Definition, JobField> = {
  name: 'name',
  connectorId: 'externalCall',
  method: 'externalCall',
  periodSeconds: 'period',
  cron: 'cron',
  timeZone: 'timeZone',
  endAt: 'endAt',
  timeoutSeconds: 'timeoutSeconds',
  overlap: 'overlap',
  misfire: 'misfire',
  retryMaxAttempts: 'retry',
  retryBackoffSeconds: 'retry',
  retryBackoffFactor: 'retry',
  retryMaxBackoffSeconds: 'retry',
  autoPauseAfterFailures: 'autoPauseAfterFailures',
};

/** One job of the list, validated: what createJob would store for it, every field left out at its default. */
export interface DesiredJob {
  input: CreateJobInput;
  id: string;
  enabled: boolean;
  startAt: Date | null;
  definition: Definition;
}

/**
 * Validates every job of the list before anything is read or written. A refusal names the job
 * by its place in the list (0-based) before the field: `jobs.3.period`; an id given twice is
 * refused at its second place.
 */
export function desiredJobs(inputs: readonly CreateJobInput[]): DesiredJob[] {
  const seen = new Set<string>();
  return inputs.map((input, index) => {
    try {
      const { id, enabled, startAt, definition } = createDefinition(input);
      if (seen.has(id)) throw badInput('id', `Job id "${id}" is in the list more than once.`);
      seen.add(id);
      return { input, id, enabled, startAt, definition };
    } catch (error) {
      if (error instanceof DomainError && error.code === 'BAD_USER_INPUT')
        throw badInput(`jobs.${index}.${String(error.extensions['field'])}`, `jobs[${index}]: ${error.message}`);
      throw error;
    }
  });
}

export interface JobDiff {
  /** The input fields whose stored value changes, in JOB_FIELDS order; empty: unchanged. */
  fields: JobField[];
  /** The definition's columns that change. */
  changes: Partial<Definition>;
  /** The start the grid takes, when it moves (as updateJob's `startAt`); null: now, or it stays. */
  startAtMs: number | null;
}

/**
 * What applying `desired` to the stored job changes. A field left out takes its createJob
 * default (`enabled` true, no `endAt`, ...), except `startAt`: the row keeps only the anchor it
 * led to, so a left-out start, or the anchor the row has already, changes nothing (and applying
 * the same list again moves no due time). A start that differs moves the grid, as updateJob's.
 */
export function diffJob(row: JobRow, desired: DesiredJob): JobDiff {
  const changes = onlyChanged(row, desired.definition) as Partial<Definition>;
  const fields = new Set<JobField>(Object.keys(changes).map((key) => FIELD_OF[key as keyof Definition]));
  if (row.enabled !== desired.enabled) fields.add('enabled');
  const startMs = desired.startAt?.getTime() ?? null;
  if (startMs !== null && startMs !== row.anchorAt.getTime()) fields.add('startAt');
  // A new schedule starts on the list's start when it gives one, as a created job would.
  const moved = fields.has('period') || fields.has('cron') || fields.has('timeZone');
  return { fields: JOB_FIELDS.filter((field) => fields.has(field)), changes, startAtMs: fields.has('startAt') || moved ? startMs : null };
}

export interface ApplyPlan {
  create: DesiredJob[];
  update: { row: JobRow; desired: DesiredJob; diff: JobDiff }[];
  /** With `prune`: the stored jobs the list does not name, by id. */
  delete: JobRow[];
  unchanged: string[];
}

/** The diff of the list against the stored jobs (`stored`: at least those the list names; every job with `prune`). */
export function planApply(desired: readonly DesiredJob[], stored: ReadonlyMap<string, JobRow>, prune: boolean): ApplyPlan {
  const plan: ApplyPlan = { create: [], update: [], delete: [], unchanged: [] };
  for (const job of desired) {
    const row = stored.get(job.id);
    if (!row) {
      plan.create.push(job);
      continue;
    }
    const diff = diffJob(row, job);
    if (diff.fields.length === 0) plan.unchanged.push(job.id);
    else plan.update.push({ row, desired: job, diff });
  }
  if (prune) {
    const named = new Set(desired.map((job) => job.id));
    plan.delete = [...stored.values()].filter((row) => !named.has(row.id)).sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
  }
  return plan;
}

export const resultOf = (plan: ApplyPlan): ApplyJobsResult => ({
  created: plan.create.map((job) => job.id),
  updated: plan.update.map(({ desired, diff }) => ({ id: desired.id, fields: diff.fields })),
  deleted: plan.delete.map((row) => row.id),
  unchanged: plan.unchanged,
});

/** An update's audit details: the fields that change, with the value the list gives (or null: the default). */
function updateDetails(desired: DesiredJob, fields: readonly JobField[], actor: string): Record<string, unknown> {
  const given = desired.input as unknown as Record<string, unknown>;
  const values = Object.fromEntries(fields.map((field) => [field, field === 'enabled' ? desired.enabled : (given[field] ?? null)]));
  return { ...describeChanges(values), actor, via: 'applyJobs' };
}

/**
 * Makes the stored jobs match `input.jobs` in one transaction: the named jobs (every job with
 * `prune`) are locked, the diff is planned, then written: deletes, updates, creates. Events go
 * out after the commit. A dry run plans the same diff under the same locks and writes nothing.
 */
export async function applyJobs(deps: JobServiceDeps, input: ApplyJobsInput, actor: string): Promise<ApplyJobsResult> {
  const desired = desiredJobs(input.jobs);
  const prune = input.prune === true;
  const now = deps.clock.now();
  const outcome = await deps.sql.begin(async (tx) => {
    const rows = await lockJobs(tx, prune ? null : desired.map((job) => job.id));
    const plan = planApply(desired, new Map(rows.map((row) => [row.id, row])), prune);
    if (input.dryRun === true) return { plan, written: null };
    // One reading of the database's clock for the whole set, taken with every row locked.
    let dbNow: Promise<number> | null = null;
    const readDbNow = () => (dbNow ??= readDatabaseNow(deps, tx));
    const deleted: WrittenDelete[] = [];
    for (const row of plan.delete) deleted.push(await writeDelete(tx, deps, row, now, await readDbNow(), actor));
    const updated: WrittenChange[] = [];
    for (const { row, desired: job, diff } of plan.update) {
      const planned = planUpdate(row, now, {
        changes: diff.changes,
        enabled: job.enabled,
        startAtMs: diff.startAtMs,
        details: updateDetails(job, diff.fields, actor),
      });
      updated.push(await writeChange(tx, deps, row, planned, now, readDbNow));
    }
    const created = plan.create.map((job) => planNewJob(job.id, job.enabled, job.startAt, job.definition, now));
    const inserted = await insertPlanned(tx, deps, created, now, actor);
    // A job created meanwhile with one of the new ids (not there when the rows were locked): the whole set goes back.
    if (inserted.takenAt >= 0) throw taken(created[inserted.takenAt]!.job.id);
    return { plan, written: { deleted, updated, created: inserted.created, entries: inserted.entries as LogRow[] } };
  });
  const { plan, written } = outcome;
  if (written) {
    for (const one of written.deleted) publishDelete(deps, one, now);
    for (const one of written.updated) publishChange(deps, one, now);
    publishCreated(deps, written.created, written.entries, now);
  }
  return resultOf(plan);
}
