// The scheduler with the policies of SPEC §3b on a controlled clock against real PostgreSQL:
// overlap (SKIP, QUEUE_ONE, ALLOW), misfire SKIP, retries, auto-pause, endAt, and cron due
// times, DST days included.
import assert from 'node:assert/strict';
import { beforeEach, describe, it } from 'node:test';
import { earliestDue } from '../src/db/jobs.ts';
import type { JobRow, LogRow, RunRow } from '../src/db/rows.ts';
import { ManualClock } from './helpers/clock.ts';
import { gate } from './helpers/connector.ts';
import { harness, nextEvent, T0, tickAndSettle } from './helpers/harness.ts';
import { testDatabase } from './helpers/db.ts';

const { sql } = await testDatabase();
beforeEach(() => sql`truncate jobs, job_runs, log_entries`);

const runsOf = (jobId: string) => sql<RunRow[]>`select * from job_runs where job_id = ${jobId} order by scheduled_at, attempt, id`;
const jobRow = async (id: string) => (await sql<JobRow[]>`select * from jobs where id = ${id}`)[0]!;
const warnings = (jobId: string) => sql<LogRow[]>`select * from log_entries where job_id = ${jobId} and level = 'WARNING' order by id`;
const at = (ms: number) => ms - T0;

/** A QUEUE_ONE job whose run of 1 s hangs (until `hold` opens) and whose due time of 2 s waits; the clock at 2 s. */
async function queueOneWaiting(id: string) {
  const h = harness(sql);
  const hold = gate();
  h.connector.define('hang', () => hold.promise);
  await h.jobs.create({ id, name: 'x', externalCall: 'Test:hang', period: '0:0:1', timeoutSeconds: 60, overlap: 'QUEUE_ONE' });
  h.clock.set(T0 + 1000);
  const [first] = await h.scheduler.tick();
  h.clock.set(T0 + 2000);
  await h.scheduler.tick();
  return { h, hold, first };
}

