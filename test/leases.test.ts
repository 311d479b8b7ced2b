// No call outlives its lease (SPEC §3): a holder that cannot renew a run's lease aborts its call
// before the lease expires, and a run whose claim reply was lost does not hold its job.
import assert from 'node:assert/strict';
import { beforeEach, describe, it } from 'node:test';
import type { RunRow } from '../src/db/rows.ts';
import { REPLY_LOST } from '../src/scheduling/scheduler.ts';
import { ManualClock } from './helpers/clock.ts';
import { gate } from './helpers/connector.ts';
import { testDatabase } from './helpers/db.ts';
import { harness, nextEvent, T0, tickAndSettle } from './helpers/harness.ts';
import { awayDatabase as awayDatabaseAt } from './helpers/proxy.ts';

const { sql, url } = await testDatabase();
beforeEach(() => sql`truncate jobs, job_runs, log_entries`);

const runsOf = (jobId: string) => sql<RunRow[]>`select * from job_runs where job_id = ${jobId} order by scheduled_at, id`;
const flush = () => new Promise((resolve) => setImmediate(resolve));

const awayDatabase = () => awayDatabaseAt(url);

/** A call that ignores its signal and answers success once let go; it tells when it began and hands over its signal. */
function hangingCall() {
  const hold = gate();
  let began!: (signal: AbortSignal) => void;
  const signal = new Promise<AbortSignal>((resolve) => (began = resolve));
  return { hold, signal, behaviour: (ctx: { signal: AbortSignal }) => (began(ctx.signal), hold.promise) };
}

describe('a holder cut off from the database', () => {
  it('should abort its call by the time the lease expires, and let another instance take the run over', async () => {
    const clock = new ManualClock(T0);
    const away = await awayDatabase();
    const holder = harness(away.sql, { clock, instance: 'holder', leaseSeconds: 5 });
    const other = harness(sql, { clock, instance: 'other', leaseSeconds: 5 });
    const call = hangingCall();
    holder.connector.define('hang', call.behaviour);
    await holder.jobs.create({ id: 'cut-off', name: 'x', externalCall: 'Test:hang', period: '1:0:0', timeoutSeconds: 86_400 });
    const run = await holder.jobs.runNow('cut-off');
    holder.scheduler.start();
    const signal = await call.signal;

    await away.proxy.cut();
    // Its renewals fail from here on; time runs up to the moment the lease expires.
    const expiry = run.leaseExpiresAt!.getTime();
    for (let at = T0 + 1000; at <= expiry; at += 1000) {
      clock.set(at);
      await flush();
    }
    assert.equal(signal.aborted, true, 'the call was aborted by the time its lease expired');
    assert.deepEqual(signal.reason, { status: 'ABANDONED', error: 'lease lost: could not renew within 5 s' });

    // Past its lease, the other instance, which reaches the database, takes the run over.
    clock.advance(1);
    const abandoned = await other.scheduler.maintain();
    assert.deepEqual(
      abandoned.map((r) => r.id),
      [run.id],
    );
    // The call answers late, as if it had succeeded; the database comes back.
    call.hold.open();
    await away.proxy.restore();
    await holder.scheduler.stop(60_000);
    const [row] = await runsOf('cut-off');
    assert.equal(row!.status, 'ABANDONED');
    assert.equal(row!.instance, 'holder');
  });

  it('should record the run ABANDONED itself when the database comes back and nobody took it over, never SUCCEEDED', async () => {
    const clock = new ManualClock(T0);
    const away = await awayDatabase();
    const holder = harness(away.sql, { clock, leaseSeconds: 5 });
    const call = hangingCall();
    holder.connector.define('hang', call.behaviour);
    await holder.jobs.create({ id: 'cut-off-alone', name: 'x', externalCall: 'Test:hang', period: '1:0:0', timeoutSeconds: 86_400 });
    const run = await holder.jobs.runNow('cut-off-alone');
    holder.scheduler.start();
    const signal = await call.signal;

    await away.proxy.cut();
    clock.set(run.leaseExpiresAt!.getTime());
    await flush();
    assert.equal(signal.aborted, true, 'aborted by the time its lease expired');
    call.hold.open();
    const finished = nextEvent(holder.bus, 'run:finished', (p) => p.run.id === run.id);
    await away.proxy.restore();
    const end = (await finished).run;
    assert.deepEqual([end.status, end.error], ['ABANDONED', 'lease lost: could not renew within 5 s']);
    const [row] = await runsOf('cut-off-alone');
    assert.deepEqual([row!.status, row!.error], ['ABANDONED', 'lease lost: could not renew within 5 s']);
    const [entry] = await sql<{ level: string; message: string }[]>`select level, message from log_entries where run_id = ${run.id}`;
    assert.equal(entry!.level, 'ERROR');
    assert.match(entry!.message, /was abandoned calling Test:hang: lease lost/);
  });

  it('should not abort a call whose lease it keeps renewing', async () => {
    const clock = new ManualClock(T0);
    const h = harness(sql, { clock, leaseSeconds: 3 });
    const call = hangingCall();
    h.connector.define('hang', call.behaviour);
    await h.jobs.create({ id: 'renewed', name: 'x', externalCall: 'Test:hang', period: '1:0:0', timeoutSeconds: 86_400 });
    const run = await h.jobs.runNow('renewed');
    const signal = await call.signal;
    // Ten leases long, renewed once a second.
    for (let second = 1; second <= 30; second++) {
      clock.advance(1000);
      await h.scheduler.maintain();
      assert.equal(signal.aborted, false, `still running at ${second} s`);
    }
    const finished = nextEvent(h.bus, 'run:finished', (p) => p.run.id === run.id);
    call.hold.open();
    assert.equal((await finished).run.status, 'SUCCEEDED');
  });
});

