// SPEC §6: an event is never lost silently. Subscribers receive every event, or their
// subscription ends with EVENTS_INTERRUPTED — when an instance's LISTEN connection drops and
// comes back, or when a NOTIFY fails (a run's end committed with its reply lost: run-end-events).
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, describe, it } from 'node:test';
import { type Client, createClient } from 'graphql-ws';
import postgres from 'postgres';
import WebSocket from 'ws';
import { OffsetClock } from '../src/clock.ts';
import { connect, type Sql } from '../src/db/client.ts';
import type { JobRow } from '../src/db/rows.ts';
import { EventBus, EventsInterruptedError } from '../src/events/bus.ts';
import { PgEventRelay } from '../src/events/pg-relay.ts';
import type { TopicEvent } from '../src/events/topics.ts';
import { encode } from '../src/events/wire.ts';
import { createTestDatabase } from './helpers/db.ts';
import { silentLog, T0 } from './helpers/harness.ts';
import { operationsDir, testInstance } from './helpers/instance.ts';
import { sseFrames } from './helpers/live.ts';
import { gql, waitFor } from './helpers/process.ts';

const url = await createTestDatabase();
const admin = postgres(url, { max: 2, onnotice: () => {}, transform: postgres.camel });
after(() => admin.end());

/** Waits up to 15 s for `check`, then fails saying what it waited for (`what` describes the state then). */
const until = (check: () => boolean, what: () => string) => waitFor(check, what, { timeoutMs: 15_000 });

/** A bus subscription that records what it received and how it ended. */
function record(bus: EventBus) {
  const seen: TopicEvent[] = [];
  const state = { seen, error: null as unknown, ended: false };
  const iterator = bus.subscribe((event) => event, 10_000);
  void (async () => {
    try {
      for await (const event of iterator) {
        seen.push(event);
      }
    } catch (error) {
      state.error = error;
    }
    state.ended = true;
  })();
  return {
    state,
    close: () => iterator.return?.(),
    until: (check: () => boolean, what: string) => until(check, () => `${what}; received ${JSON.stringify(seen.map((e) => e.topic))}`),
  };
}

const updated = (id: string): TopicEvent => ({ topic: 'job:updated', payload: { at: new Date(T0), job: { id } as JobRow } });
const jobIds = (events: TopicEvent[]) => events.map((e) => ('job' in e.payload ? e.payload.job.id : e.topic));

/**
 * Two instances' relays on the test database, each with a bus of its own. `notify` decides
 * what happens to each NOTIFY of A: 'ok', 'fail' (nothing sent) or 'lose-reply' (sent, then an
 * error as if the reply was lost).
 */
async function relayPair(notify: (texts: string[]) => 'ok' | 'fail' | 'lose-reply', giveUpMs?: number) {
  const dbA = connect(url, { max: 2 });
  const dbB = connect(url, { max: 2 });
  const attempts: string[][] = [];
  const sqlA = new Proxy(dbA.sql, {
    apply(target, thisArg, args: [TemplateStringsArray, ...unknown[]]) {
      const [strings, ...values] = args;
      if (Array.isArray(strings) && strings.join('').includes('pg_notify')) {
        // The payloads of one NOTIFY statement, sent as one JSON array.
        const texts = JSON.parse(values[1] as string) as string[];
        attempts.push(texts);
        const decision = notify(texts);
        if (decision === 'fail') return Promise.reject(new Error('injected: NOTIFY failed'));
        if (decision === 'lose-reply') {
          return Promise.resolve(Reflect.apply(target, thisArg, args)).then(() => {
            throw new Error('injected: the reply of a NOTIFY that went out was lost');
          });
        }
      }
      return Reflect.apply(target, thisArg, args);
    },
  }) as Sql;
  const a = { bus: new EventBus(), origin: randomUUID() };
  const b = { bus: new EventBus(), origin: randomUUID() };
  const clock = new OffsetClock();
  const relayA = new PgEventRelay({ sql: sqlA, clock, bus: a.bus, log: silentLog, origin: a.origin, ...(giveUpMs ? { giveUpMs } : {}) });
  const relayB = new PgEventRelay({ sql: dbB.sql, clock, bus: b.bus, log: silentLog, origin: b.origin });
  await relayA.start();
  await relayB.start();
  after(async () => {
    await relayA.stop();
    await relayB.stop();
    await dbA.close();
    await dbB.close();
  });
  return { a, b, attempts };
}

