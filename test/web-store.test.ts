// The dashboard's live list (web/src/store.ts) over a scripted API, without a browser: events
// change it in batches; while updates are paused they wait and are counted; a reconnection reads
// the lists again, and events that arrive meanwhile are applied on top of what it read.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { Api } from '../web/src/api.ts';
import { JOB_EVENTS, JOBS, RUNNING, STRIPS } from '../web/src/documents.ts';
import type { Job, JobEvent, Run } from '../web/src/model.ts';
import { JobStore } from '../web/src/store.ts';
import { webJob } from './helpers/web-job.ts';

const job = (id: string, overrides: Partial<Job> = {}): Job => webJob(id, { name: id, nextRunAt: null, ...overrides });

const run = (id: string, jobId: string, status: Run['status'], at = '2026-01-01T00:00:00.000Z'): Run => ({
  id,
  jobId,
  status,
  trigger: 'SCHEDULE',
  scheduledAt: at,
  startedAt: at,
  finishedAt: null,
  durationMs: null,
  error: null,
  instance: 'i',
  missed: 0,
  attempt: 1,
  retryOf: null,
});

/** An Api that answers from `state`, lets the test hold an answer, and hands it the subscription's sink. */
class ScriptedApi {
  jobs: Job[] = [];
  running: { id: string; jobId: string }[] = [];
  strips = new Map<string, Run[]>();
  sink: ((data: { jobEvents: JobEvent }) => void) | null = null;
  reconnect: (() => void) | null = null;
  /** While set, the JOBS query waits for it. */
  gate: Promise<void> | null = null;

  request = async <T>(query: string, variables: Record<string, unknown> = {}): Promise<T> => {
    if (query === JOBS) {
      const jobs = this.jobs;
      await this.gate;
      return { jobs } as T;
    }
    if (query === RUNNING)
      return { runs: { edges: this.running.map((node) => ({ node })), pageInfo: { hasNextPage: false, endCursor: null } } } as T;
    if (query === STRIPS) {
      const ids = variables['ids'] as string[];
      return { jobs: ids.map((id) => ({ id, runs: { edges: (this.strips.get(id) ?? []).map((node) => ({ node })) } })) } as T;
    }
    throw new Error(`unexpected query ${query.slice(0, 40)}`);
  };

  subscribe = (query: string, _variables: unknown, sink: { next: (data: { jobEvents: JobEvent }) => void }) => {
    assert.equal(query, JOB_EVENTS);
    this.sink = sink.next;
    return () => (this.sink = null);
  };

  onReconnect = (listener: () => void) => {
    this.reconnect = listener;
    return () => (this.reconnect = null);
  };

  event(kind: JobEvent['kind'], jobId: string, extra: Partial<JobEvent> = {}): void {
    this.sink!({ jobEvents: { kind, at: '2026-01-01T00:00:00.000Z', jobId, job: null, run: null, ...extra } });
  }
}

const settle = (ms = 80) => new Promise((resolve) => setTimeout(resolve, ms));

async function started(api: ScriptedApi): Promise<JobStore> {
  const store = new JobStore(api as unknown as Api);
  store.start();
  await settle();
  return store;
}

describe('the dashboard’s live list', () => {
  it('should read every job and the runs in progress, then follow the events', async () => {
    const api = new ScriptedApi();
    api.jobs = [job('a'), job('b')];
    api.running = [{ id: '7', jobId: 'b' }];
    const store = await started(api);
    try {
      assert.deepEqual([...store.jobs.keys()], ['a', 'b']);
      assert.equal(store.isRunning('b'), true);
      api.event('JOB_CREATED', 'c', { job: job('c') });
      api.event('RUN_STARTED', 'a', { job: job('a'), run: run('8', 'a', 'RUNNING') });
      api.event('RUN_SUCCEEDED', 'b', { job: job('b'), run: run('7', 'b', 'SUCCEEDED') });
      api.event('JOB_DELETED', 'c');
      const before = store.version;
      await settle();
      assert.equal(store.version, before + 1, 'one change for the batch');
      assert.deepEqual([...store.jobs.keys()], ['a', 'b']);
      assert.equal(store.isRunning('a'), true);
      assert.equal(store.isRunning('b'), false);
    } finally {
      store.stop();
    }
  });

  it('should hold events while updates are paused, count them, and apply them once updates resume', async () => {
    const api = new ScriptedApi();
    const store = await started(api);
    try {
      store.hold(true);
      api.event('JOB_CREATED', 'x', { job: job('x') });
      api.event('JOB_CREATED', 'y', { job: job('y') });
      await settle();
      assert.equal(store.jobs.size, 0, 'no new job while held');
      assert.equal(store.waiting, 2);
      store.hold(false);
      await settle();
      assert.deepEqual([...store.jobs.keys()].sort(), ['x', 'y']);
      assert.equal(store.waiting, 0);
    } finally {
      store.stop();
    }
  });

  it('should read the lists again after a reconnection, with the events of meanwhile on top', async () => {
    const api = new ScriptedApi();
    api.jobs = [job('old')];
    const store = await started(api);
    try {
      // While the service was away, `old` was deleted and `made` created: no event said so.
      api.jobs = [job('made', { enabled: false })];
      let open!: () => void;
      api.gate = new Promise((resolve) => (open = resolve));
      api.reconnect!();
      // An event that arrives while the lists are read: newer than what they will say.
      api.event('JOB_UPDATED', 'made', { job: job('made', { enabled: true }) });
      await settle();
      open();
      await settle();
      assert.deepEqual([...store.jobs.keys()], ['made']);
      assert.equal(store.jobs.get('made')!.enabled, true, 'the event applied on top of the catch-up');
    } finally {
      store.stop();
    }
  });

  it('should read strips for the rows asked, and put new runs in the strips it has', async () => {
    const api = new ScriptedApi();
    api.jobs = [job('s')];
    api.strips.set('s', [run('1', 's', 'FAILED')]);
    const store = await started(api);
    try {
      store.wantStrips(['s', 'unknown']);
      await settle();
      assert.deepEqual(
        store.strips.get('s')!.map((r) => r.id),
        ['1'],
      );
      assert.equal(store.strips.has('unknown'), false, 'no strip for a job the list does not have');
      api.event('RUN_STARTED', 's', { run: run('2', 's', 'RUNNING', '2026-01-01T00:00:05.000Z') });
      await settle();
      assert.deepEqual(
        store.strips.get('s')!.map((r) => [r.id, r.status]),
        [
          ['2', 'RUNNING'],
          ['1', 'FAILED'],
        ],
      );
    } finally {
      store.stop();
    }
  });
});
