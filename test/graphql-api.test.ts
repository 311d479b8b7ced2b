import assert from 'node:assert/strict';
import { beforeEach, describe, it } from 'node:test';
import pino from 'pino';
import { connect } from '../src/db/client.ts';
import { appFor, gql, gqlOk, type GraphQLResponse, type Json } from './helpers/api.ts';
import { gate } from './helpers/connector.ts';
import { createTestDatabase, testDatabase } from './helpers/db.ts';
import { harness, type Harness, nextEvent, T0, tickAndSettle } from './helpers/harness.ts';

const { sql, url } = await testDatabase();
// A second database whose schema a test breaks, to provoke an SQL error (created here: a test
// database made inside a test would be dropped, with the clients of the file, when that test ends).
const brokenUrl = await createTestDatabase();
// Each test starts from empty tables: a tick claims every due job in the database.
beforeEach(() => sql`truncate jobs, job_runs, log_entries`);

const iso = (ms: number) => new Date(ms).toISOString();

const JOB = `id name externalCall connectorId method period periodSeconds enabled pausedNote timeoutSeconds nextRunAt createdAt updatedAt`;
const RUN = `id jobId trigger scheduledAt startedAt finishedAt durationMs status error instance missed`;
const CREATE = `mutation($input: CreateJobInput!) { createJob(input: $input) { ${JOB} } }`;
const UPDATE = `mutation($id: ID!, $input: UpdateJobInput!) { updateJob(id: $id, input: $input) { ${JOB} } }`;
const PAUSE = `mutation($id: ID!, $note: String) { pauseJob(id: $id, note: $note) { ${JOB} } }`;
const RESUME = `mutation($id: ID!) { resumeJob(id: $id) { ${JOB} } }`;
const DELETE = `mutation($id: ID!) { deleteJob(id: $id) }`;
const RUN_NOW = `mutation($id: ID!) { runJobNow(id: $id) { ${RUN} } }`;
const CANCEL = `mutation($id: ID!) { cancelRun(id: $id) { ${RUN} } }`;
const JOBS = `query($enabled: Boolean) { jobs(enabled: $enabled) { id enabled } }`;
const RUNS = `query($jobId: ID, $status: RunStatus, $first: Int, $after: String) {
  runs(jobId: $jobId, status: $status, first: $first, after: $after) {
    edges { cursor node { ${RUN} job { id } } }
    pageInfo { hasNextPage endCursor }
  } }`;
const LOG = `query($jobId: ID, $level: LogLevel, $since: DateTime, $first: Int, $after: String) {
  logEntries(jobId: $jobId, level: $level, since: $since, first: $first, after: $after) {
    edges { cursor node { id at level message jobId runId details } }
    pageInfo { hasNextPage endCursor }
  } }`;

type Connection = { edges: { cursor: string; node: Json }[]; pageInfo: { hasNextPage: boolean; endCursor: string | null } };

const input = (overrides: Json = {}) => ({ id: 'job-1', name: 'A job', externalCall: 'Test:ok', period: '0:0:5', ...overrides });

async function createJob(app: ReturnType<typeof appFor>, overrides: Json = {}): Promise<Json> {
  return (await gqlOk(app, CREATE, { input: input(overrides) }))['createJob'];
}

const runsPage = async (app: ReturnType<typeof appFor>, vars: Json = {}): Promise<Connection> =>
  (await gqlOk(app, RUNS, vars))['runs'];
const logPage = async (app: ReturnType<typeof appFor>, vars: Json = {}): Promise<Connection> =>
  (await gqlOk(app, LOG, vars))['logEntries'];

/** Everything a rejected operation must leave as it was. */
async function snapshot(): Promise<string> {
  const jobs = await sql`select * from jobs order by id`;
  const runs = await sql`select * from job_runs order by id`;
  const log = await sql`select * from log_entries order by id`;
  return JSON.stringify({ jobs, runs, log });
}

function assertError(result: GraphQLResponse, code: string, field?: string): void {
  const error = result.errors?.[0];
  assert.ok(error, `expected a ${code} error, got ${result.text}`);
  assert.equal(error.extensions?.code, code, result.text);
  if (field !== undefined) assert.equal(error.extensions?.field, field, result.text);
  // A rejected mutation or query returns no data for the field.
  const data = result.data;
  if (data) for (const value of Object.values(data)) assert.equal(value, null, result.text);
}

