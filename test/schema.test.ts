import assert from 'node:assert/strict';
import fs from 'node:fs';
import { describe, it } from 'node:test';
import { printedSchema, SCHEMA_FILE } from '../scripts/emit-schema.ts';

describe('the public contract', () => {
  it('should keep the committed schema.graphql identical to the schema the code builds', () => {
    assert.equal(fs.readFileSync(SCHEMA_FILE, 'utf8'), printedSchema(), 'run `npm run schema:emit` and commit schema.graphql');
  });

  it('should name every query, mutation and subscription the SPEC fixes', () => {
    const sdl = printedSchema();
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
      assert.ok(sdl.includes(field), `schema lacks ${field}`);
    }
  });
});
