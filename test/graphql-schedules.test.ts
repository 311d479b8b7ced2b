// The GraphQL surface of SPEC §3b over jobs: cron jobs in a zone created and updated through the
// API (switching period ↔ cron), the policies on Job and its inputs, the preview `nextRuns` (a
// daylight-saving day included), the what-if `simulateDowntime`, JobRun.attempt / retryOf, and the
// codes and fields of bad input.
import assert from 'node:assert/strict';
import { beforeEach, describe, it } from 'node:test';
import { appFor, createJob, gql, gqlOk, type Json, rejections, UPDATE } from './helpers/api.ts';
import { ManualClock } from './helpers/clock.ts';
import { testDatabase } from './helpers/db.ts';
import { harness, nextEvent, T0, tickAndSettle } from './helpers/harness.ts';

const { sql } = await testDatabase();
beforeEach(() => sql`truncate jobs, job_runs, log_entries`);
const { rejects } = rejections(sql);

const iso = (ms: number) => new Date(ms).toISOString();
const at = (text: string) => Date.parse(text);

const SCHEDULE = `id period periodSeconds cron timeZone endAt enabled nextRunAt timeoutSeconds overlap misfire
  retry { maxAttempts backoffSeconds backoffFactor maxBackoffSeconds } autoPauseAfterFailures consecutiveFailures`;
const CREATE = `mutation($input: CreateJobInput!) { createJob(input: $input) { ${SCHEDULE} } }`;
const UPDATE_SCHEDULE = `mutation($id: ID!, $input: UpdateJobInput!) { updateJob(id: $id, input: $input) { ${SCHEDULE} } }`;
const NEXT_RUNS = `query($id: ID!, $count: Int) { job(id: $id) { enabled nextRunAt nextRuns(count: $count) { at localTime dst } } }`;
const DEFAULT_RETRY = { maxAttempts: 1, backoffSeconds: 10, backoffFactor: 2, maxBackoffSeconds: 3600 };

const cronInput = (overrides: Json = {}) => ({ id: 'nightly', name: 'Nightly', externalCall: 'Test:ok', cron: '30 2 * * *', ...overrides });

/** A harness and app whose clock reads `now`. */
function appAt(now: number) {
  const h = harness(sql, { clock: new ManualClock(now) });
  h.connector.define('ok', async () => {});
  h.connector.define('fail', async () => {
    throw new Error('отказ');
  });
  return { h, app: appFor(h) };
}

async function nextRuns(app: ReturnType<typeof appFor>, id: string, count?: number): Promise<Json> {
  return (await gqlOk(app, NEXT_RUNS, { id, count }))['job'];
}

