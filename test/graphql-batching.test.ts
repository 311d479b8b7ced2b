// The GraphQL API's per-row lookups and bulk creation in a bounded number of statements (issue 11):
// a page of jobs with their last runs or runs, a page of runs with their jobs, and createJob 25
// aliases at a time, each answered correctly, in as many statements for many rows as for few.
// Statements are counted by the API's database client itself (postgres.js's `debug` hook).
import assert from 'node:assert/strict';
import { after, beforeEach, describe, it } from 'node:test';
import postgres from 'postgres';
import type { Sql } from '../src/db/client.ts';
import { appFor, gql, gqlOk, type Json } from './helpers/api.ts';
import { testDatabase } from './helpers/db.ts';
import { harness, T0 } from './helpers/harness.ts';

const { sql, url } = await testDatabase();
beforeEach(() => sql`truncate jobs, job_runs, log_entries`);

/**
 * A client like the service's (camelCase rows) that counts the statements it sends, on one
 * connection already open (opening one reads the server's types: a statement of its own).
 */
async function countingClient(): Promise<{ sql: Sql; statements: () => number; reset: () => void }> {
  let statements = 0;
  const counted = postgres(url, { max: 1, onnotice: () => {}, transform: postgres.camel, debug: () => void statements++ });
  after(() => counted.end({ timeout: 5 }));
  await counted`select 1`;
  return { sql: counted, statements: () => statements, reset: () => void (statements = 0) };
}

const iso = (ms: number) => new Date(ms).toISOString();

/** Jobs `job-01`… straight into the table (the API's own path is not what these tests count). */
async function insertJobs(count: number): Promise<string[]> {
  const ids = Array.from({ length: count }, (_, i) => `job-${String(i + 1).padStart(2, '0')}`);
  await sql`
    insert into jobs (id, name, connector_id, method, period_seconds, anchor_at, next_due_at, created_at, updated_at)
    select id, 'A job', 'Test', 'ok', 60, ${new Date(T0)}, ${new Date(T0 + 60_000)}, ${new Date(T0)}, ${new Date(T0)}
    from unnest(${sql.array(ids)}::text[]) as id`;
  return ids;
}

/** A finished run of a job due at `atMs`; answers its id. */
async function insertRun(jobId: string, atMs: number, status: string, trigger = 'SCHEDULE'): Promise<string> {
  const [row] = await sql<{ id: string }[]>`
    insert into job_runs (job_id, trigger, scheduled_at, started_at, finished_at, status)
    values (${jobId}, ${trigger}, ${new Date(atMs)}, ${new Date(atMs)}, ${new Date(atMs + 5)}, ${status})
    returning id`;
  return row!.id;
}

