import assert from 'node:assert/strict';
import { after, beforeEach, describe, it } from 'node:test';
import { type Client, createClient } from 'graphql-ws';
import WebSocket from 'ws';
import type { JobRow } from '../src/db/rows.ts';
import { EventBus, SubscriberOverflowError } from '../src/events/bus.ts';
import type { TopicEvent } from '../src/events/topics.ts';
import { appFor, gqlOk, type Json } from './helpers/api.ts';
import { gate } from './helpers/connector.ts';
import { testDatabase } from './helpers/db.ts';
import { harness, type Harness, T0, tickAndSettle } from './helpers/harness.ts';
import { type Collected, type SseFrame, sseFrames, subscribeWs } from './helpers/live.ts';
import { waitFor } from './helpers/process.ts';

const { sql } = await testDatabase();
beforeEach(() => sql`truncate jobs, job_runs, log_entries`);

interface JobEventData {
  kind: string;
  at: string;
  jobId: string;
  job: { id: string } | null;
  run: { id: string; status: string; trigger: string; jobId: string } | null;
}

const JOB_EVENT_FIELDS = `kind at jobId job { id } run { id status trigger jobId }`;
const CREATE = `mutation($input: CreateJobInput!) { createJob(input: $input) { id } }`;
const UPDATE = `mutation($id: ID!, $input: UpdateJobInput!) { updateJob(id: $id, input: $input) { id } }`;
const DELETE = `mutation($id: ID!) { deleteJob(id: $id) }`;

/** The app on a real port and a graphql-ws client on it; both closed when the file ends. */
async function liveApp(h: Harness): Promise<{ app: ReturnType<typeof appFor>; client: Client }> {
  const app = appFor(h);
  const port = await app.listen(0, '127.0.0.1');
  const client = createClient({ url: `ws://127.0.0.1:${port}/graphql`, webSocketImpl: WebSocket, retryAttempts: 0 });
  after(async () => {
    await client.dispose();
    await app.close();
  });
  return { app, client };
}

/** Waits until `count` more bus listeners exist: the server has set up the subscriptions. */
const subscribed = (h: Harness, base: number, count: number) =>
  waitFor(() => h.bus.subscriberCount >= base + count, `${count} subscriptions to reach the bus`);

const eventsOf = (items: { jobEvents: JobEventData }[], jobId: string) => items.map((i) => i.jobEvents).filter((e) => e.jobId === jobId);