/** Runs the operation, asserts it is rejected with `code` (and `field`) and changed nothing. */
async function rejects(app: ReturnType<typeof appFor>, query: string, variables: Json, code: string, field?: string) {
  const before = await snapshot();
  const result = await gql(app, query, variables);
  assertError(result, code, field);
  assert.equal(await snapshot(), before, `${query} ${JSON.stringify(variables)} changed nothing`);
  return result;
}

describe('jobs', () => {
  it('should create a job and return it with the period normalised and the external call split', async () => {
    const h = harness(sql);
    const app = appFor(h);
    const job = await createJob(app, {
      id: 'pull-codes',
      name: 'Pull marking codes',
      externalCall: ' Test : Кировка АвтоматическоеПолучение:Таблица ',
      period: '0:0:5',
    });
    assert.deepEqual(job, {
      id: 'pull-codes',
      name: 'Pull marking codes',
      externalCall: 'Test:Кировка АвтоматическоеПолучение:Таблица',
      connectorId: 'Test',
      method: 'Кировка АвтоматическоеПолучение:Таблица',
      period: '0:00:05',
      periodSeconds: 5,
      enabled: true,
      pausedNote: null,
      timeoutSeconds: 5,
      nextRunAt: iso(T0 + 5000),
      createdAt: iso(T0),
      updatedAt: iso(T0),
    });
    const again = await gqlOk(app, `{ job(id: "pull-codes") { ${JOB} } }`);
    assert.deepEqual(again['job'], job, 'job(id) answers what createJob returned');
  });

  it('should default timeoutSeconds to the smaller of the period and one hour, and keep an explicit one', async () => {
    const h = harness(sql);
    const app = appFor(h);
    const cases: [Json, string, number][] = [
      [{ id: 't-30s', period: '0:0:30' }, '0:00:30', 30],
      [{ id: 't-2h', period: '2:0:0' }, '2:00:00', 3600],
      [{ id: 't-day', period: '24:0:0' }, '24:00:00', 3600],
      [{ id: 't-leap-year', period: '8784:00:00' }, '8784:00:00', 3600],
      [{ id: 't-explicit', period: '0:1:0', timeoutSeconds: 7 }, '0:01:00', 7],
      [{ id: 't-max', period: '0:0:1', timeoutSeconds: 86400 }, '0:00:01', 86400],
    ];
    for (const [overrides, period, timeout] of cases) {
      const job = await createJob(app, overrides);
      assert.equal(job['period'], period, overrides['id']);
      assert.equal(job['timeoutSeconds'], timeout, overrides['id']);
    }
  });

  it('should start at startAt when given one', async () => {
    const h = harness(sql);
    const app = appFor(h);
    const job = await createJob(app, { period: '0:1:0', startAt: '2026-01-01T03:00:00+03:00' });
    assert.equal(job['nextRunAt'], iso(T0), 'startAt in another zone is the same instant, answered in UTC');
    const later = await createJob(app, { id: 'later', period: '0:1:0', startAt: iso(T0 + 90_000) });
    assert.equal(later['nextRunAt'], iso(T0 + 90_000));
  });

  it('should list jobs by id and filter them by enabled', async () => {
    const h = harness(sql);
    const app = appFor(h);
    await createJob(app, { id: 'b' });
    await createJob(app, { id: 'c', enabled: false });
    await createJob(app, { id: 'a' });
    await createJob(app, { id: 'B-upper' });
    const all = (await gqlOk(app, JOBS))['jobs'] as Json[];
    assert.deepEqual(all.map((j) => j['id']), ['B-upper', 'a', 'b', 'c'].sort());
    assert.deepEqual((await gqlOk(app, JOBS, { enabled: false }))['jobs'], [{ id: 'c', enabled: false }]);
    assert.deepEqual(
      ((await gqlOk(app, JOBS, { enabled: true }))['jobs'] as Json[]).map((j) => j['id']),
      ['B-upper', 'a', 'b'].sort(),
    );
    const paused = await gqlOk(app, `{ job(id: "c") { enabled nextRunAt } }`);
    assert.deepEqual(paused['job'], { enabled: false, nextRunAt: null }, 'a paused job has no next run');
  });

  it('should answer null, not an error, for an unknown job id', async () => {
    const h = harness(sql);
    const app = appFor(h);
    await createJob(app, { id: 'known' });
    const result = await gql(app, `{ job(id: "unknown") { id } }`);
    assert.equal(result.errors, undefined);
    assert.deepEqual(result.data, { job: null });
  });

  it('should warn in the log when a job calls a connector or operation that does not exist (yet)', async () => {
    const h = harness(sql);
    h.connector.define('ok', async () => {});
    const app = appFor(h);
    await createJob(app, { id: 'fine', externalCall: 'Test:ok' });
    await createJob(app, { id: 'no-connector', externalCall: 'Nowhere:ok' });
    await createJob(app, { id: 'no-operation', externalCall: 'Test:missing' });
    const warnings = await logPage(app, { level: 'WARNING' });
    assert.deepEqual(warnings.edges.map((e) => e.node['jobId']).sort(), ['no-connector', 'no-operation']);
    for (const { node } of warnings.edges) assert.match(node['message'], /does not exist/);
  });
});

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
    assert.deepEqual(jobs.map((j) => j['id']), ['existing']);
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
    const before = await snapshot();
    const result = await gql(app, query);
    assert.equal(await snapshot(), before);
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
      [['BAD_USER_INPUT', 'startAt'], ['BAD_USER_INPUT', 'timeoutSeconds']],
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

