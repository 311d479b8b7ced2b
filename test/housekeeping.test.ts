// The daily housekeeping (SPEC §4): at HOUSEKEEPING_AT one instance purges what is past the
// retentions and says so; time moves only when the test moves it.
import assert from 'node:assert/strict';
import { after, beforeEach, describe, it } from 'node:test';
import type { Clock } from '../src/clock.ts';
import { loadConfig } from '../src/config.ts';
import { builtinOperations, purgeOlderThan } from '../src/connectors/builtin-operations.ts';
import type { CallContext } from '../src/connectors/types.ts';
import type { Sql } from '../src/db/client.ts';
import type { LogRow } from '../src/db/rows.ts';
import { EventBus } from '../src/events/bus.ts';
import { Housekeeper, type HousekeeperOptions, type HousekeepingPass } from '../src/housekeeping/housekeeper.ts';
import { type Instance, startInstance } from '../src/instance.ts';
import { ManualClock } from './helpers/clock.ts';
import { problemsOf } from './helpers/config.ts';
import { testDatabase } from './helpers/db.ts';
import { silentLog } from './helpers/harness.ts';
import { operationsDir } from './helpers/instance.ts';

const { sql, url } = await testDatabase();
beforeEach(() => sql`truncate job_runs, log_entries, housekeeping_days`);

const DAY = 86_400_000;
/** Half an hour before the day's housekeeping (02:30 UTC by default). */
const START = Date.parse('2026-01-01T02:00:00.000Z');
const DUE = Date.parse('2026-01-01T02:30:00.000Z');

/** Yesterday's housekeeping done by another instance, so that the first one due is today's. */
const yesterdayDone = () =>
  sql`insert into housekeeping_days (day, instance, claimed_at, finished_at)
      values ('2025-12-31', 'elsewhere', ${new Date(START - DAY)}, ${new Date(START - DAY)})`;

/** Runs and log entries 40 days old (purged) and 29 days old (kept) at DUE, and an old run still RUNNING. */
async function seedHistory() {
  const old = new Date(DUE - 40 * DAY);
  const recent = new Date(DUE - 29 * DAY);
  await sql`insert into job_runs (job_id, trigger, scheduled_at, status) values
    ('a', 'SCHEDULE', ${old}, 'SUCCEEDED'), ('a', 'MANUAL', ${old}, 'FAILED'),
    ('b', 'SCHEDULE', ${old}, 'RUNNING'), ('a', 'SCHEDULE', ${recent}, 'SUCCEEDED')`;
  await sql`insert into log_entries (at, level, message) values
    (${old}, 'INFO', 'old'), (${old}, 'ERROR', 'old too'), (${recent}, 'INFO', 'recent')`;
}

const runsLeft = async () =>
  (await sql`select job_id, status from job_runs order by job_id, id`).map((r) => `${r['jobId']} ${r['status']}`);
const entriesLeft = async () => (await sql`select message from log_entries order by id`).map((r) => String(r['message']));
const housekeepingEntries = () => sql<LogRow[]>`select * from log_entries where message like 'Daily housekeeping%' order by id`;

/** Resolves with the next pass of `housekeeper` that `match` accepts. */
const nextPass = (housekeeper: Housekeeper, match: (pass: HousekeepingPass) => boolean = () => true) =>
  new Promise<HousekeepingPass>((resolve) => {
    const off = housekeeper.onPass((pass) => {
      if (!match(pass)) return;
      off();
      resolve(pass);
    });
  });

/** A housekeeper on the test database with a clock of its own at START, stopped after the test. */
function housekeeper(options: Partial<HousekeeperOptions> = {}, db: Sql = sql) {
  const clock = new ManualClock(START);
  const bus = new EventBus();
  const added: LogRow[] = [];
  bus.on((event) => {
    if (event.topic === 'log:added') added.push(event.payload.entry);
  });
  const keeper = new Housekeeper(
    { sql: db, clock, bus, log: silentLog },
    { instance: 'keeper', at: { hour: 2, minute: 30 }, logRetentionDays: 30, runRetentionDays: 30, ...options },
  );
  after(() => keeper.stop());
  return { keeper, clock, added };
}