describe('a NOTIFY that fails', () => {
  it('should be retried, and a batch sent twice (its reply lost) be delivered once, in order, with no interruption', async () => {
    let call = 0;
    const { a, b, attempts } = await relayPair(() => (++call === 1 ? 'fail' : call === 2 ? 'lose-reply' : 'ok'), 60_000);
    const subscriber = record(b.bus);
    for (const id of ['e1', 'e2', 'e3']) a.bus.publish('job:updated', updated(id).payload as never);
    await subscriber.until(() => subscriber.state.seen.length >= 3, 'three events');
    a.bus.publish('job:updated', updated('e4').payload as never);
    await subscriber.until(() => jobIds(subscriber.state.seen).includes('e4'), 'the fourth event');
    assert.deepEqual(jobIds(subscriber.state.seen), ['e1', 'e2', 'e3', 'e4']);
    assert.equal(subscriber.state.error, null);
    // e1 went out failed, then with a reply lost, then again (with e4, if it was published by then).
    const withE1 = attempts.filter((texts) => texts.some((text) => text.includes('"e1"')));
    assert.ok(withE1.length >= 3, 'the failed batch and the one whose reply was lost were sent again');
    await subscriber.close();
  });

  it('should, when it keeps failing, be given up and its loss announced: subscribers elsewhere are interrupted, later events flow', async () => {
    // Every batch with the event "doomed" fails; the loss notice that replaces it goes through.
    const { a, b } = await relayPair((texts) => (texts.some((t) => t.includes('"doomed"')) ? 'fail' : 'ok'), 100);
    const local = record(a.bus);
    const remote = record(b.bus);
    a.bus.publish('job:updated', updated('before').payload as never);
    await remote.until(() => remote.state.seen.length >= 1, 'the first event');
    a.bus.publish('job:updated', updated('doomed').payload as never);
    await remote.until(() => remote.state.ended, 'the subscription to be interrupted');
    assert.deepEqual(jobIds(remote.state.seen), ['before']);
    assert.ok(remote.state.error instanceof EventsInterruptedError, String(remote.state.error));
    assert.equal((remote.state.error as EventsInterruptedError).extensions['code'], 'EVENTS_INTERRUPTED');

    const again = record(b.bus);
    a.bus.publish('job:updated', updated('after').payload as never);
    await again.until(() => again.state.seen.length >= 1, 'the event after the loss');
    assert.deepEqual(jobIds(again.state.seen), ['after']);
    // Locally, nothing was lost.
    assert.deepEqual(jobIds(local.state.seen), ['before', 'doomed', 'after']);
    assert.equal(local.state.error, null);
    await again.close();
    await local.close();
  });

  it('should interrupt subscribers when an instance’s notifications skip a number, and drop a number seen twice', async () => {
    const { b } = await relayPair(() => 'ok');
    const subscriber = record(b.bus);
    const origin = randomUUID();
    const send = (id: string, seq: number) => admin`select pg_notify('server_jobs_events', ${encode(origin, updated(id), seq)})`;
    await send('n1', 1);
    await send('n1', 1);
    await send('n2', 2);
    await subscriber.until(() => subscriber.state.seen.length >= 2, 'two events');
    await send('n4', 4);
    await subscriber.until(() => subscriber.state.ended, 'the interruption');
    assert.deepEqual(jobIds(subscriber.state.seen), ['n1', 'n2']);
    assert.ok(subscriber.state.error instanceof EventsInterruptedError);
  });
});

// ---------------------------------------------------------------------------------------------
// The acceptance test: two real instances; B's LISTEN connection is cut again and again while
// both run jobs. Every subscriber either receives every run's RUN_STARTED and end event from
// the moment it began, or ends with EVENTS_INTERRUPTED.

const ops = operationsDir();
const instance = (id: string) => testInstance({ DATABASE_URL: url, INSTANCE_ID: id, SERVER_OPERATIONS_DIR: ops });

interface Seen {
  kind: string;
  jobId: string;
  run: { id: string; status: string } | null;
}
interface ErrorJson {
  message: string;
  extensions?: { code?: string };
}

/** One client subscription, as the client saw it. */
interface Watched {
  name: string;
  events: Seen[];
  /** The GraphQL error it ended with, if any. */
  error: ErrorJson | null;
  /** The transport-level failure, if any (none expected). */
  failure: unknown;
  completed: boolean;
  /** Runs with a greater id began after it was receiving: it must see all of them, or be interrupted. */
  after: number | null;
  close(): void;
}

const QUERY = (jobId: string | null) => `subscription { jobEvents${jobId ? `(jobId: "${jobId}")` : ''} { kind jobId run { id status } } }`;

