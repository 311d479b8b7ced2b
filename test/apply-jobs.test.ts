// Declarative job sets (SPEC §3b, applyJobs) through the GraphQL API on real PostgreSQL: a list
// applied twice changes nothing the second time, a dry run answers the same diff and writes
// nothing, one bad job rejects the whole set with its path, prune deletes only what the list
// leaves out, `fields` names exactly what changes, and the changes follow updateJob's grid rules,
// with their audit entries, due-time accounting and events.
import assert from 'node:assert/strict';
import { beforeEach, describe, it } from 'node:test';
import { appFor, createJob, gqlOk, type Json, rejections } from './helpers/api.ts';
import { snapshot, testDatabase } from './helpers/db.ts';
import { harness, T0, tickAndSettle } from './helpers/harness.ts';

const { sql } = await testDatabase();
beforeEach(() => sql`truncate jobs, job_runs, log_entries`);
const { rejects } = rejections(sql);

const iso = (ms: number) => new Date(ms).toISOString();

const APPLY = `mutation($input: ApplyJobsInput!) { applyJobs(input: $input) { created updated { id fields } deleted unchanged } }`;
const JOBS = `{ jobs { id name period cron timeZone enabled nextRunAt timeoutSeconds overlap misfire endAt updatedAt
  retry { maxAttempts backoffSeconds backoffFactor maxBackoffSeconds } autoPauseAfterFailures } }`;

/** A job of a list: a period job calling Test:ok unless overridden. */
const job = (id: string, overrides: Json = {}): Json => ({
  id,
  name: `Job ${id}`,
  externalCall: 'Test:ok',
  period: '0:0:10',
  ...overrides,
});

/** The list the tests start from: Latin and Cyrillic ids, period and cron jobs, every policy. */
const LIST: Json[] = [
  job('выгрузка-остатков', { name: 'Выгрузка остатков в 1С', externalCall: 'Test:Выгрузка Остатков', period: '0:5:0' }),
  job('марки.кировка', { period: null, cron: '0 */2 * * *', timeZone: 'Europe/Moscow', misfire: 'SKIP' }),
  job('clean-tails', { period: '1:0:0', startAt: iso(T0 - 1_800_000), timeoutSeconds: 120, overlap: 'QUEUE_ONE' }),
  job('retrying', {
    period: '0:0:30',
    retry: { maxAttempts: 3, backoffSeconds: 5 },
    autoPauseAfterFailures: 5,
    endAt: iso(T0 + 86_400_000),
  }),
  job('paused', { period: '0:1:0', enabled: false }),
];

function setup() {
  const h = harness(sql);
  h.connector.define('ok', async () => {});
  h.connector.define('Выгрузка Остатков', async () => {});
  return { h, app: appFor(h) };
}

async function apply(app: ReturnType<typeof appFor>, jobs: Json[], options: { prune?: boolean; dryRun?: boolean } = {}): Promise<Json> {
  return (await gqlOk(app, APPLY, { input: { jobs, ...options } }))['applyJobs'];
}

const jobsById = async (app: ReturnType<typeof appFor>): Promise<Map<string, Json>> =>
  new Map(((await gqlOk(app, JOBS))['jobs'] as Json[]).map((j) => [j['id'], j]));

