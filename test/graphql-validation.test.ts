// What the GraphQL API refuses, and how: every invalid input answered BAD_USER_INPUT on its field
// (or CONFLICT, NOT_FOUND) with nothing changed, and unexpected errors masked for the client but
// logged on the server.
import assert from 'node:assert/strict';
import { beforeEach, describe, it } from 'node:test';
import pino from 'pino';
import { connect } from '../src/db/client.ts';
import {
  appFor,
  CANCEL,
  CREATE,
  createJob,
  DELETE,
  gql,
  gqlOk,
  type GraphQLResponse,
  input,
  JOBS,
  type Json,
  LOG,
  PAUSE,
  rejections,
  RESUME,
  RUN_NOW,
  RUNS,
  runsPage,
  UPDATE,
} from './helpers/api.ts';
import { createTestDatabase, snapshot, testDatabase } from './helpers/db.ts';
import { harness, T0 } from './helpers/harness.ts';

const { sql, url } = await testDatabase();
// A second database whose schema a test breaks, to provoke an SQL error (created here: a test
// database made inside a test would be dropped, with the clients of the file, when that test ends).
const brokenUrl = await createTestDatabase();
// Each test starts from empty tables: a tick claims every due job in the database.
beforeEach(() => sql`truncate jobs, job_runs, log_entries`);

const iso = (ms: number) => new Date(ms).toISOString();

const { rejects } = rejections(sql);