describe('jobs with their runs', () => {
  /**
   * Every third job has no run; the others have runs due at T0 + 1, 2 and 3 minutes (stored
   * newest first, so that insertion order is not the answer) and a MANUAL run due at the same
   * time as their latest, inserted after it: the latest by due time, then by id.
   */
  async function jobsWithRuns(count: number): Promise<Map<string, { id: string; status: string } | null>> {
    const expected = new Map<string, { id: string; status: string } | null>();
    for (const [index, jobId] of (await insertJobs(count)).entries()) {
      if (index % 3 === 2) {
        expected.set(jobId, null);
        continue;
      }
      for (const minutes of [3, 1, 2]) await insertRun(jobId, T0 + minutes * 60_000, minutes === 3 ? 'FAILED' : 'SUCCEEDED');
      const status = index % 2 === 0 ? 'CANCELLED' : 'TIMED_OUT';
      expected.set(jobId, { id: await insertRun(jobId, T0 + 3 * 60_000, status, 'MANUAL'), status });
    }
    return expected;
  }

  // Asked as a field of the list's selection, the last runs are read right after the jobs; asked
  // through a fragment, through the loader: one statement either way.
  for (const [how, document] of [
    ['a field', `{ jobs { id lastRun { id jobId status scheduledAt } } }`],
    ['a fragment', `{ jobs { id ...Last } } fragment Last on Job { lastRun { id jobId status scheduledAt } }`],
  ]) {
    it(`should answer each job's own latest run as lastRun (asked as ${how}), null for a job without runs, in the same number of statements for 3 jobs as for 30`, async () => {
      const h = harness(sql);
      const counted = await countingClient();
      const app = appFor(h, { sql: counted.sql });
      const statements: number[] = [];
      for (const count of [3, 30]) {
        await sql`truncate jobs, job_runs`;
        const expected = await jobsWithRuns(count);
        counted.reset();
        const { jobs } = await gqlOk<{ jobs: Json[] }>(app, document!);
        statements.push(counted.statements());
        assert.equal(jobs.length, count);
        for (const job of jobs) {
          const want = expected.get(job['id'])!;
          assert.deepEqual(
            job['lastRun'],
            want && { id: want.id, jobId: job['id'], status: want.status, scheduledAt: iso(T0 + 180_000) },
            `lastRun of ${job['id']}`,
          );
        }
      }
      // One for the jobs, one for all their last runs.
      assert.deepEqual(statements, [2, 2]);
    });
  }

  it("should answer each job's own page of runs, in the same number of statements for 3 jobs as for 30", async () => {
    const h = harness(sql);
    const counted = await countingClient();
    const app = appFor(h, { sql: counted.sql });
    const statements: number[] = [];
    for (const count of [3, 30]) {
      await sql`truncate jobs, job_runs`;
      const ids = await insertJobs(count);
      // Job n has n runs (up to 3), due a minute apart.
      const runIds = new Map<string, string[]>();
      for (const [index, jobId] of ids.entries()) {
        const mine: string[] = [];
        for (let minute = 1; minute <= Math.min(index + 1, 3); minute++)
          mine.unshift(await insertRun(jobId, T0 + minute * 60_000, 'SUCCEEDED'));
        runIds.set(jobId, mine);
      }
      counted.reset();
      const { jobs } = await gqlOk<{ jobs: Json[] }>(
        app,
        `{ jobs { id runs(first: 2) { edges { node { id jobId } } pageInfo { hasNextPage } } } }`,
      );
      statements.push(counted.statements());
      for (const job of jobs) {
        const mine = runIds.get(job['id'])!;
        assert.deepEqual(
          job['runs']['edges'].map((e: Json) => e['node']['id']),
          mine.slice(0, 2),
          `runs of ${job['id']}, newest first`,
        );
        assert.equal(job['runs']['pageInfo']['hasNextPage'], mine.length > 2, `hasNextPage of ${job['id']}`);
      }
    }
    assert.deepEqual(statements, [2, 2]);
  });
});

describe('runs with their jobs', () => {
  it('should answer each run its own job, null for a deleted one, in the same number of statements for 4 runs as for 40', async () => {
    const h = harness(sql);
    const counted = await countingClient();
    const app = appFor(h, { sql: counted.sql });
    const statements: number[] = [];
    for (const count of [4, 40]) {
      await sql`truncate jobs, job_runs`;
      const ids = await insertJobs(count / 2);
      // Two runs per job, and runs of a job that no longer exists.
      for (const [index, jobId] of ids.entries()) {
        await insertRun(jobId, T0 + index * 1000, 'SUCCEEDED');
        await insertRun(jobId, T0 + index * 1000 + 500, 'FAILED');
      }
      await insertRun('deleted-job', T0 - 1000, 'SUCCEEDED');
      await sql`update jobs set name = 'Job ' || id`;
      counted.reset();
      const { runs } = await gqlOk<{ runs: { edges: { node: Json }[] } }>(
        app,
        `{ runs(first: 100) { edges { node { id jobId job { id name } } } } }`,
      );
      statements.push(counted.statements());
      assert.equal(runs.edges.length, count + 1);
      for (const { node } of runs.edges) {
        assert.deepEqual(node['job'], node['jobId'] === 'deleted-job' ? null : { id: node['jobId'], name: `Job ${node['jobId']}` });
      }
    }
    // One for the runs, one for all their jobs.
    assert.deepEqual(statements, [2, 2]);
  });
});