describe('cron jobs through the API', () => {
  it('should create a cron job in a zone with every policy at its default, timeZone UTC when none is given', async () => {
    const { app } = appAt(at('2027-03-27T12:00:00Z'));
    const job = (await gqlOk(app, CREATE, { input: cronInput({ timeZone: 'Europe/Berlin' }) }))['createJob'];
    assert.deepEqual(job, {
      id: 'nightly',
      period: null,
      periodSeconds: null,
      cron: '30 2 * * *',
      timeZone: 'Europe/Berlin',
      endAt: null,
      enabled: true,
      // 02:30 does not exist in Berlin on 2027-03-28: the first instant after the gap, 03:00 CEST.
      nextRunAt: '2027-03-28T01:00:00.000Z',
      timeoutSeconds: 3600,
      overlap: 'SKIP',
      misfire: 'RUN_ONCE',
      retry: DEFAULT_RETRY,
      autoPauseAfterFailures: null,
      consecutiveFailures: 0,
    });
    const utc = (await gqlOk(app, CREATE, { input: cronInput({ id: 'utc', cron: ' @hourly ' }) }))['createJob'];
    assert.deepEqual([utc.cron, utc.timeZone, utc.nextRunAt], ['@hourly', 'UTC', '2027-03-27T13:00:00.000Z']);
  });

  it('should keep every policy given to createJob, and a cron job’s default timeout as its interval under an hour', async () => {
    const { app } = appAt(T0);
    const job = (
      await gqlOk(app, CREATE, {
        input: cronInput({
          cron: '*/20 * * * * *',
          timeZone: 'Europe/Moscow',
          endAt: '2026-02-01T00:00:00+03:00',
          overlap: 'QUEUE_ONE',
          misfire: 'SKIP',
          retry: { maxAttempts: 3, backoffSeconds: 5 },
          autoPauseAfterFailures: 7,
        }),
      })
    )['createJob'];
    assert.deepEqual(job, {
      id: 'nightly',
      period: null,
      periodSeconds: null,
      cron: '*/20 * * * * *',
      timeZone: 'Europe/Moscow',
      endAt: '2026-01-31T21:00:00.000Z',
      enabled: true,
      nextRunAt: iso(T0 + 20_000),
      timeoutSeconds: 20,
      overlap: 'QUEUE_ONE',
      misfire: 'SKIP',
      retry: { maxAttempts: 3, backoffSeconds: 5, backoffFactor: 2, maxBackoffSeconds: 3600 },
      autoPauseAfterFailures: 7,
      consecutiveFailures: 0,
    });
  });

  it('should switch a period job to cron and back with updateJob, changing the zone on its own', async () => {
    const { app } = appAt(T0);
    await createJob(app, { id: 'switch', period: '0:0:30' });
    const toCron = (await gqlOk(app, UPDATE_SCHEDULE, { id: 'switch', input: { cron: '0 9 * * 1-5' } }))['updateJob'];
    assert.deepEqual(
      [toCron.period, toCron.periodSeconds, toCron.cron, toCron.timeZone, toCron.nextRunAt],
      // 2026-01-01 is a Thursday.
      [null, null, '0 9 * * 1-5', 'UTC', '2026-01-01T09:00:00.000Z'],
    );
    const zoned = (await gqlOk(app, UPDATE_SCHEDULE, { id: 'switch', input: { timeZone: 'Asia/Yekaterinburg' } }))['updateJob'];
    assert.deepEqual([zoned.cron, zoned.timeZone, zoned.nextRunAt], ['0 9 * * 1-5', 'Asia/Yekaterinburg', '2026-01-01T04:00:00.000Z']);
    const back = (await gqlOk(app, UPDATE_SCHEDULE, { id: 'switch', input: { period: '0:0:30' } }))['updateJob'];
    assert.deepEqual(
      [back.period, back.periodSeconds, back.cron, back.timeZone, back.nextRunAt],
      ['0:00:30', 30, null, null, iso(T0 + 30_000)],
    );
  });

  it('should set the policies with updateJob, and restore their defaults with null', async () => {
    const { app } = appAt(T0);
    await createJob(app, { id: 'policies', period: '0:1:0' });
    const set = (
      await gqlOk(app, UPDATE_SCHEDULE, {
        id: 'policies',
        input: {
          overlap: 'ALLOW',
          misfire: 'SKIP',
          retry: { maxAttempts: 10, backoffFactor: 1.5, maxBackoffSeconds: 60 },
          autoPauseAfterFailures: 1000,
          endAt: iso(T0 + 3_600_000),
        },
      })
    )['updateJob'];
    assert.deepEqual(
      [set.overlap, set.misfire, set.retry, set.autoPauseAfterFailures, set.endAt, set.nextRunAt],
      [
        'ALLOW',
        'SKIP',
        { maxAttempts: 10, backoffSeconds: 10, backoffFactor: 1.5, maxBackoffSeconds: 60 },
        1000,
        iso(T0 + 3_600_000),
        iso(T0 + 60_000),
      ],
    );
    const reset = (
      await gqlOk(app, UPDATE_SCHEDULE, { id: 'policies', input: { retry: null, autoPauseAfterFailures: null, endAt: null } })
    )['updateJob'];
    assert.deepEqual(
      [reset.overlap, reset.misfire, reset.retry, reset.autoPauseAfterFailures, reset.endAt],
      ['ALLOW', 'SKIP', DEFAULT_RETRY, null, null],
    );
  });

  it('should answer nextRunAt null once a job is past its endAt, the job still enabled', async () => {
    const { h, app } = appAt(T0);
    await createJob(app, { id: 'ending', period: '0:0:10', endAt: iso(T0 + 25_000) });
    for (const t of [10_000, 20_000]) {
      h.clock.set(T0 + t);
      await tickAndSettle(h);
    }
    const job = await nextRuns(app, 'ending');
    assert.deepEqual(job, { enabled: true, nextRunAt: null, nextRuns: [] });
    const never = await createJob(app, { id: 'ended-before-start', period: '0:1:0', endAt: iso(T0 + 30_000) });
    assert.equal(never['nextRunAt'], null);
  });
});

