// When a holder goes away: leases expire and runs are ABANDONED, a crashed predecessor's runs are
// abandoned at start, a run's end waits out a database outage, and a shutdown keeps renewing.
import assert from 'node:assert/strict';
import { beforeEach, describe, it } from 'node:test';
import type { RunRow } from '../src/db/rows.ts';
import { EventsInterruptedError } from '../src/events/bus.ts';
import { ManualClock } from './helpers/clock.ts';
import { gate } from './helpers/connector.ts';
import { harness, T0 } from './helpers/harness.ts';
import { testDatabase } from './helpers/db.ts';
import { waitFor } from './helpers/process.ts';
import { awayDatabase as awayDatabaseAt } from './helpers/proxy.ts';

const { sql, url } = await testDatabase();
// Each test starts from empty tables: a tick claims every due job in the database.
beforeEach(() => sql`truncate jobs, job_runs, log_entries`);

const runsOf = (jobId: string) => sql<RunRow[]>`select * from job_runs where job_id = ${jobId} order by scheduled_at, id`;

describe('leases and crash recovery', () => {
  it('should mark the runs of a process that stopped renewing ABANDONED after its lease, and fence its late writes', async () => {
    const DUE = T0 + 3_600_000;
    const clock = new ManualClock(DUE);
    // Frozen (SIGSTOP, a long pause): its clock stands still, so none of its timers runs — not
    // even the one with which a live holder aborts a call whose lease it could not renew.
    const dead = harness(sql, { clock: new ManualClock(T0), instance: 'dead', leaseSeconds: 5 });
    const alive = harness(sql, { clock, instance: 'alive', leaseSeconds: 5 });
    const hold = gate();
    // Once woken, the call writes to its run's log and returns; the holder then writes the run's end.
    let logWrite: Promise<void> | undefined;
    dead.connector.define('hang', async (ctx) => {
      await hold.promise;
      logWrite = ctx.log('INFO', 'written by the holder after it woke');
      await logWrite;
    });
    await dead.jobs.create({ id: 'orphaned', name: 'x', externalCall: 'Test:hang', period: '1:0:0' });
    dead.clock.set(DUE);
    const [started] = await dead.scheduler.tick();
    const run = started!.run;

    clock.advance(4999);
    assert.equal((await alive.scheduler.maintain()).length, 0, 'lease still valid');
    clock.advance(2);
    const abandoned = await alive.scheduler.maintain();
    assert.deepEqual(
      abandoned.map((r) => [r.id, r.status]),
      [[run.id, 'ABANDONED']],
    );
    const [entry] = await sql`select level, message from log_entries where run_id = ${run.id}`;
    assert.equal(entry!['level'], 'ERROR');
    assert.match(String(entry!['message']), /Test:hang/);

    // The frozen holder wakes and finishes: its log write and its end are both refused.
    const [row] = await sql<RunRow[]>`select * from job_runs where id = ${run.id}`;
    const entries = await sql`select * from log_entries where job_id = 'orphaned' order by id`;
    const announced = dead.events.length;
    hold.open();
    assert.equal(await started!.done, null, 'the fence refused the end');
    assert.ok(logWrite, 'the woken call wrote to its log');
    await logWrite;
    const [after] = await sql<RunRow[]>`select * from job_runs where id = ${run.id}`;
    assert.equal(row!.status, 'ABANDONED');
    assert.deepEqual(after, row, 'the run is as the other instance left it: ABANDONED, its end and error unchanged');
    assert.deepEqual(
      await sql`select * from log_entries where job_id = 'orphaned' order by id`,
      entries,
      'no log entry of the stale holder: neither its own nor its end',
    );
    assert.deepEqual(
      dead.events.slice(announced).map((e) => e.topic),
      [],
      'and it announced neither',
    );
  });

  it('should interrupt subscriptions when it abandons the runs of a holder that stopped: that holder’s last events may never have been sent', async () => {
    const DUE = T0 + 3_600_000;
    const clock = new ManualClock(DUE);
    const dead = harness(sql, { clock: new ManualClock(T0), instance: 'killed', leaseSeconds: 5 });
    const alive = harness(sql, { clock, instance: 'alive', leaseSeconds: 5 });
    const hold = gate();
    dead.connector.define('hang', () => hold.promise);
    await dead.jobs.create({ id: 'orphaned', name: 'x', externalCall: 'Test:hang', period: '1:0:0' });
    dead.clock.set(DUE);
    await dead.scheduler.tick();
    const subscription = alive.bus.subscribe((event) => event.topic);
    const received = (async () => {
      const topics: string[] = [];
      try {
        for await (const topic of subscription) topics.push(topic);
      } catch (error) {
        return { topics, error };
      }
      return { topics, error: null };
    })();

    clock.advance(5001);
    assert.equal((await alive.scheduler.maintain()).length, 1);
    // What the sweep published is delivered synchronously; then the subscription is let go.
    await new Promise((resolve) => setImmediate(resolve));
    await subscription.return?.();
    const { topics, error } = await received;
    assert.ok(topics.includes('run:finished'), 'the ABANDONED end is delivered first');
    assert.ok(error instanceof EventsInterruptedError, 'then EVENTS_INTERRUPTED, not a silent gap');
    assert.match(error.message, /killed stopped while running jobs/);
    hold.open();
  });

  it('should mark every run of a crashed predecessor ABANDONED at start when it owns the database', async () => {
    const clock = new ManualClock(T0);
    const crashed = harness(sql, { clock, instance: 'crashed' });
    crashed.connector.define('hang', () => new Promise(() => {}));
    await crashed.jobs.create({ id: 'crashed-run', name: 'x', externalCall: 'Test:hang', period: '1:0:0' });
    const run = await crashed.jobs.runNow('crashed-run');
    const next = harness(sql, { clock, instance: 'restarted' });
    const orphans = await next.scheduler.abandonOrphans();
    assert.ok(orphans.some((r) => r.id === run.id));
    const [row] = await sql<RunRow[]>`select * from job_runs where id = ${run.id}`;
    assert.equal(row!.status, 'ABANDONED');
    assert.match(row!.error!, /crashed/);
  });
});