describe('overlap policies', () => {
  it('QUEUE_ONE: a due time during a run waits and starts the moment it ends, with its own due time; a further one is SKIPPED', async () => {
    const h = harness(sql);
    const hold = gate();
    let calls = 0;
    h.connector.define('hold-first', () => (++calls === 1 ? hold.promise : Promise.resolve()));
    await h.jobs.create({
      id: 'очередь',
      name: 'x',
      externalCall: 'Test:hold-first',
      period: '0:0:1',
      timeoutSeconds: 60,
      overlap: 'QUEUE_ONE',
    });
    h.clock.set(T0 + 1000);
    const [first] = await h.scheduler.tick();
    assert.equal(first?.run.status, 'RUNNING');
    h.clock.set(T0 + 2000);
    assert.equal((await h.scheduler.tick()).length, 0, 'the due time of 2 s waits: no row yet');
    assert.equal((await jobRow('очередь')).queuedDueAt?.getTime(), T0 + 2000);
    h.clock.set(T0 + 3000);
    const [third] = await h.scheduler.tick();
    assert.equal(third?.run.status, 'SKIPPED', 'at most one waits');
    assert.equal(third?.run.scheduledAt.getTime(), T0 + 3000);
    h.clock.set(T0 + 3400);
    hold.open();
    await first?.done;
    const [queued] = await tickAndSettle(h);
    assert.equal(queued?.run.scheduledAt.getTime(), T0 + 2000, 'it keeps its own scheduledAt');
    assert.equal(queued?.run.startedAt?.getTime(), T0 + 3400, 'and starts when the run ends (its lateness shows the wait)');
    assert.deepEqual(
      (await runsOf('очередь')).map((r) => [at(r.scheduledAt.getTime()), r.status]),
      [
        [1000, 'SUCCEEDED'],
        [2000, 'SUCCEEDED'],
        [3000, 'SKIPPED'],
      ],
    );
    assert.equal((await jobRow('очередь')).queuedDueAt, null);
  });

  it('QUEUE_ONE: a pause accounts the waiting due time as SKIPPED with the due times it leaves', async () => {
    const { h, hold, first } = await queueOneWaiting('queued-pause');
    h.clock.set(T0 + 2500);
    await h.jobs.pause('queued-pause', 'maintenance');
    hold.open();
    await first?.done;
    const runs = await runsOf('queued-pause');
    assert.deepEqual(
      runs.map((r) => [at(r.scheduledAt.getTime()), r.status, r.missed]),
      [
        [1000, 'SUCCEEDED', 0],
        [2000, 'SKIPPED', 0],
      ],
    );
    assert.equal((await h.scheduler.tick()).length, 0, 'nothing starts after the pause');
  });

  it('ALLOW: runs start on time whatever is in progress, and runJobNow is not refused', async () => {
    const h = harness(sql);
    const hold = gate();
    h.connector.define('hang', () => hold.promise);
    await h.jobs.create({ id: 'allow', name: 'x', externalCall: 'Test:hang', period: '0:0:1', timeoutSeconds: 60, overlap: 'ALLOW' });
    h.clock.set(T0 + 1000);
    const [a] = await h.scheduler.tick();
    h.clock.set(T0 + 2000);
    const [b] = await h.scheduler.tick();
    const manual = await h.jobs.runNow('allow');
    assert.deepEqual([a?.run.status, b?.run.status, manual.status], ['RUNNING', 'RUNNING', 'RUNNING']);
    hold.open();
    await Promise.all([a?.done, b?.done, h.scheduler.launch(manual, await jobRow('allow'))]);
    assert.deepEqual(
      (await runsOf('allow')).map((r) => r.status),
      ['SUCCEEDED', 'SUCCEEDED', 'SUCCEEDED'],
    );
  });

  it('runJobNow answers CONFLICT under SKIP and QUEUE_ONE while a run is in progress', async () => {
    const h = harness(sql);
    const hold = gate();
    h.connector.define('hang', () => hold.promise);
    for (const overlap of ['SKIP', 'QUEUE_ONE'] as const)
      await h.jobs.create({ id: `busy-${overlap}`, name: 'x', externalCall: 'Test:hang', period: '0:0:1', timeoutSeconds: 60, overlap });
    h.clock.set(T0 + 1000);
    const started = await h.scheduler.tick();
    for (const overlap of ['SKIP', 'QUEUE_ONE'])
      await assert.rejects(h.jobs.runNow(`busy-${overlap}`), (e: { extensions: { code: string } }) => e.extensions.code === 'CONFLICT');
    hold.open();
    await Promise.all(started.map((s) => s.done));
  });
});

describe('misfire policy', () => {
  it('SKIP: due times claimed late become one SKIPPED run at the latest, missed counting the others, with a WARNING', async () => {
    const h = harness(sql);
    h.connector.define('ok', async () => {});
    await h.jobs.create({ id: 'misfire', name: 'x', externalCall: 'Test:ok', period: '0:0:10', misfire: 'SKIP' });
    h.clock.set(T0 + 10_000);
    await tickAndSettle(h);
    h.clock.set(T0 + 45_000); // 20, 30, 40 passed unclaimed
    const [skipped] = await tickAndSettle(h);
    assert.equal(skipped?.run.status, 'SKIPPED');
    assert.equal(skipped?.done, null, 'nothing is called');
    h.clock.set(T0 + 50_000);
    await tickAndSettle(h);
    assert.deepEqual(
      (await runsOf('misfire')).map((r) => [at(r.scheduledAt.getTime()), r.status, r.missed]),
      [
        [10_000, 'SUCCEEDED', 0],
        [40_000, 'SKIPPED', 2],
        [50_000, 'SUCCEEDED', 0],
      ],
    );
    const [warning] = await warnings('misfire');
    assert.match(warning!.message, /misfire skipped/);
    assert.equal(h.connector.calls.length, 2);
  });
});

