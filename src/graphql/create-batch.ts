import { type FieldNode, getArgumentValues, type GraphQLResolveInfo, Kind } from 'graphql';
import type { JobRow } from '../db/rows.ts';
import type { DomainError } from '../errors.ts';
import type { CreateJobInput } from '../jobs/job-service.ts';
import type { Context } from './builder.ts';

/**
 * The answers of the createJob fields of a run (see `createJobField`), per request context and
 * field: a job, the error that refused it, or null for a field after the refused one (not created).
 */
const answers = new WeakMap<Context, Map<FieldNode, Promise<JobRow | DomainError | null>>>();

/**
 * Resolves a `createJob` field. createJob fields one after another at the top of a mutation (a
 * client creating jobs 25 aliases at a time) are created together, in one transaction
 * (JobService.createMany): the first of them creates the run, each field answers its own job or
 * error, and the fields after a refused one are not created — GraphQL stops a mutation there
 * (createJob is non-null). GraphQL would create each after the previous one's answer; the later
 * ones commit with the first, and nothing in between could tell: a createJob field's selection
 * reads only its own job. Every field of a run has the Mutation type's scopes, checked for the
 * first by then, for the same principal.
 */
export async function createJobField(input: CreateJobInput, ctx: Context, info: GraphQLResolveInfo): Promise<JobRow> {
  const node = info.fieldNodes[0]!;
  // A field after a refused one, should GraphQL reach it, starts a run of its own.
  const answer = (await answers.get(ctx)?.get(node)) ?? (await createRun(node, input, ctx, info))!;
  if (answer instanceof Error) throw answer;
  return answer;
}

function createRun(node: FieldNode, input: CreateJobInput, ctx: Context, info: GraphQLResolveInfo) {
  const run = [{ node, input }, ...createJobsAfter(node, info)];
  const result = ctx.jobs.createMany(
    run.map((field) => field.input),
    ctx.principal.name,
  );
  let known = answers.get(ctx);
  if (!known) answers.set(ctx, (known = new Map()));
  for (const [index, field] of run.entries()) {
    const answer = result.then(({ created, refused }) => created[index] ?? (index === created.length ? refused : null));
    // The fields GraphQL does not reach (after an error) never read theirs.
    answer.catch(() => {});
    known.set(field.node, answer);
  }
  return known.get(node)!;
}

/**
 * The createJob fields right after `node` at the top of the operation, with their inputs: plain
 * fields only (a fragment or a directive ends the run: what runs there is GraphQL's to decide).
 */
function createJobsAfter(node: FieldNode, info: GraphQLResolveInfo): { node: FieldNode; input: CreateJobInput }[] {
  const selections = info.operation.selectionSet.selections;
  const fieldDef = info.parentType.getFields()[info.fieldName]!;
  const keys = new Set([responseKey(node)]);
  const run: { node: FieldNode; input: CreateJobInput }[] = [];
  for (let i = selections.indexOf(node) + 1; i > 0 && i < selections.length; i++) {
    const next = selections[i]!;
    if (next.kind !== Kind.FIELD || next.name.value !== info.fieldName || next.directives?.length) break;
    // The same response key again is the same field (GraphQL merges them), answered once.
    if (keys.has(responseKey(next))) continue;
    keys.add(responseKey(next));
    run.push({ node: next, input: getArgumentValues(fieldDef, next, info.variableValues)['input'] as CreateJobInput });
  }
  return run;
}

const responseKey = (node: FieldNode) => node.alias?.value ?? node.name.value;