describe('the database away when a run ends', () => {
  /** The scheduler's database goes away, the test's does not. */
  const awayDatabase = () => awayDatabaseAt(url);
  const settles = (promise: Promise<unknown>) => {
    const state = { settled: false };
    void promise.finally(() => (state.settled = true));
    return state;
  };
  const realWait = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
  /** The longest pause between two tries of writing a run's end: the pauses are by the clock. */
  const END_RETRY_MS = 2000;

  it('should keep trying to record a known outcome until the database is back, past its lease', async () => {
    const away = await awayDatabase();
    const h = harness(away.sql, { leaseSeconds: 1 });
    const hold = gate();
    h.connector.define('work', () => hold.promise);
    await h.jobs.create({ id: 'outage', name: 'x', externalCall: 'Test:work', period: '1:0:0' });
    h.clock.set(T0 + 3_600_000);
    const [started] = await h.scheduler.tick();
    const end = settles(started!.done!);

    await away.proxy.cut();
    // The call succeeds while the database is away.
    hold.open();
    // Longer than two leases of real time (where retrying used to give up), and the lease long
    // expired by the clock; but no instance took the run over, so it is not lost.
    await realWait(3000);
    h.clock.advance(10_000);
    assert.equal(end.settled, false, 'still trying while the database is away');
    assert.equal((await runsOf('outage'))[0]!.status, 'RUNNING');

    await away.proxy.restore();
    const recorded = await h.clock.advanceUntilSettled(started!.done!, END_RETRY_MS);
    assert.equal(recorded?.status, 'SUCCEEDED');
    const [row] = await runsOf('outage');
    assert.equal(row!.status, 'SUCCEEDED');
    // Finished when its outcome was known, not when the database came back.
    assert.equal(row!.finishedAt!.getTime(), T0 + 3_600_000);
  });

  it('should stop trying once another instance took the run over while the database was away', async () => {
    const clock = new ManualClock(T0);
    const away = await awayDatabase();
    const cutOff = harness(away.sql, { clock, instance: 'cut-off', leaseSeconds: 1 });
    const other = harness(sql, { clock, instance: 'other', leaseSeconds: 1 });
    const hold = gate();
    cutOff.connector.define('work', () => hold.promise);
    await cutOff.jobs.create({ id: 'taken-over', name: 'x', externalCall: 'Test:work', period: '1:0:0' });
    clock.set(T0 + 3_600_000);
    const [started] = await cutOff.scheduler.tick();

    await away.proxy.cut();
    hold.open();
    clock.advance(1001);
    const abandoned = await other.scheduler.maintain();
    assert.deepEqual(
      abandoned.map((r) => r.id),
      [started!.run.id],
    );
    await away.proxy.restore();
    assert.equal(await clock.advanceUntilSettled(started!.done!, END_RETRY_MS), null, 'the fence refused the end');
    const [row] = await runsOf('taken-over');
    assert.equal(row!.status, 'ABANDONED');
    assert.equal(row!.instance, 'cut-off');
  });

  it('should stop trying when the instance shuts down with the database still away', async () => {
    const away = await awayDatabase();
    const h = harness(away.sql, { leaseSeconds: 1 });
    const hold = gate();
    h.connector.define('work', () => hold.promise);
    await h.jobs.create({ id: 'leaving', name: 'x', externalCall: 'Test:work', period: '1:0:0' });
    h.clock.set(T0 + 3_600_000);
    const [started] = await h.scheduler.tick();
    h.scheduler.start();

    await away.proxy.cut();
    hold.open();
    await realWait(300);
    await h.scheduler.stop(0);
    assert.equal(await started!.done, null);
    // Left RUNNING: its lease lapses and any instance marks it ABANDONED.
    assert.equal((await runsOf('leaving'))[0]!.status, 'RUNNING');
    await away.proxy.restore();
  });
});

