import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { RunRow, RunStatus } from '../src/db/rows.ts';
import { EventBus, EventsInterruptedError } from '../src/events/bus.ts';
import type { TopicEvent } from '../src/events/topics.ts';
import { toJobEvent } from '../src/graphql/subscriptions.ts';

const T0 = Date.parse('2026-01-01T00:00:00.000Z');

function run(id: number, jobId: string, status: RunStatus = 'RUNNING'): RunRow {
  const ended = status !== 'RUNNING';
  return {
    id: String(id),
    jobId,
    trigger: 'SCHEDULE',
    scheduledAt: new Date(T0 + id * 1000),
    startedAt: new Date(T0 + id * 1000),
    finishedAt: ended ? new Date(T0 + id * 1000 + 10) : null,
    status,
    error: null,
    instance: 'A',
    missed: 0,
    leaseToken: null,
    leaseExpiresAt: null,
    cancelRequestedAt: null,
    attempt: 1,
    retryOf: null,
  };
}
const started = (r: RunRow): TopicEvent => ({ topic: 'run:started', payload: { at: r.startedAt!, run: r } });
const finished = (r: RunRow): TopicEvent => ({ topic: 'run:finished', payload: { at: r.finishedAt!, run: r } });

/** What a jobEvents subscriber sees, as `KIND run` strings. */
function jobEvents(bus: EventBus, jobId: string | null = null) {
  const iterator = bus.subscribe(
    (event) => {
      const mapped = toJobEvent(event);
      if (!mapped || (jobId !== null && mapped.jobId !== jobId)) return undefined;
      return `${mapped.kind} ${mapped.run?.id ?? mapped.jobId}`;
    },
    1000,
    undefined,
    { jobId },
  );
  const seen: string[] = [];
  let error: unknown = null;
  const waits = new Set<() => void>();
  const done = (async () => {
    try {
      for await (const item of iterator) {
        seen.push(item);
        for (const wait of [...waits]) wait();
      }
    } catch (thrown) {
      error = thrown;
    }
    for (const wait of [...waits]) wait();
  })();
  return {
    seen,
    get error() {
      return error;
    },
    done,
    /** Resolves once `count` items arrived (or the subscription ended). */
    until: (count: number) =>
      new Promise<void>((resolve) => {
        const wait = () => {
          if (seen.length >= count || error !== null) {
            waits.delete(wait);
            resolve();
          }
        };
        waits.add(wait);
        wait();
      }),
    close: () => iterator.return?.(),
  };
}

describe('interrupting subscriptions', () => {
  it('should end them with EVENTS_INTERRUPTED after what they buffered, only those of the job, and not later ones', async () => {
    const bus = new EventBus();
    const all = bus.subscribe((e) => e.topic);
    const ofA = bus.subscribe((e) => e.topic, 1000, undefined, { jobId: 'a' });
    const ofB = bus.subscribe((e) => e.topic, 1000, undefined, { jobId: 'b' });
    bus.deliver(started(run(1, 'a')));
    bus.interrupt('test', 'a');
    const later = bus.subscribe((e) => e.topic);

    // What was buffered comes first, then the error; a waiting consumer is woken by it.
    assert.deepEqual(await all.next(), { value: 'run:started', done: false });
    await assert.rejects(all.next(), (error: unknown) => {
      assert.ok(error instanceof EventsInterruptedError);
      assert.equal(error.extensions['code'], 'EVENTS_INTERRUPTED');
      assert.match(error.message, /catch up from the runs and logEntries queries/i);
      return true;
    });
    assert.deepEqual(await all.next(), { value: undefined, done: true });
    assert.deepEqual(await ofA.next(), { value: 'run:started', done: false });
    await assert.rejects(ofA.next(), EventsInterruptedError);

    assert.deepEqual(await ofB.next(), { value: 'run:started', done: false }, 'not interrupted: it follows another job');
    const waiting = ofB.next();
    bus.interrupt('everything');
    await assert.rejects(waiting, EventsInterruptedError, 'a consumer waiting on an empty buffer is ended at once');
    await assert.rejects(later.next(), EventsInterruptedError);
    assert.equal(bus.subscriptionCount, 0);
    assert.equal(bus.subscriberCount, 0);
  });

  it('should interrupt here and tell the relay when events were lost', async () => {
    const bus = new EventBus();
    const reasons: string[] = [];
    bus.onLoss((reason) => reasons.push(reason));
    const sub = bus.subscribe((e) => e.topic);
    bus.lost('an end without its event');
    await assert.rejects(sub.next(), /an end without its event/);
    assert.deepEqual(reasons, ['an end without its event']);
  });
});

