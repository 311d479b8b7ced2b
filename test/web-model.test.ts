// What the dashboard decides without a browser (web/src/model.ts): a job's state badge by SPEC
// §11's rule, what search, filters and sort leave of a list, where a live run goes among the runs
// shown, and an edit that sends only what changed.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { languageOf } from '../web/src/i18n.ts';
import {
  ALL,
  canOperate,
  type JobDetails,
  formOf,
  latenessMs,
  type Run,
  scheduleOf,
  stateOf,
  updateInputOf,
  visibleJobs,
  withRun,
} from '../web/src/model.ts';
import { webJob } from './helpers/web-job.ts';

const job = webJob;

const run = (id: string, scheduledAt: string, overrides: Partial<Run> = {}): Run => ({
  id,
  jobId: 'j',
  status: 'SUCCEEDED',
  trigger: 'SCHEDULE',
  scheduledAt,
  startedAt: scheduledAt,
  finishedAt: scheduledAt,
  durationMs: 0,
  error: null,
  instance: 'i',
  missed: 0,
  attempt: 1,
  retryOf: null,
  ...overrides,
});

describe('a job’s state', () => {
  it('should be the first that holds of paused, running, failing, ok', () => {
    assert.equal(stateOf(job('a', { enabled: false, consecutiveFailures: 2 }), true), 'paused');
    assert.equal(stateOf(job('a', { consecutiveFailures: 2 }), true), 'running');
    assert.equal(stateOf(job('a', { consecutiveFailures: 1 }), false), 'failing');
    assert.equal(stateOf(job('a'), false), 'ok', 'a job that never ran is ok');
  });

  it('should offer the controls to operators and admins only', () => {
    assert.deepEqual((['VIEWER', 'OPERATOR', 'ADMIN', null] as const).map(canOperate), [false, true, true, false]);
  });
});

describe('the list', () => {
  const jobs = [
    job('выгрузка-остатков', { name: 'Выгрузка остатков', externalCall: 'OneC_8_Connector:Выгрузка', connectorId: 'OneC_8_Connector' }),
    job('job-10', { nextRunAt: '2026-01-01T00:00:01.000Z' }),
    job('job-2', { enabled: false, nextRunAt: null }),
    job('failing', { consecutiveFailures: 3, name: 'Alpha' }),
    job('busy', { name: 'Zeta' }),
  ];
  const running = (id: string) => id === 'busy';
  const ids = (query: Partial<typeof ALL>) => visibleJobs(jobs, running, { ...ALL, ...query }).map((j) => j.id);

  it('should search the id, the name and the call, in any case and script', () => {
    assert.deepEqual(ids({ search: 'JOB-' }), ['job-2', 'job-10']);
    assert.deepEqual(ids({ search: 'ОСТАТК' }), ['выгрузка-остатков']);
    assert.deepEqual(ids({ search: 'onec_8' }), ['выгрузка-остатков']);
    assert.deepEqual(ids({ search: '  alpha ' }), ['failing']);
    assert.deepEqual(ids({ search: 'nothing like it' }), []);
  });

  it('should filter by state and by connector', () => {
    assert.deepEqual(ids({ state: 'running' }), ['busy']);
    assert.deepEqual(ids({ state: 'failing' }), ['failing']);
    assert.deepEqual(ids({ state: 'paused' }), ['job-2']);
    assert.deepEqual(ids({ state: 'ok' }), ['job-10', 'выгрузка-остатков']);
    assert.deepEqual(ids({ connector: 'OneC_8_Connector' }), ['выгрузка-остатков']);
    assert.deepEqual(ids({ connector: 'ServerOperationConnector', state: 'ok' }), ['job-10']);
  });

  it('should sort by id (numbers as numbers), name, next due time (none last) and state', () => {
    assert.deepEqual(ids({}), ['busy', 'failing', 'job-2', 'job-10', 'выгрузка-остатков']);
    assert.deepEqual(ids({ sort: 'name' }), ['failing', 'job-2', 'job-10', 'busy', 'выгрузка-остатков']);
    assert.deepEqual(ids({ sort: 'next' }), ['job-10', 'busy', 'failing', 'выгрузка-остатков', 'job-2']);
    assert.deepEqual(ids({ sort: 'state' }), ['failing', 'busy', 'job-2', 'job-10', 'выгрузка-остатков']);
  });

  it('should narrow 10,000 jobs in well under a second', () => {
    const many = Array.from({ length: 10_000 }, (_, i) => job(`job-${i}`, { name: `Выгрузка ${i}` }));
    const started = performance.now();
    const shown = visibleJobs(many, () => false, { ...ALL, search: 'job-99' });
    assert.equal(shown.length, 111);
    assert.ok(performance.now() - started < 1000);
  });

  it('should write a schedule as its period, or its cron with a zone other than UTC', () => {
    assert.equal(scheduleOf(job('a')), '0:00:05');
    assert.equal(scheduleOf(job('a', { period: null, cron: '30 2 * * *', timeZone: 'Europe/Moscow' })), '30 2 * * * (Europe/Moscow)');
    assert.equal(scheduleOf(job('a', { period: null, cron: '@daily', timeZone: 'UTC' })), '@daily');
  });
});

