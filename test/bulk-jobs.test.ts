// Many jobs in one call (SPEC §11, for the dashboard's `Pause all` / `Resume all` and any client):
// pauseJobs / resumeJobs change every job as pauseJob / resumeJob would, in one transaction, and an
// unknown id changes nothing. And `jobs(ids:)`, the rows a list shows.
import assert from 'node:assert/strict';
import { beforeEach, describe, it } from 'node:test';
import type { Topic } from '../src/events/topics.ts';
import { appFor, createJob, gqlOk, type Json, rejections } from './helpers/api.ts';
import { testDatabase } from './helpers/db.ts';
import { harness } from './helpers/harness.ts';

const { sql } = await testDatabase();
beforeEach(() => sql`truncate jobs, job_runs, log_entries`);
const { rejects } = rejections(sql);

const FIELDS = 'id enabled pausedNote nextRunAt consecutiveFailures';
const PAUSE_ALL = `mutation($ids: [ID!]!, $note: String) { pauseJobs(ids: $ids, note: $note) { ${FIELDS} } }`;
const RESUME_ALL = `mutation($ids: [ID!]!) { resumeJobs(ids: $ids) { ${FIELDS} } }`;

/** Records the topics the bus publishes, with the job each concerns. */
function recordTopics(h: ReturnType<typeof harness>): [Topic, string][] {
  const seen: [Topic, string][] = [];
  h.bus.subscribe((event) => {
    if (event.topic === 'job:updated') seen.push([event.topic, event.payload.job.id]);
    return undefined;
  });
  return seen;
}