function watchWs(client: Client, name: string, jobId: string | null): Watched {
  const watched: Watched = { name, events: [], error: null, failure: null, completed: false, after: null, close: () => {} };
  watched.close = client.subscribe<{ jobEvents: Seen }>(
    { query: QUERY(jobId) },
    {
      next: (result) => {
        if (result.errors) watched.error = result.errors[0] as unknown as ErrorJson;
        else if (result.data) watched.events.push(result.data.jobEvents);
      },
      // An interruption comes as graphql-ws's error message: its payload, the GraphQL errors.
      error: (error) => {
        if (Array.isArray(error)) {
          watched.error = error[0] as ErrorJson;
          watched.completed = true;
        } else {
          watched.failure = error;
        }
      },
      complete: () => {
        watched.completed = true;
      },
    },
  );
  return watched;
}

function watchSse(port: number, name: string, jobId: string | null): Watched {
  const abort = new AbortController();
  const watched: Watched = { name, events: [], error: null, failure: null, completed: false, after: null, close: () => abort.abort() };
  void (async () => {
    try {
      const response = await fetch(`http://127.0.0.1:${port}/graphql`, {
        method: 'POST',
        headers: { accept: 'text/event-stream', 'content-type': 'application/json' },
        body: JSON.stringify({ query: QUERY(jobId) }),
        signal: abort.signal,
      });
      for await (const frame of sseFrames(response.body!)) {
        if (frame.event === 'complete') {
          watched.completed = true;
        } else if (frame.event === 'next') {
          const payload = JSON.parse(frame.data) as { data?: { jobEvents: Seen }; errors?: ErrorJson[] };
          if (payload.errors) watched.error = payload.errors[0]!;
          else if (payload.data) watched.events.push(payload.data.jobEvents);
        }
      }
    } catch (error) {
      if (!abort.signal.aborted) watched.failure = error;
    }
  })();
  return watched;
}

const isEnd = (kind: string) => kind === 'RUN_SUCCEEDED' || kind === 'RUN_FAILED';

/** What a subscription received makes sense: each run's start at most once and before its end, each end once. */
function assertWellFormed(w: Watched): void {
  const phase = new Map<string, string>();
  for (const event of w.events) {
    if (!event.run) continue;
    const before = phase.get(event.run.id);
    if (event.kind === 'RUN_STARTED') assert.equal(before, undefined, `${w.name}: run ${event.run.id} started twice or after its end`);
    else if (isEnd(event.kind)) assert.ok(before !== 'ended', `${w.name}: run ${event.run.id} ended twice`);
    phase.set(event.run.id, event.kind === 'RUN_STARTED' ? 'started' : 'ended');
  }
}