describe('shutting down', () => {
  it('should keep renewing the leases of runs in flight while it waits for them at shutdown', async () => {
    const clock = new ManualClock(T0);
    const leaving = harness(sql, { clock, instance: 'leaving', leaseSeconds: 3 });
    const other = harness(sql, { clock, instance: 'other', leaseSeconds: 3 });
    const hold = gate();
    leaving.connector.define('slow', () => hold.promise);
    await leaving.jobs.create({ id: 'draining', name: 'x', externalCall: 'Test:slow', period: '1:0:0' });
    leaving.scheduler.start();
    const run = await leaving.jobs.runNow('draining');
    const stopped = leaving.scheduler.stop(60_000);

    // Ten seconds pass, more than three leases: the leaving instance still holds its run.
    for (let second = 1; second <= 10; second++) {
      clock.advance(1000);
      // Renewed within the last second or two (the renewal loop may be one step behind the test).
      const expected = clock.now() + 2000;
      const deadline = Date.now() + 10_000;
      for (;;) {
        const [row] = await sql<RunRow[]>`select * from job_runs where id = ${run.id}`;
        if (row!.leaseExpiresAt!.getTime() >= expected) break;
        assert.ok(Date.now() < deadline, `lease renewed at ${second} s`);
        await new Promise((resolve) => setTimeout(resolve, 5));
      }
      assert.equal((await other.scheduler.maintain()).length, 0, 'nothing abandoned');
    }
    hold.open();
    await stopped;
    const [row] = await sql<RunRow[]>`select * from job_runs where id = ${run.id}`;
    assert.equal(row!.status, 'SUCCEEDED');
  });

  it('should vacuum the jobs table every minute by its clock, whatever autovacuum does', async () => {
    const clock = new ManualClock(T0);
    const h = harness(sql, { clock, instance: 'janitor', leaseSeconds: 15 });
    const vacuumedAt = async () => {
      const [row] = await sql<{ at: Date | null }[]>`select last_vacuum as at from pg_stat_user_tables where relname = 'jobs'`;
      return row?.at ?? null;
    };
    const before = await vacuumedAt();
    h.scheduler.start();
    try {
      clock.advance(60_001);
      await waitFor(async () => {
        const at = await vacuumedAt();
        return at !== null && (before === null || at > before);
      }, 'the jobs table vacuumed');
    } finally {
      await h.scheduler.stop(0);
    }
  });
});