describe('pauseJobs and resumeJobs', () => {
  it('should pause every job with the note in one call, each with its audit entry and event, and answer them by id', async () => {
    const h = harness(sql);
    const app = appFor(h);
    for (const id of ['b', 'a', 'c']) await createJob(app, { id });
    const topics = recordTopics(h);
    const { pauseJobs } = await gqlOk(app, PAUSE_ALL, { ids: ['c', 'a'], note: 'until the 1C upgrade' });
    assert.deepEqual(pauseJobs, [
      { id: 'a', enabled: false, pausedNote: 'until the 1C upgrade', nextRunAt: null, consecutiveFailures: 0 },
      { id: 'c', enabled: false, pausedNote: 'until the 1C upgrade', nextRunAt: null, consecutiveFailures: 0 },
    ]);
    const { jobs } = await gqlOk(app, '{ jobs { id enabled } }');
    assert.deepEqual(jobs, [
      { id: 'a', enabled: false },
      { id: 'b', enabled: true },
      { id: 'c', enabled: false },
    ]);
    const entries = await sql<{ jobId: string; message: string; details: Json }[]>`
      select job_id, message, details from log_entries where message like '%paused%' order by job_id`;
    assert.deepEqual(
      entries.map((e) => [e.jobId, e.message, e.details['actor'], e.details['note']]),
      [
        ['a', 'Job "a" paused: until the 1C upgrade', 'local', 'until the 1C upgrade'],
        ['c', 'Job "c" paused: until the 1C upgrade', 'local', 'until the 1C upgrade'],
      ],
    );
    await new Promise((resolve) => setImmediate(resolve));
    assert.deepEqual(topics.sort(), [
      ['job:updated', 'a'],
      ['job:updated', 'c'],
    ]);
  });

  it('should resume the paused jobs of the list, leave the others as they are, and start their failure counts afresh', async () => {
    const h = harness(sql);
    const app = appFor(h);
    for (const id of ['p1', 'p2', 'running']) await createJob(app, { id });
    await gqlOk(app, PAUSE_ALL, { ids: ['p1', 'p2'] });
    await sql`update jobs set consecutive_failures = 3 where id = 'p1'`;
    const before = await sql<{ count: number }[]>`select count(*)::int as count from log_entries`;
    const { resumeJobs } = await gqlOk(app, RESUME_ALL, { ids: ['p1', 'running', 'p2'] });
    assert.deepEqual(
      resumeJobs.map((job: Json) => [job['id'], job['enabled'], job['pausedNote'], job['consecutiveFailures'], job['nextRunAt'] !== null]),
      [
        ['p1', true, null, 0, true],
        ['p2', true, null, 0, true],
        ['running', true, null, 0, true],
      ],
    );
    const after = await sql<{ message: string }[]>`select message from log_entries order by id offset ${before[0]!.count}`;
    assert.deepEqual(after.map((e) => e.message).sort(), ['Job "p1" resumed', 'Job "p2" resumed'], 'nothing written for a job not paused');
  });

  it('should refuse the whole call when an id has no job (NOT_FOUND, naming it), changing nothing', async () => {
    const h = harness(sql);
    const app = appFor(h);
    for (const id of ['x', 'y']) await createJob(app, { id });
    const refused = await rejects(app, PAUSE_ALL, { ids: ['x', 'gone', 'y'], note: 'n' }, 'NOT_FOUND');
    assert.match(refused.errors![0]!.message, /"gone"/);
    assert.deepEqual(refused.errors![0]!.extensions?.['ids'], ['gone']);
    await gqlOk(app, PAUSE_ALL, { ids: ['x'] });
    await rejects(app, RESUME_ALL, { ids: ['x', 'nope'] }, 'NOT_FOUND');
  });

  it('should refuse a malformed id or an oversized note as bad input, and answer an empty list for no ids', async () => {
    const h = harness(sql);
    const app = appFor(h);
    await createJob(app, { id: 'x' });
    await rejects(app, PAUSE_ALL, { ids: ['x', 'bad id!'] }, 'BAD_USER_INPUT', 'ids');
    await rejects(app, PAUSE_ALL, { ids: ['x'], note: 'n'.repeat(1001) }, 'BAD_USER_INPUT', 'note');
    assert.deepEqual((await gqlOk(app, PAUSE_ALL, { ids: [] }))['pauseJobs'], []);
    assert.deepEqual((await gqlOk(app, RESUME_ALL, { ids: [] }))['resumeJobs'], []);
  });

  it('should pause an id given twice once', async () => {
    const h = harness(sql);
    const app = appFor(h);
    await createJob(app, { id: 'twice' });
    const { pauseJobs } = await gqlOk(app, PAUSE_ALL, { ids: ['twice', 'twice'] });
    assert.equal(pauseJobs.length, 1);
    const [row] = await sql<{ count: number }[]>`select count(*)::int as count from log_entries where message like '%paused%'`;
    assert.equal(row!.count, 1);
  });
});

describe('jobs(ids:)', () => {
  it('should list only the jobs of the ids that exist, by id, and combine with enabled', async () => {
    const h = harness(sql);
    const app = appFor(h);
    for (const id of ['j3', 'j1', 'j2', 'выгрузка']) await createJob(app, { id });
    await gqlOk(app, PAUSE_ALL, { ids: ['j2'] });
    const list = async (variables: Json) =>
      (
        (await gqlOk(app, 'query($ids: [ID!], $enabled: Boolean) { jobs(ids: $ids, enabled: $enabled) { id } }', variables))[
          'jobs'
        ] as Json[]
      ).map((job) => job['id']);
    assert.deepEqual(await list({ ids: ['j3', 'missing', 'j1', 'выгрузка'] }), ['j1', 'j3', 'выгрузка']);
    assert.deepEqual(await list({ ids: ['j1', 'j2'], enabled: true }), ['j1']);
    assert.deepEqual(await list({ ids: [] }), []);
    assert.deepEqual(await list({}), ['j1', 'j2', 'j3', 'выгрузка']);
    await rejects(app, 'query { jobs(ids: ["no good"]) { id } }', {}, 'BAD_USER_INPUT', 'ids');
  });
});