describe('an instance whose LISTEN connection is cut again and again', () => {
  it('should give its subscribers every event, or end them with EVENTS_INTERRUPTED: never a silent gap', { timeout: 180_000 }, async () => {
    const a = await instance('A');
    const b = await instance('B');
    const clients: Client[] = [];
    const wsClient = (port: number) => {
      const client = createClient({ url: `ws://127.0.0.1:${port}/graphql`, webSocketImpl: WebSocket, retryAttempts: 0 });
      clients.push(client);
      return client;
    };
    after(() => Promise.all(clients.map((c) => c.dispose())));
    const wsA = wsClient(a.port);
    const wsB = wsClient(b.port);

    const JOBS = 10;
    const creates = Array.from(
      { length: JOBS },
      (_, i) => `j${i}: createJob(input: {id: "d${i}", name: "d", externalCall: "ServerOperationConnector:Noop", period: "0:0:1"}) { id }`,
    );
    await gql(a.port, `mutation { ${creates.join('\n')} }`);

    const all: Watched[] = [];
    /** Opens subscriptions and notes, once each is receiving, the runs it must see whole. */
    const open = async (make: () => Watched[]): Promise<Watched[]> => {
      const made = make();
      all.push(...made);
      await until(
        () => made.every((w) => w.events.length > 0 || w.error !== null),
        () => 'the new subscriptions to receive events',
      );
      // Every run claimed after this query began starts after these subscriptions were receiving.
      const [row] = await admin<{ max: string }[]>`select coalesce(max(id), 0)::text as max from job_runs`;
      for (const w of made) w.after = Number(row!.max);
      return made;
    };
    const watchA = await open(() => [watchWs(wsA, 'A ws', null)]);

    const CUTS = 5;
    let round = 0;
    for (; round < CUTS; round++) {
      const watched = await open(() => [
        watchWs(wsB, `B ws #${round}`, null),
        watchSse(b.port, `B sse #${round}`, null),
        watchWs(wsB, `B ws d0 #${round}`, 'd0'),
      ]);
      await until(
        () => watched.every((w) => w.events.length >= 6),
        () => 'some events on every subscription',
      );
      const listens = b.relay.listens;
      const cut = await admin`select pg_terminate_backend(pid) from pg_stat_activity
                              where datname = current_database() and application_name = 'server-jobs B' and query ilike 'listen%'`;
      assert.equal(cut.length, 1, 'B’s LISTEN connection was found and cut');
      // B cannot vouch for what was sent while it was away: every subscription open there ends.
      await until(
        () => watched.every((w) => w.completed || w.failure !== null),
        () =>
          `the subscriptions on B to end after the cut: ${watched.map((w) => `${w.name}: ${w.completed ? 'ended' : 'open'}`).join(', ')}`,
      );
      assert.ok(b.relay.listens > listens, 'B listens again');
      for (const w of watched) {
        assert.equal(w.failure, null, `${w.name}: ${String(w.failure)}`);
        assert.equal(w.error?.extensions?.code, 'EVENTS_INTERRUPTED', `${w.name} ended with ${JSON.stringify(w.error)}`);
        assert.match(w.error!.message, /catch up from the runs and logEntries queries/i);
      }
    }

    // Subscriptions made after the last cut, left alone until the end.
    const last = await open(() => [
      watchWs(wsB, 'B ws (last)', null),
      watchSse(b.port, 'B sse (last)', null),
      watchWs(wsB, 'B ws d0 (last)', 'd0'),
    ]);
    await until(
      () => last.every((w) => w.events.filter((e) => isEnd(e.kind)).length >= 3),
      () => 'more runs on the last subscriptions',
    );

    await gql(a.port, `mutation { ${Array.from({ length: JOBS }, (_, i) => `p${i}: pauseJob(id: "d${i}") { id }`).join('\n')} }`);
    // Nothing is claimed after the pause: the runs now in the database are all there will be.
    const runs = await admin<{ id: string; jobId: string }[]>`select id::text, job_id from job_runs where status <> 'SKIPPED' order by id`;
    const instances = new Set((await admin<{ instance: string }[]>`select distinct instance from job_runs`).map((r) => r.instance));
    assert.ok(instances.has('A'), 'A ran jobs');

    // Every subscription not interrupted sees every run that began after it was receiving, whole.
    const missing = (w: Watched) => {
      const phases = new Map<string, Set<string>>();
      for (const e of w.events) if (e.run) phases.set(e.run.id, (phases.get(e.run.id) ?? new Set()).add(isEnd(e.kind) ? 'end' : 'start'));
      const jobFilter = w.name.includes('d0') ? 'd0' : null;
      return runs
        .filter((r) => Number(r.id) > w.after! && (jobFilter === null || r.jobId === jobFilter))
        .filter((r) => !(phases.get(r.id)?.has('start') && phases.get(r.id)?.has('end')))
        .map((r) => r.id);
    };
    const uninterrupted = all.filter((w) => w.error === null);
    assert.deepEqual(
      uninterrupted.map((w) => w.name).sort(),
      [...last, ...watchA].map((w) => w.name).sort(),
      'only B’s cut subscriptions were interrupted',
    );
    await until(
      () => uninterrupted.every((w) => missing(w).length === 0),
      () => `every run on every uninterrupted subscription; missing ${JSON.stringify(uninterrupted.map((w) => [w.name, missing(w)]))}`,
    );

    for (const w of all) {
      assertWellFormed(w);
      // Per job, runs arrive in the order they started, each end before the next start.
      const byJob = new Map<string, Seen[]>();
      for (const e of w.events) if (e.run) byJob.set(e.jobId, [...(byJob.get(e.jobId) ?? []), e]);
      for (const [jobId, events] of byJob) {
        const starts = events.filter((e) => e.kind === 'RUN_STARTED').map((e) => Number(e.run!.id));
        assert.deepEqual(
          starts,
          [...starts].sort((x, y) => x - y),
          `${w.name}: runs of ${jobId} in order`,
        );
        for (let i = 1; i < events.length; i++) {
          if (events[i]!.kind === 'RUN_STARTED')
            assert.ok(isEnd(events[i - 1]!.kind), `${w.name}: a run of ${jobId} started before the previous one ended`);
        }
      }
      if (w.error === null) assert.equal(w.failure, null, `${w.name}: ${String(w.failure)}`);
    }
    assert.equal(all.filter((w) => w.error !== null).length, CUTS * 3);
    for (const w of all) w.close();
  });
});