describe('a claim whose reply was lost', () => {
  it('should end its run ABANDONED once the database answers again, not leave it RUNNING to hold the job', async () => {
    const away = await awayDatabase();
    const h = harness(away.sql);
    h.connector.define('ok', async () => {});
    await h.jobs.create({ id: 'lost-claim', name: 'x', externalCall: 'Test:ok', period: '0:0:1' });
    h.clock.set(T0 + 1000);
    const lost = away.proxy.loseNextCommitReply();
    await assert.rejects(h.scheduler.tick());
    await lost;
    const [claimed] = await runsOf('lost-claim');
    assert.equal(claimed!.status, 'RUNNING', 'the claim committed');
    assert.equal(claimed!.leaseToken, h.scheduler.holder.token);

    const finished = nextEvent(h.bus, 'run:finished', (p) => p.run.id === claimed!.id);
    const ended = await h.scheduler.maintain();
    assert.deepEqual(
      ended.map((r) => [r.id, r.status, r.error]),
      [[claimed!.id, 'ABANDONED', REPLY_LOST]],
    );
    assert.equal((await finished).run.status, 'ABANDONED');
    assert.equal(h.connector.calls.length, 0, 'never called');
    const [entry] = await sql<{ level: string }[]>`select level from log_entries where run_id = ${claimed!.id}`;
    assert.equal(entry!.level, 'ERROR');

    // The job goes on with its next due time.
    h.clock.set(T0 + 2000);
    await tickAndSettle(h);
    assert.deepEqual(
      (await runsOf('lost-claim')).map((r) => r.status),
      ['ABANDONED', 'SUCCEEDED'],
    );
    assert.equal(h.connector.calls.length, 1);
  });

  it('should end a manual run whose reply was lost, so that runJobNow can be asked again', async () => {
    const away = await awayDatabase();
    const h = harness(away.sql);
    h.connector.define('ok', async () => {});
    await h.jobs.create({ id: 'lost-manual', name: 'x', externalCall: 'Test:ok', period: '1:0:0' });
    const lost = away.proxy.loseNextCommitReply();
    await assert.rejects(h.jobs.runNow('lost-manual'));
    await lost;
    const [inserted] = await runsOf('lost-manual');
    assert.deepEqual([inserted!.status, inserted!.trigger], ['RUNNING', 'MANUAL']);

    const ended = await h.scheduler.maintain();
    assert.deepEqual(
      ended.map((r) => [r.id, r.status, r.error]),
      [[inserted!.id, 'ABANDONED', REPLY_LOST]],
    );
    assert.equal(h.connector.calls.length, 0);
    const finished = nextEvent(h.bus, 'run:finished', (p) => p.run.jobId === 'lost-manual');
    const again = await h.jobs.runNow('lost-manual');
    assert.equal((await finished).run.id, again.id);
    assert.equal((await finished).run.status, 'SUCCEEDED');
  });

  it('should leave alone the runs it launched when a claim fails', async () => {
    const h = harness(sql);
    const call = hangingCall();
    h.connector.define('hang', call.behaviour);
    await h.jobs.create({ id: 'launched', name: 'x', externalCall: 'Test:hang', period: '1:0:0' });
    const run = await h.jobs.runNow('launched');
    await call.signal;
    // A claim that fails for another reason (not a reply that was lost): nothing to end.
    await assert.rejects(h.scheduler.claiming(Promise.reject(new Error('connection reset'))));
    assert.deepEqual(await h.scheduler.maintain(), []);
    const [row] = await runsOf('launched');
    assert.equal(row!.status, 'RUNNING');
    const finished = nextEvent(h.bus, 'run:finished', (p) => p.run.id === run.id);
    call.hold.open();
    assert.equal((await finished).run.status, 'SUCCEEDED');
  });
});
