// A run's call: failures and timeouts, the call context, manual runs, cancels, and a job deleted
// while its run is in flight.
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
    assert.deepEqual(
      runs.map((r) => r.status),
      ['FAILED', 'FAILED', 'FAILED'],
    );
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
    const warnings =
      await sql`select job_id from log_entries where level = 'WARNING' and job_id in ('no-connector', 'no-operation') and run_id is null`;
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
    assert.deepEqual(
      (await runsOf('healthy')).map((r) => r.status),
      ['SUCCEEDED', 'SUCCEEDED', 'SUCCEEDED'],
    );
    assert.deepEqual(
      (await runsOf('weird')).map((r) => r.status),
      ['FAILED', 'FAILED', 'FAILED'],
    );
    assert.deepEqual(
      (await runsOf('stuck')).map((r) => r.status),
      ['RUNNING', 'SKIPPED', 'SKIPPED'],
    );
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
    const [entry] = await sql<
      { details: unknown; runId: string }[]
    >`select details, run_id from log_entries where message = 'loaded codes'`;
    assert.deepEqual(entry!.details, { loaded: 3, source: 'test' });
    assert.equal(entry!.runId, started!.run.id);
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
    await assert.rejects(
      h.jobs.runNow('busy'),
      (e: Error & { extensions: Record<string, unknown> }) => e.extensions['code'] === 'CONFLICT',
    );
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
    await assert.rejects(
      h.jobs.cancelRun(run.id),
      (e: Error & { extensions: Record<string, unknown> }) => e.extensions['code'] === 'CONFLICT',
    );
    await assert.rejects(
      h.jobs.cancelRun('999999999'),
      (e: Error & { extensions: Record<string, unknown> }) => e.extensions['code'] === 'NOT_FOUND',
    );
  });
});