describe('Unicode', () => {
  it('should normalise text input to NFC: a decomposed id is found by its composed form', async () => {
    const h = harness(sql);
    const app = appFor(h);
    const decomposed = 'Cafe\u0301-Ре\u0306стр';
    const composed = decomposed.normalize('NFC');
    assert.notEqual(decomposed, composed);
    const job = await createJob(app, { id: decomposed, name: 'Re\u0301sume\u0301', externalCall: 'Test:Proce\u0301s' });
    assert.equal(job['id'], composed);
    assert.equal(job['name'], 'R\u00e9sum\u00e9');
    assert.equal(job['method'], 'Proc\u00e9s');
    for (const id of [composed, decomposed]) {
      const found = await gqlOk(app, `query($id: ID!) { job(id: $id) { id } }`, { id });
      assert.deepEqual(found['job'], { id: composed });
    }
    const paused = await gqlOk(app, PAUSE, { id: decomposed, note: 'E\u0301te\u0301' });
    assert.equal(paused['pauseJob']['pausedNote'], '\u00c9t\u00e9');
    assert.equal((await gqlOk(app, DELETE, { id: decomposed }))['deleteJob'], composed);
    assert.deepEqual((await gqlOk(app, JOBS))['jobs'], []);
  });
});

describe('changes and the audit trail', () => {
  it('should apply updateJob, pauseJob, resumeJob and deleteJob and write an INFO entry for each', async () => {
    const h = harness(sql);
    h.connector.define('ok', async () => {});
    const app = appFor(h);
    await createJob(app, { id: 'audited', period: '0:0:10' });

    h.clock.set(T0 + 1000);
    const updated = (await gqlOk(app, UPDATE, { id: 'audited', input: { name: 'Renamed', period: '0:0:20', timeoutSeconds: 9 } }))['updateJob'];
    assert.equal(updated['name'], 'Renamed');
    assert.equal(updated['period'], '0:00:20');
    assert.equal(updated['timeoutSeconds'], 9);
    assert.equal(updated['nextRunAt'], iso(T0 + 21_000), 'a new period re-anchors the grid at the change');
    assert.equal(updated['updatedAt'], iso(T0 + 1000));

    h.clock.set(T0 + 2000);
    const paused = (await gqlOk(app, PAUSE, { id: 'audited', note: 'maintenance window' }))['pauseJob'];
    assert.equal(paused['enabled'], false);
    assert.equal(paused['pausedNote'], 'maintenance window');
    assert.equal(paused['nextRunAt'], null);
    h.clock.set(T0 + 45_000);
    assert.equal((await h.scheduler.tick()).length, 0, 'a paused job does not run');

    const resumed = (await gqlOk(app, RESUME, { id: 'audited' }))['resumeJob'];
    assert.equal(resumed['enabled'], true);
    assert.equal(resumed['pausedNote'], null, 'resuming clears the note');
    assert.equal(resumed['nextRunAt'], iso(T0 + 61_000), 'the first grid point after the resume');

    h.clock.set(T0 + 61_000);
    await tickAndSettle(h);
    h.clock.set(T0 + 62_000);
    assert.equal((await gqlOk(app, DELETE, { id: 'audited' }))['deleteJob'], 'audited');
    assert.deepEqual((await gqlOk(app, `{ job(id: "audited") { id } }`))['job'], null);
    h.clock.set(T0 + 81_000);
    assert.equal((await h.scheduler.tick()).length, 0, 'a deleted job does not run');

    const entries = (await logPage(app, { jobId: 'audited' })).edges.map((e) => e.node);
    assert.deepEqual(
      entries.map((e) => [e['at'], e['level'], e['jobId'], e['runId']]),
      [T0 + 62_000, T0 + 45_000, T0 + 2000, T0 + 1000, T0].map((at) => [iso(at), 'INFO', 'audited', null]),
      'newest first: deleted, resumed, paused, updated, created',
    );
    assert.match(entries[0]!['message'], /deleted/);
    assert.match(entries[1]!['message'], /resumed/);
    assert.match(entries[2]!['message'], /paused: maintenance window/);
    assert.match(entries[3]!['message'], /updated/);
    assert.deepEqual(entries[3]!['details'], { name: 'Renamed', period: '0:0:20', timeoutSeconds: 9, actor: 'local' });
    assert.match(entries[4]!['message'], /created/);
  });

  it('should restore the default timeout when updateJob sets timeoutSeconds to null', async () => {
    const h = harness(sql);
    const app = appFor(h);
    await createJob(app, { id: 'timeouts', period: '0:2:0', timeoutSeconds: 5 });
    const job = (await gqlOk(app, UPDATE, { id: 'timeouts', input: { timeoutSeconds: null } }))['updateJob'];
    assert.equal(job['timeoutSeconds'], 120);
  });
});

