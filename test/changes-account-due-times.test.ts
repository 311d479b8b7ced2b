// SPEC §3: "A change never loses a due time" and no silent clash in the claim.
//
// What is "already due" when a change commits is decided by the database's clock, so these
// tests run the job services on the database's own clock_timestamp() (changeClock: 'database')
// and lay their grids out in real database time. The schedulers keep their controlled clocks,
// which the tests set from the database's clock just before a tick, as the offset clock does in
// production. Changes are fired a few milliseconds after a due time that no tick has claimed; a
// due time is then accounted for by whichever of the change and a claim takes the job row lock
// first. The coverage check is the chaos audit's: every grid point of the spans the job was
// enabled on, once, by a run, a SKIPPED run or a `missed` count. A span ends at the instant its
// change read the database's clock to decide what was due, which the test learns from the change
// itself: on a slow machine a change may come later than meant, never at an undecidable time.
import assert from 'node:assert/strict';
import { after, beforeEach, describe, it } from 'node:test';
import { type GridSpan, gridCoverage } from '../chaos/audit.ts';
import { connect } from '../src/db/client.ts';
import { databaseNow } from '../src/db/jobs.ts';
import type { JobRow, LogRow, RunRow } from '../src/db/rows.ts';
import { JobService } from '../src/jobs/job-service.ts';
import { firstGridPointAfter } from '../src/scheduling/grid.ts';
import { ManualClock } from './helpers/clock.ts';
import { testDatabase } from './helpers/db.ts';
import { type Harness, harness, nextEvent, tickAndSettle } from './helpers/harness.ts';
import { databaseProxy } from './helpers/proxy.ts';

const { sql, url } = await testDatabase();
beforeEach(() => sql`truncate jobs, job_runs, log_entries`);

/** The database's clock, in epoch ms. */
async function dbNowMs(): Promise<number> {
  const [row] = await sql<{ ms: number }[]>`select floor(extract(epoch from clock_timestamp()) * 1000)::float8 as ms`;
  return row!.ms;
}

/** Waits (in real time) until the database's clock reaches `ms`. */
async function untilDb(ms: number): Promise<void> {
  for (let now = await dbNowMs(); now < ms; now = await dbNowMs()) {
    await new Promise((resolve) => setTimeout(resolve, Math.max(1, ms - now)));
  }
}

/** An instance on the database's clock for changes; its scheduler's clock is set from the database's before each tick. */
function instance(db = sql, options: { name?: string; batchSize?: number } = {}): Harness {
  const h = harness(db, { clock: new ManualClock(0), instance: options.name ?? 'one', changeClock: 'database', ...(options.batchSize ? { batchSize: options.batchSize } : {}) });
  h.connector.define('ok', async () => {});
  return h;
}

/** Claims what is due by the database's clock now, and lets those runs end. */
async function tickNow(h: Harness) {
  h.clock.set(await dbNowMs());
  return tickAndSettle(h);
}

/**
 * The grid spans each job was enabled on, as the test laid them out: a span opens at a job's
 * first due time on a grid and closes at the last grid point at or before the instant the change
 * that ends it decided what was already due (its reading of the database's clock, which
 * `changeOf` learns). Every point of a span must be accounted for exactly once; a point after it
 * must not be (a claim or a SKIPPED run there is off the grid).
 *
 * The tests fire each change meant to come before a certain due time (`meantFor`), but a loaded
 * machine may make a change later than meant: a grid point after that moment which the change
 * still found due belongs to its span like any other, and `late` counts them, so that the
 * totals the tests expect hold however slow the machine is.
 */
class Spans {
  #open = new Map<string, { firstDue: number; periodMs: number }>();
  #closed: GridSpan[] = [];
  #meantFor: number | null = null;
  #late = 0;