describe('applying a list', () => {
  it('should create the jobs of a new list, then answer every job unchanged when it is applied again, writing nothing and moving no nextRunAt', async () => {
    const { h, app } = setup();
    assert.deepEqual(await apply(app, LIST), { created: LIST.map((j) => j['id']), updated: [], deleted: [], unchanged: [] });
    const created = await jobsById(app);
    assert.deepEqual(created.get('марки.кировка')?.['cron'], '0 */2 * * *');
    assert.equal(created.get('clean-tails')?.['nextRunAt'], iso(T0 + 1_800_000), 'startAt past: the first grid point after now');
    assert.equal(created.get('paused')?.['nextRunAt'], null);
    // Time passes and runs happen; the same list again changes nothing at all.
    h.clock.set(T0 + 600_000);
    await tickAndSettle(h);
    const before = await snapshot(sql);
    const nextRuns = [...(await jobsById(app)).values()].map((j) => [j['id'], j['nextRunAt']]);
    h.clock.set(T0 + 605_000);
    const again = await apply(app, LIST, { prune: true });
    assert.deepEqual(again, { created: [], updated: [], deleted: [], unchanged: LIST.map((j) => j['id']) });
    assert.equal(await snapshot(sql), before, 'no row written, no audit entry');
    assert.deepEqual(
      [...(await jobsById(app)).values()].map((j) => [j['id'], j['nextRunAt']]),
      nextRuns,
    );
  });

  it('should take a value as stored once normalised: a period, a zone or a name written differently is no change', async () => {
    const { app } = setup();
    await apply(app, [
      job('a', { period: '0:0:5', name: 'Настройка' }),
      job('b', { period: null, cron: '@daily', timeZone: 'Europe/Moscow' }),
    ]);
    const same = await apply(app, [
      job('a', { period: '0:00:05', name: 'Настройка'.normalize('NFD'), enabled: true, overlap: 'SKIP', retry: { maxAttempts: 1 } }),
      job('b', { period: null, cron: ' @daily ', timeZone: 'europe/moscow', misfire: 'RUN_ONCE' }),
    ]);
    assert.deepEqual(same, { created: [], updated: [], deleted: [], unchanged: ['a', 'b'] });
  });

  it('should answer a dry run with the same diff as the real apply and change nothing, publishing nothing', async () => {
    const { h, app } = setup();
    await apply(app, LIST);
    const changed = [{ ...LIST[0]!, period: '0:10:0' }, LIST[1]!, { ...LIST[3]!, retry: null, name: 'Повторы' }, job('новая')];
    const before = await snapshot(sql);
    h.events.length = 0;
    const dry = await apply(app, changed, { prune: true, dryRun: true });
    assert.equal(await snapshot(sql), before, 'the dry run changed nothing');
    assert.deepEqual(h.events, [], 'and published nothing');
    assert.deepEqual(dry, {
      created: ['новая'],
      updated: [
        { id: 'выгрузка-остатков', fields: ['period'] },
        { id: 'retrying', fields: ['name', 'retry'] },
      ],
      deleted: ['clean-tails', 'paused'],
      unchanged: ['марки.кировка'],
    });
    assert.deepEqual(await apply(app, changed, { prune: true }), dry, 'the real apply makes the diff the dry run answered');
    assert.deepEqual([...(await jobsById(app)).keys()].sort(), ['retrying', 'новая', 'выгрузка-остатков', 'марки.кировка'].sort());
  });

  it('should delete with prune only the jobs the list leaves out, and none without it', async () => {
    const { app } = setup();
    for (const id of ['keep', 'drop-1', 'also-keep', 'drop-2']) await createJob(app, { id });
    const kept = [job('keep', { period: '0:0:5', name: 'A job' }), job('also-keep', { period: '0:0:5', name: 'A job' })];
    assert.deepEqual(await apply(app, kept), { created: [], updated: [], deleted: [], unchanged: ['keep', 'also-keep'] });
    assert.equal((await jobsById(app)).size, 4, 'without prune the others stay');
    assert.deepEqual(await apply(app, kept, { prune: true }), {
      created: [],
      updated: [],
      deleted: ['drop-1', 'drop-2'],
      unchanged: ['keep', 'also-keep'],
    });
    assert.deepEqual([...(await jobsById(app)).keys()], ['also-keep', 'keep']);
    assert.deepEqual(await apply(app, [], { prune: true }), { created: [], updated: [], deleted: ['also-keep', 'keep'], unchanged: [] });
    assert.equal((await jobsById(app)).size, 0);
  });
});

