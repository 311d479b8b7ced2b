// The GraphQL API over jobs: creating, listing, changing (with the audit trail of each change),
// Unicode input, and the connectors they call. Validation is in graphql-validation, runs in graphql-runs.
import assert from 'node:assert/strict';
import { beforeEach, describe, it } from 'node:test';
import { appFor, createJob, DELETE, gql, gqlOk, JOB, JOBS, type Json, logPage, PAUSE, RESUME, UPDATE } from './helpers/api.ts';
import { testDatabase } from './helpers/db.ts';
import { harness, T0, tickAndSettle } from './helpers/harness.ts';

const { sql } = await testDatabase();
// Each test starts from empty tables: a tick claims every due job in the database.
beforeEach(() => sql`truncate jobs, job_runs, log_entries`);

const iso = (ms: number) => new Date(ms).toISOString();

describe('jobs', () => {
  it('should create a job and return it with the period normalised and the external call split', async () => {
    const h = harness(sql);
    const app = appFor(h);
    const job = await createJob(app, {
      id: 'pull-codes',
      name: 'Pull marking codes',
      externalCall: ' Test : Кировка АвтоматическоеПолучение:Таблица ',
      period: '0:0:5',
    });
    assert.deepEqual(job, {
      id: 'pull-codes',
      name: 'Pull marking codes',
      externalCall: 'Test:Кировка АвтоматическоеПолучение:Таблица',
      connectorId: 'Test',
      method: 'Кировка АвтоматическоеПолучение:Таблица',
      period: '0:00:05',
      periodSeconds: 5,
      enabled: true,
      pausedNote: null,
      timeoutSeconds: 5,
      nextRunAt: iso(T0 + 5000),
      createdAt: iso(T0),
      updatedAt: iso(T0),
    });
    const again = await gqlOk(app, `{ job(id: "pull-codes") { ${JOB} } }`);
    assert.deepEqual(again['job'], job, 'job(id) answers what createJob returned');
  });

  it('should default timeoutSeconds to the smaller of the period and one hour, and keep an explicit one', async () => {
    const h = harness(sql);
    const app = appFor(h);
    const cases: [Json, string, number][] = [
      [{ id: 't-30s', period: '0:0:30' }, '0:00:30', 30],
      [{ id: 't-2h', period: '2:0:0' }, '2:00:00', 3600],
      [{ id: 't-day', period: '24:0:0' }, '24:00:00', 3600],
      [{ id: 't-leap-year', period: '8784:00:00' }, '8784:00:00', 3600],
      [{ id: 't-explicit', period: '0:1:0', timeoutSeconds: 7 }, '0:01:00', 7],
      [{ id: 't-max', period: '0:0:1', timeoutSeconds: 86400 }, '0:00:01', 86400],
    ];
    for (const [overrides, period, timeout] of cases) {
      const job = await createJob(app, overrides);
      assert.equal(job['period'], period, overrides['id']);
      assert.equal(job['timeoutSeconds'], timeout, overrides['id']);
    }
  });

  it('should start at startAt when given one', async () => {
    const h = harness(sql);
    const app = appFor(h);
    const job = await createJob(app, { period: '0:1:0', startAt: '2026-01-01T03:00:00+03:00' });
    assert.equal(job['nextRunAt'], iso(T0), 'startAt in another zone is the same instant, answered in UTC');
    const later = await createJob(app, { id: 'later', period: '0:1:0', startAt: iso(T0 + 90_000) });
    assert.equal(later['nextRunAt'], iso(T0 + 90_000));
  });

  it('should list jobs by id and filter them by enabled', async () => {
    const h = harness(sql);
    const app = appFor(h);
    await createJob(app, { id: 'b' });
    await createJob(app, { id: 'c', enabled: false });
    await createJob(app, { id: 'a' });
    await createJob(app, { id: 'B-upper' });
    const all = (await gqlOk(app, JOBS))['jobs'] as Json[];
    assert.deepEqual(
      all.map((j) => j['id']),
      ['B-upper', 'a', 'b', 'c'].sort(),
    );
    assert.deepEqual((await gqlOk(app, JOBS, { enabled: false }))['jobs'], [{ id: 'c', enabled: false }]);
    assert.deepEqual(
      ((await gqlOk(app, JOBS, { enabled: true }))['jobs'] as Json[]).map((j) => j['id']),
      ['B-upper', 'a', 'b'].sort(),
    );
    const paused = await gqlOk(app, `{ job(id: "c") { enabled nextRunAt } }`);
    assert.deepEqual(paused['job'], { enabled: false, nextRunAt: null }, 'a paused job has no next run');
  });

  it('should answer null, not an error, for an unknown job id', async () => {
    const h = harness(sql);
    const app = appFor(h);
    await createJob(app, { id: 'known' });
    const result = await gql(app, `{ job(id: "unknown") { id } }`);
    assert.equal(result.errors, undefined);
    assert.deepEqual(result.data, { job: null });
  });

  it('should warn in the log when a job calls a connector or operation that does not exist (yet)', async () => {
    const h = harness(sql);
    h.connector.define('ok', async () => {});
    const app = appFor(h);
    await createJob(app, { id: 'fine', externalCall: 'Test:ok' });
    await createJob(app, { id: 'no-connector', externalCall: 'Nowhere:ok' });
    await createJob(app, { id: 'no-operation', externalCall: 'Test:missing' });
    const warnings = await logPage(app, { level: 'WARNING' });
    assert.deepEqual(warnings.edges.map((e) => e.node['jobId']).sort(), ['no-connector', 'no-operation']);
    for (const { node } of warnings.edges) assert.match(node['message'], /does not exist/);
  });
});