describe('nextRuns', () => {
  it('should preview a cron job across the spring-forward gap: 02:30 Berlin runs at 03:00 CEST, SHIFTED_FROM_GAP', async () => {
    const { app } = appAt(at('2027-03-27T12:00:00Z'));
    await gqlOk(app, CREATE, { input: cronInput({ timeZone: 'Europe/Berlin', startAt: '2027-03-27T12:00:00Z' }) });
    const job = await nextRuns(app, 'nightly', 3);
    assert.deepEqual(job.nextRuns, [
      { at: '2027-03-28T01:00:00.000Z', localTime: '2027-03-28T03:00:00.000+02:00', dst: 'SHIFTED_FROM_GAP' },
      { at: '2027-03-29T00:30:00.000Z', localTime: '2027-03-29T02:30:00.000+02:00', dst: null },
      { at: '2027-03-30T00:30:00.000Z', localTime: '2027-03-30T02:30:00.000+02:00', dst: null },
    ]);
    assert.equal(job['nextRunAt'], (job['nextRuns'] as Json[])[0]!['at'], 'the first planned run is the next run');
  });

  it('should preview the fall-back overlap: the repeated 02:30 runs once, at its first occurrence', async () => {
    const { app } = appAt(at('2027-10-30T12:00:00Z'));
    await gqlOk(app, CREATE, { input: cronInput({ timeZone: 'Europe/Berlin' }) });
    assert.deepEqual((await nextRuns(app, 'nightly', 2)).nextRuns, [
      { at: '2027-10-31T00:30:00.000Z', localTime: '2027-10-31T02:30:00.000+02:00', dst: 'FIRST_OF_REPEATED' },
      { at: '2027-11-01T01:30:00.000Z', localTime: '2027-11-01T02:30:00.000+01:00', dst: null },
    ]);
  });

  it('should list ten by default, a period job in UTC (+00:00), bounded by endAt', async () => {
    const { app } = appAt(T0);
    await createJob(app, { id: 'every-minute', period: '0:1:0' });
    const runs = (await nextRuns(app, 'every-minute')).nextRuns as Json[];
    assert.equal(runs.length, 10);
    assert.deepEqual(runs[0], { at: iso(T0 + 60_000), localTime: '2026-01-01T00:01:00.000+00:00', dst: null });
    assert.deepEqual(runs[9], { at: iso(T0 + 600_000), localTime: '2026-01-01T00:10:00.000+00:00', dst: null });
    await createJob(app, { id: 'short', period: '0:1:0', endAt: iso(T0 + 180_000) });
    assert.deepEqual(
      ((await nextRuns(app, 'short', 100)).nextRuns as Json[]).map((r) => r['at']),
      [iso(T0 + 60_000), iso(T0 + 120_000), iso(T0 + 180_000)],
    );
  });

  it('should show a paused job what a resume now would do, while its nextRunAt stays null', async () => {
    const { h, app } = appAt(T0);
    await createJob(app, { id: 'paused', period: '0:1:0', startAt: iso(T0 + 15_000) });
    await h.jobs.pause('paused');
    h.clock.set(T0 + 200_000);
    const job = await nextRuns(app, 'paused', 2);
    assert.deepEqual(job, {
      enabled: false,
      nextRunAt: null,
      nextRuns: [
        { at: iso(T0 + 255_000), localTime: '2026-01-01T00:04:15.000+00:00', dst: null },
        { at: iso(T0 + 315_000), localTime: '2026-01-01T00:05:15.000+00:00', dst: null },
      ],
    });
    const resumed = await h.jobs.resume('paused');
    assert.equal(resumed.nextDueAt?.toISOString(), (job['nextRuns'] as Json[])[0]!['at'], 'the resume does what the preview said');
  });

  it('should refuse a count outside 1–100 with BAD_USER_INPUT on field count', async () => {
    const { app } = appAt(T0);
    await createJob(app, { id: 'counted', period: '0:1:0' });
    for (const count of [0, -1, 101, 2 ** 31 - 1]) {
      const result = await gql(app, NEXT_RUNS, { id: 'counted', count });
      assert.equal(result.errors?.[0]?.extensions?.code, 'BAD_USER_INPUT', result.text);
      assert.equal(result.errors?.[0]?.extensions?.field, 'count', result.text);
    }
    assert.equal(((await nextRuns(app, 'counted', 100)).nextRuns as Json[]).length, 100);
  });
});

