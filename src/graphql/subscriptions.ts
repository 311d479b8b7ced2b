import { type LogLevel, levelRank, type JobRow, type RunRow } from '../db/rows.ts';
import type { TopicEvent } from '../events/topics.ts';
import { validateJobId } from '../input.ts';
import { builder } from './builder.ts';
import { JobEventKindEnum, LogLevelEnum } from './enums.ts';
import { JobRef, JobRunRef, LogEntryRef } from './types.ts';

type JobEventKind = (typeof JobEventKindEnum)['$inferType'];

interface JobEvent {
  kind: JobEventKind;
  at: Date;
  jobId: string;
  job?: JobRow;
  run?: RunRow;
}

/** Each bus event's JobEvent, made once however many subscriptions take it. */
const mapped = new WeakMap<TopicEvent, JobEvent | null>();

/** The JobEvent of a bus event (the same object for every subscriber), or undefined when it is not one. */
export function jobEventOf(event: TopicEvent): JobEvent | undefined {
  let jobEvent = mapped.get(event);
  if (jobEvent === undefined) mapped.set(event, (jobEvent = toJobEvent(event) ?? null));
  return jobEvent ?? undefined;
}

/** Maps a bus event to the JobEvent a subscriber sees, or undefined when it is not one. */
export function toJobEvent(event: TopicEvent): JobEvent | undefined {
  switch (event.topic) {
    case 'job:created':
      return { kind: 'JOB_CREATED', at: event.payload.at, jobId: event.payload.job.id, job: event.payload.job };
    case 'job:updated':
      return { kind: 'JOB_UPDATED', at: event.payload.at, jobId: event.payload.job.id, job: event.payload.job };
    case 'job:deleted':
      return { kind: 'JOB_DELETED', at: event.payload.at, jobId: event.payload.jobId };
    case 'run:started':
      return { kind: 'RUN_STARTED', at: event.payload.at, jobId: event.payload.run.jobId, run: event.payload.run };
    case 'run:skipped':
      return { kind: 'RUN_SKIPPED', at: event.payload.at, jobId: event.payload.run.jobId, run: event.payload.run };
    case 'run:finished': {
      const { run, at } = event.payload;
      return { kind: run.status === 'SUCCEEDED' ? 'RUN_SUCCEEDED' : 'RUN_FAILED', at, jobId: run.jobId, run };
    }
    default:
      return undefined;
  }
}

const JobEventRef = builder.objectRef<JobEvent>('JobEvent').implement({
  description: 'Something that happened to a job. RUN_FAILED covers FAILED, TIMED_OUT, ABANDONED and CANCELLED.',
  fields: (t) => ({
    kind: t.field({ type: JobEventKindEnum, resolve: (e) => e.kind }),
    at: t.field({ type: 'DateTime', resolve: (e) => e.at }),
    jobId: t.exposeID('jobId'),
    job: t.field({
      type: JobRef,
      nullable: true,
      resolve: (e, _, ctx) => (e.kind === 'JOB_DELETED' ? null : (e.job ?? ctx.loaders.job.load(e.jobId))),
    }),
    run: t.field({ type: JobRunRef, nullable: true, resolve: (e) => e.run ?? null }),
  }),
});

builder.subscriptionType({
  // Every subscription needs a viewer token at least, checked when it starts (SPEC §8).
  authScopes: { viewer: true },
  fields: (t) => ({
    jobEvents: t.field({
      type: JobEventRef,
      description: 'Live events of one job, or of all jobs when jobId is omitted.',
      args: { jobId: t.arg.id() },
      subscribe: (_, args, ctx) => {
        const jobId = args.jobId == null ? null : validateJobId(args.jobId, 'jobId');
        return ctx.bus.subscribe(
          (event) => {
            const jobEvent = jobEventOf(event);
            return jobEvent && (jobId === null || jobEvent.jobId === jobId) ? jobEvent : undefined;
          },
          undefined,
          undefined,
          { jobId },
        );
      },
      resolve: (event) => event,
    }),
    logEntryAdded: t.field({
      type: LogEntryRef,
      description: 'Log entries as they are written, optionally of one job and at least minLevel.',
      args: { jobId: t.arg.id(), minLevel: t.arg({ type: LogLevelEnum }) },
      subscribe: (_, args, ctx) => {
        const jobId = args.jobId == null ? null : validateJobId(args.jobId, 'jobId');
        const min = levelRank((args.minLevel ?? 'DEBUG') as LogLevel);
        return ctx.bus.subscribe(
          (event) => {
            if (event.topic !== 'log:added') return undefined;
            const { entry } = event.payload;
            return (jobId === null || entry.jobId === jobId) && levelRank(entry.level) >= min ? entry : undefined;
          },
          undefined,
          undefined,
          { jobId },
        );
      },
      resolve: (entry) => entry,
    }),
  }),
});