describe('runs', () => {
  /** A job whose runs take 250 ms on the manual clock; `fail` switches it to a failing call. */
  async function jobWithRuns(h: Harness, app: ReturnType<typeof appFor>) {
    h.connector.define('work', async () => h.clock.advance(250));
    h.connector.define('boom', async () => {
      h.clock.advance(100);
      throw new Error('remote said no');
    });
    await createJob(app, { id: 'r', externalCall: 'Test:work', period: '0:0:5' });
    // Claimed 40 ms late: startedAt − scheduledAt is the lateness.
    h.clock.set(T0 + 5040);
    await tickAndSettle(h);
    await gqlOk(app, UPDATE, { id: 'r', input: { externalCall: 'Test:boom' } });
    h.clock.set(T0 + 10_000);
    await tickAndSettle(h);
    // Nobody claims 15, 20 and 25 s: they are coalesced into the run due at 30 s.
    h.clock.set(T0 + 30_000);
    await tickAndSettle(h);
  }

  it('should list runs newest first with status, duration, lateness, instance, trigger and missed count', async () => {
    const h = harness(sql, { instance: 'api-instance-1' });
    const app = appFor(h);
    await jobWithRuns(h, app);
    const page = await runsPage(app, { jobId: 'r' });
    assert.deepEqual(
      page.edges.map(({ node }) => [
        node['scheduledAt'],
        node['startedAt'],
        node['durationMs'],
        node['status'],
        node['error'],
        node['trigger'],
        node['instance'],
        node['missed'],
        node['jobId'],
        node['job'],
      ]),
      [
        [iso(T0 + 30_000), iso(T0 + 30_000), 100, 'FAILED', 'remote said no', 'SCHEDULE', 'api-instance-1', 3, 'r', { id: 'r' }],
        [iso(T0 + 10_000), iso(T0 + 10_000), 100, 'FAILED', 'remote said no', 'SCHEDULE', 'api-instance-1', 0, 'r', { id: 'r' }],
        [iso(T0 + 5000), iso(T0 + 5040), 250, 'SUCCEEDED', null, 'SCHEDULE', 'api-instance-1', 0, 'r', { id: 'r' }],
      ],
    );
    for (const { node } of page.edges) {
      assert.equal(Date.parse(node['finishedAt']) - Date.parse(node['startedAt']), node['durationMs']);
      assert.match(node['id'], /^\d+$/);
    }
    assert.deepEqual(page.pageInfo, { hasNextPage: false, endCursor: page.edges[2]!.cursor });

    const failed = await runsPage(app, { status: 'FAILED' });
    assert.equal(failed.edges.length, 2);
    assert.ok(failed.edges.every((e) => e.node['status'] === 'FAILED'));
  });

  it('should answer job.lastRun and job.runs', async () => {
    const h = harness(sql);
    const app = appFor(h);
    await jobWithRuns(h, app);
    const { job } = await gqlOk(
      app,
      `{ job(id: "r") { lastRun { scheduledAt status missed } runs(first: 2) { edges { node { scheduledAt } } pageInfo { hasNextPage } } } }`,
    );
    assert.deepEqual(job['lastRun'], { scheduledAt: iso(T0 + 30_000), status: 'FAILED', missed: 3 });
    assert.deepEqual(
      job['runs']['edges'].map((e: Json) => e['node']['scheduledAt']),
      [iso(T0 + 30_000), iso(T0 + 10_000)],
    );
    assert.equal(job['runs']['pageInfo']['hasNextPage'], true);
    await createJob(app, { id: 'never-ran' });
    const fresh = await gqlOk(app, `{ job(id: "never-ran") { lastRun { id } runs { edges { cursor } pageInfo { hasNextPage endCursor } } } }`);
    assert.deepEqual(fresh['job'], { lastRun: null, runs: { edges: [], pageInfo: { hasNextPage: false, endCursor: null } } });
  });

  it('should answer a SKIPPED run with no startedAt and no durationMs: it never started', async () => {
    const h = harness(sql);
    const hold = gate();
    h.connector.define('hold', () => hold.promise);
    const app = appFor(h);
    try {
      await createJob(app, { id: 'skips', externalCall: 'Test:hold', period: '0:0:1', timeoutSeconds: 60 });
      h.clock.set(T0 + 1000);
      await h.scheduler.tick();
      // Claimed 30 ms late while the first run still holds the job.
      h.clock.set(T0 + 2030);
      await h.scheduler.tick();
      const skipped = (await runsPage(app, { jobId: 'skips', status: 'SKIPPED' })).edges.map((e) => e.node);
      assert.deepEqual(
        skipped.map((r) => [r['scheduledAt'], r['startedAt'], r['finishedAt'], r['durationMs']]),
        [[iso(T0 + 2000), null, iso(T0 + 2030), null]],
      );
    } finally {
      hold.open();
    }
  });

  it('should page runs with first and after, without overlap, also across runs due at the same time', async () => {
    const h = harness(sql);
    h.connector.define('ok', async () => {});
    const app = appFor(h);
    // Two jobs due together: their runs share scheduledAt and are ordered by id.
    await createJob(app, { id: 'p1', externalCall: 'Test:ok', period: '0:0:1' });
    await createJob(app, { id: 'p2', externalCall: 'Test:ok', period: '0:0:1' });
    for (let k = 1; k <= 4; k++) {
      h.clock.set(T0 + k * 1000);
      await tickAndSettle(h);
    }
    const all = (await runsPage(app, { first: 500 })).edges.map((e) => e.node);
    assert.equal(all.length, 8);
    const expected = [...all].sort((a, b) => Date.parse(b['scheduledAt']) - Date.parse(a['scheduledAt']) || Number(b['id']) - Number(a['id']));
    assert.deepEqual(all.map((r) => r['id']), expected.map((r) => r['id']), 'newest first by scheduledAt, then id');

    for (const first of [1, 3]) {
      const seen: string[] = [];
      let after: string | null = null;
      let pages = 0;
      for (;;) {
        const page: Connection = await runsPage(app, { first, after });
        pages++;
        assert.ok(page.edges.length <= first);
        seen.push(...page.edges.map((e) => e.node['id'] as string));
        assert.equal(page.pageInfo.endCursor, page.edges.at(-1)?.cursor ?? null);
        if (!page.pageInfo.hasNextPage) break;
        after = page.pageInfo.endCursor;
      }
      assert.deepEqual(seen, all.map((r) => r['id']), `pages of ${first} cover every run once, in order`);
      assert.equal(pages, Math.ceil(8 / first));
    }
  });

  it('should page log entries with first and after', async () => {
    const h = harness(sql);
    h.connector.define('ok', async () => {});
    const app = appFor(h);
    await createJob(app, { id: 'logged' });
    for (let i = 1; i <= 4; i++) {
      h.clock.set(T0 + i * 1000);
      await gqlOk(app, UPDATE, { id: 'logged', input: { name: `name ${i}` } });
    }
    const first = await logPage(app, { jobId: 'logged', first: 2 });
    assert.equal(first.pageInfo.hasNextPage, true);
    const second = await logPage(app, { jobId: 'logged', first: 2, after: first.pageInfo.endCursor });
    assert.equal(second.pageInfo.hasNextPage, true);
    const third = await logPage(app, { jobId: 'logged', first: 2, after: second.pageInfo.endCursor });
    assert.equal(third.pageInfo.hasNextPage, false);
    const ats = [...first.edges, ...second.edges, ...third.edges].map((e) => e.node['at']);
    assert.deepEqual(ats, [4, 3, 2, 1, 0].map((s) => iso(T0 + s * 1000)));
  });

  it('should still list the runs and log entries of a deleted job, and an empty page for an id with none', async () => {
    const h = harness(sql);
    const app = appFor(h);
    await jobWithRuns(h, app);
    await gqlOk(app, DELETE, { id: 'r' });
    const runs = await runsPage(app, { jobId: 'r' });
    assert.equal(runs.edges.length, 3);
    assert.ok(runs.edges.every((e) => e.node['job'] === null), 'the job itself is gone');
    const log = await logPage(app, { jobId: 'r' });
    assert.ok(log.edges.length >= 5);
    assert.match(log.edges[0]!.node['message'], /deleted/);

    const empty = { edges: [], pageInfo: { hasNextPage: false, endCursor: null } };
    const none = await gql(app, `{ runs(jobId: "never-existed") { edges { cursor } pageInfo { hasNextPage endCursor } }
      logEntries(jobId: "never-existed") { edges { cursor } pageInfo { hasNextPage endCursor } } }`);
    assert.equal(none.errors, undefined);
    assert.deepEqual(none.data, { runs: empty, logEntries: empty });
  });

  it('should filter log entries by level and since', async () => {
    const h = harness(sql);
    const app = appFor(h);
    await jobWithRuns(h, app);
    const errors = (await logPage(app, { level: 'ERROR' })).edges.map((e) => e.node);
    assert.equal(errors.length, 2, 'one ERROR per failed run');
    const runIds = (await runsPage(app, { status: 'FAILED' })).edges.map((e) => e.node['id']);
    assert.deepEqual(errors.map((e) => e['runId']), runIds);
    for (const entry of errors) {
      assert.equal(entry['level'], 'ERROR');
      assert.equal(entry['jobId'], 'r');
      assert.match(entry['message'], /"r".*Test:boom.*remote said no/);
      assert.equal(entry['details']['externalCall'], 'Test:boom');
      assert.equal(entry['details']['error'], 'remote said no');
    }
    const since = await logPage(app, { since: iso(T0 + 30_000) });
    assert.deepEqual(
      since.edges.map((e) => [e.node['at'], e.node['level']]),
      [
        [iso(T0 + 30_100), 'ERROR'],
        [iso(T0 + 30_000), 'WARNING'],
      ],
      'entries at or after since: the failure and the coalescing warning',
    );
    assert.match(since.edges[1]!.node['message'], /missed 3 due times/);
    const warningsSince = await logPage(app, { level: 'WARNING', since: iso(T0 + 30_001) });
    assert.deepEqual(warningsSince.edges, []);
  });
});

