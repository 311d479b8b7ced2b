// The scheduler on a job's grid: due times, no drift, overlap skipped, downtime coalesced, pause,
// resume and changes, and two schedulers claiming each due time once.
import assert from 'node:assert/strict';
import { beforeEach, describe, it } from 'node:test';
import type { RunRow } from '../src/db/rows.ts';
import { ManualClock } from './helpers/clock.ts';
import { gate } from './helpers/connector.ts';
import { harness, nextEvent, T0, tickAndSettle } from './helpers/harness.ts';
import { testDatabase } from './helpers/db.ts';

const { sql } = await testDatabase();
// Each test starts from empty tables: a tick claims every due job in the database.
beforeEach(() => sql`truncate jobs, job_runs, log_entries`);

const runsOf = (jobId: string) => sql<RunRow[]>`select * from job_runs where job_id = ${jobId} order by scheduled_at, id`;
const iso = (ms: number) => new Date(ms).toISOString();

describe('scheduling on the grid', () => {
  it('should run a job once every period, never before its due time', async () => {
    const h = harness(sql);
    h.connector.define('ok', async () => {});
    await h.jobs.create({ id: 'every-5s', name: 'x', externalCall: 'Test:ok', period: '0:0:5' });

    h.clock.set(T0 + 4999);
    assert.equal((await h.scheduler.tick()).length, 0, 'nothing is due before the first period has passed');
    for (let k = 1; k <= 3; k++) {
      h.clock.set(T0 + k * 5000);
      await tickAndSettle(h);
    }
    const runs = await runsOf('every-5s');
    assert.deepEqual(
      runs.map((r) => [r.scheduledAt.toISOString(), r.status, r.trigger, r.missed]),
      [1, 2, 3].map((k) => [iso(T0 + k * 5000), 'SUCCEEDED', 'SCHEDULE', 0]),
    );
    assert.ok(runs.every((r) => r.startedAt!.getTime() >= r.scheduledAt.getTime()));
  });

  it('should keep the grid when a run is slow (no drift)', async () => {
    const h = harness(sql);
    h.connector.define('slow', async () => {
      // Each run takes 1.5 s of the 2 s period.
      h.clock.advance(1500);
    });
    await h.jobs.create({ id: 'slow', name: 'x', externalCall: 'Test:slow', period: '0:0:2' });
    for (let k = 1; k <= 4; k++) {
      h.clock.set(T0 + k * 2000 + 300);
      await tickAndSettle(h);
    }
    const runs = await runsOf('slow');
    assert.deepEqual(
      runs.map((r) => r.scheduledAt.getTime() - T0),
      [2000, 4000, 6000, 8000],
    );
    const job = await h.jobs.update('slow', {});
    assert.equal(job.nextDueAt!.getTime() - T0, 10_000);
  });

  it('should start at startAt and continue on its grid', async () => {
    const h = harness(sql);
    h.connector.define('ok', async () => {});
    await h.jobs.create({ id: 'start-at', name: 'x', externalCall: 'Test:ok', period: '0:1:0', startAt: new Date(T0 + 90_000) });
    h.clock.set(T0 + 90_000);
    await tickAndSettle(h);
    h.clock.set(T0 + 150_000);
    await tickAndSettle(h);
    assert.deepEqual(
      (await runsOf('start-at')).map((r) => r.scheduledAt.getTime() - T0),
      [90_000, 150_000],
    );
  });
});

describe('overlap', () => {
  it('should skip a due time while the previous run is still running', async () => {
    const h = harness(sql);
    const hold = gate();
    h.connector.define('hang', () => hold.promise);
    await h.jobs.create({ id: 'overlap', name: 'x', externalCall: 'Test:hang', period: '0:0:1', timeoutSeconds: 60 });

    h.clock.set(T0 + 1000);
    const [first] = await h.scheduler.tick();
    assert.equal(first?.run.status, 'RUNNING');
    h.clock.set(T0 + 2000);
    const skippedEvent = nextEvent(h.bus, 'run:skipped');
    const [second] = await h.scheduler.tick();
    assert.equal(second?.run.status, 'SKIPPED');
    assert.equal(second?.done, null);
    assert.equal((await skippedEvent).run.id, second?.run.id);
    hold.open();
    await first?.done;

    const runs = await runsOf('overlap');
    assert.deepEqual(
      runs.map((r) => r.status),
      ['SUCCEEDED', 'SKIPPED'],
    );
    // A SKIPPED run never started (SPEC §2): no startedAt, so no lateness; finishedAt is when it was recorded.
    assert.equal(runs[1]!.startedAt, null);
    assert.equal(runs[1]!.finishedAt?.getTime(), T0 + 2000);
    assert.equal((await skippedEvent).run.startedAt, null);
    const warnings = await sql`select message from log_entries where run_id = ${second!.run.id} and level = 'WARNING'`;
    assert.equal(warnings.length, 1);
    assert.match(String(warnings[0]!['message']), /skipped/);
    // No RUN_STARTED for the skipped due time.
    assert.equal(h.events.filter((e) => e.topic === 'run:started' && e.payload.run.id === second!.run.id).length, 0);
  });
});