  open(jobId: string, firstDue: number, periodMs: number): void {
    assert.ok(!this.#open.has(jobId), `${jobId} has an open span already`);
    this.#open.set(jobId, { firstDue, periodMs });
  }

  /** The changes from here on are meant to come before the first due time after `ms` (database time) of the spans they close. */
  meantFor(ms: number): void {
    this.#meantFor = ms;
  }

  /** Closes a job's span at the instant (database time) its change decided what was already due. */
  close(jobId: string, decidedMs: number): void {
    const span = this.#open.get(jobId);
    if (!span) return;
    this.#open.delete(jobId);
    const { firstDue, periodMs } = span;
    const lastAtOrBefore = (t: number) => firstDue + Math.floor((t - firstDue) / periodMs) * periodMs;
    const last = lastAtOrBefore(decidedMs);
    if (this.#meantFor !== null) {
      const firstLate = Math.max(firstDue, lastAtOrBefore(this.#meantFor) + periodMs);
      if (last >= firstLate) this.#late += (last - firstLate) / periodMs + 1;
    }
    this.#closed.push({ jobId, firstDue: new Date(firstDue), lastDue: new Date(last), periodMs });
  }

  /** Ends every open span with a pause on `h`: the last change of each job. */
  async pauseAll(h: Harness): Promise<void> {
    await Promise.all([...this.#open.keys()].map((jobId) => changeOf(this, h, jobId, (jobs) => jobs.pause(jobId))));
  }

  get all(): GridSpan[] {
    assert.equal(this.#open.size, 0, 'every span is closed');
    return this.#closed;
  }

  /** Grid points the changes found due although they were meant to come before them. */
  get late(): number {
    return this.#late;
  }
}

/**
 * Fires a change that ends a job's span, through a job service of `h` whose reading of the
 * database's clock (the one that decides what is already due, taken in the change's transaction
 * with the job row locked: src/db/jobs.ts databaseNow) the test sees, and closes the span at that
 * instant. Nothing is left to guess from a bracket of readings around the change, which a slow
 * machine widens: every due time is on one side of the change or the other, and must be
 * accounted for exactly once on the one side and not at all on the other.
 */
async function changeOf<T>(spans: Spans, h: Harness, jobId: string, change: (jobs: JobService) => Promise<T>): Promise<T> {
  const decided: number[] = [];
  const jobs = new JobService({
    sql: h.sql,
    clock: h.clock,
    bus: h.bus,
    registry: h.registry,
    scheduler: h.scheduler,
    databaseNow: async (tx) => {
      const ms = await databaseNow(tx);
      decided.push(ms);
      return ms;
    },
  });
  const before = await dbNowMs();
  const result = await change(jobs);
  const after = await dbNowMs();
  assert.equal(decided.length, 1, `${jobId}: the change decided what was due by the database's clock, once`);
  assert.ok(before <= decided[0]! && decided[0]! <= after, `${jobId}: it read the clock between its request (${before}) and its answer (${after}): ${decided[0]}`);
  spans.close(jobId, decided[0]!);
  return result;
}

/** Every grid point of every span accounted for exactly once, and no run off the grid. */
async function assertCovered(spans: GridSpan[]): Promise<number> {
  const coverage = await gridCoverage(sql, { spans });
  assert.deepEqual(
    [coverage.unaccounted, coverage.doubleAccounted, coverage.offGrid],
    [0, 0, 0],
    `every due time accounted for exactly once: ${JSON.stringify(coverage.examples)}`,
  );
  const [dup] = await sql<{ n: number }[]>`
    select count(*)::int as n from (select 1 from job_runs where trigger = 'SCHEDULE' group by job_id, scheduled_at having count(*) > 1) d`;
  assert.equal(dup!.n, 0, 'no two runs for one due time');
  return coverage.dueTimes;
}

const skippedOf = (jobId: string) =>
  sql<RunRow[]>`select * from job_runs where job_id = ${jobId} and status = 'SKIPPED' order by scheduled_at`;
const warningsOf = (runId: string) => sql<LogRow[]>`select * from log_entries where run_id = ${runId} and level = 'WARNING'`;

describe('a change never loses a due time', () => {
  it('records the due time a pause, a period change, a start change or a delete commits a few ms after, and nothing for a rename', async () => {
    const h = instance();
    h.connector.define('other', async () => {});
    // RUN_SKIPPED is published after the commit: the row is there for anyone who reads it then.
    const seenOnEvent: Promise<string | undefined>[] = [];
    h.bus.on((event) => {
      if (event.topic === 'run:skipped') {
        seenOnEvent.push(sql<RunRow[]>`select * from job_runs where id = ${event.payload.run.id}`.then(([row]) => row?.status));
      }
    });
    const spans = new Spans();
    const start = await dbNowMs();
    h.clock.set(start);
    const ids = ['c-pause', 'c-period', 'c-start', 'c-delete', 'c-rename'];
    for (const id of ids) {
      const job = await h.jobs.create({ id, name: 'x', externalCall: 'Test:ok', period: '0:0:1' });
      assert.equal(job.nextDueAt.getTime(), start + 1000);
      spans.open(id, start + 1000, 1000);
    }
    await untilDb(start + 1003);
    assert.equal((await tickNow(h)).length, 5, 'the first due time runs');

    // 3 ms after the second due time, before any tick: each change commits after it. The
    // instance's clock says 3 ms after it too (however late the test got here), so that the new
    // period's grid is where the rest of the test expects it.
    await untilDb(start + 2003);
    spans.meantFor(start + 2003);
    h.clock.set(start + 2003);
    const changedAt = h.clock.now();
    const startAt = new Date(start + 4500);
    const [paused, faster, moved] = await Promise.all([
      changeOf(spans, h, 'c-pause', (jobs) => jobs.pause('c-pause', 'maintenance')),
      changeOf(spans, h, 'c-period', (jobs) => jobs.update('c-period', { period: '0:0:2' })),
      changeOf(spans, h, 'c-start', (jobs) => jobs.update('c-start', { startAt })),
      changeOf(spans, h, 'c-delete', (jobs) => jobs.delete('c-delete')),
    ]);
    const renamed = await h.jobs.update('c-rename', { name: 'renamed', externalCall: 'Test:other' });

    const expected: [string, string][] = [
      ['c-pause', 'the job was paused'],
      ['c-period', "the job's period changed"],
      ['c-start', "the job's start time changed"],
      ['c-delete', 'the job was deleted'],
    ];
    for (const [id, change] of expected) {
      const [skipped, ...more] = await skippedOf(id);
      assert.equal(more.length, 0, id);
      assert.deepEqual(
        [skipped?.trigger, skipped?.scheduledAt.getTime(), skipped?.missed, skipped?.startedAt, skipped?.instance],
        ['SCHEDULE', start + 2000, 0, null, 'one'],
        `${id}: the second due time is a SKIPPED run`,
      );
      const [warning] = await warningsOf(skipped!.id);
      assert.equal(warning?.message, `1 due time of job "${id}" was not run: ${change}`);
      assert.ok(h.events.some((e) => e.topic === 'run:skipped' && e.payload.run.id === skipped!.id), `${id}: RUN_SKIPPED`);
      assert.ok(h.events.some((e) => e.topic === 'log:added' && e.payload.entry.id === warning!.id), `${id}: its WARNING is published`);
    }
    assert.deepEqual(await Promise.all(seenOnEvent), ['SKIPPED', 'SKIPPED', 'SKIPPED', 'SKIPPED']);

    // The pause moved the job past what it recorded; the new grids start after the change.
    assert.equal(paused.nextDueAt.getTime(), start + 3000);
    assert.deepEqual([faster.anchorAt.getTime(), faster.nextDueAt.getTime()], [changedAt, changedAt + 2000]);
    assert.equal(moved.nextDueAt.getTime(), startAt.getTime());
    spans.open('c-period', changedAt + 2000, 2000);
    spans.open('c-start', startAt.getTime(), 1000);
    // A rename neither records nor moves anything: the due time is still the scheduler's to run.
    assert.equal(renamed.nextDueAt.getTime(), start + 2000);
    assert.equal((await skippedOf('c-rename')).length, 0);
    const [late] = await tickNow(h);
    assert.deepEqual([late?.run.jobId, late?.run.scheduledAt.getTime(), (await late?.done)?.status], ['c-rename', start + 2000, 'SUCCEEDED']);

    // The new grids run on, then everything is paused, meant to come before the next due times.
    await untilDb(start + 4600);
    spans.meantFor(start + 4600);
    await tickNow(h);
    await spans.pauseAll(h);
    // Paused 2, deleted 2, period 2 + 1, start 2 + 1, renamed 4 (and any due time a slow pause found due).
    assert.equal(await assertCovered(spans.all), 14 + spans.late);
  });

  it('records a whole backlog as one SKIPPED run at its latest due time, missed counting the others', async () => {
    const h = instance();
    const spans = new Spans();
    const now = await dbNowMs();
    spans.meantFor(now);
    // Created 4.5 min ago by the instance's clock and never claimed since (the scheduler fell
    // behind): due times now − 3.5 min, − 2.5 min, − 1.5 min and − 30 s are already due by the
    // database's clock, and the next one is 30 s away, however slow the machine.
    h.clock.set(now - 270_000);
    for (const id of ['b-pause', 'b-period', 'b-delete']) {
      await h.jobs.create({ id, name: 'x', externalCall: 'Test:ok', period: '0:1:0' });
      spans.open(id, now - 210_000, 60_000);
    }
    h.clock.set(await dbNowMs());
    const changedAt = h.clock.now();
    await changeOf(spans, h, 'b-pause', (jobs) => jobs.pause('b-pause'));
    await changeOf(spans, h, 'b-period', (jobs) => jobs.update('b-period', { period: '0:2:0' }));
    await changeOf(spans, h, 'b-delete', (jobs) => jobs.delete('b-delete'));
    for (const [id, change] of [['b-pause', 'the job was paused'], ['b-period', "the job's period changed"], ['b-delete', 'the job was deleted']] as const) {
      const skipped = await skippedOf(id);
      assert.deepEqual(skipped.map((r) => [r.scheduledAt.getTime(), r.missed]), [[now - 30_000, 3]], id);
      const [warning] = await warningsOf(skipped[0]!.id);
      assert.equal(warning?.message, `4 due times of job "${id}" were not run: ${change}`);
    }
    // Nothing for the scheduler to claim afterwards.
    h.clock.set(now + 1000);
    assert.equal((await tickAndSettle(h)).length, 0);
    spans.open('b-period', changedAt + 120_000, 120_000);
    await changeOf(spans, h, 'b-period', (jobs) => jobs.delete('b-period'));
    assert.equal(await assertCovered(spans.all), 12 + spans.late);
  });

  it('keeps paused due times out: a resume records nothing and continues on the grid', async () => {
    const h = instance();
    const spans = new Spans();
    const start = await dbNowMs();
    spans.meantFor(start);
    // Its tenth due time 100 ms before now, the next 900 ms after.
    h.clock.set(start - 10_100);
    await h.jobs.create({ id: 'r', name: 'x', externalCall: 'Test:ok', period: '0:0:1' });
    spans.open('r', start - 9100, 1000);
    await changeOf(spans, h, 'r', (jobs) => jobs.pause('r'));
    assert.deepEqual((await skippedOf('r')).map((r) => [r.scheduledAt.getTime(), r.missed]), [[start - 100, 9]]);
    // Paused while the due times at +0.9 s and +1.9 s pass: they are not due. The instance's clock
    // says +2.1 s at the resume, however late the test got there.
    await untilDb(start + 2100);
    h.clock.set(start + 2100);
    const resumed = await h.jobs.resume('r');
    assert.equal(resumed.nextDueAt.getTime(), start + 2900);
    assert.equal((await skippedOf('r')).length, 1, 'the resume recorded nothing');
    spans.open('r', start + 2900, 1000);
    await untilDb(start + 3000);
    spans.meantFor(start + 3000);
    assert.equal((await tickNow(h)).length, 1);
    await changeOf(spans, h, 'r', (jobs) => jobs.pause('r'));
    assert.equal(await assertCovered(spans.all), 11 + spans.late);
  });

  it('accounts every due time exactly once when two instances claim and change the same jobs at due times', async () => {
    // Small batches, so the two claim loops interleave with the changes.
    const a = instance(sql, { name: 'a', batchSize: 3 });
    const b = instance(sql, { name: 'b', batchSize: 3 });
    const spans = new Spans();
    const start = await dbNowMs();
    a.clock.set(start);
    const ids = Array.from({ length: 30 }, (_, i) => `pair-${String(i).padStart(2, '0')}`);
    for (const id of ids) {
      await a.jobs.create({ id, name: 'x', externalCall: 'Test:ok', period: '0:0:1' });
      spans.open(id, start + 1000, 1000);
    }
    const group = (from: number) => ids.slice(from, from + 5);
    const both = async (...work: Promise<unknown>[]) => {
      const results = await Promise.allSettled(work);
      for (const r of results) if (r.status === 'rejected') throw r.reason;
    };
    /** Both instances' clocks set (to the database's clock unless `at` says otherwise), then a claim on each. */
    const ticks = async (at?: number) => {
      a.clock.set(at ?? (await dbNowMs()));
      b.clock.set(a.clock.now());
      return [tickAndSettle(a), tickAndSettle(b)];
    };
    /** Waits for the database's clock to reach `ms`; the round's changes are meant to come before the next due time. */
    const round = async (ms: number) => {
      await untilDb(ms);
      spans.meantFor(ms);
    };

    // Round 1, 2 ms after the first due time: both instances claim while A pauses five jobs and B deletes five.
    await round(start + 1002);
    await both(
      ...(await ticks()),
      ...group(0).map((id) => changeOf(spans, a, id, (jobs) => jobs.pause(id))),
      ...group(5).map((id) => changeOf(spans, b, id, (jobs) => jobs.delete(id))),
    );
    // Round 2: A changes five periods to 3 s, B moves five starts, while both claim. The instances'
    // clocks say 2 ms after the second due time however late the test got here, so that the new
    // periods' grids are where the rest of the test expects them.
    await round(start + 2002);
    const startAt = new Date(start + 4300);
    const changedAt = start + 2002;
    const claims = await ticks(changedAt);
    await both(
      ...claims,
      ...group(10).map((id) => changeOf(spans, a, id, (jobs) => jobs.update(id, { period: '0:0:3' }))),
      ...group(15).map((id) => changeOf(spans, b, id, (jobs) => jobs.update(id, { startAt }))),
    );
    for (const id of group(10)) spans.open(id, changedAt + 3000, 3000);
    for (const id of group(15)) spans.open(id, startAt.getTime(), 1000);
    // Round 3: claims on both, and B pauses five more.
    await round(start + 3002);
    await both(...(await ticks()), ...group(20).map((id) => changeOf(spans, b, id, (jobs) => jobs.pause(id))));
    // No claims for two periods (say both instances were busy), then the rest is paused and deleted
    // from both instances at once, meant to come before any further due time: the backlogs become SKIPPED runs.
    await round(start + 5500);
    const rest = ids.filter((_, i) => i >= 10 && !(i >= 20 && i < 25));
    await both(
      ...rest.map((id, i) =>
        i % 2 === 0 ? changeOf(spans, a, id, (jobs) => jobs.pause(id)) : changeOf(spans, b, id, (jobs) => jobs.delete(id)),
      ),
    );
    // Paused in round 1: 1 each; deleted: 1; new periods: 2 + 1; new starts: 2 + 2; paused in round 3: 3; the rest: 5
    // (and any due time a slow change found due).
    assert.equal(await assertCovered(spans.all), 5 * (1 + 1 + 3 + 4 + 3 + 5) + spans.late);
    const [counts] = await sql<{ instances: number; skipped: number }[]>`
      select count(distinct instance)::int as instances, count(*) filter (where status = 'SKIPPED')::int as skipped from job_runs`;
    assert.equal(counts!.instances, 2, 'both instances took part');
    // At least the final round's backlogs (groups 10–19 and 25–29), whatever the races before.
    assert.ok(counts!.skipped >= 15, 'the changes recorded due times');
  });

  it('records the backlog of a database outage when a change comes before the scheduler claims again', async () => {
    const proxy = await databaseProxy(url);
    const db = connect(proxy.url, { max: 3 });
    after(() => db.sql.end({ timeout: 0 }));
    const a = instance(db.sql, { name: 'a' });
    const b = instance(db.sql, { name: 'b' });
    const spans = new Spans();
    const start = await dbNowMs();
    a.clock.set(start);
    const ids = ['o-pause', 'o-period', 'o-delete', 'o-keep'];
    for (const id of ids) {
      await a.jobs.create({ id, name: 'x', externalCall: 'Test:ok', period: '0:0:1' });
      spans.open(id, start + 1000, 1000);
    }
    await untilDb(start + 1003);
    assert.equal((await tickNow(a)).length, 4);

    await proxy.cut();
    a.clock.set(await dbNowMs());
    await assert.rejects(a.scheduler.tick(), 'the scheduler cannot claim while the database is away');
    await assert.rejects(a.jobs.pause('o-pause'), 'nor can the API change anything');
    // Due times at +2 s and +3 s pass while the database is away.
    await untilDb(start + 3100);
    await proxy.restore();
    await Promise.all([1, 2, 3].map(() => db.sql`select 1`));
    // The schedulers are still in backoff when the API answers: changes 3 ms after the next due time.
    const last = firstGridPointAfter(start, 1000, await dbNowMs());
    const n = (last - start) / 1000;
    // The instances' clocks say 3 ms after it too, however late the test got here, so that the new
    // period's grid is where the rest of the test expects it.
    await untilDb(last + 3);
    spans.meantFor(last + 3);
    a.clock.set(last + 3);
    b.clock.set(a.clock.now());
    const changedAt = b.clock.now();
    await Promise.all([
      changeOf(spans, a, 'o-pause', (jobs) => jobs.pause('o-pause')),
      changeOf(spans, b, 'o-period', (jobs) => jobs.update('o-period', { period: '0:0:2' })),
      changeOf(spans, a, 'o-delete', (jobs) => jobs.delete('o-delete')),
    ]);
    for (const id of ['o-pause', 'o-period', 'o-delete']) {
      assert.deepEqual((await skippedOf(id)).map((r) => [r.scheduledAt.getTime(), r.missed]), [[last, n - 2]], id);
    }
    spans.open('o-period', changedAt + 2000, 2000);
    // The job nobody changed: its backlog is coalesced into one run by the first claim.
    const [coalesced] = await tickNow(a);
    assert.deepEqual([coalesced?.run.jobId, coalesced?.run.scheduledAt.getTime(), coalesced?.run.missed], ['o-keep', last, n - 2]);
    await untilDb(last + 2300);
    spans.meantFor(last + 2300);
    await Promise.all([tickNow(a), tickNow(b)]);
    await spans.pauseAll(b);
    // Paused and deleted: n each; the new period: n + 1; the job left alone: n + 2 (and any due time a slow pause found due).
    assert.equal(await assertCovered(spans.all), 4 * n + 3 + spans.late);
  });
});

describe('no silent clash', () => {
  it('logs a WARNING naming the job and due time when a claim finds a run for that due time already', async () => {
    const h = harness(sql, { clock: new ManualClock(Date.parse('2026-01-01T00:00:00.000Z')) });
    h.connector.define('ok', async () => {});
    const job = await h.jobs.create({ id: 'clash', name: 'x', externalCall: 'Test:ok', period: '0:0:1' });
    const due = job.nextDueAt;
    // A row for the due time the claim will take, made by no claim of this job (nothing in the
    // service makes one any more): planted.
    const taken = new Date(due.getTime() + 2000);
    await sql`insert into job_runs (job_id, trigger, scheduled_at, finished_at, status, missed)
              values ('clash', 'SCHEDULE', ${taken}, ${taken}, 'SUCCEEDED', 0)`;
    const logged = nextEvent(h.bus, 'log:added', (p) => p.entry.jobId === 'clash' && p.entry.level === 'WARNING');
    h.clock.set(due.getTime() + 2500);
    assert.equal((await tickAndSettle(h)).length, 0, 'no second run for that due time');
    const [after] = await sql<JobRow[]>`select * from jobs where id = 'clash'`;
    assert.equal(after?.nextDueAt.getTime(), due.getTime() + 3000);
    const { entry } = await logged;
    assert.equal(
      entry.message,
      `Job "clash" already has a run for its due time ${new Date(due.getTime() + 2000).toISOString()}; that due time (with 2 earlier due times coalesced into it) was not run again`,
    );
    assert.deepEqual(entry.details, { scheduledAt: new Date(due.getTime() + 2000).toISOString(), missed: 2 });
    const [stored] = await sql<LogRow[]>`select * from log_entries where id = ${entry.id}`;
    assert.equal(stored?.message, entry.message);
  });

  it('starts a job re-created with an old id after the due times its old runs stand for', async () => {
    const h = instance();
    const now = await dbNowMs();
    h.clock.set(now - 2500);
    await h.jobs.create({ id: 'again', name: 'x', externalCall: 'Test:ok', period: '0:0:1' });
    h.clock.set(now);
    // Its backlog is recorded at now − 500 when it is deleted.
    await h.jobs.delete('again');
    assert.deepEqual((await skippedOf('again')).map((r) => r.scheduledAt.getTime()), [now - 500]);
    // An instance clock 1.5 s behind the database's, and a start on that very due time: the new
    // grid would begin on it; it begins one period later instead, so no claim can clash.
    h.clock.set(now - 1500);
    const again = await h.jobs.create({ id: 'again', name: 'x', externalCall: 'Test:ok', period: '0:0:2', startAt: new Date(now - 500) });
    assert.equal(again.nextDueAt.getTime(), now + 1500);
  });

  it('moves a resume that an instance behind the database makes right after a pause past the due time the pause recorded', async () => {
    const h = instance();
    const now = await dbNowMs();
    h.clock.set(now - 2200);
    const job: JobRow = await h.jobs.create({ id: 'flip', name: 'x', externalCall: 'Test:ok', period: '0:0:1' });
    assert.equal(job.nextDueAt.getTime(), now - 1200);
    h.clock.set(now);
    await h.jobs.pause('flip');
    const [skipped] = await skippedOf('flip');
    assert.equal(skipped?.scheduledAt.getTime(), now - 200);
    // Its clock 300 ms behind: the first grid point after it is the due time just recorded.
    h.clock.set(now - 300);
    const resumed = await h.jobs.resume('flip');
    assert.equal(resumed.nextDueAt.getTime(), now + 800);
    assert.equal(firstGridPointAfter(job.anchorAt.getTime(), 1000, now - 300), now - 200);
  });
});

describe('shutting down during a backlog', () => {
  it('stops claiming between batches', async () => {
    const h = harness(sql, { clock: new ManualClock(Date.parse('2026-01-01T00:00:00.000Z')), batchSize: 5 });
    h.connector.define('ok', async () => {});
    for (let i = 0; i < 40; i++) await h.jobs.create({ id: `backlog-${i}`, name: 'x', externalCall: 'Test:ok', period: '0:0:1' });
    h.clock.advance(10_000);
    // The loop's first round claims its first batch; the shutdown begins while it is in flight.
    h.scheduler.start();
    await h.scheduler.stop(1000);
    const [row] = await sql<{ n: number }[]>`select count(*)::int as n from job_runs`;
    assert.equal(row!.n, 5, 'one batch, then no more claims');
  });
});
