// The GraphQL API over runs and log entries: listing and paging them, a job's last run, manual
// runs and cancelling them.
import assert from 'node:assert/strict';
import { beforeEach, describe, it } from 'node:test';
import {
  appFor,
  CANCEL,
  type Connection,
  createJob,
  DELETE,
  gql,
  gqlOk,
  type Json,
  logPage,
  rejections,
  RUN_NOW,
  runsPage,
  UPDATE,
} from './helpers/api.ts';
import { gate } from './helpers/connector.ts';
import { testDatabase } from './helpers/db.ts';
import { harness, type Harness, nextEvent, T0, tickAndSettle } from './helpers/harness.ts';

const { sql } = await testDatabase();
// Each test starts from empty tables: a tick claims every due job in the database.
beforeEach(() => sql`truncate jobs, job_runs, log_entries`);

const iso = (ms: number) => new Date(ms).toISOString();
const { rejects } = rejections(sql);

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
    const fresh = await gqlOk(
      app,
      `{ job(id: "never-ran") { lastRun { id } runs { edges { cursor } pageInfo { hasNextPage endCursor } } } }`,
    );
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
    const expected = [...all].sort(
      (a, b) => Date.parse(b['scheduledAt']) - Date.parse(a['scheduledAt']) || Number(b['id']) - Number(a['id']),
    );
    assert.deepEqual(
      all.map((r) => r['id']),
      expected.map((r) => r['id']),
      'newest first by scheduledAt, then id',
    );

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
      assert.deepEqual(
        seen,
        all.map((r) => r['id']),
        `pages of ${first} cover every run once, in order`,
      );
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
    assert.deepEqual(
      ats,
      [4, 3, 2, 1, 0].map((s) => iso(T0 + s * 1000)),
    );
  });

  it('should still list the runs and log entries of a deleted job, and an empty page for an id with none', async () => {
    const h = harness(sql);
    const app = appFor(h);
    await jobWithRuns(h, app);
    await gqlOk(app, DELETE, { id: 'r' });
    const runs = await runsPage(app, { jobId: 'r' });
    assert.equal(runs.edges.length, 3);
    assert.ok(
      runs.edges.every((e) => e.node['job'] === null),
      'the job itself is gone',
    );
    const log = await logPage(app, { jobId: 'r' });
    assert.ok(log.edges.length >= 5);
    assert.match(log.edges[0]!.node['message'], /deleted/);

    const empty = { edges: [], pageInfo: { hasNextPage: false, endCursor: null } };
    const none = await gql(
      app,
      `{ runs(jobId: "never-existed") { edges { cursor } pageInfo { hasNextPage endCursor } }
      logEntries(jobId: "never-existed") { edges { cursor } pageInfo { hasNextPage endCursor } } }`,
    );
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
    assert.deepEqual(
      errors.map((e) => e['runId']),
      runIds,
    );
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
      assert.deepEqual(
        listed.edges.map((e) => [e.node['id'], e.node['status']]),
        [[run['id'], 'RUNNING']],
      );

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