describe('coalescing', () => {
  it('should coalesce due times missed during downtime into one run that counts them', async () => {
    const h = harness(sql);
    h.connector.define('ok', async () => {});
    await h.jobs.create({ id: 'downtime', name: 'x', externalCall: 'Test:ok', period: '0:0:10' });
    h.clock.set(T0 + 10_000);
    await tickAndSettle(h);
    // Down from 10 s to 65 s: due times 20, 30, 40, 50, 60 pass unclaimed.
    h.clock.set(T0 + 65_000);
    await tickAndSettle(h);
    h.clock.set(T0 + 70_000);
    await tickAndSettle(h);

    const runs = await runsOf('downtime');
    assert.deepEqual(
      runs.map((r) => [r.scheduledAt.getTime() - T0, r.missed]),
      [
        [10_000, 0],
        [60_000, 4],
        [70_000, 0],
      ],
    );
    // Audit: due times plus missed counts cover every grid point once.
    const covered = runs.reduce((n, r) => n + 1 + r.missed, 0);
    assert.equal(covered, 7);
    const [warning] = await sql`select message, details from log_entries where run_id = ${runs[1]!.id} and level = 'WARNING'`;
    assert.match(String(warning!['message']), /missed 4 due times/);
  });
});

describe('pause, resume and changes', () => {
  it('should make no rows while paused and resume on the same grid', async () => {
    const h = harness(sql);
    h.connector.define('ok', async () => {});
    await h.jobs.create({ id: 'pausable', name: 'x', externalCall: 'Test:ok', period: '0:0:10' });
    h.clock.set(T0 + 10_000);
    await tickAndSettle(h);
    const paused = await h.jobs.pause('pausable', 'maintenance');
    assert.equal(paused.enabled, false);
    assert.equal(paused.pausedNote, 'maintenance');
    h.clock.set(T0 + 45_000);
    assert.equal((await h.scheduler.tick()).length, 0);
    const resumed = await h.jobs.resume('pausable');
    assert.equal(resumed.pausedNote, null);
    assert.equal(resumed.nextDueAt!.getTime() - T0, 50_000, 'first grid point after the resume');
    h.clock.set(T0 + 50_000);
    await tickAndSettle(h);
    const runs = await runsOf('pausable');
    assert.deepEqual(
      runs.map((r) => [r.scheduledAt.getTime() - T0, r.missed]),
      [
        [10_000, 0],
        [50_000, 0],
      ],
    );
    const audit = await sql`select message from log_entries where job_id = 'pausable' and level = 'INFO' order by id`;
    assert.deepEqual(
      audit.map((e) => e['message']),
      ['Job "pausable" created', 'Job "pausable" paused: maintenance', 'Job "pausable" resumed'],
    );
  });

  it('should re-anchor the grid when the period changes but not when the name or call changes', async () => {
    const h = harness(sql);
    await h.jobs.create({ id: 'changing', name: 'x', externalCall: 'Test:ok', period: '0:0:10' });
    h.clock.set(T0 + 3000);
    const renamed = await h.jobs.update('changing', { name: 'y', externalCall: 'Test:other' });
    assert.equal(renamed.nextDueAt!.getTime() - T0, 10_000);
    assert.equal(renamed.method, 'other');
    const faster = await h.jobs.update('changing', { period: '0:0:4' });
    assert.equal(faster.anchorAt.getTime() - T0, 3000);
    assert.equal(faster.nextDueAt!.getTime() - T0, 7000);
  });

  it('should stop a deleted job and keep its runs', async () => {
    const h = harness(sql);
    h.connector.define('ok', async () => {});
    await h.jobs.create({ id: 'deleted', name: 'x', externalCall: 'Test:ok', period: '0:0:1' });
    h.clock.set(T0 + 1000);
    await tickAndSettle(h);
    await h.jobs.delete('deleted');
    h.clock.set(T0 + 5000);
    assert.equal((await h.scheduler.tick()).filter((s) => s.run.jobId === 'deleted').length, 0);
    assert.equal((await runsOf('deleted')).length, 1);
  });
});

describe('two schedulers on one database', () => {
  it('should claim each due time exactly once when two instances tick together', async () => {
    const clock = new ManualClock(T0);
    // Small batches, so the two claim loops interleave instead of one taking every job at once.
    const a = harness(sql, { clock, instance: 'a', batchSize: 3 });
    const b = harness(sql, { clock, instance: 'b', batchSize: 3 });
    for (const h of [a, b]) h.connector.define('ok', async () => {});
    for (let i = 0; i < 40; i++) await a.jobs.create({ id: `pair-${i}`, name: 'x', externalCall: 'Test:ok', period: '0:0:1' });
    for (let k = 1; k <= 5; k++) {
      clock.set(T0 + k * 1000);
      await Promise.all([tickAndSettle(a), tickAndSettle(b)]);
    }
    const [counts] = await sql`
      select count(*)::int as runs, count(distinct (job_id, scheduled_at))::int as distinct_due,
             count(distinct instance)::int as instances
      from job_runs where job_id like 'pair-%'`;
    assert.equal(counts!['runs'], 200);
    assert.equal(counts!['distinctDue'], 200);
    assert.equal(counts!['instances'], 2, 'both instances took part');
  });
});

describe('resending', () => {
  it('should keep the grid when an update resends the current period', async () => {
    const h = harness(sql);
    await h.jobs.create({ id: 'same-period', name: 'x', externalCall: 'Test:ok', period: '0:0:10' });
    h.clock.set(T0 + 3000);
    const updated = await h.jobs.update('same-period', { name: 'renamed', period: '0:00:10' });
    assert.equal(updated.anchorAt.getTime(), T0);
    assert.equal(updated.nextDueAt!.getTime() - T0, 10_000);
  });
});
