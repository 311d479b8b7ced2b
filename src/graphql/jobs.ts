import { findJob, listJobs } from '../db/jobs.ts';
import { formatExternalCall } from '../scheduling/external-call.ts';
import { formatPeriod } from '../scheduling/period.ts';
import { defaultTimeoutMs, ruleOf } from '../scheduling/schedule.ts';
import { validateJobId } from '../input.ts';
import { builder } from './builder.ts';
import { createJobField } from './create-batch.ts';
import { lastRunFor, withLastRuns } from './loaders.ts';
import { decodeCursor, pageSize } from './pagination.ts';
import { JobRunConnection, toRunsPage } from './runs.ts';
import { JobRef, JobRunRef } from './types.ts';

JobRef.implement({
  description: 'A server job: calls `externalCall` once every `period`.',
  fields: (t) => ({
    id: t.exposeID('id'),
    name: t.exposeString('name'),
    externalCall: t.string({ description: 'ConnectorId:MethodName', resolve: (job) => formatExternalCall(job) }),
    connectorId: t.exposeString('connectorId'),
    method: t.exposeString('method'),
    period: t.string({
      nullable: true,
      description: 'Normalised H:MM:SS; null on a cron job.',
      resolve: (job) => (job.periodSeconds === null ? null : formatPeriod(job.periodSeconds)),
    }),
    periodSeconds: t.exposeInt('periodSeconds', { nullable: true }),
    enabled: t.exposeBoolean('enabled'),
    pausedNote: t.exposeString('pausedNote', { nullable: true }),
    timeoutSeconds: t.int({
      description: 'The run timeout; when not set, the smaller of the period and one hour.',
      resolve: (job) => job.timeoutSeconds ?? defaultTimeoutMs(ruleOf(job), (job.nextDueAt ?? job.updatedAt).getTime()) / 1000,
    }),
    nextRunAt: t.field({
      type: 'DateTime',
      nullable: true,
      description: 'The next due time; null while paused.',
      resolve: (job) => (job.enabled ? job.nextDueAt : null),
    }),
    lastRun: t.field({ type: JobRunRef, nullable: true, resolve: (job, _, ctx) => lastRunFor(job, ctx.loaders) }),
    runs: t.field({
      type: JobRunConnection,
      args: { first: t.arg.int(), after: t.arg.string() },
      resolve: async (job, args, ctx) => {
        const first = pageSize(args.first);
        const rows = await ctx.loaders.runsPage.load({ jobId: job.id, first, after: decodeCursor(args.after) });
        return toRunsPage(rows, first);
      },
    }),
    createdAt: t.field({ type: 'DateTime', resolve: (job) => job.createdAt }),
    updatedAt: t.field({ type: 'DateTime', resolve: (job) => job.updatedAt }),
  }),
});

builder.queryType({
  // Every query needs a viewer token at least (SPEC §8).
  authScopes: { viewer: true },
  fields: (t) => ({
    jobs: t.field({
      type: [JobRef],
      description: 'Jobs by id.',
      args: { enabled: t.arg.boolean() },
      resolve: async (_, args, ctx, info) => withLastRuns(ctx.sql, await listJobs(ctx.sql, { enabled: args.enabled }), info),
    }),
    job: t.field({
      type: JobRef,
      nullable: true,
      args: { id: t.arg.id({ required: true }) },
      resolve: (_, args, ctx) => findJob(ctx.sql, validateJobId(args.id)),
    }),
  }),
});

const CreateJobInput = builder.inputType('CreateJobInput', {
  fields: (t) => ({
    id: t.id({ required: true, description: '1–128 letters, digits, _ . -' }),
    name: t.string({ required: true }),
    externalCall: t.string({ required: true, description: 'ConnectorId:MethodName' }),
    period: t.string({ required: true, description: 'h:m:s, e.g. 0:0:30' }),
    enabled: t.boolean({ defaultValue: true }),
    startAt: t.field({ type: 'DateTime', description: 'The first due time; the grid is startAt + k·period.' }),
    timeoutSeconds: t.int({ description: '1–86400; default: the smaller of the period and one hour.' }),
  }),
});

const UpdateJobInput = builder.inputType('UpdateJobInput', {
  fields: (t) => ({
    name: t.string(),
    externalCall: t.string(),
    period: t.string({ description: 'Changing it re-anchors the grid at now (or at startAt).' }),
    enabled: t.boolean(),
    startAt: t.field({ type: 'DateTime' }),
    timeoutSeconds: t.int({ description: 'null restores the default.' }),
  }),
});

builder.mutationType({
  // Every mutation needs an operator token at least; the connector mutations an admin's (SPEC §8).
  authScopes: { operator: true },
  fields: (t) => ({
    createJob: t.field({
      type: JobRef,
      args: { input: t.arg({ type: CreateJobInput, required: true }) },
      resolve: (_, { input }, ctx, info) => createJobField(input, ctx, info),
    }),
    updateJob: t.field({
      type: JobRef,
      args: { id: t.arg.id({ required: true }), input: t.arg({ type: UpdateJobInput, required: true }) },
      resolve: (_, { id, input }, ctx) => ctx.jobs.update(id, input, ctx.principal.name),
    }),
    deleteJob: t.field({
      type: 'ID',
      description: 'Removes the job; its runs and log entries stay.',
      args: { id: t.arg.id({ required: true }) },
      resolve: (_, { id }, ctx) => ctx.jobs.delete(id, ctx.principal.name),
    }),
    pauseJob: t.field({
      type: JobRef,
      args: { id: t.arg.id({ required: true }), note: t.arg.string() },
      resolve: (_, { id, note }, ctx) => ctx.jobs.pause(id, note, ctx.principal.name),
    }),
    resumeJob: t.field({
      type: JobRef,
      args: { id: t.arg.id({ required: true }) },
      resolve: (_, { id }, ctx) => ctx.jobs.resume(id, ctx.principal.name),
    }),
  }),
});