describe('changes and the audit trail', () => {
  it('should apply updateJob, pauseJob, resumeJob and deleteJob and write an INFO entry for each', async () => {
    const h = harness(sql);
    h.connector.define('ok', async () => {});
    const app = appFor(h);
    await createJob(app, { id: 'audited', period: '0:0:10' });

    h.clock.set(T0 + 1000);
    const updated = (await gqlOk(app, UPDATE, { id: 'audited', input: { name: 'Renamed', period: '0:0:20', timeoutSeconds: 9 } }))[
      'updateJob'
    ];
    assert.equal(updated['name'], 'Renamed');
    assert.equal(updated['period'], '0:00:20');
    assert.equal(updated['timeoutSeconds'], 9);
    assert.equal(updated['nextRunAt'], iso(T0 + 21_000), 'a new period re-anchors the grid at the change');
    assert.equal(updated['updatedAt'], iso(T0 + 1000));

    h.clock.set(T0 + 2000);
    const paused = (await gqlOk(app, PAUSE, { id: 'audited', note: 'maintenance window' }))['pauseJob'];
    assert.equal(paused['enabled'], false);
    assert.equal(paused['pausedNote'], 'maintenance window');
    assert.equal(paused['nextRunAt'], null);
    h.clock.set(T0 + 45_000);
    assert.equal((await h.scheduler.tick()).length, 0, 'a paused job does not run');

    const resumed = (await gqlOk(app, RESUME, { id: 'audited' }))['resumeJob'];
    assert.equal(resumed['enabled'], true);
    assert.equal(resumed['pausedNote'], null, 'resuming clears the note');
    assert.equal(resumed['nextRunAt'], iso(T0 + 61_000), 'the first grid point after the resume');

    h.clock.set(T0 + 61_000);
    await tickAndSettle(h);
    h.clock.set(T0 + 62_000);
    assert.equal((await gqlOk(app, DELETE, { id: 'audited' }))['deleteJob'], 'audited');
    assert.deepEqual((await gqlOk(app, `{ job(id: "audited") { id } }`))['job'], null);
    h.clock.set(T0 + 81_000);
    assert.equal((await h.scheduler.tick()).length, 0, 'a deleted job does not run');

    const entries = (await logPage(app, { jobId: 'audited' })).edges.map((e) => e.node);
    assert.deepEqual(
      entries.map((e) => [e['at'], e['level'], e['jobId'], e['runId']]),
      [T0 + 62_000, T0 + 45_000, T0 + 2000, T0 + 1000, T0].map((at) => [iso(at), 'INFO', 'audited', null]),
      'newest first: deleted, resumed, paused, updated, created',
    );
    assert.match(entries[0]!['message'], /deleted/);
    assert.match(entries[1]!['message'], /resumed/);
    assert.match(entries[2]!['message'], /paused: maintenance window/);
    assert.match(entries[3]!['message'], /updated/);
    assert.deepEqual(entries[3]!['details'], { name: 'Renamed', period: '0:0:20', timeoutSeconds: 9, actor: 'local' });
    assert.match(entries[4]!['message'], /created/);
  });

  it('should restore the default timeout when updateJob sets timeoutSeconds to null', async () => {
    const h = harness(sql);
    const app = appFor(h);
    await createJob(app, { id: 'timeouts', period: '0:2:0', timeoutSeconds: 5 });
    const job = (await gqlOk(app, UPDATE, { id: 'timeouts', input: { timeoutSeconds: null } }))['updateJob'];
    assert.equal(job['timeoutSeconds'], 120);
  });
});

describe('Unicode', () => {
  it('should normalise text input to NFC: a decomposed id is found by its composed form', async () => {
    const h = harness(sql);
    const app = appFor(h);
    const decomposed = 'Cafe\u0301-Ре\u0306стр';
    const composed = decomposed.normalize('NFC');
    assert.notEqual(decomposed, composed);
    const job = await createJob(app, { id: decomposed, name: 'Re\u0301sume\u0301', externalCall: 'Test:Proce\u0301s' });
    assert.equal(job['id'], composed);
    assert.equal(job['name'], 'R\u00e9sum\u00e9');
    assert.equal(job['method'], 'Proc\u00e9s');
    for (const id of [composed, decomposed]) {
      const found = await gqlOk(app, `query($id: ID!) { job(id: $id) { id } }`, { id });
      assert.deepEqual(found['job'], { id: composed });
    }
    const paused = await gqlOk(app, PAUSE, { id: decomposed, note: 'E\u0301te\u0301' });
    assert.equal(paused['pauseJob']['pausedNote'], '\u00c9t\u00e9');
    assert.equal((await gqlOk(app, DELETE, { id: decomposed }))['deleteJob'], composed);
    assert.deepEqual((await gqlOk(app, JOBS))['jobs'], []);
  });
});

describe('connectors', () => {
  it('should list the connectors with their operations', async () => {
    const h = harness(sql);
    h.connector.define('АвтоматическоеПолучениеТаблицыМарок', async () => {});
    h.connector.define('Clean crypto tails', async () => {});
    const app = appFor(h);
    const { connectors } = await gqlOk(app, `{ connectors { id kind builtIn operations hasSecret headers { name value } } }`);
    assert.deepEqual(connectors, [
      {
        id: 'Test',
        kind: 'SERVER_OPERATIONS',
        builtIn: false,
        operations: ['АвтоматическоеПолучениеТаблицыМарок', 'Clean crypto tails'],
        hasSecret: false,
        headers: [],
      },
    ]);
  });
});