describe('runs as they arrive', () => {
  it('should keep runs newest first by due time then id, a run’s later self replacing it, at most `max`', () => {
    let runs: Run[] = [];
    runs = withRun(runs, run('9', '2026-01-01T00:00:09.000Z'));
    runs = withRun(runs, run('10', '2026-01-01T00:00:10.000Z', { status: 'RUNNING' }));
    runs = withRun(runs, run('8', '2026-01-01T00:00:08.000Z'));
    runs = withRun(runs, run('11', '2026-01-01T00:00:10.000Z', { trigger: 'MANUAL' }));
    assert.deepEqual(
      runs.map((r) => r.id),
      ['11', '10', '9', '8'],
    );
    runs = withRun(runs, run('10', '2026-01-01T00:00:10.000Z', { status: 'FAILED' }), 3);
    assert.deepEqual(
      runs.map((r) => [r.id, r.status]),
      [
        ['11', 'SUCCEEDED'],
        ['10', 'FAILED'],
        ['9', 'SUCCEEDED'],
      ],
    );
  });

  it('should measure lateness as startedAt − scheduledAt, none for a run that never started', () => {
    assert.equal(latenessMs(run('1', '2026-01-01T00:00:00.000Z', { startedAt: '2026-01-01T00:00:00.042Z' })), 42);
    assert.equal(latenessMs(run('1', '2026-01-01T00:00:00.000Z', { status: 'SKIPPED', startedAt: null })), null);
  });
});

describe('an edit', () => {
  const details: JobDetails = {
    ...job('e'),
    timeoutSeconds: 5,
    endAt: null,
    overlap: 'SKIP',
    misfire: 'RUN_ONCE',
    autoPauseAfterFailures: null,
    createdAt: '2026-01-01T00:00:00.000Z',
    updatedAt: '2026-01-01T00:00:00.000Z',
    retry: { maxAttempts: 1, backoffSeconds: 10, backoffFactor: 2, maxBackoffSeconds: 3600 },
    nextRuns: [],
  };

  it('should send only the fields that changed (so that a new name keeps the grid)', () => {
    const before = formOf(details);
    assert.deepEqual(updateInputOf(before, before, details), {});
    assert.deepEqual(updateInputOf(before, { ...before, name: ' Renamed ' }, details), { name: 'Renamed' });
    assert.deepEqual(updateInputOf(before, { ...before, period: '0:1:0', autoPauseAfterFailures: '3' }, details), {
      period: '0:1:0',
      autoPauseAfterFailures: 3,
    });
    assert.deepEqual(updateInputOf(before, { ...before, maxAttempts: '4' }, details), {
      retry: { maxAttempts: 4, backoffSeconds: 10, backoffFactor: 2, maxBackoffSeconds: 3600 },
    });
    assert.deepEqual(updateInputOf(before, { ...before, cron: '@hourly', timeZone: 'Europe/Moscow' }, details), {
      cron: '@hourly',
      timeZone: 'Europe/Moscow',
    });
  });
});

describe('the language', () => {
  it('should follow the browser’s first language: Russian for ru, English otherwise', () => {
    assert.equal(languageOf(['ru-RU', 'en']), 'ru');
    assert.equal(languageOf(['ru']), 'ru');
    assert.equal(languageOf(['en-US', 'ru']), 'en');
    assert.equal(languageOf(['de-DE']), 'en');
    assert.equal(languageOf([]), 'en');
  });
});