describe('what changes', () => {
  it('should name the input fields whose stored value changes, a field left out taking its createJob default', async () => {
    const { app } = setup();
    await createJob(app, {
      id: 'настроенная',
      period: '0:1:0',
      enabled: false,
      endAt: iso(T0 + 3_600_000),
      timeoutSeconds: 30,
      overlap: 'ALLOW',
      misfire: 'SKIP',
      retry: { maxAttempts: 2 },
      autoPauseAfterFailures: 3,
    });
    await createJob(app, { id: 'to-cron', period: '0:1:0' });
    await createJob(app, { id: 'to-period', period: null, cron: '*/5 * * * *', timeZone: 'Asia/Novosibirsk' });
    await createJob(app, { id: 'moved', period: '0:1:0', startAt: iso(T0 + 10_000) });
    await createJob(app, { id: 'recall', period: '0:1:0' });
    const result = await apply(app, [
      job('настроенная', { period: '0:1:0', name: 'Renamed' }),
      job('to-cron', { period: null, cron: '*/5 * * * *', name: 'A job' }),
      job('to-period', { period: '0:1:0', name: 'A job' }),
      job('moved', { period: '0:1:0', name: 'A job', startAt: iso(T0 + 20_000) }),
      job('recall', { period: '0:1:0', name: 'A job', externalCall: 'Test:other', timeoutSeconds: 60 }),
    ]);
    assert.deepEqual(result.updated, [
      {
        id: 'настроенная',
        fields: ['name', 'enabled', 'endAt', 'timeoutSeconds', 'overlap', 'misfire', 'retry', 'autoPauseAfterFailures'],
      },
      { id: 'to-cron', fields: ['period', 'cron', 'timeZone'] },
      { id: 'to-period', fields: ['period', 'cron', 'timeZone'] },
      { id: 'moved', fields: ['startAt'] },
      { id: 'recall', fields: ['externalCall', 'timeoutSeconds'] },
    ]);
    const jobs = await jobsById(app);
    assert.deepEqual(
      jobs.get('настроенная'),
      {
        id: 'настроенная',
        name: 'Renamed',
        period: '0:01:00',
        cron: null,
        timeZone: null,
        enabled: true,
        nextRunAt: iso(T0 + 60_000),
        timeoutSeconds: 60,
        overlap: 'SKIP',
        misfire: 'RUN_ONCE',
        endAt: null,
        updatedAt: iso(T0),
        retry: { maxAttempts: 1, backoffSeconds: 10, backoffFactor: 2, maxBackoffSeconds: 3600 },
        autoPauseAfterFailures: null,
      },
      'every field left out is at its default, the job resumed',
    );
    assert.deepEqual(
      [jobs.get('to-cron')?.['cron'], jobs.get('to-cron')?.['timeZone'], jobs.get('to-cron')?.['period']],
      ['*/5 * * * *', 'UTC', null],
    );
    assert.deepEqual(
      [jobs.get('to-period')?.['cron'], jobs.get('to-period')?.['timeZone'], jobs.get('to-period')?.['period']],
      [null, null, '0:01:00'],
    );
    assert.equal(jobs.get('moved')?.['nextRunAt'], iso(T0 + 20_000), 'a new startAt moves the grid, as updateJob’s');
  });

  it("should follow updateJob's grid rules: a new period re-anchors at now, a new startAt at it, a rename keeps the grid", async () => {
    const { h, app } = setup();
    await apply(app, [
      job('period', { period: '0:1:0' }),
      job('renamed', { period: '0:1:0' }),
      job('anchored', { period: '0:1:0', startAt: iso(T0 + 5000) }),
    ]);
    h.clock.set(T0 + 7000);
    const result = await apply(app, [
      job('period', { period: '0:0:45' }),
      job('renamed', { period: '0:1:0', name: 'Новое имя' }),
      job('anchored', { period: '0:0:20', startAt: iso(T0 + 5000) }),
    ]);
    assert.deepEqual(result.updated, [
      { id: 'period', fields: ['period'] },
      { id: 'renamed', fields: ['name'] },
      { id: 'anchored', fields: ['period'] },
    ]);
    const jobs = await jobsById(app);
    assert.equal(jobs.get('period')?.['nextRunAt'], iso(T0 + 7000 + 45_000));
    assert.equal(jobs.get('renamed')?.['nextRunAt'], iso(T0 + 60_000));
    assert.equal(jobs.get('anchored')?.['nextRunAt'], iso(T0 + 25_000), 'the list’s startAt anchors the new grid: 5 s + k·20 s');
  });

  it('should account due times already due as a pause, a period change or a delete does, and write the same audit entries and events', async () => {
    const { h, app } = setup();
    await apply(app, [job('paused-late'), job('deleted-late'), job('updated-late'), job('kept')]);
    // Due at 10 and 20 s, claimed by nobody (no tick): the changes at 25 s account them.
    h.clock.set(T0 + 25_000);
    h.events.length = 0;
    const result = await apply(
      app,
      [job('paused-late', { enabled: false }), job('updated-late', { period: '0:0:30' }), job('kept'), job('created-now')],
      { prune: true },
    );
    assert.deepEqual(result, {
      created: ['created-now'],
      updated: [
        { id: 'paused-late', fields: ['enabled'] },
        { id: 'updated-late', fields: ['period'] },
      ],
      deleted: ['deleted-late'],
      unchanged: ['kept'],
    });
    const skipped = await sql<{ jobId: string; scheduledAt: Date; missed: number; status: string }[]>`
      select job_id, scheduled_at, missed, status from job_runs order by job_id`;
    assert.deepEqual(
      skipped.map((r) => [r.jobId, r.scheduledAt.getTime() - T0, r.missed, r.status]),
      [
        ['deleted-late', 20_000, 1, 'SKIPPED'],
        ['paused-late', 20_000, 1, 'SKIPPED'],
        ['updated-late', 20_000, 1, 'SKIPPED'],
      ],
    );
    const log = await sql<{ jobId: string; level: string; message: string; details: Json }[]>`
      select job_id, level, message, details from log_entries where at = ${new Date(T0 + 25_000)} order by id`;
    assert.deepEqual(
      log.map((e) => [e.jobId, e.level, e.message]),
      [
        ['deleted-late', 'INFO', 'Job "deleted-late" deleted'],
        ['deleted-late', 'WARNING', '2 due times of job "deleted-late" were not run: the job was deleted'],
        ['paused-late', 'INFO', 'Job "paused-late" updated'],
        ['paused-late', 'WARNING', '2 due times of job "paused-late" were not run: the job was paused'],
        ['updated-late', 'INFO', 'Job "updated-late" updated'],
        ['updated-late', 'WARNING', '2 due times of job "updated-late" were not run: the job\'s period changed'],
        ['created-now', 'INFO', 'Job "created-now" created'],
      ],
    );
    assert.deepEqual(log[2]!.details, { enabled: false, actor: 'local', via: 'applyJobs' });
    assert.deepEqual(log[4]!.details, { period: '0:0:30', actor: 'local', via: 'applyJobs' });
    const subject = (payload: Json) => payload['job']?.id ?? payload['jobId'] ?? payload['run']?.jobId;
    const topics = h.events.filter((e) => e.topic !== 'log:added').map((e) => [e.topic, subject(e.payload as Json)]);
    assert.deepEqual(topics, [
      ['run:skipped', 'deleted-late'],
      ['job:deleted', 'deleted-late'],
      ['run:skipped', 'paused-late'],
      ['job:updated', 'paused-late'],
      ['run:skipped', 'updated-late'],
      ['job:updated', 'updated-late'],
      ['job:created', 'created-now'],
    ]);
    assert.equal(h.events.filter((e) => e.topic === 'log:added').length, log.length, 'each entry announced once');
  });
});

