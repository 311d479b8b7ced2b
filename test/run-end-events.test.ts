// SPEC §6: a run's end that committed while its reply was lost still publishes its end event.
import assert from 'node:assert/strict';
import { beforeEach, describe, it } from 'node:test';
import type { LogRow, RunRow } from '../src/db/rows.ts';
import { gate } from './helpers/connector.ts';
import { testDatabase } from './helpers/db.ts';
import { harness, T0 } from './helpers/harness.ts';
import { awayDatabase } from './helpers/proxy.ts';

const { sql: admin, url } = await testDatabase();

describe('a run end committed with its reply lost', () => {
  beforeEach(() => admin`truncate jobs, job_runs, log_entries`);

  it('should be published from the stored row when the next try finds it ended by this process', async () => {
    const { proxy, sql } = await awayDatabase(url);
    const h = harness(sql);
    const hold = gate();
    h.connector.define('fails', async () => {
      await hold.promise;
      throw new Error('remote said no');
    });
    await h.jobs.create({ id: 'lost-reply', name: 'x', externalCall: 'Test:fails', period: '1:0:0' });
    h.clock.set(T0 + 3_600_000);
    const [started] = await h.scheduler.tick();
    const lost = proxy.loseNextCommitReply();
    // The end (FAILED, with its ERROR entry, one transaction) commits; its reply does not arrive.
    hold.open();
    await lost;
    // The next try comes after a pause by the clock.
    const ended = await h.clock.advanceUntilSettled(started!.done!, 2000);

    assert.equal(ended?.status, 'FAILED');
    const [row] = await admin<RunRow[]>`select * from job_runs where id = ${started!.run.id}`;
    assert.equal(row!.status, 'FAILED');
    const finishedEvents = h.events.filter((e) => e.topic === 'run:finished');
    assert.equal(finishedEvents.length, 1, 'its end event is published once');
    assert.equal(finishedEvents[0]!.payload.run.id, started!.run.id);
    assert.equal(finishedEvents[0]!.payload.run.status, 'FAILED');
    assert.deepEqual(finishedEvents[0]!.payload.run.finishedAt, row!.finishedAt);
    const entries = await admin<LogRow[]>`select * from log_entries where run_id = ${started!.run.id} and level = 'ERROR'`;
    assert.equal(entries.length, 1, 'one closing entry: the first try wrote it');
    const logged = h.events.filter((e) => e.topic === 'log:added' && e.payload.entry.runId === started!.run.id);
    assert.deepEqual(
      logged.map((e) => (e.topic === 'log:added' ? e.payload.entry.id : null)),
      [entries[0]!.id],
      'and its log:added event names that entry',
    );
  });
});

describe('a run end whose outcome stays unknown at shutdown', () => {
  beforeEach(() => admin`truncate jobs, job_runs, log_entries`);

  it(
    'should interrupt subscriptions here and tell the other instances, since its end event may never come',
    { timeout: 30_000 },
    async () => {
      const { proxy, sql } = await awayDatabase(url);
      const h = harness(sql);
      const hold = gate();
      h.connector.define('work', () => hold.promise);
      await h.jobs.create({ id: 'unknown-end', name: 'x', externalCall: 'Test:work', period: '1:0:0' });
      h.clock.set(T0 + 3_600_000);
      const [started] = await h.scheduler.tick();
      // Running, so that stopping it halts the retries of the end.
      h.scheduler.start();
      const subscription = h.bus.subscribe((event) => event.topic);
      const told = new Promise<string>((resolve) => h.bus.onLoss(resolve));

      // The database goes away as the run ends; the instance stops before it is back.
      await proxy.cut();
      hold.open();
      await h.scheduler.stop(0);
      assert.equal(await started!.done, null);
      assert.match(await told, new RegExp(`run ${started!.run.id}`));
      await assert.rejects(
        subscription.next(),
        (error: Error & { extensions?: { code?: string } }) => error.extensions?.code === 'EVENTS_INTERRUPTED',
      );
    },
  );
});