describe('simulateDowntime', () => {
  const SIMULATE = `query($from: DateTime!, $to: DateTime!) {
    simulateDowntime(from: $from, to: $to) { job { id misfire } dueTimes wouldRun wouldSkip firstDue lastDue } }`;

  it('should answer, per enabled job with a due time in [from, to), what an outage would do under its misfire policy', async () => {
    const { h, app } = appAt(T0);
    await createJob(app, { id: 'b-skip', period: '0:10:0', misfire: 'SKIP' });
    await createJob(app, { id: 'a-once', period: '0:10:0' });
    await createJob(app, { id: 'paused', period: '0:10:0' });
    await h.jobs.pause('paused');
    await createJob(app, { id: 'yearly', period: null, cron: '@yearly', timeZone: 'Europe/Moscow' });
    const data = await gqlOk(app, SIMULATE, { from: iso(T0 + 3_600_000), to: iso(T0 + 7_200_000) });
    assert.deepEqual(data['simulateDowntime'], [
      {
        job: { id: 'a-once', misfire: 'RUN_ONCE' },
        dueTimes: 6,
        wouldRun: 1,
        wouldSkip: 0,
        firstDue: iso(T0 + 3_600_000),
        lastDue: iso(T0 + 6_600_000),
      },
      {
        job: { id: 'b-skip', misfire: 'SKIP' },
        dueTimes: 6,
        wouldRun: 0,
        wouldSkip: 6,
        firstDue: iso(T0 + 3_600_000),
        lastDue: iso(T0 + 6_600_000),
      },
    ]);
    const [runs] = await sql<{ n: number }[]>`select count(*)::int as n from job_runs`;
    assert.equal(runs!.n, 0, 'nothing ran');
    const newYear = await gqlOk(app, SIMULATE, { from: '2026-12-31T20:00:00Z', to: '2026-12-31T21:00:01Z' });
    assert.deepEqual(
      (newYear['simulateDowntime'] as Json[]).map((i) => [i['job']['id'], i['dueTimes'], i['firstDue']]),
      [
        ['a-once', 7, '2026-12-31T20:00:00.000Z'],
        ['b-skip', 7, '2026-12-31T20:00:00.000Z'],
        ['yearly', 1, '2026-12-31T21:00:00.000Z'],
      ],
    );
  });

  it('should refuse a window longer than 366 days or not after `from`, on field `to`', async () => {
    const { app } = appAt(T0);
    await createJob(app, { id: 'any', period: '0:10:0' });
    for (const [from, to] of [
      ['2026-01-01T00:00:00Z', '2027-01-02T00:00:00.001Z'],
      ['2026-01-01T00:00:00Z', '2026-01-01T00:00:00Z'],
      ['2026-01-02T00:00:00Z', '2026-01-01T00:00:00Z'],
    ]) {
      await rejects(app, SIMULATE, { from, to }, 'BAD_USER_INPUT', 'to');
    }
  });
});