describe('validation through the API', () => {
  const long = (n: number, char = 'x') => char.repeat(n);

  it('should reject every invalid createJob input with BAD_USER_INPUT on its field and change nothing', async () => {
    const h = harness(sql);
    const app = appFor(h);
    await createJob(app, { id: 'existing' });
    const cases: [Json, string][] = [
      [{ id: '' }, 'id'],
      [{ id: long(129) }, 'id'],
      [{ id: 'has space' }, 'id'],
      [{ id: 'a/b' }, 'id'],
      [{ id: 'a:b' }, 'id'],
      [{ id: 'smile😀' }, 'id'],
      [{ name: '' }, 'name'],
      [{ name: '   ' }, 'name'],
      [{ name: long(201) }, 'name'],
      [{ externalCall: 'Test' }, 'externalCall'],
      [{ externalCall: ':ok' }, 'externalCall'],
      [{ externalCall: '1Test:ok' }, 'externalCall'],
      [{ externalCall: 'Te st:ok' }, 'externalCall'],
      [{ externalCall: 'Тест:ok' }, 'externalCall'],
      [{ externalCall: 'Test:' }, 'externalCall'],
      [{ externalCall: 'Test:   ' }, 'externalCall'],
      [{ externalCall: `Test:${long(1001)}` }, 'externalCall'],
      [{ period: '0:0:0' }, 'period'],
      [{ period: '1:60:00' }, 'period'],
      [{ period: '0:0:60' }, 'period'],
      [{ period: '-1:0:0' }, 'period'],
      [{ period: '1:2' }, 'period'],
      [{ period: 'abc' }, 'period'],
      [{ period: '1:2:3:4' }, 'period'],
      [{ period: '0:100:0' }, 'period'],
      [{ period: '8785:0:0' }, 'period'],
      [{ period: '' }, 'period'],
      [{ timeoutSeconds: 0 }, 'timeoutSeconds'],
      [{ timeoutSeconds: -1 }, 'timeoutSeconds'],
      [{ timeoutSeconds: 86401 }, 'timeoutSeconds'],
    ];
    for (const [overrides, field] of cases) {
      await rejects(app, CREATE, { input: input({ id: 'new-job', ...overrides }) }, 'BAD_USER_INPUT', field);
    }
    const jobs = (await gqlOk(app, JOBS))['jobs'] as Json[];
    assert.deepEqual(
      jobs.map((j) => j['id']),
      ['existing'],
    );
  });

  it('should accept the limits themselves', async () => {
    const h = harness(sql);
    const app = appFor(h);
    const id = `Задание_1.x-${long(116)}`;
    assert.equal([...id].length, 128);
    const job = await createJob(app, {
      id,
      name: long(200, 'я'),
      externalCall: `OneC_8_Connector:${long(1000, 'м')}`,
      period: '0:0:1',
      timeoutSeconds: 1,
    });
    assert.equal(job['id'], id);
    assert.equal(job['method'], long(1000, 'м'));
    const paused = await gqlOk(app, PAUSE, { id, note: long(1000) });
    assert.equal(paused['pauseJob']['pausedNote'], long(1000));
    for (const first of [1, 500]) await runsPage(app, { first });
  });

  it('should reject invalid updateJob, pauseJob and other id arguments with BAD_USER_INPUT on their field', async () => {
    const h = harness(sql);
    const app = appFor(h);
    await createJob(app, { id: 'target' });
    const cases: [string, Json, string][] = [
      [UPDATE, { id: 'target', input: { name: '' } }, 'name'],
      [UPDATE, { id: 'target', input: { name: long(201) } }, 'name'],
      [UPDATE, { id: 'target', input: { externalCall: 'no-colon' } }, 'externalCall'],
      [UPDATE, { id: 'target', input: { period: '0:0:0' } }, 'period'],
      [UPDATE, { id: 'target', input: { period: '1:2' } }, 'period'],
      [UPDATE, { id: 'target', input: { timeoutSeconds: 0 } }, 'timeoutSeconds'],
      // A valid change together with an invalid one: nothing is applied.
      [UPDATE, { id: 'target', input: { name: 'fine', period: 'bad' } }, 'period'],
      [UPDATE, { id: 'bad id', input: { name: 'x' } }, 'id'],
      [PAUSE, { id: 'target', note: long(1001) }, 'note'],
      [PAUSE, { id: 'bad id' }, 'id'],
      [RESUME, { id: 'bad id' }, 'id'],
      [DELETE, { id: 'bad id' }, 'id'],
      [RUN_NOW, { id: 'bad id' }, 'id'],
      [`{ job(id: "bad id") { id } }`, {}, 'id'],
      [RUNS, { jobId: 'bad id' }, 'jobId'],
      [LOG, { jobId: 'bad id' }, 'jobId'],
    ];
    for (const [query, variables, field] of cases) await rejects(app, query, variables, 'BAD_USER_INPUT', field);
    const job = await gqlOk(app, `{ job(id: "target") { name period enabled } }`);
    assert.deepEqual(job['job'], { name: 'A job', period: '0:00:05', enabled: true });
  });

  it('should reject first outside 1..500 and a cursor it did not issue with BAD_USER_INPUT', async () => {
    const h = harness(sql);
    const app = appFor(h);
    await createJob(app, { id: 'paged' });
    const cases: [string, Json, string][] = [
      [RUNS, { first: 0 }, 'first'],
      [RUNS, { first: -1 }, 'first'],
      [RUNS, { first: 501 }, 'first'],
      [LOG, { first: 0 }, 'first'],
      [LOG, { first: 501 }, 'first'],
      [RUNS, { after: 'garbage' }, 'after'],
      [RUNS, { after: Buffer.from('not-a-date|1').toString('base64url') }, 'after'],
      [RUNS, { after: Buffer.from(`${iso(T0)}|DROP TABLE`).toString('base64url') }, 'after'],
      [LOG, { after: '!!!' }, 'after'],
    ];
    for (const [query, variables, field] of cases) await rejects(app, query, variables, 'BAD_USER_INPUT', field);
    const nested = await gql(app, `{ job(id: "paged") { runs(first: 501) { edges { cursor } } } }`);
    assert.equal(nested.errors?.[0]?.extensions?.code, 'BAD_USER_INPUT');
    assert.equal(nested.errors?.[0]?.extensions?.field, 'first');
  });

  it('should answer CONFLICT to a duplicate id, also one that differs only in Unicode normalisation', async () => {
    const h = harness(sql);
    const app = appFor(h);
    await createJob(app, { id: 'dup', name: 'first' });
    await createJob(app, { id: 'Caf\u00e9' });
    await rejects(app, CREATE, { input: input({ id: 'dup', name: 'second' }) }, 'CONFLICT');
    await rejects(app, CREATE, { input: input({ id: 'Cafe\u0301' }) }, 'CONFLICT');
    const job = await gqlOk(app, `{ job(id: "dup") { name } }`);
    assert.equal(job['job']['name'], 'first');
  });

  it('should answer NOT_FOUND for an unknown id on every mutation that takes one', async () => {
    const h = harness(sql);
    const app = appFor(h);
    await createJob(app, { id: 'present' });
    const cases: [string, Json][] = [
      [UPDATE, { id: 'absent', input: { name: 'x' } }],
      [DELETE, { id: 'absent' }],
      [PAUSE, { id: 'absent', note: 'n' }],
      [RESUME, { id: 'absent' }],
      [RUN_NOW, { id: 'absent' }],
      [CANCEL, { id: '999999999' }],
      [CANCEL, { id: 'not-a-number' }],
    ];
    for (const [query, variables] of cases) await rejects(app, query, variables, 'NOT_FOUND');
  });

  it('should keep graphql-yoga codes for a document that does not parse or validate', async () => {
    const h = harness(sql);
    const app = appFor(h);
    const parse = await gql(app, `{ jobs { id `);
    assert.equal(parse.errors?.[0]?.extensions?.code, 'GRAPHQL_PARSE_FAILED');
    assert.equal(parse.data, undefined);
    const unknownField = await gql(app, `{ jobs { id colour } }`);
    assert.equal(unknownField.errors?.[0]?.extensions?.code, 'GRAPHQL_VALIDATION_FAILED');
    assert.match(unknownField.errors![0]!.message, /colour/);
    const missingArg = await rejectsDocument(app, `mutation { createJob(input: { id: "x", name: "x", period: "0:0:1" }) { id } }`);
    assert.equal(missingArg.errors?.[0]?.extensions?.code, 'GRAPHQL_VALIDATION_FAILED');
  });

  async function rejectsDocument(app: ReturnType<typeof appFor>, query: string) {
    const before = await snapshot(sql);
    const result = await gql(app, query);
    assert.equal(await snapshot(sql), before);
    return result;
  }

  it('should reject an invalid DateTime for startAt and since, creating nothing', async () => {
    const h = harness(sql);
    const app = appFor(h);
    for (const startAt of ['tomorrow', '2026-01-01T00:00:00', '2026-02-30T00:00:00Z', '2026-13-01T00:00:00Z', '2026-01-01T24:00:00Z', '']) {
      await rejects(app, CREATE, { input: input({ startAt }) }, 'BAD_USER_INPUT', 'startAt');
    }
    await rejects(app, CREATE, { input: input({ startAt: 1767225600000 }) }, 'BAD_USER_INPUT', 'startAt');
    await rejects(app, LOG, { since: 'yesterday' }, 'BAD_USER_INPUT', 'since');
    // Written into the document itself, it is a validation failure.
    const literal = await rejectsDocument(
      app,
      `mutation { createJob(input: { id: "x", name: "x", externalCall: "Test:ok", period: "0:0:1", startAt: "2026-02-30T00:00:00Z" }) { id } }`,
    );
    assert.equal(literal.errors?.[0]?.extensions?.code, 'GRAPHQL_VALIDATION_FAILED');
    assert.deepEqual((await gqlOk(app, JOBS))['jobs'], []);
  });

  it('should answer BAD_USER_INPUT on the field a bad variable value was meant for', async () => {
    const h = harness(sql);
    const app = appFor(h);
    const cases: [string, Json, string][] = [
      // The variable passed straight as an argument: the argument's name, whatever the variable's.
      [`query($when: DateTime) { logEntries(since: $when) { edges { cursor } } }`, { when: 'yesterday' }, 'since'],
      [RUNS, { first: 'ten' }, 'first'],
      [RUNS, { status: 'DONE' }, 'status'],
      [DELETE, {}, 'id'],
      [DELETE, { id: null }, 'id'],
      // Inside an input object given as a variable: the input field's name.
      [CREATE, { input: input({ timeoutSeconds: 1.5 }) }, 'timeoutSeconds'],
      [CREATE, { input: { id: 'x', name: 'x', period: '0:0:1' } }, 'externalCall'],
      [CREATE, { input: input({ colour: 'red' }) }, 'colour'],
      // A variable inside an input object written in the document.
      [
        `mutation($when: DateTime) { createJob(input: { id: "x", name: "x", externalCall: "Test:ok", period: "0:0:1", startAt: $when }) { id } }`,
        { when: 'tomorrow' },
        'startAt',
      ],
    ];
    for (const [query, variables, field] of cases) await rejects(app, query, variables, 'BAD_USER_INPUT', field);
    const two = await gql(app, CREATE, { input: input({ startAt: 'soon', timeoutSeconds: 'long' }) });
    assert.deepEqual(
      two.errors?.map((e) => [e.extensions?.code, e.extensions?.field]),
      [
        ['BAD_USER_INPUT', 'startAt'],
        ['BAD_USER_INPUT', 'timeoutSeconds'],
      ],
      two.text,
    );
    assert.deepEqual((await gqlOk(app, JOBS))['jobs'], []);
  });
});

