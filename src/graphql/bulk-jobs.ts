// Pausing and resuming many jobs in one call (SPEC §11: the dashboard's `Pause all` / `Resume all`
// over its current filter, and any client's). Operator, as every mutation (jobs.ts's Mutation scope).
import { builder } from './builder.ts';
import { JobRef } from './types.ts';

builder.mutationField('pauseJobs', (t) =>
  t.field({
    type: [JobRef],
    description:
      'Pauses these jobs, each with the note, in one transaction; an unknown id: NOT_FOUND and nothing changed. Answers them by id.',
    args: { ids: t.arg.idList({ required: true }), note: t.arg.string() },
    resolve: (_, { ids, note }, ctx) => ctx.jobs.pauseMany(ids, note, ctx.principal.name),
  }),
);

builder.mutationField('resumeJobs', (t) =>
  t.field({
    type: [JobRef],
    description:
      'Resumes these jobs in one transaction (those not paused stay as they are); an unknown id: NOT_FOUND and nothing changed. Answers them by id.',
    args: { ids: t.arg.idList({ required: true }) },
    resolve: (_, { ids }, ctx) => ctx.jobs.resumeMany(ids, ctx.principal.name),
  }),
);
