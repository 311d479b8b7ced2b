// Declarative job sets (SPEC §3b): applyJobs makes the stored jobs match a list (src/jobs/apply-jobs.ts).
import type { ApplyJobsResult, JobChange } from '../jobs/apply-jobs.ts';
import { builder } from './builder.ts';
import { CreateJobInput } from './jobs.ts';

const ApplyJobsInput = builder.inputType('ApplyJobsInput', {
  fields: (t) => ({
    jobs: t.field({
      type: [CreateJobInput],
      required: true,
      description: 'Every job as createJob takes it; a field left out takes its default.',
    }),
    prune: t.boolean({ defaultValue: false, description: 'Delete the stored jobs the list does not name (needs an admin token).' }),
    dryRun: t.boolean({ defaultValue: false, description: 'Answer the same diff and change nothing.' }),
  }),
});

const JobChangeRef = builder.objectRef<JobChange>('JobChange').implement({
  description: 'A job the list changes, and the input fields whose stored value changes.',
  fields: (t) => ({
    id: t.exposeID('id'),
    fields: t.exposeStringList('fields'),
  }),
});

const ApplyJobsResultRef = builder.objectRef<ApplyJobsResult>('ApplyJobsResult').implement({
  fields: (t) => ({
    created: t.exposeIDList('created'),
    updated: t.field({ type: [JobChangeRef], resolve: (result) => result.updated }),
    deleted: t.exposeIDList('deleted', { description: 'With prune: the jobs not in the list.' }),
    unchanged: t.exposeIDList('unchanged'),
  }),
});

builder.mutationField('applyJobs', (t) =>
  t.field({
    type: ApplyJobsResultRef,
    description:
      'Makes the stored jobs match the list in one transaction: creates new ids, updates changed jobs (as updateJob), and with prune deletes the jobs not in it. One invalid job rejects the whole set.',
    // An operator's, but deleting what a list leaves out is an admin's (SPEC §8).
    authScopes: (_parent, args) => (args.input.prune === true ? { admin: true } : { operator: true }),
    args: { input: t.arg({ type: ApplyJobsInput, required: true }) },
    resolve: (_, { input }, ctx) => ctx.jobs.apply(input, ctx.principal.name),
  }),
);