describe('the daily housekeeping', () => {
  it('should purge old runs and log entries at HOUSEKEEPING_AT, keeping recent ones and RUNNING runs', async () => {
    await yesterdayDone();
    await seedHistory();
    const { keeper, clock, added } = housekeeper();
    const first = nextPass(keeper);
    keeper.start();
    assert.deepEqual(await first, { kind: 'taken', day: '2025-12-31' });
    assert.equal((await runsLeft()).length, 4, 'nothing is purged before HOUSEKEEPING_AT');

    const done = nextPass(keeper);
    clock.set(DUE);
    const pass = await done;
    assert.equal(pass.kind, 'done');
    assert.deepEqual(await runsLeft(), ['a SUCCEEDED', 'b RUNNING']);
    assert.deepEqual((await entriesLeft()).slice(0, 1), ['recent']);

    const [entry, ...more] = await housekeepingEntries();
    assert.equal(more.length, 0);
    assert.equal(entry!.level, 'INFO');
    assert.equal(entry!.jobId, null);
    assert.equal(
      entry!.message,
      'Daily housekeeping of 2026-01-01: Deleted 2 rows of job_runs older than 30 days; Deleted 2 rows of log_entries older than 30 days',
    );
    const cutoff = new Date(DUE - 30 * DAY).toISOString();
    assert.deepEqual(entry!.details, {
      day: '2026-01-01',
      instance: 'keeper',
      interrupted: false,
      purged: [
        { table: 'job_runs', deleted: 2, retentionDays: 30, cutoff },
        { table: 'log_entries', deleted: 2, retentionDays: 30, cutoff },
      ],
    });
    assert.deepEqual(
      added.map((e) => e.id),
      [entry!.id],
      'subscribers are told of the entry',
    );
    const [day] = await sql`select instance, finished_at from housekeeping_days where day = '2026-01-01'`;
    assert.equal(day!['instance'], 'keeper');
    assert.ok(day!['finishedAt'] instanceof Date);
  });

  it("should do the day's housekeeping at once when it starts after HOUSEKEEPING_AT and nobody has", async () => {
    await seedHistory();
    await sql`insert into housekeeping_days (day, instance, claimed_at, finished_at)
      values ('2025-12-31', 'elsewhere', ${new Date(START - DAY)}, ${new Date(START - DAY)})`;
    const { keeper, clock } = housekeeper();
    clock.set(Date.parse('2026-01-01T17:00:00.000Z'));
    const first = nextPass(keeper);
    keeper.start();
    const pass = await first;
    assert.deepEqual([pass.kind, pass.day], ['done', '2026-01-01']);
    assert.deepEqual(await runsLeft(), ['a SUCCEEDED', 'b RUNNING']);
  });

  it('should keep a table forever when its retention is 0, and do nothing at all when both are 0', async () => {
    await yesterdayDone();
    await seedHistory();
    const { keeper, clock } = housekeeper({ runRetentionDays: 0 });
    const done = nextPass(keeper, (pass) => pass.kind === 'done');
    keeper.start();
    clock.set(DUE);
    await done;
    assert.equal((await runsLeft()).length, 4, 'every run is kept');
    assert.deepEqual((await entriesLeft()).slice(0, 1), ['recent']);
    const [entry] = await housekeepingEntries();
    assert.equal(
      entry!.message,
      'Daily housekeeping of 2026-01-01: Kept every row of job_runs: RUN_RETENTION_DAYS is 0 (keeps forever); Deleted 2 rows of log_entries older than 30 days',
    );
    assert.deepEqual((entry!.details as { purged: unknown[] }).purged[0], {
      table: 'job_runs',
      deleted: 0,
      retentionDays: 0,
      cutoff: null,
    });

    await sql`truncate job_runs, log_entries, housekeeping_days`;
    await seedHistory();
    const off = housekeeper({ runRetentionDays: 0, logRetentionDays: 0 });
    off.clock.set(DUE);
    assert.equal(off.keeper.enabled, false);
    off.keeper.start();
    await off.keeper.stop();
    assert.equal((await sql`select * from housekeeping_days`).length, 0, 'no day is claimed');
    assert.equal((await runsLeft()).length, 4);
    assert.equal((await entriesLeft()).length, 3, 'no entry is written');
  });

  it('should log a failure and try again later, taking back its own unfinished claim', async () => {
    await yesterdayDone();
    await seedHistory();
    // The first delete fails, as a database gone away mid-purge would make it.
    let failures = 1;
    const flaky = new Proxy(sql, {
      apply(target, thisArg, args: Parameters<Sql>) {
        const [strings] = args;
        if (failures > 0 && Array.isArray(strings) && strings.join('').includes('delete from')) {
          failures--;
          throw new Error('connection lost');
        }
        return Reflect.apply(target, thisArg, args) as unknown;
      },
    });
    const { keeper, clock, added } = housekeeper({}, flaky);
    const failed = nextPass(keeper, (pass) => pass.kind === 'failed');
    keeper.start();
    clock.set(DUE);
    const failure = await failed;
    assert.ok(failure.kind === 'failed');
    assert.equal(failure.error.message, 'connection lost');
    assert.equal(failure.retryAtMs, DUE + 60_000);
    const [error] = added;
    assert.equal(error!.level, 'ERROR');
    assert.match(error!.message, /^Daily housekeeping of 2026-01-01 failed: connection lost; trying again at 2026-01-01T02:31:00.000Z$/);
    assert.equal((await runsLeft()).length, 4);

    const done = nextPass(keeper);
    clock.set(failure.retryAtMs);
    const retried = await done;
    assert.deepEqual([retried.kind, retried.day], ['done', '2026-01-01']);
    assert.deepEqual(await runsLeft(), ['a SUCCEEDED', 'b RUNNING']);
  });

  it('should stop at once while it waits for the next day', async () => {
    const { keeper } = housekeeper();
    const first = nextPass(keeper);
    keeper.start();
    await first;
    await keeper.stop();
    // Stopped: a day that comes later finds nobody to do it.
    assert.equal((await sql`select * from housekeeping_days`).length, 1);
  });
});

