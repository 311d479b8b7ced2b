import assert from 'node:assert/strict';
import fs from 'node:fs';
import { describe, it } from 'node:test';
import { type GraphQLEnumType, type GraphQLInputObjectType, type GraphQLObjectType, parse, validate } from 'graphql';
import { printedSchema, SCHEMA_FILE } from '../scripts/emit-schema.ts';
import { schema } from '../src/graphql/schema.ts';
import { GRAPHIQL_TABS } from '../src/http/graphiql-tabs.ts';

/** A type's fields as `name: Type`, for the ones named. */
function fieldsOf(typeName: string, names: string[]): string[] {
  const type = schema.getType(typeName) as GraphQLObjectType | GraphQLInputObjectType | undefined;
  assert.ok(type, `schema lacks type ${typeName}`);
  const fields = type.getFields();
  return names.map((name) => `${name}: ${fields[name]?.type.toString() ?? 'missing'}`);
}
/**
 * True when a root field `name(arg: Type, …): Result` exists with that result and those arguments,
 * any further argument optional: SPEC §5 lets fields and arguments be added, never changed.
 */
function hasRootField(signature: string): boolean {
  const [, name, args, result] = /^(\w+)(?:\((.*)\))?: (.+)$/.exec(signature)!;
  const field = [schema.getQueryType(), schema.getMutationType(), schema.getSubscriptionType()]
    .map((type) => type?.getFields()[name!])
    .find((f) => f !== undefined);
  if (!field || field.type.toString() !== result) return false;
  const wanted = new Map((args ? args.split(', ') : []).map((arg) => arg.split(': ') as [string, string]));
  return (
    field.args.every((arg) =>
      wanted.has(arg.name)
        ? wanted.get(arg.name) === arg.type.toString()
        : !arg.type.toString().endsWith('!') || arg.defaultValue !== undefined,
    ) && [...wanted.keys()].every((arg) => field.args.some((a) => a.name === arg))
  );
}
const valuesOf = (name: string) => (schema.getType(name) as GraphQLEnumType | undefined)?.getValues().map((v) => v.name);