describe('unexpected errors', () => {
  /** A pino logger whose lines the test can read. */
  function capturingLog() {
    const lines: Json[] = [];
    const log = pino({ level: 'error' }, { write: (line: string) => void lines.push(JSON.parse(line)) });
    return { log, lines };
  }

  function assertMasked(result: GraphQLResponse, leaks: RegExp[]) {
    const error = result.errors?.[0];
    assert.ok(error, result.text);
    assert.equal(error.message, 'Unexpected error.');
    assert.equal(error.extensions?.code, 'INTERNAL_SERVER_ERROR');
    assert.equal(error.extensions?.['stack'], undefined);
    assert.equal(error.extensions?.['originalError'], undefined);
    assert.doesNotMatch(result.text, /stack|\.ts:\d+|at async/i);
    for (const leak of leaks) assert.doesNotMatch(result.text, leak);
  }

  it('should mask a lost database connection and log it on the server', async () => {
    const h = harness(sql);
    const closed = connect(url, { max: 1 });
    await closed.close();
    const { log, lines } = capturingLog();
    const app = appFor(h, { sql: closed.sql, log });
    const result = await gql(app, `{ jobs { id } }`);
    assertMasked(result, [/CONNECTION/i, /postgres/i, /select/i]);
    assert.equal(lines.length, 1, 'the real error is logged on the server');
    assert.match(JSON.stringify(lines[0]), /CONNECTION_ENDED/);
  });

  it('should mask an SQL error: neither the statement nor the relation reaches the client', async () => {
    const h = harness(sql);
    const broken = connect(brokenUrl, { max: 1 });
    try {
      await broken.sql`alter table job_runs rename to job_runs_elsewhere`;
      const { log, lines } = capturingLog();
      const app = appFor(h, { sql: broken.sql, log });
      const result = await gql(app, `{ runs { edges { node { id } } } }`);
      assertMasked(result, [/job_runs/, /relation/i, /select/i, /42P01/]);
      assert.match(JSON.stringify(lines[0]), /job_runs/, 'the server log says what went wrong');
    } finally {
      await broken.close();
    }
  });
});
