import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { createTestDatabase } from './helpers/db.ts';
import { type FuzzRequest, type FuzzTarget, judge, rowsChanged, runFuzz, send, snapshotRows, startFuzzTarget } from './helpers/fuzz.ts';

// The short form of the fuzz test of SPEC §8 (the long form: `npm run fuzz`). A few thousand
// generated malformed requests to one running service: each answer a coded GraphQL error or a 4xx,
// never a 5xx, a stack trace, SQL text or a secret; no error logged; no row changed.
// FUZZ_RUNS and FUZZ_SEED choose another run (the seed is printed with the figures).

// One seed, so that `npm test` gives the same answer every time; `npm run fuzz` draws a new one.
const RUNS = Number(process.env['FUZZ_RUNS'] ?? 3000);
const SEED = Number(process.env['FUZZ_SEED'] ?? 20261201);

const url = await createTestDatabase();
let target: FuzzTarget;
before(async () => {
  target = await startFuzzTarget({ DATABASE_URL: url });
});
after(() => target.stop());

const post = (body: unknown, path = '/graphql'): FuzzRequest => ({
  method: 'POST',
  path,
  headers: { 'content-type': 'application/json', accept: 'application/json' },
  body: typeof body === 'string' ? body : JSON.stringify(body),
  kind: 'regression',
});
const b64 = (text: string) => Buffer.from(text).toString('base64url');

/**
 * What the fuzz test found answered with an unexpected error (INTERNAL_SERVER_ERROR, logged), each
 * with the code it gets now ('*': any code, '': no error at all).
 */
const REGRESSIONS: { name: string; request: FuzzRequest; code: string; field?: string }[] = [
  {
    name: 'a list literal nested 3,000 deep (the parser ran out of stack)',
    request: post({ query: `{ jobs(enabled: ${'['.repeat(3000)}true${']'.repeat(3000)}) { id } }` }),
    code: 'GRAPHQL_PARSE_FAILED',
  },
  {
    name: 'a selection nested 1,000 deep',
    request: post({ query: `{ job(id: "fuzz-job") { ${'lastRun { job { '.repeat(1000)}id${' } }'.repeat(1000)} } }` }),
    code: '*',
  },
  {
    name: 'a GET whose variables are not JSON',
    request: {
      method: 'GET',
      path: '/graphql?query=%7B+jobs+%7B+id+%7D+%7D&variables=%7B%22broken%22%3A',
      headers: { accept: 'application/json', 'content-type': 'application/json' },
      kind: 'regression',
    },
    code: '*',
  },
  {
    name: 'a multipart request whose operations field is not JSON (yoga answered 200 with an uncoded error)',
    request: {
      method: 'POST',
      path: '/graphql',
      headers: { 'content-type': 'multipart/form-data; boundary=b', accept: 'application/json', 'x-graphql-yoga-csrf': '1' },
      body: '--b\r\nContent-Disposition: form-data; name="operations"\r\n\r\n{"query":\r\n--b--\r\n',
      kind: 'regression',
    },
    code: 'BAD_REQUEST',
  },
  {
    name: 'a NUL in a connector id to delete',
    request: post({ query: 'mutation($id: ID!) { deleteConnector(id: $id) }', variables: { id: '\u0000' } }),
    code: 'BAD_USER_INPUT',
    field: 'id',
  },
  {
    name: 'a NUL in a job name',
    request: post({
      query:
        'mutation { createJob(input: { id: "nul", name: "a\\u0000b", externalCall: "ServerOperationConnector:Noop", period: "1:0:0" }) { id } }',
    }),
    code: 'BAD_USER_INPUT',
    field: 'name',
  },
  {
    name: 'a NUL in a pause note, in a variable',
    request: post({ query: 'mutation($input: String) { pauseJob(id: "fuzz-job", note: $input) { id } }', variables: { input: 'x\u0000' } }),
    code: 'BAD_USER_INPUT',
    field: 'note',
  },
  {
    name: 'a NUL in a secret, deep in an input variable',
    request: post({
      query: 'mutation($c: CreateConnectorInput!) { createConnector(input: $c) { id } }',
      variables: { c: { id: 'Nul', baseUrl: 'http://127.0.0.1:9', authScheme: 'BEARER', secret: 't\u0000' } },
    }),
    code: 'BAD_USER_INPUT',
    field: 'secret',
  },
  {
    name: 'variables nested 20,000 deep (the NUL check walks them without recursion)',
    request: post(`{"query":"{ jobs { id } }","variables":{"a":${'{"a":'.repeat(20_000)}1${'}'.repeat(20_000)}}}`),
    code: '',
  },
  {
    name: 'a cursor of the year +275760',
    request: post({ query: `{ logEntries(after: "${b64('+275760-09-13T00:00:00.000Z|999999999999999999')}") { __typename } }` }),
    code: 'BAD_USER_INPUT',
    field: 'after',
  },
  {
    name: 'a cursor of the year 0000',
    request: post({ query: `{ runs(after: "${b64('0000-01-01T00:00:00.000Z|1')}") { __typename } }` }),
    code: 'BAD_USER_INPUT',
    field: 'after',
  },
  {
    name: 'a DateTime of the year 0000, which PostgreSQL has not',
    request: post({ query: 'query($s: DateTime) { logEntries(since: $s) { __typename } }', variables: { s: '0000-01-01T00:00:00.026Z' } }),
    code: 'BAD_USER_INPUT',
  },
  {
    name: 'a DateTime that is the year 10000 in UTC',
    request: post({ query: 'query($s: DateTime) { logEntries(since: $s) { __typename } }', variables: { s: '9999-12-31T23:00:00-12:00' } }),
    code: 'BAD_USER_INPUT',
  },
  {
    name: 'a preview of no runs (nextRuns count 0)',
    request: post({ query: '{ jobs { nextRuns(count: 0) { at } } job(id: "fuzz-job") { nextRuns(count: 101) { at } } }' }),
    code: 'BAD_USER_INPUT',
    field: 'count',
  },
  {
    name: 'a what-if window that ends before it starts',
    request: post({ query: '{ simulateDowntime(from: "2026-01-02T00:00:00Z", to: "2026-01-01T00:00:00Z") { dueTimes } }' }),
    code: 'BAD_USER_INPUT',
    field: 'to',
  },
  {
    name: 'a what-if window of the whole calendar PostgreSQL has',
    request: post({
      query: 'query($f: DateTime!, $t: DateTime!) { simulateDowntime(from: $f, to: $t) { dueTimes } }',
      variables: { f: '0001-01-01T00:00:00Z', t: '9999-12-31T23:59:59.999Z' },
    }),
    code: 'BAD_USER_INPUT',
    field: 'to',
  },
  {
    name: 'a list with one bad job, pruning everything else',
    request: post({
      query: 'mutation($jobs: [CreateJobInput!]!) { applyJobs(input: { jobs: $jobs, prune: true }) { deleted } }',
      variables: {
        jobs: [
          { id: 'fuzz-job', name: 'Fuzz', externalCall: 'ServerOperationConnector:Noop', period: '1:0:0', enabled: false },
          { id: 'listed', name: 'Listed', externalCall: 'ServerOperationConnector:Noop', cron: '* * * * *', timeZone: 'Mars/Olympus_Mons' },
        ],
      },
    }),
    code: 'BAD_USER_INPUT',
    field: 'jobs.1.timeZone',
  },
  {
    name: 'a retry policy with a factor beyond any backoff',
    request: post({
      query: 'mutation { updateJob(id: "fuzz-job", input: { retry: { backoffFactor: 1e308, maxAttempts: 10 } }) { id } }',
    }),
    code: 'BAD_USER_INPUT',
    field: 'retry.backoffFactor',
  },
];