describe('manual runs', () => {
  it('should run a job now: a RUNNING MANUAL run, CONFLICT while it runs, CANCELLED by cancelRun', async () => {
    const h = harness(sql);
    const hold = gate();
    let signal: AbortSignal | undefined;
    h.connector.define('hold', (ctx) => {
      signal = ctx.signal;
      return hold.promise;
    });
    const app = appFor(h);
    try {
      await createJob(app, { id: 'manual', externalCall: 'Test:hold', period: '1:0:0', enabled: false });
      h.clock.set(T0 + 1234);
      const started = nextEvent(h.bus, 'run:started', (p) => p.run.jobId === 'manual');
      const run = (await gqlOk(app, RUN_NOW, { id: 'manual' }))['runJobNow'];
      assert.equal(run['status'], 'RUNNING');
      assert.equal(run['trigger'], 'MANUAL');
      assert.equal(run['jobId'], 'manual');
      assert.equal(run['startedAt'], iso(T0 + 1234));
      assert.equal(run['scheduledAt'], iso(T0 + 1234));
      assert.equal(run['finishedAt'], null);
      assert.equal(run['durationMs'], null);
      await started;

      await rejects(app, RUN_NOW, { id: 'manual' }, 'CONFLICT');
      const listed = await runsPage(app, { jobId: 'manual' });
      assert.deepEqual(listed.edges.map((e) => [e.node['id'], e.node['status']]), [[run['id'], 'RUNNING']]);

      h.clock.set(T0 + 2000);
      const cancelled = (await gqlOk(app, CANCEL, { id: run['id'] }))['cancelRun'];
      assert.equal(cancelled['id'], run['id']);
      assert.equal(cancelled['status'], 'CANCELLED');
      assert.equal(cancelled['finishedAt'], iso(T0 + 2000));
      assert.equal(cancelled['durationMs'], 2000 - 1234);
      assert.equal(signal?.aborted, true, 'the connector was told to stop');
      const warnings = (await logPage(app, { jobId: 'manual', level: 'WARNING' })).edges.map((e) => e.node);
      assert.equal(warnings.length, 1);
      assert.equal(warnings[0]!['runId'], run['id']);
      assert.match(warnings[0]!['message'], /cancelled/);
      await rejects(app, CANCEL, { id: run['id'] }, 'CONFLICT');
    } finally {
      hold.open();
    }
  });

  it('should finish a manual run as SUCCEEDED without moving the grid', async () => {
    const h = harness(sql);
    h.connector.define('ok', async () => {});
    const app = appFor(h);
    await createJob(app, { id: 'now', externalCall: 'Test:ok', period: '0:1:0' });
    h.clock.set(T0 + 5000);
    const finished = nextEvent(h.bus, 'run:finished', (p) => p.run.jobId === 'now');
    const run = (await gqlOk(app, RUN_NOW, { id: 'now' }))['runJobNow'];
    assert.equal((await finished).run.id, run['id']);
    const { job } = await gqlOk(app, `{ job(id: "now") { nextRunAt lastRun { id status trigger } } }`);
    assert.deepEqual(job, { nextRunAt: iso(T0 + 60_000), lastRun: { id: run['id'], status: 'SUCCEEDED', trigger: 'MANUAL' } });
  });
});

