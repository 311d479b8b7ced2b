// "Now" is never early (SPEC §3): the clock's offset to the database comes from the best of
// several samples, taken at its lower bound; local time between samples is monotonic; no call
// reaches its connector before its due time.
import assert from 'node:assert/strict';
import { performance } from 'node:perf_hooks';
import { after, describe, it } from 'node:test';
import { bestOffset, type ClockSample, MAX_SYNCS_PASSED_OVER, OffsetClock, type TimeSource } from '../src/clock.ts';
import { DatabaseConnectorRegistry } from '../src/connectors/registry.ts';
import { connect, sampleDatabaseClock } from '../src/db/client.ts';
import type { RunRow } from '../src/db/rows.ts';
import { EventBus } from '../src/events/bus.ts';
import { JobService } from '../src/jobs/job-service.ts';
import { Scheduler } from '../src/scheduling/scheduler.ts';
import { ScriptedConnector } from './helpers/connector.ts';
import { testDatabase } from './helpers/db.ts';
import { harness, silentLog, T0 } from './helpers/harness.ts';

/** A local clock the test moves: monotonic time and a system clock that can be stepped apart from it. */
class FakeTime implements TimeSource {
  mono = 1_000;
  wall = T0;
  monotonicMs(): number {
    return this.mono;
  }
  wallMs(): number {
    return this.wall;
  }
  /** Real time passes: both move together. */
  pass(ms: number): void {
    this.mono += ms;
    this.wall += ms;
  }
}

/**
 * A database whose clock reads `mono + skewMs`, sampled with the given delays: `queuedMs` before
 * the query reaches it (a wait in a pool's queue, a connection's set-up), `backMs` for the answer.
 */
function sampleOf(time: FakeTime, skewMs: number, { queuedMs, backMs }: { queuedMs: number; backMs: number }): ClockSample {
  const sentMs = time.mono;
  time.pass(queuedMs);
  const dbMs = time.mono + skewMs;
  time.pass(backMs);
  return { sentMs, dbMs, receivedMs: time.mono };
}

const SKEW = 42_000.25; // the database's clock runs this far ahead of the local one

describe('choosing the offset', () => {
  it('should keep the sample with the shortest round trip, at the lower bound of its interval', () => {
    const samples: ClockSample[] = [
      { sentMs: 100, dbMs: 50_140, receivedMs: 145 }, // 45 ms round trip
      { sentMs: 200, dbMs: 50_200.4, receivedMs: 200.5 }, // 0.5 ms: the best
      { sentMs: 300, dbMs: 50_302, receivedMs: 303 },
    ];
    assert.deepEqual(bestOffset(samples), { offsetMs: 50_000 - 0.1, roundTripMs: 0.5, atMs: 200.5 });
  });

  it('should skip samples that cannot be right and answer null when none is left', () => {
    assert.equal(bestOffset([]), null);
    assert.equal(bestOffset([{ sentMs: 10, dbMs: 5, receivedMs: 9 }]), null, 'answered before it was sent');
    assert.equal(bestOffset([{ sentMs: 10, dbMs: Number.NaN, receivedMs: 11 }]), null);
    assert.equal(
      bestOffset([
        { sentMs: 10, dbMs: Number.NaN, receivedMs: 11 },
        { sentMs: 20, dbMs: 30, receivedMs: 22 },
      ])?.offsetMs,
      8,
    );
  });
});

