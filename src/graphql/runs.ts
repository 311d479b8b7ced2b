import { pageRuns } from '../db/runs.ts';
import { builder } from './builder.ts';
import { RunStatusEnum, RunTriggerEnum } from './enums.ts';
import { connectionType, decodeCursor, pageSize, toPage } from './pagination.ts';
import { JobRef, JobRunRef } from './types.ts';
import type { Queryable } from '../db/client.ts';
import type { RunRow, RunStatus } from '../db/rows.ts';
import { validateJobId } from '../input.ts';

JobRunRef.implement({
  description: 'One planned call of one job.',
  fields: (t) => ({
    id: t.exposeID('id', { description: 'The database id; the runId a connector receives.' }),
    jobId: t.exposeID('jobId'),
    job: t.field({ type: JobRef, nullable: true, resolve: (run, _, ctx) => ctx.loaders.job.load(run.jobId) }),
    trigger: t.field({ type: RunTriggerEnum, resolve: (run) => run.trigger }),
    scheduledAt: t.field({ type: 'DateTime', description: 'The due time on the grid.', resolve: (run) => run.scheduledAt }),
    startedAt: t.field({ type: 'DateTime', nullable: true, resolve: (run) => run.startedAt }),
    finishedAt: t.field({ type: 'DateTime', nullable: true, resolve: (run) => run.finishedAt }),
    durationMs: t.int({
      nullable: true,
      resolve: (run) => (run.startedAt && run.finishedAt ? run.finishedAt.getTime() - run.startedAt.getTime() : null),
    }),
    status: t.field({ type: RunStatusEnum, resolve: (run) => run.status }),
    error: t.exposeString('error', { nullable: true }),
    instance: t.exposeString('instance', { nullable: true }),
    missed: t.exposeInt('missed', { description: 'How many due times were coalesced into this run.' }),
    attempt: t.exposeInt('attempt', { description: '1 for a first attempt; a RETRY run counts on.' }),
    retryOf: t.exposeID('retryOf', { nullable: true, description: "A retry's first attempt." }),
  }),
});

export const JobRunConnection = connectionType('JobRun', JobRunRef);

export async function runsPage(
  sql: Queryable,
  args: { jobId?: string | null; status?: RunStatus | null; first?: number | null; after?: string | null },
) {
  const size = pageSize(args.first);
  const rows = await pageRuns(sql, {
    jobId: args.jobId == null ? null : validateJobId(args.jobId, 'jobId'),
    status: args.status ?? null,
    first: size,
    after: decodeCursor(args.after),
  });
  return toRunsPage(rows, size);
}

/** Runs fetched with one extra, as a connection. */
export const toRunsPage = (rows: RunRow[], size: number) => toPage(rows, size, (run) => ({ at: run.scheduledAt, id: run.id }));

builder.queryField('runs', (t) =>
  t.field({
    type: JobRunConnection,
    description: 'Runs, newest first by due time.',
    args: {
      jobId: t.arg.id(),
      status: t.arg({ type: RunStatusEnum }),
      first: t.arg.int(),
      after: t.arg.string(),
    },
    resolve: (_, args, ctx) => runsPage(ctx.sql, args),
  }),
);

builder.mutationField('runJobNow', (t) =>
  t.field({
    type: JobRunRef,
    description: 'Starts a MANUAL run at once, also while the job is paused. CONFLICT while a run of the job is in progress.',
    args: { id: t.arg.id({ required: true }) },
    resolve: (_, args, ctx) => ctx.jobs.runNow(args.id, ctx.principal.name),
  }),
);

builder.mutationField('cancelRun', (t) =>
  t.field({
    type: JobRunRef,
    description: 'Aborts a run in progress on whichever instance holds it; it ends CANCELLED.',
    args: { id: t.arg.id({ required: true }) },
    resolve: (_, args, ctx) => ctx.jobs.cancelRun(args.id, ctx.principal.name),
  }),
);