describe('creating jobs many at a time', () => {
  const mutation = (ids: string[]) =>
    `mutation { ${ids
      .map(
        (id, i) => `j${i}: createJob(input: { id: "${id}", name: "Job ${id}", externalCall: "Test:ok", period: "0:0:5" }) { id nextRunAt }`,
      )
      .join(' ')} }`;

  it('should create 25 aliased jobs, each with its audit entry and events, in the same number of statements as 2', async () => {
    const counted = await countingClient();
    const h = harness(counted.sql);
    h.connector.define('ok', async () => {});
    const app = appFor(h);
    const statements: number[] = [];
    for (const count of [2, 25]) {
      await sql`truncate jobs, job_runs, log_entries`;
      h.events.length = 0;
      const ids = Array.from({ length: count }, (_, i) => `bulk-${count}-${i}`);
      counted.reset();
      const data = await gqlOk(app, mutation(ids));
      statements.push(counted.statements());
      assert.deepEqual(
        Object.values(data),
        ids.map((id) => ({ id, nextRunAt: iso(T0 + 5000) })),
      );
      const audit = await sql<{ jobId: string; message: string }[]>`select job_id, message from log_entries order by id`;
      assert.deepEqual(
        audit.map((e) => [e.jobId, e.message]),
        ids.map((id) => [id, `Job "${id}" created`]),
      );
      assert.deepEqual(
        h.events.filter((e) => e.topic === 'job:created').map((e) => (e.payload as { job: { id: string } }).job.id),
        ids,
      );
      assert.equal(h.events.filter((e) => e.topic === 'log:added').length, count);
    }
    // begin, the recorded due times of the ids, the jobs, their audit entries, commit.
    assert.deepEqual(statements, [5, 5]);
  });

  it('should stop at a taken id as GraphQL stops a mutation: the jobs before it created, those after it not', async () => {
    const h = harness(sql);
    h.connector.define('ok', async () => {});
    const app = appFor(h);
    await gqlOk(app, mutation(['taken']));
    const result = await gql(app, mutation(['first', 'second', 'taken', 'fourth']));
    assert.equal(result.data, null);
    assert.equal(result.errors?.length, 1);
    assert.equal(result.errors[0]!.extensions?.code, 'CONFLICT', result.text);
    assert.deepEqual(result.errors[0]!.path, ['j2']);
    const jobs = await sql<{ id: string }[]>`select id from jobs order by id`;
    assert.deepEqual(
      jobs.map((j) => j.id),
      ['first', 'second', 'taken'],
    );
    const audit = await sql<{ jobId: string }[]>`select job_id from log_entries order by id`;
    assert.deepEqual(
      audit.map((e) => e.jobId),
      ['taken', 'first', 'second'],
    );
  });

  it('should leave a stored job alone when a later job of the run has its id too', async () => {
    const h = harness(sql);
    h.connector.define('ok', async () => {});
    const app = appFor(h);
    await gqlOk(app, mutation(['taken-1']));
    await gqlOk(app, mutation(['taken-2']));
    const result = await gql(app, mutation(['new', 'taken-1', 'taken-2', 'after']));
    assert.deepEqual([result.errors?.[0]?.extensions?.code, result.errors?.[0]?.path], ['CONFLICT', ['j1']], result.text);
    const jobs = await sql<{ id: string; name: string }[]>`select id, name from jobs order by id`;
    assert.deepEqual(
      jobs.map((j) => [j.id, j.name]),
      [
        ['new', 'Job new'],
        ['taken-1', 'Job taken-1'],
        ['taken-2', 'Job taken-2'],
      ],
      'the stored taken-2 was not deleted with the jobs after the refused one',
    );
  });

  it('should stop at bad input and at an id given twice, creating only the jobs before it', async () => {
    const h = harness(sql);
    const app = appFor(h);
    const bad = await gql(
      app,
      `mutation { a: createJob(input: { id: "a", name: "A", externalCall: "Test:ok", period: "0:0:5" }) { id }
                  b: createJob(input: { id: "b", name: "B", externalCall: "Test:ok", period: "0:99:5" }) { id }
                  c: createJob(input: { id: "c", name: "C", externalCall: "Test:ok", period: "0:0:5" }) { id } }`,
    );
    assert.deepEqual(
      [bad.errors?.[0]?.extensions?.code, bad.errors?.[0]?.extensions?.field, bad.errors?.[0]?.path],
      ['BAD_USER_INPUT', 'period', ['b']],
    );
    const twice = await gql(app, mutation(['d', 'e', 'd', 'f']));
    assert.deepEqual([twice.errors?.[0]?.extensions?.code, twice.errors?.[0]?.path], ['CONFLICT', ['j2']]);
    const jobs = await sql<{ id: string }[]>`select id from jobs order by id`;
    assert.deepEqual(
      jobs.map((j) => j.id),
      ['a', 'd', 'e'],
    );
  });
});