describe('the database clock as this process knows it', () => {
  it('should choose the fast sample over a slow one and never be ahead of the database', async () => {
    const time = new FakeTime();
    const clock = new OffsetClock({ time, maxDriftPpm: 0 });
    const db = () => time.mono + SKEW;
    const samples = [
      // Waited 80 ms in a queue before the database read its clock: its midpoint is 40 ms early,
      // so a clock set by it would run 40 ms ahead of the database.
      sampleOf(time, SKEW, { queuedMs: 80, backMs: 0.2 }),
      sampleOf(time, SKEW, { queuedMs: 0.3, backMs: 0.3 }),
      sampleOf(time, SKEW, { queuedMs: 5, backMs: 0.5 }),
    ];
    const slow = samples[0]!;
    const midpointOffset = slow.dbMs - (slow.sentMs + slow.receivedMs) / 2;
    assert.ok(time.mono + midpointOffset > db() + 39, 'the slow sample, taken at its midpoint, would run ahead');
    const chosen = await clock.sync(async () => samples);
    assert.ok(Math.abs(chosen.roundTripMs - 0.6) < 1e-9, 'the fast sample was kept');
    for (let i = 0; i < 50; i++) {
      time.pass(7.3);
      const now = clock.now();
      assert.ok(now <= db(), `now ${now} is not ahead of the database ${db()}`);
      assert.ok(now >= db() - chosen.roundTripMs - 1, 'and behind it by no more than the kept round trip, rounded down');
    }
  });

  it('should not be ahead of the database even with only a slow sample', async () => {
    const time = new FakeTime();
    const clock = new OffsetClock({ time, maxDriftPpm: 0 });
    await clock.sync(async () => [sampleOf(time, SKEW, { queuedMs: 200, backMs: 0 })]);
    time.pass(1);
    assert.ok(clock.now() <= time.mono + SKEW);
  });

  it('should not move when the system clock is stepped, and never go backwards', async () => {
    const time = new FakeTime();
    const clock = new OffsetClock({ time, maxDriftPpm: 0 });
    await clock.sync(async () => [sampleOf(time, SKEW, { queuedMs: 0.2, backMs: 0.2 })]);
    let last = clock.now();
    for (const step of [3_600_000, -7_200_000, 5, -86_400_000, 0]) {
      time.pass(10);
      time.wall += step; // the system clock is stepped (an operator, NTP): monotonic time is not
      const now = clock.now();
      assert.ok(now >= last, 'monotonic');
      assert.ok(now <= time.mono + SKEW, 'not ahead of the database');
      assert.ok(now >= time.mono + SKEW - 0.4 - 1, 'not thrown off by the step: behind by at most the round trip, rounded down');
      last = now;
    }
  });

  it('should follow the monotonic clock, not the system clock, before its first sync too', () => {
    const time = new FakeTime();
    const clock = new OffsetClock({ time, maxDriftPpm: 0 });
    assert.equal(clock.now(), T0);
    time.pass(250);
    time.wall -= 60_000;
    assert.equal(clock.now(), T0 + 250);
  });

  it('should hold still rather than go back when a re-sync lowers the offset, and jump forward when it raises it', async () => {
    const time = new FakeTime();
    const clock = new OffsetClock({ time, maxDriftPpm: 0 });
    await clock.sync(async () => [sampleOf(time, SKEW, { queuedMs: 0, backMs: 0 })]);
    time.pass(100);
    const before = clock.now();
    // The database's clock was stepped back by 30 ms (or the first estimate was off by that much).
    await clock.sync(async () => [sampleOf(time, SKEW - 30, { queuedMs: 0, backMs: 0 })]);
    assert.equal(clock.now(), before, 'held');
    time.pass(20);
    assert.equal(clock.now(), before, 'still held: the new estimate has not caught up');
    time.pass(15);
    assert.equal(clock.now(), Math.floor(time.mono + SKEW - 30), 'follows the new estimate once it has');
    await clock.sync(async () => [sampleOf(time, SKEW + 500, { queuedMs: 0, backMs: 0 })]);
    assert.equal(clock.now(), Math.floor(time.mono + SKEW + 500));
  });

  it('should keep a precise estimate over slow samples taken while its loop was busy, but not forever', async () => {
    const time = new FakeTime();
    const clock = new OffsetClock({ time, maxDriftPpm: 50 });
    await clock.sync(async () => [sampleOf(time, SKEW, { queuedMs: 0.1, backMs: 0.1 })]);
    time.pass(60_000);
    const precise = clock.now();
    // Just after the process was paused: every answer waited ~100 ms for the event loop.
    await clock.sync(async () => [1, 2, 3].map(() => sampleOf(time, SKEW, { queuedMs: 0.1, backMs: 100 })));
    assert.ok(clock.now() >= precise);
    time.pass(1000);
    assert.ok(
      time.mono + SKEW - clock.now() < 5,
      `still on the precise estimate, at most its drift allowance behind (${time.mono + SKEW - clock.now()} ms)`,
    );
    // A database clock that was stepped is followed all the same, after a few syncs.
    for (let i = 0; i < MAX_SYNCS_PASSED_OVER; i++)
      await clock.sync(async () => [sampleOf(time, SKEW + 1000, { queuedMs: 0.1, backMs: 100 })]);
    assert.ok(clock.now() < time.mono + SKEW + 1000 - 90, 'not yet');
    await clock.sync(async () => [sampleOf(time, SKEW + 1000, { queuedMs: 0.1, backMs: 100 })]);
    assert.ok(Math.abs(clock.now() - (time.mono + SKEW + 1000 - 100)) <= 1, 'on the new estimate, at the lower bound of its slow sample');
  });

  it('should run slow by its drift allowance between syncs, so a fast local clock does not make it early', async () => {
    const time = new FakeTime();
    const clock = new OffsetClock({ time, maxDriftPpm: 50 });
    await clock.sync(async () => [sampleOf(time, SKEW, { queuedMs: 0, backMs: 0 })]);
    // The local clock runs 40 ppm fast: over 60 s it gains 2.4 ms on the database.
    const start = time.mono;
    time.pass(60_000);
    const dbNow = start + 60_000 * (1 - 40e-6) + SKEW;
    assert.ok(clock.now() <= dbNow);
  });

  it('should keep its estimate when a sync fails', async () => {
    const time = new FakeTime();
    const clock = new OffsetClock({ time, maxDriftPpm: 0 });
    await clock.sync(async () => [sampleOf(time, SKEW, { queuedMs: 0, backMs: 0 })]);
    await assert.rejects(
      clock.sync(async () => []),
      /no usable sample/,
    );
    await assert.rejects(
      clock.sync(async () => Promise.reject(new Error('connection refused'))),
      /connection refused/,
    );
    assert.equal(clock.now(), Math.floor(time.mono + SKEW));
  });
});