describe('purging in batches', () => {
  it('should pause between batches as long as a batch took, and not after the last', async () => {
    await sql`insert into log_entries (at, level, message)
              select ${new Date(DUE - 40 * DAY)}, 'INFO', 'old ' || i from generate_series(1, 5001) i`;
    // Every reading of this clock is 10 ms after the one before; its sleeps return at once.
    let t = DUE;
    const waits: number[] = [];
    const clock: Clock = { now: () => (t += 10), sleepUntil: async (atMs) => void waits.push(atMs - t) };
    const purged = await purgeOlderThan(sql, 'log_entries', 30, DUE, new AbortController().signal, { clock, pauseFactor: 1 });
    assert.equal(purged.deleted, 5001);
    assert.deepEqual(waits, [10], 'one pause, after the first batch of 5,000, as long as that batch took by the clock');
  });
});

describe('the built-in purge operations with a retention of 0', () => {
  it('should delete nothing and say so', async () => {
    await seedHistory();
    const operations = builtinOperations({ logRetentionDays: 0, runRetentionDays: 0, now: () => DUE });
    const logged: string[] = [];
    const ctx: CallContext = {
      signal: new AbortController().signal,
      log: async (_level, message) => void logged.push(message),
      jobId: 'purge',
      runId: '1',
      scheduledAt: new Date(DUE),
      sql,
    };
    assert.equal(await operations['PurgeRuns']!(ctx), 0);
    assert.equal(await operations['PurgeLogEntries']!(ctx), 0);
    assert.deepEqual(logged, [
      'Kept every row of job_runs: RUN_RETENTION_DAYS is 0 (keeps forever)',
      'Kept every row of log_entries: LOG_RETENTION_DAYS is 0 (keeps forever)',
    ]);
    assert.equal((await runsLeft()).length, 4);
    assert.equal((await entriesLeft()).length, 3);
  });
});

describe('the housekeeping settings', () => {
  it('should refuse a bad HOUSEKEEPING_AT at start, saying what it must be', () => {
    for (const bad of ['25:00', '2.30', '02:30:00', 'midnight']) {
      assert.deepEqual(problemsOf({ HOUSEKEEPING_AT: bad }), [
        `HOUSEKEEPING_AT: must be a time of day in UTC as HH:MM, from 00:00 to 23:59 (e.g. 02:30) (got ${JSON.stringify(bad)})`,
      ]);
    }
    assert.match(
      problemsOf({ HOUSEKEEPING_TIME: '02:30' })[0] ?? '',
      /HOUSEKEEPING_TIME: not a setting of this service \(did you mean HOUSEKEEPING_AT\?\)/,
    );
  });

  it('should default to 02:30 UTC and 30 days, and take 0 days as keep forever', () => {
    const defaults = loadConfig({});
    assert.deepEqual(defaults.HOUSEKEEPING_AT, { hour: 2, minute: 30 });
    const forever = loadConfig({ LOG_RETENTION_DAYS: '0', RUN_RETENTION_DAYS: '0', HOUSEKEEPING_AT: '23:05' });
    assert.deepEqual([forever.LOG_RETENTION_DAYS, forever.RUN_RETENTION_DAYS, forever.HOUSEKEEPING_AT], [0, 0, { hour: 23, minute: 5 }]);
    assert.match(problemsOf({ RUN_RETENTION_DAYS: '-1' })[0] ?? '', /^RUN_RETENTION_DAYS: /);
  });
});

describe('two instances on one database', () => {
  const ops = operationsDir();
  async function instance(id: string, clock: ManualClock): Promise<Instance> {
    const config = loadConfig({
      PORT: '0',
      DATABASE_URL: url,
      INSTANCE_ID: id,
      SERVER_OPERATIONS_DIR: ops,
      SERVER_OPERATIONS_WORKERS: '1',
    });
    const started = await startInstance({ config, log: silentLog, clock });
    after(() => started.stop());
    return started;
  }

  it('should purge once per day, whichever instance claims it: exactly one INFO entry a day', async () => {
    await yesterdayDone();
    await seedHistory();
    const clocks = [new ManualClock(START), new ManualClock(START)];
    const instances = [await instance('A', clocks[0]!), await instance('B', clocks[1]!)];
    const passesOf = (day: string) => Promise.all(instances.map((i) => nextPass(i.housekeeper, (pass) => pass.day === day)));

    for (const [k, day] of ['2026-01-01', '2026-01-02'].entries()) {
      const passes = passesOf(day);
      for (const clock of clocks) clock.set(DUE + k * DAY);
      const kinds = (await passes).map((pass) => pass.kind).sort();
      assert.deepEqual(kinds, ['done', 'taken'], `${day}: one instance housekeeps, the other finds it taken`);
      assert.equal((await housekeepingEntries()).filter((e) => e.message.startsWith(`Daily housekeeping of ${day}:`)).length, 1);
    }
    assert.deepEqual(await runsLeft(), ['a SUCCEEDED', 'b RUNNING']);
    assert.equal((await housekeepingEntries()).length, 2);
    await Promise.all(instances.map((i) => i.stop()));
  });
});