describe('runs of the policies', () => {
  it('should answer attempt and retryOf on JobRun: 1 and null for a first attempt, the first attempt’s id on a retry', async () => {
    const { h, app } = appAt(T0);
    await createJob(app, { id: 'retried', period: '1:0:0', externalCall: 'Test:fail', retry: { maxAttempts: 2, backoffSeconds: 1 } });
    const ended = nextEvent(h.bus, 'run:finished');
    const manual = (await gqlOk(app, `mutation { runJobNow(id: "retried") { id trigger attempt retryOf } }`))['runJobNow'];
    assert.deepEqual([manual.trigger, manual.attempt, manual.retryOf], ['MANUAL', 1, null]);
    await ended;
    h.clock.set(T0 + 3_600_000);
    await tickAndSettle(h);
    const retryAt = (await sql<{ retryAt: Date }[]>`select retry_at from jobs where id = 'retried'`)[0]!.retryAt;
    h.clock.set(retryAt.getTime());
    await tickAndSettle(h);
    const runs = (await gqlOk(app, `{ runs(jobId: "retried") { edges { node { id trigger attempt retryOf status } } } }`))['runs'];
    const scheduled = (runs.edges as Json[]).map((e) => e['node']).filter((r) => r['trigger'] !== 'MANUAL');
    const first = scheduled.find((r) => r['attempt'] === 1)!;
    assert.deepEqual(scheduled.map((r) => [r['trigger'], r['attempt'], r['retryOf'], r['status']]).sort(), [
      ['RETRY', 2, first['id'], 'FAILED'],
      ['SCHEDULE', 1, null, 'FAILED'],
    ]);
  });
});

describe('bad input', () => {
  it('should refuse a schedule that is not exactly one of period and cron, an unknown zone, a bad cron, on their fields', async () => {
    const { app } = appAt(T0);
    await createJob(app, { id: 'periodic', period: '0:1:0' });
    const create = (input: Json, field: string) =>
      rejects(app, CREATE, { input: { id: 'x', name: 'X', externalCall: 'Test:ok', ...input } }, 'BAD_USER_INPUT', field);
    await create({ period: '0:1:0', cron: '* * * * *' }, 'cron');
    await create({}, 'cron');
    await create({ cron: '61 * * * *' }, 'cron');
    await create({ cron: '* * * * * * *' }, 'cron');
    await create({ cron: '* * * * *', timeZone: 'Mars/Olympus_Mons' }, 'timeZone');
    await create({ cron: '* * * * *', timeZone: '+02:00' }, 'timeZone');
    await create({ period: '0:1:0', timeZone: 'Europe/Berlin' }, 'timeZone');
    await create({ cron: '* * * * *', retry: { maxAttempts: 0 } }, 'retry.maxAttempts');
    await create({ cron: '* * * * *', retry: { maxAttempts: 11 } }, 'retry.maxAttempts');
    await create({ cron: '* * * * *', retry: { backoffFactor: 0.5 } }, 'retry.backoffFactor');
    await create({ cron: '* * * * *', retry: { backoffSeconds: -1 } }, 'retry.backoffSeconds');
    await create({ cron: '* * * * *', retry: { maxBackoffSeconds: 0 } }, 'retry.maxBackoffSeconds');
    await create({ cron: '* * * * *', autoPauseAfterFailures: 0 }, 'autoPauseAfterFailures');
    await create({ cron: '* * * * *', autoPauseAfterFailures: 1001 }, 'autoPauseAfterFailures');
    const update = (input: Json, field: string) => rejects(app, UPDATE, { id: 'periodic', input }, 'BAD_USER_INPUT', field);
    await update({ period: '0:1:0', cron: '* * * * *' }, 'cron');
    await update({ cron: 'every minute' }, 'cron');
    await update({ cron: '* * * * *', timeZone: 'Europe/Atlantis' }, 'timeZone');
    await update({ timeZone: 'Europe/Berlin' }, 'timeZone');
    await update({ autoPauseAfterFailures: -5 }, 'autoPauseAfterFailures');
  });
});
