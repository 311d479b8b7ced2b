import { findJob, listJobs } from '../db/jobs.ts';
import { formatExternalCall } from '../scheduling/external-call.ts';
import { formatPeriod } from '../scheduling/period.ts';
import { defaultTimeoutMs, ruleOf } from '../scheduling/schedule.ts';
import { retryOf } from '../jobs/job-definition.ts';
import { validateJobId } from '../input.ts';
import { builder } from './builder.ts';
import { createJobField } from './create-batch.ts';
import { lastRunFor, withLastRuns } from './loaders.ts';
import { decodeCursor, pageSize } from './pagination.ts';
import { JobRunConnection, toRunsPage } from './runs.ts';
import { MisfirePolicyEnum, OverlapPolicyEnum, RetryPolicyInput, RetryPolicyRef } from './schedules.ts';
import { JobRef, JobRunRef } from './types.ts';

JobRef.implement({
  description: 'A server job: calls `externalCall` on its schedule, once every `period` or at the times of its `cron` in `timeZone`.',
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
    cron: t.exposeString('cron', { nullable: true, description: '5 fields, or 6 with leading seconds; null on a period job.' }),
    timeZone: t.exposeString('timeZone', { nullable: true, description: "The cron's IANA zone; null on a period job." }),
    endAt: t.field({ type: 'DateTime', nullable: true, description: 'No due time after it.', resolve: (job) => job.endAt }),
    enabled: t.exposeBoolean('enabled'),
    pausedNote: t.exposeString('pausedNote', { nullable: true }),
    timeoutSeconds: t.int({
      description: 'The run timeout; when not set, the smaller of the period and one hour.',
      resolve: (job) => job.timeoutSeconds ?? defaultTimeoutMs(ruleOf(job), (job.nextDueAt ?? job.updatedAt).getTime()) / 1000,
    }),
    nextRunAt: t.field({
      type: 'DateTime',
      nullable: true,
      description: 'The next due time; null while paused, and once the job is past its endAt.',
      resolve: (job) => (job.enabled && job.nextDueAt && (job.endAt === null || job.nextDueAt <= job.endAt) ? job.nextDueAt : null),
    }),
    overlap: t.field({ type: OverlapPolicyEnum, resolve: (job) => job.overlap }),
    misfire: t.field({ type: MisfirePolicyEnum, resolve: (job) => job.misfire }),
    retry: t.field({ type: RetryPolicyRef, resolve: (job) => retryOf(job) }),
    autoPauseAfterFailures: t.exposeInt('autoPauseAfterFailures', {
      nullable: true,
      description: 'Pauses the job when consecutiveFailures reaches it; null: never.',
    }),
    consecutiveFailures: t.exposeInt('consecutiveFailures', {
      description: 'Final outcomes FAILED or TIMED_OUT in a row; a success or resumeJob resets it.',
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
      description: 'Jobs by id; `ids`: only these (those that exist), e.g. the rows a list shows.',
      args: { enabled: t.arg.boolean(), ids: t.arg.idList() },
      resolve: async (_, args, ctx, info) => {
        const ids = args.ids?.map((id) => validateJobId(id, 'ids'));
        return withLastRuns(ctx.sql, await listJobs(ctx.sql, { enabled: args.enabled, ids }), info);
      },
    }),
    job: t.field({
      type: JobRef,
      nullable: true,
      args: { id: t.arg.id({ required: true }) },
      resolve: (_, args, ctx) => findJob(ctx.sql, validateJobId(args.id)),
    }),
  }),
});

export const CreateJobInput = builder.inputType('CreateJobInput', {
  description: 'A job has either a period or a cron (exactly one).',
  fields: (t) => ({
    id: t.id({ required: true, description: '1–128 letters, digits, _ . -' }),
    name: t.string({ required: true }),
    externalCall: t.string({ required: true, description: 'ConnectorId:MethodName' }),
    period: t.string({ description: 'h:m:s, e.g. 0:0:30' }),
    cron: t.string({ description: '5 fields (minutes), or 6 with leading seconds; nicknames such as @daily.' }),
    timeZone: t.string({ description: "The cron's IANA zone, e.g. Europe/Moscow; default UTC." }),
    enabled: t.boolean({ defaultValue: true }),
    startAt: t.field({
      type: 'DateTime',
      description: 'The first due time (the grid is startAt + k·period); a cron job has none before it.',
    }),
    endAt: t.field({ type: 'DateTime', description: 'No due time after it.' }),
    timeoutSeconds: t.int({
      description: '1–86400; default: the smaller of one hour and the period (or the interval to the next cron time).',
    }),
    overlap: t.field({ type: OverlapPolicyEnum, description: 'Default SKIP.' }),
    misfire: t.field({ type: MisfirePolicyEnum, description: 'Default RUN_ONCE.' }),
    retry: t.field({ type: RetryPolicyInput, description: 'Default: no retry.' }),
    autoPauseAfterFailures: t.int({ description: '1–1000; default null: never.' }),
  }),
});

const UpdateJobInput = builder.inputType('UpdateJobInput', {
  description: 'A field left out keeps its value.',
  fields: (t) => ({
    name: t.string(),
    externalCall: t.string(),
    period: t.string({ description: 'Changing it re-anchors the grid at now (or at startAt); on a cron job, switches it to the period.' }),
    cron: t.string({ description: 'On a period job, switches it to the cron; takes effect from the next due time after the change.' }),
    timeZone: t.string({ description: 'A cron job’s zone.' }),
    enabled: t.boolean(),
    startAt: t.field({ type: 'DateTime' }),
    endAt: t.field({ type: 'DateTime', description: 'null removes the end.' }),
    timeoutSeconds: t.int({ description: 'null restores the default.' }),
    overlap: t.field({ type: OverlapPolicyEnum }),
    misfire: t.field({ type: MisfirePolicyEnum }),
    retry: t.field({ type: RetryPolicyInput, description: 'The whole policy: a field left out takes its default; null: no retry.' }),
    autoPauseAfterFailures: t.int({ description: 'null turns it off.' }),
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