describe('the public contract', () => {
  it('should keep the committed schema.graphql identical to the schema the code builds', () => {
    assert.equal(fs.readFileSync(SCHEMA_FILE, 'utf8'), printedSchema(), 'run `npm run schema:emit` and commit schema.graphql');
  });

  it('should name every query, mutation and subscription the SPEC fixes (more optional arguments may be added)', () => {
    for (const field of [
      'jobs(enabled: Boolean): [Job!]!',
      'job(id: ID!): Job',
      'runs(after: String, first: Int, jobId: ID, status: RunStatus): JobRunConnection!',
      'logEntries(after: String, first: Int, jobId: ID, level: LogLevel, since: DateTime): LogEntryConnection!',
      'connectors: [Connector!]!',
      'createJob(input: CreateJobInput!): Job!',
      'updateJob(id: ID!, input: UpdateJobInput!): Job!',
      'deleteJob(id: ID!): ID!',
      'pauseJob(id: ID!, note: String): Job!',
      'resumeJob(id: ID!): Job!',
      'runJobNow(id: ID!): JobRun!',
      'cancelRun(id: ID!): JobRun!',
      'jobEvents(jobId: ID): JobEvent!',
      'logEntryAdded(jobId: ID, minLevel: LogLevel): LogEntry!',
    ]) {
      assert.ok(hasRootField(field), `schema lacks ${field}`);
    }
  });

  it('should name the job fields, inputs, types and values SPEC §3b fixes', () => {
    const sdl = printedSchema();
    for (const field of [
      'nextRuns(count: Int = 10): [PlannedRun!]!',
      'simulateDowntime(from: DateTime!, to: DateTime!): [DowntimeImpact!]!',
      'applyJobs(input: ApplyJobsInput!): ApplyJobsResult!',
    ]) {
      assert.ok(sdl.includes(field), `schema lacks ${field}`);
    }
    const policies = ['cron', 'timeZone', 'endAt', 'overlap', 'misfire', 'retry', 'autoPauseAfterFailures'];
    const inputs = [
      'cron: String',
      'timeZone: String',
      'endAt: DateTime',
      'overlap: OverlapPolicy',
      'misfire: MisfirePolicy',
      'retry: RetryPolicyInput',
      'autoPauseAfterFailures: Int',
    ];
    assert.deepEqual(fieldsOf('CreateJobInput', ['period', ...policies]), ['period: String', ...inputs]);
    assert.deepEqual(fieldsOf('UpdateJobInput', ['period', ...policies]), ['period: String', ...inputs]);
    assert.deepEqual(fieldsOf('Job', [...policies, 'consecutiveFailures', 'period', 'nextRunAt']), [
      'cron: String',
      'timeZone: String',
      'endAt: DateTime',
      'overlap: OverlapPolicy!',
      'misfire: MisfirePolicy!',
      'retry: RetryPolicy!',
      'autoPauseAfterFailures: Int',
      'consecutiveFailures: Int!',
      'period: String',
      'nextRunAt: DateTime',
    ]);
    const retry = ['maxAttempts', 'backoffSeconds', 'backoffFactor', 'maxBackoffSeconds'];
    assert.deepEqual(fieldsOf('RetryPolicy', retry), [
      'maxAttempts: Int!',
      'backoffSeconds: Int!',
      'backoffFactor: Float!',
      'maxBackoffSeconds: Int!',
    ]);
    assert.deepEqual(fieldsOf('RetryPolicyInput', retry), [
      'maxAttempts: Int',
      'backoffSeconds: Int',
      'backoffFactor: Float',
      'maxBackoffSeconds: Int',
    ]);
    assert.deepEqual(fieldsOf('PlannedRun', ['at', 'localTime', 'dst']), ['at: DateTime!', 'localTime: String!', 'dst: DstAdjustment']);
    assert.deepEqual(fieldsOf('JobRun', ['attempt', 'retryOf']), ['attempt: Int!', 'retryOf: ID']);
    assert.deepEqual(fieldsOf('DowntimeImpact', ['job', 'dueTimes', 'wouldRun', 'wouldSkip', 'firstDue', 'lastDue']), [
      'job: Job!',
      'dueTimes: Int!',
      'wouldRun: Int!',
      'wouldSkip: Int!',
      'firstDue: DateTime',
      'lastDue: DateTime',
    ]);
    assert.deepEqual(fieldsOf('ApplyJobsInput', ['jobs', 'prune', 'dryRun']), [
      'jobs: [CreateJobInput!]!',
      'prune: Boolean',
      'dryRun: Boolean',
    ]);
    assert.deepEqual(fieldsOf('ApplyJobsResult', ['created', 'updated', 'deleted', 'unchanged']), [
      'created: [ID!]!',
      'updated: [JobChange!]!',
      'deleted: [ID!]!',
      'unchanged: [ID!]!',
    ]);
    assert.deepEqual(fieldsOf('JobChange', ['id', 'fields']), ['id: ID!', 'fields: [String!]!']);
    assert.deepEqual(valuesOf('OverlapPolicy'), ['SKIP', 'QUEUE_ONE', 'ALLOW']);
    assert.deepEqual(valuesOf('MisfirePolicy'), ['RUN_ONCE', 'SKIP']);
    assert.deepEqual(valuesOf('DstAdjustment'), ['SHIFTED_FROM_GAP', 'FIRST_OF_REPEATED']);
    assert.ok(valuesOf('RunTrigger')?.includes('RETRY'));
  });

  it('should open GraphiQL with example operations that are valid against the schema', () => {
    for (const tab of GRAPHIQL_TABS) assert.deepEqual(validate(schema, parse(tab.query)), [], tab.query);
  });
});