describe('retries', () => {
  it('retries a failed attempt with backoff as a RETRY run of the same due time, attempt + 1, retryOf the first', async () => {
    const h = harness(sql);
    let calls = 0;
    h.connector.define('flaky', async () => {
      if (++calls < 3) throw new Error(`ошибка ${calls}`);
    });
    await h.jobs.create({
      id: 'retry',
      name: 'x',
      externalCall: 'Test:flaky',
      period: '0:10:0',
      retry: { maxAttempts: 3, backoffSeconds: 10, backoffFactor: 2 },
    });
    h.clock.set(T0 + 600_000);
    const [first] = await tickAndSettle(h);
    const afterFirst = await jobRow('retry');
    const firstBackoff = afterFirst.retryAt!.getTime() - (T0 + 600_000);
    assert.ok(firstBackoff >= 9000 && firstBackoff <= 11_000, `10 s ± 10% after the failed attempt ended (${firstBackoff} ms)`);
    assert.equal(afterFirst.consecutiveFailures, 0, 'a failure that will be retried is not final');
    assert.equal(
      (await earliestDue(sql))?.getTime(),
      afterFirst.retryAt!.getTime(),
      'the loop sleeps until the retry, not the next due time',
    );
    h.clock.set(afterFirst.retryAt!.getTime() - 1);
    assert.equal((await h.scheduler.tick()).length, 0, 'not before its backoff');
    h.clock.set(afterFirst.retryAt!.getTime());
    const [second] = await tickAndSettle(h);
    assert.equal(second?.run.trigger, 'RETRY');
    const secondBackoff = (await jobRow('retry')).retryAt!.getTime() - afterFirst.retryAt!.getTime();
    assert.ok(secondBackoff >= 18_000 && secondBackoff <= 22_000, `20 s ± 10% (${secondBackoff} ms)`);
    h.clock.set((await jobRow('retry')).retryAt!.getTime());
    await tickAndSettle(h);
    const runs = await runsOf('retry');
    assert.deepEqual(
      runs.map((r) => [r.trigger, r.attempt, r.retryOf, r.status, at(r.scheduledAt.getTime())]),
      [
        ['SCHEDULE', 1, null, 'FAILED', 600_000],
        ['RETRY', 2, first!.run.id, 'FAILED', 600_000],
        ['RETRY', 3, first!.run.id, 'SUCCEEDED', 600_000],
      ],
    );
    const job = await jobRow('retry');
    assert.equal(job.retryAt, null);
    assert.equal(job.consecutiveFailures, 0);
    assert.equal(job.nextDueAt?.getTime(), T0 + 1_200_000, 'a retry never shifts the schedule');
  });

  it("drops a retry still waiting when the job's next due time arrives, with a WARNING", async () => {
    const h = harness(sql);
    let calls = 0;
    h.connector.define('fail-once', async () => {
      if (++calls === 1) throw new Error('boom');
    });
    await h.jobs.create({
      id: 'retry-dropped',
      name: 'x',
      externalCall: 'Test:fail-once',
      period: '0:0:10',
      retry: { maxAttempts: 2, backoffSeconds: 60 },
    });
    h.clock.set(T0 + 10_000);
    await tickAndSettle(h);
    h.clock.set(T0 + 20_000);
    const [next] = await tickAndSettle(h);
    assert.equal(next?.run.trigger, 'SCHEDULE');
    assert.equal((await jobRow('retry-dropped')).retryAt, null);
    h.clock.set(T0 + 75_000);
    assert.deepEqual(
      (await runsOf('retry-dropped')).map((r) => [r.trigger, r.status]),
      [
        ['SCHEDULE', 'FAILED'],
        ['SCHEDULE', 'SUCCEEDED'],
      ],
    );
    const dropped = (await warnings('retry-dropped')).find((w) => /dropped its retry/.test(w.message));
    assert.ok(dropped, 'the drop is logged');
  });

  it("ALLOW: two overlapping attempts that fail keep the later due time's retry in the one slot and drop the other with a WARNING", async () => {
    const h = harness(sql);
    const hold = gate();
    h.connector.define('hold-fail', async () => {
      await hold.promise;
      throw new Error('нет связи');
    });
    await h.jobs.create({
      id: 'allow-retry',
      name: 'x',
      externalCall: 'Test:hold-fail',
      period: '0:0:1',
      timeoutSeconds: 60,
      overlap: 'ALLOW',
      retry: { maxAttempts: 2, backoffSeconds: 60 },
    });
    h.clock.set(T0 + 1000);
    const [a] = await h.scheduler.tick();
    h.clock.set(T0 + 2000);
    const [b] = await h.scheduler.tick();
    hold.open();
    await Promise.all([a?.done, b?.done]);
    const job = await jobRow('allow-retry');
    assert.equal(job.retryScheduledAt?.getTime(), T0 + 2000, 'the later due time keeps the slot');
    assert.equal(job.retryOf, b!.run.id);
    const dropped = (await warnings('allow-retry')).filter((w) => /dropped its retry/.test(w.message));
    assert.equal(dropped.length, 1, 'the other retry is dropped, and says so');
    assert.match(dropped[0]!.message, new RegExp(`due at ${new Date(T0 + 1000).toISOString()}`));
  });

  it('does not retry a manual run, and counts it as a final outcome', async () => {
    const h = harness(sql);
    h.connector.define('fail', async () => {
      throw new Error('no');
    });
    await h.jobs.create({ id: 'manual-final', name: 'x', externalCall: 'Test:fail', period: '1:0:0', retry: { maxAttempts: 3 } });
    const run = await h.jobs.runNow('manual-final');
    await h.scheduler.launch(run, await jobRow('manual-final'));
    const job = await jobRow('manual-final');
    assert.equal(job.retryAt, null);
    assert.equal(job.consecutiveFailures, 1);
  });
});

