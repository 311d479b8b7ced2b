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
import { beforeEach, describe, it } from 'node:test';
import type { RunRow } from '../src/db/rows.ts';
import { firstGridPointAfter } from '../src/scheduling/grid.ts';
import { testDatabase } from './helpers/db.ts';
import { tickAndSettle } from './helpers/harness.ts';
import { dueTimes } from './helpers/due-times.ts';
import { awayDatabase } from './helpers/proxy.ts';

const { sql, url } = await testDatabase();
beforeEach(() => sql`truncate jobs, job_runs, log_entries`);
const { dbNowMs, untilDb, instance, tickNow, Spans, changeOf, assertCovered, skippedOf, warningsOf } = dueTimes(sql);

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
      assert.equal(job.nextDueAt!.getTime(), start + 1000);
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
      assert.ok(
        h.events.some((e) => e.topic === 'run:skipped' && e.payload.run.id === skipped!.id),
        `${id}: RUN_SKIPPED`,
      );
      assert.ok(
        h.events.some((e) => e.topic === 'log:added' && e.payload.entry.id === warning!.id),
        `${id}: its WARNING is published`,
      );
    }
    assert.deepEqual(await Promise.all(seenOnEvent), ['SKIPPED', 'SKIPPED', 'SKIPPED', 'SKIPPED']);

    // The pause moved the job past what it recorded; the new grids start after the change.
    assert.equal(paused.nextDueAt!.getTime(), start + 3000);
    assert.deepEqual([faster.anchorAt.getTime(), faster.nextDueAt!.getTime()], [changedAt, changedAt + 2000]);
    assert.equal(moved.nextDueAt!.getTime(), startAt.getTime());
    spans.open('c-period', changedAt + 2000, 2000);
    spans.open('c-start', startAt.getTime(), 1000);
    // A rename neither records nor moves anything: the due time is still the scheduler's to run.
    assert.equal(renamed.nextDueAt!.getTime(), start + 2000);
    assert.equal((await skippedOf('c-rename')).length, 0);
    const [late] = await tickNow(h);
    assert.deepEqual(
      [late?.run.jobId, late?.run.scheduledAt.getTime(), (await late?.done)?.status],
      ['c-rename', start + 2000, 'SUCCEEDED'],
    );

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
    for (const [id, change] of [
      ['b-pause', 'the job was paused'],
      ['b-period', "the job's period changed"],
      ['b-delete', 'the job was deleted'],
    ] as const) {
      const skipped = await skippedOf(id);
      assert.deepEqual(
        skipped.map((r) => [r.scheduledAt.getTime(), r.missed]),
        [[now - 30_000, 3]],
        id,
      );
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
    assert.deepEqual(
      (await skippedOf('r')).map((r) => [r.scheduledAt.getTime(), r.missed]),
      [[start - 100, 9]],
    );
    // Paused while the due times at +0.9 s and +1.9 s pass: they are not due. The instance's clock
    // says +2.1 s at the resume, however late the test got there.
    await untilDb(start + 2100);
    h.clock.set(start + 2100);
    const resumed = await h.jobs.resume('r');
    assert.equal(resumed.nextDueAt!.getTime(), start + 2900);
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
    const { proxy, sql: away } = await awayDatabase(url, 3);
    const a = instance(away, { name: 'a' });
    const b = instance(away, { name: 'b' });
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
    await Promise.all([1, 2, 3].map(() => away`select 1`));
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
      assert.deepEqual(
        (await skippedOf(id)).map((r) => [r.scheduledAt.getTime(), r.missed]),
        [[last, n - 2]],
        id,
      );
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
