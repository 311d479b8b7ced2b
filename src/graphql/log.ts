import { pageLogEntries } from '../db/log.ts';
import { validateJobId } from '../input.ts';
import { builder } from './builder.ts';
import { LogLevelEnum } from './enums.ts';
import { connectionType, decodeCursor, pageSize, toPage } from './pagination.ts';
import { LogEntryRef } from './types.ts';

LogEntryRef.implement({
  description: 'An entry of the service log kept in the database.',
  fields: (t) => ({
    id: t.exposeID('id'),
    at: t.field({ type: 'DateTime', resolve: (entry) => entry.at }),
    level: t.field({ type: LogLevelEnum, resolve: (entry) => entry.level }),
    message: t.exposeString('message'),
    jobId: t.exposeID('jobId', { nullable: true }),
    runId: t.exposeID('runId', { nullable: true }),
    details: t.field({ type: 'JSON', nullable: true, resolve: (entry) => entry.details }),
  }),
});

const LogEntryConnection = connectionType('LogEntry', LogEntryRef);

builder.queryField('logEntries', (t) =>
  t.field({
    type: LogEntryConnection,
    description: 'Log entries, newest first.',
    args: {
      jobId: t.arg.id(),
      level: t.arg({ type: LogLevelEnum }),
      since: t.arg({ type: 'DateTime' }),
      first: t.arg.int(),
      after: t.arg.string(),
    },
    resolve: async (_, args, ctx) => {
      const size = pageSize(args.first);
      const rows = await pageLogEntries(ctx.sql, {
        jobId: args.jobId == null ? null : validateJobId(args.jobId, 'jobId'),
        level: args.level ?? null,
        since: args.since ?? null,
        first: size,
        after: decodeCursor(args.after),
      });
      return toPage(rows, size, (entry) => ({ at: entry.at, id: entry.id }));
    },
  }),
);