describe('per-job order across instances', () => {
  it('should hold a start that overtook the previous run’s end, deliver that end read back from its row first, and drop its late copy', async () => {
    const reads: string[][] = [];
    const bus = new EventBus({
      readRuns: async (ids) => {
        reads.push(ids);
        return ids.map((id) => run(Number(id), 'j', 'SUCCEEDED'));
      },
    });
    const raw: string[] = [];
    bus.on((event) => raw.push(event.topic));
    const sub = jobEvents(bus);
    const other = jobEvents(bus, 'k');

    bus.deliver(started(run(1, 'j')));
    // Instance B started run 2 before instance A's end of run 1 arrived here.
    bus.publish('run:started', { at: new Date(T0 + 2000), run: run(2, 'j') });
    // Other jobs are not held meanwhile, nor are listeners.
    bus.deliver(started(run(3, 'k')));
    assert.deepEqual(raw, ['run:started', 'run:started', 'run:started']);
    await sub.until(4);
    assert.deepEqual(sub.seen, ['RUN_STARTED 1', 'RUN_STARTED 3', 'RUN_SUCCEEDED 1', 'RUN_STARTED 2']);
    assert.deepEqual(reads, [['1']]);

    // A's own notification of that end arrives after all: it was delivered already.
    bus.deliver(finished(run(1, 'j', 'SUCCEEDED')));
    bus.deliver(finished(run(2, 'j', 'FAILED')));
    await sub.until(5);
    assert.deepEqual(sub.seen.slice(4), ['RUN_FAILED 2']);
    assert.deepEqual(other.seen, ['RUN_STARTED 3']);
    assert.equal(sub.error, null);
    await sub.close();
    await other.close();
  });

  it('should, without a way to read runs, hold the start and the job’s later events until that end arrives', async () => {
    const bus = new EventBus();
    const sub = jobEvents(bus);
    bus.deliver(started(run(1, 'j')));
    bus.deliver(started(run(2, 'j')));
    bus.deliver({ topic: 'job:updated', payload: { at: new Date(T0 + 2500), job: { id: 'j' } as never } });
    await sub.until(1);
    assert.deepEqual(sub.seen, ['RUN_STARTED 1']);
    bus.deliver(finished(run(1, 'j', 'SUCCEEDED')));
    await sub.until(4);
    assert.deepEqual(sub.seen, ['RUN_STARTED 1', 'RUN_SUCCEEDED 1', 'RUN_STARTED 2', 'JOB_UPDATED j']);
    await sub.close();
  });

  it('should interrupt the job’s subscriptions, not others, when that end neither arrives nor can be read', async () => {
    const bus = new EventBus({ readRuns: () => Promise.reject(new Error('database away')), orderWaitMs: 20 });
    const ofJ = jobEvents(bus, 'j');
    const all = jobEvents(bus);
    const ofK = jobEvents(bus, 'k');
    bus.deliver(started(run(1, 'j')));
    bus.deliver(started(run(2, 'j')));
    bus.deliver(started(run(3, 'k')));
    await ofJ.done;
    await all.done;
    assert.ok(ofJ.error instanceof EventsInterruptedError);
    assert.ok(all.error instanceof EventsInterruptedError);
    assert.deepEqual(ofJ.seen, ['RUN_STARTED 1']);
    // A subscription made now gets the job's events again.
    const fresh = jobEvents(bus, 'j');
    bus.deliver(finished(run(2, 'j', 'SUCCEEDED')));
    await fresh.until(1);
    assert.deepEqual(fresh.seen, ['RUN_SUCCEEDED 2']);
    assert.deepEqual(ofK.seen, ['RUN_STARTED 3']);
    assert.equal(ofK.error, null);
    await ofK.close();
    await fresh.close();
  });

  it('should interrupt the job’s subscriptions when a run’s start arrives after its end', async () => {
    const bus = new EventBus();
    const sub = jobEvents(bus, 'j');
    // Another instance cancelled the run (its job deleted) before the start from its holder arrived.
    bus.deliver(finished(run(5, 'j', 'CANCELLED')));
    bus.deliver(started(run(5, 'j')));
    await sub.done;
    assert.deepEqual(sub.seen, ['RUN_FAILED 5']);
    assert.ok(sub.error instanceof EventsInterruptedError);
  });

  it('should interrupt the job’s subscriptions when a run arrives after a later run of its job was shown', async () => {
    const bus = new EventBus();
    const sub = jobEvents(bus, 'j');
    const other = jobEvents(bus, 'k');
    // Run 7's whole life reached this instance before run 6's start (its instance's notification
    // was delayed past a period): run 6 can no longer be shown before it.
    bus.deliver(started(run(7, 'j')));
    bus.deliver(finished(run(7, 'j', 'SUCCEEDED')));
    bus.deliver(started(run(6, 'j')));
    bus.deliver(started(run(3, 'k')));
    await sub.done;
    assert.deepEqual(sub.seen, ['RUN_STARTED 7', 'RUN_SUCCEEDED 7']);
    assert.ok(sub.error instanceof EventsInterruptedError);
    await other.until(1);
    assert.deepEqual(other.seen, ['RUN_STARTED 3'], 'another job is not interrupted');
    assert.equal(other.error, null);
  });
  it('should drop the late copy of an end it read back, however many runs of the job went by meanwhile', async () => {
    const bus = new EventBus({ readRuns: async (ids) => ids.map((id) => run(Number(id), 'j', 'SUCCEEDED')) });
    const sub = jobEvents(bus);
    bus.deliver(started(run(1, 'j')));
    // Run 1's holder was stopped (SIGSTOP) between its end's commit and its notification.
    bus.deliver(started(run(2, 'j')));
    await sub.until(3);
    for (let id = 2; id <= 40; id++) {
      bus.deliver(finished(run(id, 'j', 'SUCCEEDED')));
      bus.deliver(started(run(id + 1, 'j')));
    }
    // Its notification arrives when the holder resumes, 39 runs of the job later.
    bus.deliver(finished(run(1, 'j', 'SUCCEEDED')));
    bus.deliver(finished(run(41, 'j', 'SUCCEEDED')));
    await sub.until(82);
    assert.deepEqual(sub.seen.slice(0, 3), ['RUN_STARTED 1', 'RUN_SUCCEEDED 1', 'RUN_STARTED 2']);
    assert.equal(sub.seen.filter((item) => item === 'RUN_SUCCEEDED 1').length, 1, 'run 1 ended once');
    assert.deepEqual(sub.seen.slice(-1), ['RUN_SUCCEEDED 41']);
    assert.equal(sub.error, null);
    await sub.close();
  });

  it('should interrupt the job’s subscriptions when a run’s end, not shown before, arrives after a later run started', async () => {
    const bus = new EventBus();
    const sub = jobEvents(bus, 'j');
    const other = jobEvents(bus, 'k');
    // Run 6 ended (its claim reply lost, ABANDONED unlaunched); run 7's start overtook that end.
    bus.deliver(started(run(7, 'j')));
    bus.deliver(finished(run(6, 'j', 'ABANDONED')));
    bus.deliver(started(run(3, 'k')));
    await sub.done;
    assert.deepEqual(sub.seen, ['RUN_STARTED 7']);
    assert.ok(sub.error instanceof EventsInterruptedError);
    await other.until(1);
    assert.deepEqual(other.seen, ['RUN_STARTED 3']);
    assert.equal(other.error, null);
    await other.close();
  });
  it('should hold the end of a run whose start it never saw until the end of the job’s earlier run, read back', async () => {
    const bus = new EventBus({ readRuns: async (ids) => ids.map((id) => run(Number(id), 'j', 'ABANDONED')) });
    const sub = jobEvents(bus);
    bus.deliver(started(run(1, 'j')));
    // Run 1's end was lost with a listener that reconnected; run 5's holder stopped before sending
    // its start, and this instance ended run 5 (ABANDONED) itself.
    bus.publish('run:finished', { at: new Date(T0 + 5000), run: run(5, 'j', 'ABANDONED') });
    await sub.until(3);
    assert.deepEqual(sub.seen, ['RUN_STARTED 1', 'RUN_FAILED 1', 'RUN_FAILED 5']);
    assert.equal(sub.error, null);
    await sub.close();
  });

  it('should start the order afresh once every subscription was interrupted', async () => {
    const bus = new EventBus();
    const before = jobEvents(bus);
    bus.deliver(started(run(1, 'j')));
    await before.until(1);
    // The listener reconnected: run 1's end may have been sent while it was away.
    bus.interrupt('the listener reconnected');
    await before.done;
    const after = jobEvents(bus);
    bus.deliver(started(run(2, 'j')));
    bus.deliver(finished(run(2, 'j', 'SUCCEEDED')));
    await after.until(2);
    assert.deepEqual(after.seen, ['RUN_STARTED 2', 'RUN_SUCCEEDED 2'], 'not held waiting for an end that may never come');
    assert.equal(after.error, null);
    await after.close();
  });
});