describe('jobEvents over graphql-ws', () => {
  it(
    'should deliver each job event once, in order per job, with run and job resolved, and filter by jobId',
    { timeout: 30_000 },
    async () => {
      const h = harness(sql);
      const hold = gate();
      h.connector.define('ok', async () => {});
      h.connector.define('boom', async () => {
        throw new Error('remote said no');
      });
      h.connector.define('hold', () => hold.promise);
      const { app, client } = await liveApp(h);

      const base = h.bus.subscriberCount;
      const all: Collected<{ jobEvents: JobEventData }> = subscribeWs(client, `subscription { jobEvents { ${JOB_EVENT_FIELDS} } }`);
      const onlyA: Collected<{ jobEvents: JobEventData }> = subscribeWs(
        client,
        `subscription($jobId: ID) { jobEvents(jobId: $jobId) { ${JOB_EVENT_FIELDS} } }`,
        { jobId: 'a' },
      );
      await subscribed(h, base, 2);

      try {
        await gqlOk(app, CREATE, { input: { id: 'a', name: 'A', externalCall: 'Test:ok', period: '0:0:1', timeoutSeconds: 60 } });
        await gqlOk(app, CREATE, { input: { id: 'b', name: 'B', externalCall: 'Test:ok', period: '0:0:1' } });
        await all.until(2, 'JOB_CREATED of a and b');

        // Both succeed.
        h.clock.set(T0 + 1000);
        await tickAndSettle(h);
        await all.until(6, 'the first runs');

        // a fails.
        await gqlOk(app, UPDATE, { id: 'a', input: { externalCall: 'Test:boom' } });
        h.clock.set(T0 + 2000);
        await tickAndSettle(h);
        await all.until(11, 'the second runs');

        // a is held open, so its next due time is skipped.
        await gqlOk(app, UPDATE, { id: 'a', input: { externalCall: 'Test:hold' } });
        h.clock.set(T0 + 3000);
        const third = await h.scheduler.tick();
        const held = third.find((s) => s.run.jobId === 'a')!;
        await Promise.all(third.filter((s) => s !== held).map((s) => s.done));
        h.clock.set(T0 + 4000);
        await tickAndSettle(h);
        hold.open();
        await held.done;
        await all.until(19, 'the held run, the skipped due time and its end');

        await gqlOk(app, DELETE, { id: 'a' });
        // A sentinel: once the re-created job's event is in, any duplicate of an earlier one would be too.
        await gqlOk(app, CREATE, { input: { id: 'a', name: 'A again', externalCall: 'Test:ok', period: '1:0:0' } });
        await all.until(21, 'the deletion and the sentinel');
        await onlyA.until((xs) => xs.length === eventsOf(all.items, 'a').length, 'the same events of a');
      } finally {
        hold.open();
      }

      const kinds = (events: JobEventData[]) => events.map((e) => e.kind);
      const a = eventsOf(all.items, 'a');
      assert.deepEqual(kinds(a), [
        'JOB_CREATED',
        'RUN_STARTED',
        'RUN_SUCCEEDED',
        'JOB_UPDATED',
        'RUN_STARTED',
        'RUN_FAILED',
        'JOB_UPDATED',
        'RUN_STARTED',
        'RUN_SKIPPED',
        'RUN_SUCCEEDED',
        'JOB_DELETED',
        'JOB_CREATED',
      ]);
      const b = eventsOf(all.items, 'b');
      assert.deepEqual(kinds(b), ['JOB_CREATED', ...Array(4).fill(['RUN_STARTED', 'RUN_SUCCEEDED']).flat()]);
      assert.equal(all.items.length, a.length + b.length, 'no events of other jobs, none twice');

      // The jobId filter: exactly a's events, in the same order, nothing of b.
      assert.deepEqual(
        onlyA.items.map((i) => i.jobEvents),
        a,
      );

      // Fields resolved: each run event carries its run with the matching status; job events their job.
      const statusOf: Record<string, string> = {
        RUN_STARTED: 'RUNNING',
        RUN_SUCCEEDED: 'SUCCEEDED',
        RUN_FAILED: 'FAILED',
        RUN_SKIPPED: 'SKIPPED',
      };
      for (const event of [...a, ...b]) {
        if (event.kind.startsWith('RUN_')) {
          assert.ok(event.run, `${event.kind} has its run`);
          assert.equal(event.run.status, statusOf[event.kind]);
          assert.equal(event.run.jobId, event.jobId);
          assert.equal(event.run.trigger, 'SCHEDULE');
          assert.deepEqual(event.job, { id: event.jobId });
        } else {
          assert.equal(event.run, null);
          assert.deepEqual(event.job, event.kind === 'JOB_DELETED' ? null : { id: event.jobId });
        }
        assert.match(event.at, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
      }

      // Each started run ends once, after it starts; the skipped due time never starts.
      for (const events of [a, b]) {
        const started = events.filter((e) => e.kind === 'RUN_STARTED').map((e) => e.run!.id);
        const ended = events.filter((e) => e.kind === 'RUN_SUCCEEDED' || e.kind === 'RUN_FAILED').map((e) => e.run!.id);
        assert.deepEqual([...ended].sort(), [...started].sort());
        assert.equal(new Set(started).size, started.length);
        for (const id of started) {
          const startAt = events.findIndex((e) => e.kind === 'RUN_STARTED' && e.run!.id === id);
          const endAt = events.findIndex((e) => e.kind !== 'RUN_STARTED' && e.run?.id === id);
          assert.ok(startAt < endAt, `run ${id} started before it ended`);
        }
      }
      const skipped = a.find((e) => e.kind === 'RUN_SKIPPED')!.run!.id;
      assert.equal(a.filter((e) => e.run?.id === skipped).length, 1, 'a skipped due time has one event and no RUN_STARTED');

      // The events name the runs the database holds.
      const rows = await sql<{ id: string; status: string }[]>`select id, status from job_runs where job_id = 'a' order by id`;
      assert.deepEqual(
        rows.map((r) => [r.id, r.status]),
        a
          .filter((e) => e.kind === 'RUN_SKIPPED' || e.kind === 'RUN_SUCCEEDED' || e.kind === 'RUN_FAILED')
          .map((e) => [e.run!.id, e.run!.status])
          .sort((x, y) => Number(x[0]) - Number(y[0])),
      );

      all.dispose();
      onlyA.dispose();
      await waitFor(() => h.bus.subscriberCount === base, 'the disposed subscriptions to leave the bus');
    },
  );

  it('should deliver logEntryAdded(jobId, minLevel: WARNING) entries of WARNING and ERROR only', { timeout: 30_000 }, async () => {
    const h = harness(sql);
    h.connector.define('chatty', async (ctx) => {
      for (const level of ['DEBUG', 'INFO', 'WARNING', 'ERROR'] as const) await ctx.log(level, `${level.toLowerCase()} from the operation`);
    });
    h.connector.define('boom', async () => {
      throw new Error('remote said no');
    });
    const { app, client } = await liveApp(h);

    const base = h.bus.subscriberCount;
    type Entry = { logEntryAdded: { level: string; message: string; jobId: string | null; runId: string | null } };
    const warnings: Collected<Entry> = subscribeWs(
      client,
      `subscription { logEntryAdded(jobId: "a", minLevel: WARNING) { level message jobId runId } }`,
    );
    const everything: Collected<Entry> = subscribeWs(client, `subscription { logEntryAdded(jobId: "a") { level message jobId runId } }`);
    await subscribed(h, base, 2);

    await gqlOk(app, CREATE, { input: { id: 'a', name: 'A', externalCall: 'Test:chatty', period: '0:0:1' } });
    await gqlOk(app, CREATE, { input: { id: 'b', name: 'B', externalCall: 'Test:boom', period: '0:0:1' } });
    h.clock.set(T0 + 1000);
    await tickAndSettle(h);
    await gqlOk(app, UPDATE, { id: 'a', input: { externalCall: 'Test:boom' } });
    h.clock.set(T0 + 2000);
    await tickAndSettle(h);
    // The last entry of a: the warning about a call target that does not exist.
    await gqlOk(app, UPDATE, { id: 'a', input: { externalCall: 'Test:missing' } });

    const isLast = (xs: Entry[]) => xs.some((x) => /does not exist/.test(x.logEntryAdded.message));
    await warnings.until(isLast, 'the warning about the missing operation');
    await everything.until(isLast, 'the warning about the missing operation');

    const seen = (c: Collected<Entry>) =>
      c.items.map((i) => [i.logEntryAdded.level, i.logEntryAdded.message.replace(/^(.{0,40}).*$/s, '$1')]);
    assert.deepEqual(
      warnings.items.map((i) => i.logEntryAdded.level),
      ['WARNING', 'ERROR', 'ERROR', 'WARNING'],
      `got ${JSON.stringify(seen(warnings))}`,
    );
    assert.match(warnings.items[0]!.logEntryAdded.message, /warning from the operation/);
    assert.match(warnings.items[1]!.logEntryAdded.message, /error from the operation/);
    assert.match(warnings.items[2]!.logEntryAdded.message, /failed calling Test:boom: remote said no/);
    assert.ok(
      warnings.items.every((i) => i.logEntryAdded.jobId === 'a'),
      'entries of b are filtered out',
    );
    assert.ok(warnings.items.slice(0, 3).every((i) => i.logEntryAdded.runId !== null));

    // Without minLevel the same job's DEBUG and INFO entries do arrive: the filter is what keeps them out.
    const levels = everything.items.map((i) => i.logEntryAdded.level);
    assert.ok(levels.includes('DEBUG') && levels.includes('INFO'), `got ${JSON.stringify(seen(everything))}`);
    assert.deepEqual(
      everything.items.filter((i) => ['WARNING', 'ERROR'].includes(i.logEntryAdded.level)),
      warnings.items,
    );
    warnings.dispose();
    everything.dispose();
  });

  it('should reject a subscription with an invalid jobId with BAD_USER_INPUT', { timeout: 30_000 }, async () => {
    const h = harness(sql);
    const { client } = await liveApp(h);
    const bad = subscribeWs(client, `subscription { jobEvents(jobId: "not valid") { kind } }`);
    await assert.rejects(bad.until(1), /BAD_USER_INPUT/);
    const unknown = subscribeWs(client, `subscription { jobEvents { nope } }`);
    await assert.rejects(unknown.until(1), /GRAPHQL_VALIDATION_FAILED/);
  });
});

describe('jobEvents over SSE', () => {
  it('should stream RUN_STARTED then RUN_SUCCEEDED, and leave no bus subscriber after an abort', { timeout: 30_000 }, async () => {
    const h = harness(sql);
    h.connector.define('ok', async () => {});
    const app = appFor(h);
    await gqlOk(app, CREATE, { input: { id: 'sse', name: 'SSE', externalCall: 'Test:ok', period: '0:0:1' } });

    const base = h.bus.subscriberCount;
    const abort = new AbortController();
    const response = await app.yoga.fetch('http://x/graphql', {
      method: 'POST',
      headers: { accept: 'text/event-stream', 'content-type': 'application/json' },
      body: JSON.stringify({ query: `subscription { jobEvents(jobId: "sse") { kind run { id status } } }` }),
      signal: abort.signal,
    });
    assert.equal(response.status, 200);
    assert.match(response.headers.get('content-type') ?? '', /text\/event-stream/);
    await subscribed(h, base, 1);

    h.clock.set(T0 + 1000);
    const [run] = await tickAndSettle(h);
    const received: Json[] = [];
    for await (const frame of sseFrames(response.body!)) {
      assert.equal(frame.event, 'next', `unexpected frame ${JSON.stringify(frame)}`);
      received.push(JSON.parse(frame.data));
      if (received.length === 2) break;
    }
    assert.deepEqual(received, [
      { data: { jobEvents: { kind: 'RUN_STARTED', run: { id: run!.run.id, status: 'RUNNING' } } } },
      { data: { jobEvents: { kind: 'RUN_SUCCEEDED', run: { id: run!.run.id, status: 'SUCCEEDED' } } } },
    ]);

    abort.abort();
    await waitFor(() => h.bus.subscriberCount === base, 'the aborted SSE subscription to leave the bus');
  });

  it('should end with `event: complete` when the subscriber falls too far behind', { timeout: 30_000 }, async () => {
    const h = harness(sql);
    const app = appFor(h);
    const base = h.bus.subscriberCount;
    const response = await app.yoga.fetch('http://x/graphql', {
      method: 'POST',
      headers: { accept: 'text/event-stream', 'content-type': 'application/json' },
      body: JSON.stringify({ query: `subscription { jobEvents { kind jobId } }` }),
    });
    await subscribed(h, base, 1);
    // Nobody reads the stream while far more events are published than a subscriber may buffer.
    const other = h.bus.subscribe((e) => e, 100_000);
    const job = { id: 'flood' } as JobRow;
    for (let i = 0; i < 5000; i++) h.bus.publish('job:updated', { at: new Date(T0 + i), job });
    await waitFor(() => h.bus.subscriberCount === base + 1, 'the overflowing SSE subscription to be cut off');

    // The other subscriber got every event.
    let count = 0;
    for (let i = 0; i < 5000; i++) {
      const next = await other.next();
      assert.equal((next.value as TopicEvent).topic, 'job:updated');
      count++;
    }
    assert.equal(count, 5000);
    await other.return?.();

    const frames: SseFrame[] = [];
    for await (const frame of sseFrames(response.body!)) frames.push(frame);
    // The stream says that it ended and ends: an error, then `complete`; no backlog is kept for it.
    assert.deepEqual(
      frames.map((f) => f.event),
      ['next', 'complete'],
    );
    const ending = JSON.parse(frames[0]!.data) as { data?: unknown; errors?: { message: string; extensions?: { code?: string } }[] };
    assert.equal(ending.data, undefined);
    assert.equal(ending.errors?.length, 1);
    // The client is told why and what to do, not "Unexpected error".
    assert.equal(ending.errors?.[0]?.extensions?.code, 'SUBSCRIBER_TOO_SLOW');
    assert.match(ending.errors![0]!.message, /catch up from the runs and logEntries queries/);
  });
});

describe('a slow subscriber', () => {
  const created = (i: number): TopicEvent => ({
    topic: 'job:created',
    payload: { at: new Date(T0 + i), job: { id: `job-${i}` } as JobRow },
  });

  it('should hold up to `limit` unread events and deliver them in order', async () => {
    const bus = new EventBus();
    const slow = bus.subscribe((e) => (e.topic === 'job:created' ? e.payload.job.id : undefined), 5);
    for (let i = 0; i < 5; i++) bus.deliver(created(i));
    assert.equal(bus.subscriberCount, 1, 'not cut off at exactly the limit');
    const got = [];
    for (let i = 0; i < 5; i++) got.push((await slow.next()).value);
    assert.deepEqual(got, ['job-0', 'job-1', 'job-2', 'job-3', 'job-4']);
    await slow.return?.();
    assert.equal(bus.subscriberCount, 0);
  });

  it('should overflow at `limit` and end with an error, while publishing goes on and another subscriber receives everything', async () => {
    const bus = new EventBus();
    const slow = bus.subscribe((e) => e, 5);
    const fast = bus.subscribe((e) => e, 10_000);
    assert.equal(bus.subscriberCount, 2);
    const fastReceived: TopicEvent[] = [];
    const draining = (async () => {
      for await (const event of fast) {
        fastReceived.push(event);
        if (fastReceived.length === 3000) return;
      }
    })();

    for (let i = 0; i < 6; i++) bus.deliver(created(i));
    assert.equal(bus.subscriberCount, 1, 'the slow subscriber is cut off on the event past its limit');
    const started = performance.now();
    for (let i = 6; i < 3000; i++) bus.publish('job:created', created(i).payload as never);
    // Publishing is synchronous and never waits on a subscriber (a loose bound: no timing assertion beyond "did not block").
    assert.ok(performance.now() - started < 5000);

    await draining;
    assert.deepEqual(
      fastReceived.map((e) => (e.topic === 'job:created' ? e.payload.job.id : null)),
      Array.from({ length: 3000 }, (_, i) => `job-${i}`),
    );
    await assert.rejects(slow.next(), SubscriberOverflowError);
    assert.deepEqual(await slow.next(), { value: undefined, done: true }, 'after the error it is done');
    assert.equal(bus.subscriberCount, 0);
  });
});
