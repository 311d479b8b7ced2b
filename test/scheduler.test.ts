import assert from 'node:assert/strict';
import { after, beforeEach, describe, it } from 'node:test';
import { connect } from '../src/db/client.ts';
import type { RunRow } from '../src/db/rows.ts';
import { ManualClock } from './helpers/clock.ts';
import { gate } from './helpers/connector.ts';
import { harness, nextEvent, T0, tickAndSettle } from './helpers/harness.ts';
import { testDatabase } from './helpers/db.ts';
import { databaseProxy } from './helpers/proxy.ts';

const { sql, url } = await testDatabase();
// Each test starts from empty tables: a tick claims every due job in the database.
beforeEach(() => sql`truncate jobs, job_runs, log_entries`);

const runsOf = (jobId: string) =>
  sql<RunRow[]>`select * from job_runs where job_id = ${jobId} order by scheduled_at, id`;
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
    assert.equal(job.nextDueAt.getTime() - T0, 10_000);
  });

  it('should start at startAt and continue on its grid', async () => {
    const h = harness(sql);
    h.connector.define('ok', async () => {});
    await h.jobs.create({ id: 'start-at', name: 'x', externalCall: 'Test:ok', period: '0:1:0', startAt: new Date(T0 + 90_000) });
    h.clock.set(T0 + 90_000);
    await tickAndSettle(h);
    h.clock.set(T0 + 150_000);
    await tickAndSettle(h);
    assert.deepEqual((await runsOf('start-at')).map((r) => r.scheduledAt.getTime() - T0), [90_000, 150_000]);
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
    assert.deepEqual(runs.map((r) => r.status), ['SUCCEEDED', 'SKIPPED']);
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

describe('failures', () => {
  it('should record a throwing call as FAILED with an ERROR entry, and keep the schedule', async () => {
    const h = harness(sql);
    h.connector.define('boom', async () => {
      throw new Error('remote system said no');
    });
    await h.jobs.create({ id: 'fails', name: 'x', externalCall: 'Test:boom', period: '0:0:1' });
    for (let k = 1; k <= 3; k++) {
      h.clock.set(T0 + k * 1000);
      await tickAndSettle(h);
    }
    const runs = await runsOf('fails');
    assert.deepEqual(runs.map((r) => r.status), ['FAILED', 'FAILED', 'FAILED']);
    assert.equal(runs[0]!.error, 'remote system said no');
    const errors = await sql<{ message: string; jobId: string; runId: string; details: Record<string, unknown> }[]>`
      select * from log_entries where job_id = 'fails' and level = 'ERROR' order by id`;
    assert.equal(errors.length, 3);
    assert.match(errors[0]!.message, /"fails".*Test:boom.*remote system said no/);
    assert.equal(errors[0]!.runId, runs[0]!.id);
    assert.equal(errors[0]!.details['externalCall'], 'Test:boom');
  });

  it('should time out a call that does not answer, abort its signal and record TIMED_OUT', async () => {
    const h = harness(sql);
    let signal: AbortSignal | undefined;
    h.connector.define('hang', (ctx) => {
      signal = ctx.signal;
      return new Promise(() => {});
    });
    await h.jobs.create({ id: 'hangs', name: 'x', externalCall: 'Test:hang', period: '0:1:0', timeoutSeconds: 3 });
    h.clock.set(T0 + 60_000);
    const [started] = await h.scheduler.tick();
    h.clock.advance(2999);
    await new Promise((resolve) => setImmediate(resolve));
    assert.equal(signal?.aborted, false, 'not aborted before the timeout');
    h.clock.advance(1);
    const end = await started!.done;
    assert.equal(end?.status, 'TIMED_OUT');
    assert.equal(signal?.aborted, true);
    const [entry] = await sql`select level, message from log_entries where run_id = ${end!.id}`;
    assert.equal(entry!['level'], 'ERROR');
    assert.match(String(entry!['message']), /timed out/);
  });

  it('should fail clearly when the connector or the operation does not exist', async () => {
    const h = harness(sql);
    await h.jobs.create({ id: 'no-connector', name: 'x', externalCall: 'Missing:op', period: '0:0:1' });
    await h.jobs.create({ id: 'no-operation', name: 'x', externalCall: 'Test:nothing', period: '0:0:1' });
    h.clock.set(T0 + 1000);
    await tickAndSettle(h);
    const [a] = await runsOf('no-connector');
    const [b] = await runsOf('no-operation');
    assert.equal(a?.status, 'FAILED');
    assert.match(a!.error!, /Unknown connector "Missing"/);
    assert.equal(b?.status, 'FAILED');
    // Both were warned about at creation.
    const warnings = await sql`select job_id from log_entries where level = 'WARNING' and job_id in ('no-connector', 'no-operation') and run_id is null`;
    assert.equal(warnings.length, 2);
  });

  it('should not let a failing or hanging job disturb another job', async () => {
    const h = harness(sql);
    h.connector.define('ok', async () => {});
    h.connector.define('reject-non-error', () => Promise.reject(42));
    h.connector.define('hang', () => new Promise(() => {}));
    await h.jobs.create({ id: 'healthy', name: 'x', externalCall: 'Test:ok', period: '0:0:1' });
    await h.jobs.create({ id: 'weird', name: 'x', externalCall: 'Test:reject-non-error', period: '0:0:1' });
    await h.jobs.create({ id: 'stuck', name: 'x', externalCall: 'Test:hang', period: '0:0:1', timeoutSeconds: 100 });
    for (let k = 1; k <= 3; k++) {
      h.clock.set(T0 + k * 1000);
      const started = await h.scheduler.tick();
      await Promise.all(started.filter((s) => s.run.jobId !== 'stuck').map((s) => s.done));
    }
    assert.deepEqual((await runsOf('healthy')).map((r) => r.status), ['SUCCEEDED', 'SUCCEEDED', 'SUCCEEDED']);
    assert.deepEqual((await runsOf('weird')).map((r) => r.status), ['FAILED', 'FAILED', 'FAILED']);
    assert.deepEqual((await runsOf('stuck')).map((r) => r.status), ['RUNNING', 'SKIPPED', 'SKIPPED']);
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
    assert.equal(resumed.nextDueAt.getTime() - T0, 50_000, 'first grid point after the resume');
    h.clock.set(T0 + 50_000);
    await tickAndSettle(h);
    const runs = await runsOf('pausable');
    assert.deepEqual(runs.map((r) => [r.scheduledAt.getTime() - T0, r.missed]), [[10_000, 0], [50_000, 0]]);
    const audit = await sql`select message from log_entries where job_id = 'pausable' and level = 'INFO' order by id`;
    assert.deepEqual(audit.map((e) => e['message']), ['Job "pausable" created', 'Job "pausable" paused: maintenance', 'Job "pausable" resumed']);
  });

  it('should re-anchor the grid when the period changes but not when the name or call changes', async () => {
    const h = harness(sql);
    await h.jobs.create({ id: 'changing', name: 'x', externalCall: 'Test:ok', period: '0:0:10' });
    h.clock.set(T0 + 3000);
    const renamed = await h.jobs.update('changing', { name: 'y', externalCall: 'Test:other' });
    assert.equal(renamed.nextDueAt.getTime() - T0, 10_000);
    assert.equal(renamed.method, 'other');
    const faster = await h.jobs.update('changing', { period: '0:0:4' });
    assert.equal(faster.anchorAt.getTime() - T0, 3000);
    assert.equal(faster.nextDueAt.getTime() - T0, 7000);
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

describe('deleting a job with a run in flight', () => {
  it('should end the run CANCELLED "job deleted", fence out its holder, and let a job re-created with the id run', async () => {
    const clock = new ManualClock(T0);
    const holder = harness(sql, { clock, instance: 'holder' });
    const other = harness(sql, { clock, instance: 'other' });
    const hold = gate();
    // Ignores its signal: its end comes late, after the delete (the two harnesses share no bus, so the holder is not told).
    holder.connector.define('hang', () => hold.promise);
    other.connector.define('ok', async () => {});
    await holder.jobs.create({ id: 'doomed', name: 'x', externalCall: 'Test:hang', period: '0:0:1', timeoutSeconds: 600 });
    clock.set(T0 + 1000);
    const [started] = await holder.scheduler.tick();
    const runId = started!.run.id;

    clock.set(T0 + 1500);
    await other.jobs.delete('doomed');
    const [cancelled] = await sql<RunRow[]>`select * from job_runs where id = ${runId}`;
    assert.deepEqual([cancelled!.status, cancelled!.error, cancelled!.finishedAt?.getTime()], ['CANCELLED', 'job deleted', T0 + 1500]);
    const [warning] = await sql<{ level: string; message: string }[]>`select level, message from log_entries where run_id = ${runId}`;
    assert.equal(warning!.level, 'WARNING');
    assert.match(warning!.message, /"doomed" run \d+ was cancelled calling Test:hang: job deleted/);
    const finished = other.events.find((e) => e.topic === 'run:finished' && e.payload.run.id === runId);
    assert.equal(finished?.topic === 'run:finished' && finished.payload.run.status, 'CANCELLED');

    // The same id again: it does not inherit the run, so runJobNow starts one (no CONFLICT).
    await other.jobs.create({ id: 'doomed', name: 'x', externalCall: 'Test:ok', period: '1:0:0' });
    const ended = nextEvent(other.bus, 'run:finished', (p) => p.run.jobId === 'doomed');
    const fresh = await other.jobs.runNow('doomed');
    assert.equal(fresh.status, 'RUNNING');
    assert.equal((await ended).run.status, 'SUCCEEDED');

    // The old holder's call ends at last: its end is refused by the fence.
    hold.open();
    assert.equal(await started!.done, null);
    const [after] = await sql<RunRow[]>`select * from job_runs where id = ${runId}`;
    assert.deepEqual([after!.status, after!.error], ['CANCELLED', 'job deleted']);
  });

  it('should abort the call when this instance holds the run', async () => {
    const h = harness(sql);
    let signal: AbortSignal | undefined;
    h.connector.define('hang', (ctx) => {
      signal = ctx.signal;
      return new Promise(() => {});
    });
    await h.jobs.create({ id: 'doomed-here', name: 'x', externalCall: 'Test:hang', period: '0:0:1', timeoutSeconds: 600 });
    h.clock.set(T0 + 1000);
    const [started] = await h.scheduler.tick();
    await h.jobs.delete('doomed-here');
    assert.equal(signal?.aborted, true, 'the call was told to stop');
    assert.equal(await started!.done, null, 'its own end is refused: the delete ended the run');
    const [row] = await sql<RunRow[]>`select * from job_runs where id = ${started!.run.id}`;
    assert.deepEqual([row!.status, row!.error], ['CANCELLED', 'job deleted']);
    assert.equal(h.scheduler.inFlightCount, 0);
  });
});

describe('manual runs and cancel', () => {
  it('should run a job now, also while paused, without moving the grid', async () => {
    const h = harness(sql);
    h.connector.define('ok', async () => {});
    await h.jobs.create({ id: 'manual', name: 'x', externalCall: 'Test:ok', period: '0:1:0', enabled: false });
    h.clock.set(T0 + 1234);
    const finished = nextEvent(h.bus, 'run:finished', (p) => p.run.jobId === 'manual');
    const run = await h.jobs.runNow('manual');
    assert.equal(run.trigger, 'MANUAL');
    assert.equal(run.status, 'RUNNING');
    assert.equal((await finished).run.status, 'SUCCEEDED');
    const job = (await sql`select next_due_at from jobs where id = 'manual'`)[0]!;
    assert.equal((job['nextDueAt'] as Date).getTime() - T0, 60_000);
  });

  it('should answer CONFLICT to runJobNow while a run is in progress', async () => {
    const h = harness(sql);
    const hold = gate();
    h.connector.define('hang', () => hold.promise);
    await h.jobs.create({ id: 'busy', name: 'x', externalCall: 'Test:hang', period: '1:0:0' });
    await h.jobs.runNow('busy');
    await assert.rejects(h.jobs.runNow('busy'), (e: Error & { extensions: Record<string, unknown> }) => e.extensions['code'] === 'CONFLICT');
    hold.open();
  });

  it('should cancel a run in progress: CANCELLED, signal aborted, WARNING entry', async () => {
    const h = harness(sql);
    let signal: AbortSignal | undefined;
    h.connector.define('hang', (ctx) => {
      signal = ctx.signal;
      return new Promise(() => {});
    });
    await h.jobs.create({ id: 'cancel-me', name: 'x', externalCall: 'Test:hang', period: '1:0:0' });
    const run = await h.jobs.runNow('cancel-me');
    const cancelled = await h.jobs.cancelRun(run.id);
    assert.equal(cancelled.status, 'CANCELLED');
    assert.equal(signal?.aborted, true);
    const [entry] = await sql`select level from log_entries where run_id = ${run.id}`;
    assert.equal(entry!['level'], 'WARNING');
    await assert.rejects(h.jobs.cancelRun(run.id), (e: Error & { extensions: Record<string, unknown> }) => e.extensions['code'] === 'CONFLICT');
    await assert.rejects(h.jobs.cancelRun('999999999'), (e: Error & { extensions: Record<string, unknown> }) => e.extensions['code'] === 'NOT_FOUND');
  });
});

describe('leases and crash recovery', () => {
  it('should mark the runs of a process that stopped renewing ABANDONED after its lease, and fence its late writes', async () => {
    const clock = new ManualClock(T0);
    // Frozen (SIGSTOP, a long pause): its clock stands still, so none of its timers runs — not
    // even the one with which a live holder aborts a call whose lease it could not renew.
    const dead = harness(sql, { clock: new ManualClock(T0), instance: 'dead', leaseSeconds: 5 });
    const alive = harness(sql, { clock, instance: 'alive', leaseSeconds: 5 });
    const hold = gate();
    dead.connector.define('hang', () => hold.promise);
    await dead.jobs.create({ id: 'orphaned', name: 'x', externalCall: 'Test:hang', period: '1:0:0' });
    const run = await dead.jobs.runNow('orphaned');

    clock.advance(4999);
    assert.equal((await alive.scheduler.maintain()).length, 0, 'lease still valid');
    clock.advance(2);
    const abandoned = await alive.scheduler.maintain();
    assert.deepEqual(abandoned.map((r) => [r.id, r.status]), [[run.id, 'ABANDONED']]);
    const [entry] = await sql`select level, message from log_entries where run_id = ${run.id}`;
    assert.equal(entry!['level'], 'ERROR');
    assert.match(String(entry!['message']), /Test:hang/);

    // The frozen holder wakes and finishes: its write is refused.
    hold.open();
    const [row] = await sql<RunRow[]>`select * from job_runs where id = ${run.id}`;
    await new Promise((resolve) => setTimeout(resolve, 50));
    const [after] = await sql<RunRow[]>`select * from job_runs where id = ${run.id}`;
    assert.equal(row!.status, 'ABANDONED');
    assert.equal(after!.status, 'ABANDONED');
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
  /** A client of the test database through a proxy the test can cut: the scheduler's database goes away, the test's does not. */
  async function awayDatabase() {
    const proxy = await databaseProxy(url);
    const db = connect(proxy.url, { max: 2 });
    // Everything it ran has settled by then: close at once rather than wait out a connection the outage left behind.
    after(() => db.sql.end({ timeout: 0 }));
    return { proxy, sql: db.sql };
  }
  const settles = (promise: Promise<unknown>) => {
    const state = { settled: false };
    void promise.finally(() => (state.settled = true));
    return state;
  };
  const realWait = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

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
    const recorded = await started!.done;
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
    assert.deepEqual(abandoned.map((r) => r.id), [started!.run.id]);
    await away.proxy.restore();
    assert.equal(await started!.done, null, 'the fence refused the end');
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

describe('the call context', () => {
  it('should give the call its job, run and due time, and store its log entries with structured details', async () => {
    const h = harness(sql);
    let seen: { jobId: string; runId: string; scheduledAt: Date } | undefined;
    h.connector.define('logs', async (ctx) => {
      seen = { jobId: ctx.jobId, runId: ctx.runId, scheduledAt: ctx.scheduledAt };
      await ctx.log('INFO', 'loaded codes', { loaded: 3, source: 'test' });
    });
    await h.jobs.create({ id: 'ctx', name: 'x', externalCall: 'Test:logs', period: '0:0:1' });
    h.clock.set(T0 + 1000);
    const [started] = await tickAndSettle(h);
    assert.deepEqual(seen, { jobId: 'ctx', runId: started!.run.id, scheduledAt: new Date(T0 + 1000) });
    const [entry] = await sql<{ details: unknown; runId: string }[]>`select details, run_id from log_entries where message = 'loaded codes'`;
    assert.deepEqual(entry!.details, { loaded: 3, source: 'test' });
    assert.equal(entry!.runId, started!.run.id);
  });
});

describe('resending and shutting down', () => {
  it('should keep the grid when an update resends the current period', async () => {
    const h = harness(sql);
    await h.jobs.create({ id: 'same-period', name: 'x', externalCall: 'Test:ok', period: '0:0:10' });
    h.clock.set(T0 + 3000);
    const updated = await h.jobs.update('same-period', { name: 'renamed', period: '0:00:10' });
    assert.equal(updated.anchorAt.getTime(), T0);
    assert.equal(updated.nextDueAt.getTime() - T0, 10_000);
  });

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
});