describe('bad input', () => {
  it('should reject the whole set when one job is invalid, naming it by its place in the list, and change nothing', async () => {
    const { app } = setup();
    await apply(app, LIST);
    const valid = [job('новая-1'), { ...LIST[0]!, name: 'Changed' }, job('новая-2')];
    const cases: [Json, string][] = [
      [job('x', { period: '0:60:0' }), 'jobs.3.period'],
      [job('x', { cron: '* * * * *' }), 'jobs.3.cron'],
      [job('x', { period: null }), 'jobs.3.cron'],
      [job('x', { period: null, cron: '* * * * *', timeZone: 'Europe/Нигде' }), 'jobs.3.timeZone'],
      [job('x', { retry: { maxAttempts: 11 } }), 'jobs.3.retry.maxAttempts'],
      [job('x', { autoPauseAfterFailures: 0 }), 'jobs.3.autoPauseAfterFailures'],
      [job('x', { externalCall: 'no colon' }), 'jobs.3.externalCall'],
      [job('has space'), 'jobs.3.id'],
      [job('новая-1'), 'jobs.3.id'],
      [job('x', { name: ' ' }), 'jobs.3.name'],
      [job('x', { timeoutSeconds: 86_401 }), 'jobs.3.timeoutSeconds'],
    ];
    for (const [bad, field] of cases) {
      for (const options of [{}, { prune: true }, { dryRun: true }]) {
        const result = await rejects(app, APPLY, { input: { jobs: [...valid, bad, job('после')], ...options } }, 'BAD_USER_INPUT', field);
        assert.match(result.errors![0]!.message, /^jobs\[3\]: /);
      }
    }
  });
});