describe('auto-pause', () => {
  it('pauses a job when its consecutive final failures reach the limit, with the note, a WARNING and JOB_UPDATED; a success resets the count', async () => {
    const h = harness(sql);
    const outcomes = [false, true, false, false];
    h.connector.define('mixed', async () => {
      if (!outcomes.shift()) throw new Error('склад недоступен');
    });
    await h.jobs.create({ id: 'auto-pause', name: 'x', externalCall: 'Test:mixed', period: '0:0:10', autoPauseAfterFailures: 2 });
    h.clock.set(T0 + 10_000);
    await tickAndSettle(h);
    assert.equal((await jobRow('auto-pause')).consecutiveFailures, 1);
    h.clock.set(T0 + 20_000);
    await tickAndSettle(h);
    assert.equal((await jobRow('auto-pause')).consecutiveFailures, 0, 'a success resets it');
    h.clock.set(T0 + 30_000);
    await tickAndSettle(h);
    const updated = nextEvent(h.bus, 'job:updated', (p) => p.job.id === 'auto-pause' && !p.job.enabled);
    h.clock.set(T0 + 40_000);
    await tickAndSettle(h);
    const { job } = await updated;
    assert.equal(job.pausedNote, 'auto-paused after 2 consecutive failures: склад недоступен');
    const entry = (await warnings('auto-pause')).find((w) => w.message.includes('auto-paused'));
    assert.ok(entry, 'a WARNING entry');
    h.clock.set(T0 + 50_000);
    assert.equal((await h.scheduler.tick()).length, 0, 'it does not run while paused');
    const resumed = await h.jobs.resume('auto-pause');
    assert.equal(resumed.consecutiveFailures, 0, 'resumeJob resets the count');
  });
});

describe('endAt', () => {
  it('runs due times up to endAt (one exactly at it included), then keeps the job enabled with no next due time', async () => {
    const h = harness(sql);
    h.connector.define('ok', async () => {});
    await h.jobs.create({ id: 'ends', name: 'x', externalCall: 'Test:ok', period: '0:0:10', endAt: new Date(T0 + 30_000) });
    for (const s of [10, 20, 30, 40, 50]) {
      h.clock.set(T0 + s * 1000);
      await tickAndSettle(h);
    }
    assert.deepEqual(
      (await runsOf('ends')).map((r) => at(r.scheduledAt.getTime())),
      [10_000, 20_000, 30_000],
    );
    const job = await jobRow('ends');
    assert.equal(job.enabled, true);
    assert.equal(job.nextDueAt, null);
    // Moving the end later lets it go on from now, on its grid.
    h.clock.set(T0 + 55_000);
    const extended = await h.jobs.update('ends', { endAt: new Date(T0 + 80_000) });
    assert.equal(extended.nextDueAt?.getTime(), T0 + 60_000);
  });
});