describe('connectors', () => {
  it('should list the connectors with their operations', async () => {
    const h = harness(sql);
    h.connector.define('АвтоматическоеПолучениеТаблицыМарок', async () => {});
    h.connector.define('Clean crypto tails', async () => {});
    const app = appFor(h);
    const { connectors } = await gqlOk(app, `{ connectors { id kind builtIn operations hasSecret headers { name value } } }`);
    assert.deepEqual(connectors, [
      {
        id: 'Test',
        kind: 'SERVER_OPERATIONS',
        builtIn: false,
        operations: ['АвтоматическоеПолучениеТаблицыМарок', 'Clean crypto tails'],
        hasSecret: false,
        headers: [],
      },
    ]);
  });
});

describe('/health', () => {
  it('should answer 200 with status, instance and database when healthy, and 503 otherwise', async () => {
    const h = harness(sql);
    let state: 'ok' | 'down' | 'throws' = 'ok';
    const app = appFor(h, {
      health: async () => {
        if (state === 'throws') throw new Error('health check exploded');
        return state === 'ok'
          ? { ok: true, body: { instance: 'health-instance', database: 'up' } }
          : { ok: false, body: { instance: 'health-instance', database: 'down' } };
      },
    });
    const port = await app.listen(0, '127.0.0.1');
    try {
      const healthy = await fetch(`http://127.0.0.1:${port}/health`);
      assert.equal(healthy.status, 200);
      assert.match(healthy.headers.get('content-type') ?? '', /application\/json/);
      assert.deepEqual(await healthy.json(), { status: 'ok', instance: 'health-instance', database: 'up' });

      state = 'down';
      const down = await fetch(`http://127.0.0.1:${port}/health`);
      assert.equal(down.status, 503);
      const body = (await down.json()) as Json;
      assert.equal(body['database'], 'down');
      assert.notEqual(body['status'], 'ok');

      state = 'throws';
      const broken = await fetch(`http://127.0.0.1:${port}/health`);
      assert.equal(broken.status, 503);
      await broken.body?.cancel();

      const live = await fetch(`http://127.0.0.1:${port}/health/live`);
      assert.equal(live.status, 200, 'liveness does not depend on the database');
      await live.body?.cancel();
    } finally {
      await app.close();
    }
  });
});