const { sql, url } = await testDatabase();

describe('no call before its due time', () => {
  it('should not call the connector before scheduledAt by the clock, even when a run is launched early', async () => {
    const h = harness(sql);
    h.connector.define('ok', async () => {});
    const job = await h.jobs.create({ id: 'launched-early', name: 'x', externalCall: 'Test:ok', period: '1:0:0' });
    // A run due 5 s from now by the clock, launched at once.
    const [run] = await sql<RunRow[]>`
      insert into job_runs (job_id, trigger, scheduled_at, started_at, status, instance, lease_token, lease_expires_at)
      values ('launched-early', 'SCHEDULE', ${new Date(T0 + 5000)}, ${new Date(T0 + 5000)}, 'RUNNING', 'test-instance',
              ${h.scheduler.holder.token}, ${new Date(T0 + 20_000)})
      returning *`;
    const done = h.scheduler.launch(run!, job);
    h.clock.set(T0 + 4999);
    await new Promise((resolve) => setImmediate(resolve));
    assert.equal(h.connector.calls.length, 0, 'not called before its due time');
    h.clock.set(T0 + 5000);
    assert.equal((await done)?.status, 'SUCCEEDED');
    assert.equal(h.connector.calls.length, 1);
  });

  it('should start every call at or after its due time by the database clock, with a slow sample offered and the system clock stepped', async () => {
    // The scheduler's clock: a connection of its own; a system clock stepped an hour ahead after
    // the first sync; every sync offered a sample that waited 60 ms before the database read its
    // clock (as on a busy pool), which would put a midpoint estimate 30 ms ahead.
    let step = 0;
    const time: TimeSource = { monotonicMs: () => performance.now(), wallMs: () => Date.now() + step };
    const clockDb = connect(url, { max: 1 });
    after(() => clockDb.close());
    const slowSample = async (): Promise<ClockSample> => {
      const sentMs = time.monotonicMs();
      await new Promise((resolve) => setTimeout(resolve, 60));
      const [row] = await clockDb.sql<{ ms: number }[]>`select (extract(epoch from clock_timestamp()) * 1000)::float8 as ms`;
      return { sentMs, dbMs: row!.ms, receivedMs: time.monotonicMs() };
    };
    const clock = new OffsetClock({ time });
    await clock.sync(async (t) => [await slowSample(), ...(await sampleDatabaseClock(clockDb.sql, () => t.monotonicMs()))]);
    step = 3_600_000;

    const bus = new EventBus();
    const connector = new ScriptedConnector('Test');
    const registry = new DatabaseConnectorRegistry(sql, [connector], {
      HTTP: () => {
        throw new Error('no HTTP connectors in this test');
      },
    });
    after(() => registry.close());
    const scheduler = new Scheduler(
      { sql, operationsSql: sql, clock, bus, registry, log: silentLog },
      { instance: 'real-time', leaseSeconds: 15 },
    );
    after(() => scheduler.stop(0));
    const jobs = new JobService({ sql, clock, bus, registry, scheduler });

    // Where each call began, on the local monotonic clock, as seen inside the connector.
    const starts: { atMono: number; scheduledAt: Date; runId: string }[] = [];
    const CALLS = 9;
    let enough!: () => void;
    const collected = new Promise<void>((resolve) => (enough = resolve));
    connector.define('record', async (ctx) => {
      starts.push({ atMono: performance.now(), scheduledAt: ctx.scheduledAt, runId: ctx.runId });
      if (starts.length === CALLS) enough();
    });
    for (const id of ['rt-a', 'rt-b', 'rt-c']) await jobs.create({ id, name: 'x', externalCall: 'Test:record', period: '0:0:1' });
    scheduler.start();
    await collected;
    // Stopping lets the runs in flight end.
    await scheduler.stop(5000);

    // The database's clock at each start, from the test's own samples: each gives a lower bound
    // (dbMs − receivedMs) of database minus monotonic time; the highest is the tightest.
    const samples = await sampleDatabaseClock(clockDb.sql, () => performance.now(), 20);
    const lowest = Math.max(...samples.map((s) => s.dbMs - s.receivedMs));
    for (const start of starts) {
      const dbAtStart = start.atMono + lowest;
      assert.ok(
        dbAtStart >= start.scheduledAt.getTime(),
        `run ${start.runId} began at ${new Date(dbAtStart).toISOString()} by the database, before its due time ${start.scheduledAt.toISOString()}`,
      );
    }
    const runs = await sql<RunRow[]>`select * from job_runs where job_id like 'rt-%' and status <> 'SKIPPED'`;
    assert.ok(runs.length >= CALLS);
    for (const run of runs) assert.ok(run.startedAt!.getTime() >= run.scheduledAt.getTime(), `run ${run.id}: startedAt ≥ scheduledAt`);
  });
});