describe('cron due times', () => {
  it('runs a 6-field cron on its instants and coalesces the ones missed while down', async () => {
    const h = harness(sql);
    h.connector.define('ok', async () => {});
    const job = await h.jobs.create({ id: 'cron-15s', name: 'x', externalCall: 'Test:ok', cron: '*/15 * * * * *' });
    assert.equal(job.periodSeconds, null);
    assert.equal(job.timeZone, 'UTC');
    assert.equal(job.nextDueAt?.getTime(), T0 + 15_000);
    for (const s of [15, 30, 100]) {
      h.clock.set(T0 + s * 1000);
      await tickAndSettle(h);
    }
    assert.deepEqual(
      (await runsOf('cron-15s')).map((r) => [at(r.scheduledAt.getTime()), r.missed]),
      [
        [15_000, 0],
        [30_000, 0],
        [90_000, 3],
      ],
    );
    assert.equal((await jobRow('cron-15s')).nextDueAt?.getTime(), T0 + 105_000);
  });

  it('runs a local time in the spring-forward gap once at the first instant after it, and a repeated one once at its first occurrence', async () => {
    const clock = new ManualClock(Date.parse('2027-03-27T12:00:00Z'));
    const h = harness(sql, { clock });
    h.connector.define('ok', async () => {});
    await h.jobs.create({ id: 'berlin', name: 'x', externalCall: 'Test:ok', cron: '30 2 * * *', timeZone: 'Europe/Berlin' });
    // 02:30 does not exist on 28 March 2027 in Berlin: it runs at 03:00 CEST = 01:00Z.
    assert.equal((await jobRow('berlin')).nextDueAt?.toISOString(), '2027-03-28T01:00:00.000Z');
    clock.set(Date.parse('2027-03-28T01:00:00Z'));
    await tickAndSettle(h);
    assert.equal((await jobRow('berlin')).nextDueAt?.toISOString(), '2027-03-29T00:30:00.000Z');
    // Fall-back: 02:30 occurs twice on 31 October 2027; it runs at its first occurrence only.
    clock.set(Date.parse('2027-10-30T12:00:00Z'));
    await h.jobs.update('berlin', { startAt: new Date('2027-10-30T12:00:00Z') });
    assert.equal((await jobRow('berlin')).nextDueAt?.toISOString(), '2027-10-31T00:30:00.000Z');
    clock.set(Date.parse('2027-10-31T00:30:00Z'));
    await tickAndSettle(h);
    assert.equal((await jobRow('berlin')).nextDueAt?.toISOString(), '2027-11-01T01:30:00.000Z', 'not again at 01:30Z');
    assert.deepEqual(
      (await runsOf('berlin')).map((r) => [r.scheduledAt.toISOString(), r.status, r.missed]),
      [
        ['2027-03-28T01:00:00.000Z', 'SUCCEEDED', 0],
        // The new start left the daily due times from 29 March to 30 October behind: one SKIPPED
        // run on the latest, missed counting the other 215 (SPEC §3: a change never loses one).
        ['2027-10-30T00:30:00.000Z', 'SKIPPED', 215],
        ['2027-10-31T00:30:00.000Z', 'SUCCEEDED', 0],
      ],
    );
  });

  it('switches a period job to cron and back, each from the next due time after the change', async () => {
    const h = harness(sql);
    h.connector.define('ok', async () => {});
    await h.jobs.create({ id: 'switch', name: 'x', externalCall: 'Test:ok', period: '0:0:7' });
    h.clock.set(T0 + 1000);
    const cron = await h.jobs.update('switch', { cron: '0 * * * *', timeZone: 'Asia/Kolkata' });
    assert.deepEqual([cron.periodSeconds, cron.cron, cron.timeZone], [null, '0 * * * *', 'Asia/Kolkata']);
    // Kolkata is +05:30: its whole hours fall on UTC half hours.
    assert.equal(cron.nextDueAt?.toISOString(), '2026-01-01T00:30:00.000Z');
    const back = await h.jobs.update('switch', { period: '0:0:5' });
    assert.deepEqual([back.periodSeconds, back.cron, back.timeZone], [5, null, null]);
    assert.equal(back.nextDueAt?.getTime(), T0 + 6000);
  });
});