describe('fuzz (SPEC §8)', () => {
  it('should answer what the fuzz test once found unanswered or masked with a coded error', async () => {
    const before = await snapshotRows(target.sql);
    const logged = target.errors.length;
    for (const { name, request, code, field } of REGRESSIONS) {
      const answer = await send(target.base, request);
      assert.equal(judge(request, answer, target.secrets), null, `${name}: ${answer.status} ${answer.body.slice(0, 300)}`);
      const errors = (JSON.parse(answer.body || '{}') as { errors?: { extensions?: { code?: string; field?: string } }[] }).errors ?? [];
      if (code === '') assert.deepEqual(errors, [], name);
      else if (code === '*') assert.ok(typeof errors[0]?.extensions?.code === 'string', `${name}: ${answer.body.slice(0, 300)}`);
      else assert.equal(errors[0]?.extensions?.code, code, `${name}: ${answer.body.slice(0, 300)}`);
      if (field) assert.equal(errors[0]?.extensions?.field, field, name);
      assert.equal(
        target.errors.length,
        logged,
        `${name}: the service logged ${String(JSON.stringify(target.errors.at(-1))).slice(0, 300)}`,
      );
    }
    assert.equal(rowsChanged(before, await snapshotRows(target.sql)), 0);
  });

  it('should answer a body over MAX_BODY_BYTES with 413, not read it all', async () => {
    const request = post(`{"query":"{ jobs { id } }","variables":{"x":"${'x'.repeat(4 * 1024 * 1024 + 1)}"}}`);
    const answer = await send(target.base, request);
    assert.equal(answer.status, 413, answer.body.slice(0, 300));
    assert.equal(judge(request, answer, target.secrets), null);
  });

  it(`should answer ${RUNS} generated malformed requests with coded errors or 4xx, and change nothing`, { timeout: 120_000 }, async () => {
    const report = await runFuzz(target, { runs: RUNS, seed: SEED });
    const figures = `seed ${report.seed}: ${report.operations} operations tried, ${report.unexpected} unexpected answers, ${report.serverErrors} 5xx, ${report.rowsChanged} rows changed, ${report.loggedErrors} errors logged, in ${report.ms} ms`;
    console.log(`fuzz: ${figures}`);
    assert.equal(
      report.unexpected + report.serverErrors + report.rowsChanged + report.loggedErrors,
      0,
      `${figures}\n${report.examples.join('\n')}`,
    );
  });
});