describe('what the review of the policies found', () => {
  it('counts a failure whose retry is dropped as final, so auto-pause still fires when every retry comes too late', async () => {
    const h = harness(sql);
    h.connector.define('fail', async () => {
      throw new Error('сервер 1С недоступен');
    });
    await h.jobs.create({
      id: 'late-retries',
      name: 'x',
      externalCall: 'Test:fail',
      period: '0:0:10',
      retry: { maxAttempts: 3, backoffSeconds: 60 },
      autoPauseAfterFailures: 2,
    });
    const paused = nextEvent(h.bus, 'job:updated', (p) => p.job.id === 'late-retries' && !p.job.enabled);
    for (const s of [10, 20, 30]) {
      h.clock.set(T0 + s * 1000);
      await tickAndSettle(h);
    }
    const { job } = await paused;
    assert.equal(job.pausedNote, 'auto-paused after 2 consecutive failures: сервер 1С недоступен');
  });

  it('resumes from now when the same update also moves endAt: the paused time is not missed', async () => {
    const h = harness(sql);
    h.connector.define('ok', async () => {});
    await h.jobs.create({ id: 'resume-end', name: 'x', externalCall: 'Test:ok', period: '0:0:10' });
    await h.jobs.pause('resume-end');
    h.clock.set(T0 + 3_600_000 + 5000);
    const resumed = await h.jobs.update('resume-end', { enabled: true, endAt: new Date(T0 + 7_200_000) });
    assert.equal(resumed.nextDueAt?.getTime(), T0 + 3_610_000);
    h.clock.set(T0 + 3_610_000);
    const [run] = await tickAndSettle(h);
    assert.equal(run?.run.missed, 0);
  });

  it('keeps a due time already due, and a QUEUE_ONE due time waiting, when only endAt changes', async () => {
    const { h, hold, first } = await queueOneWaiting('end-only');
    h.clock.set(T0 + 3500); // 3 s is due, not claimed
    await h.jobs.update('end-only', { endAt: new Date(T0 + 60_000) });
    assert.equal((await jobRow('end-only')).queuedDueAt?.getTime(), T0 + 2000, 'the waiting due time still waits');
    assert.equal((await runsOf('end-only')).filter((r) => r.status === 'SKIPPED').length, 0, 'nothing recorded as skipped');
    const [third] = await h.scheduler.tick();
    assert.equal(third?.run.scheduledAt.getTime(), T0 + 3000, 'the due time of 3 s is claimed as usual');
    hold.open();
    await first?.done;
  });

  it("keeps a cron job's zone when only its cron changes", async () => {
    const h = harness(sql);
    await h.jobs.create({ id: 'zone-kept', name: 'x', externalCall: 'Test:ok', cron: '0 9 * * *', timeZone: 'Asia/Vladivostok' });
    const updated = await h.jobs.update('zone-kept', { cron: '0 10 * * *' });
    assert.equal(updated.timeZone, 'Asia/Vladivostok');
  });

  it('writes no retry onto a job paused while its failing attempt ran, and says the retry was dropped', async () => {
    const h = harness(sql);
    const hold = gate();
    h.connector.define('hold-fail', async () => {
      await hold.promise;
      throw new Error('boom');
    });
    await h.jobs.create({
      id: 'paused-retry',
      name: 'x',
      externalCall: 'Test:hold-fail',
      period: '0:0:10',
      timeoutSeconds: 60,
      retry: { maxAttempts: 2 },
    });
    h.clock.set(T0 + 10_000);
    const [first] = await h.scheduler.tick();
    await h.jobs.pause('paused-retry');
    hold.open();
    await first?.done;
    assert.equal((await jobRow('paused-retry')).retryAt, null);
    assert.ok((await warnings('paused-retry')).some((w) => /dropped its retry.*the job is paused/.test(w.message)));
  });
});
