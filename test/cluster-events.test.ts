import assert from 'node:assert/strict';
import { isDeepStrictEqual } from 'node:util';
import { after, describe, it } from 'node:test';
import { createClient } from 'graphql-ws';
import postgres from 'postgres';
import WebSocket from 'ws';
import { createTestDatabase } from './helpers/db.ts';
import { operationsDir, testInstance } from './helpers/instance.ts';
import { sseFrames } from './helpers/live.ts';
import { gql, waitFor } from './helpers/process.ts';

const url = await createTestDatabase();
const ops = operationsDir();
const instance = (id: string) => testInstance({ DATABASE_URL: url, INSTANCE_ID: id, SERVER_OPERATIONS_DIR: ops });

interface Seen {
  kind: string;
  jobId: string;
  run: { id: string; status: string; instance: string } | null;
}

describe('events across instances', () => {
  it('should deliver every run of instance A to a graphql-ws subscriber on instance B, in order', async () => {
    const a = await instance('A');
    const b = await instance('B');
    // B only serves subscribers here: every run is executed by A.
    await b.scheduler.stop(0);

    const events: Seen[] = [];
    // How each subscription ended early, if it did: an error payload (EVENTS_INTERRUPTED, say) or a complete.
    const subscriptionErrors: unknown[] = [];
    const sseErrors: unknown[] = [];
    const ended = { ws: false, sse: false };
    const client = createClient({ url: `ws://127.0.0.1:${b.port}/graphql`, webSocketImpl: WebSocket, retryAttempts: 0 });
    after(() => client.dispose());
    const ready = new Promise<void>((resolve) => client.on('connected', () => resolve()));
    let closing = false;
    client.subscribe<{ jobEvents: Seen }>(
      { query: 'subscription { jobEvents { kind jobId run { id status instance } } }' },
      {
        next: (result) => {
          if (result.data) events.push(result.data.jobEvents);
          if (result.errors) subscriptionErrors.push(result.errors);
        },
        // Closing at teardown also reports here; only errors during the test count.
        error: (error) => {
          if (closing) return;
          subscriptionErrors.push(error);
          ended.ws = true;
        },
        complete: () => {
          if (closing) return;
          ended.ws = true;
        },
      },
    );
    await ready;

    // The same over SSE, on B too.
    const sseEvents: Seen[] = [];
    const sseAbort = new AbortController();
    after(() => sseAbort.abort());
    const sse = await fetch(`http://127.0.0.1:${b.port}/graphql`, {
      method: 'POST',
      headers: { accept: 'text/event-stream', 'content-type': 'application/json' },
      body: JSON.stringify({ query: 'subscription { jobEvents { kind jobId run { id status instance } } }' }),
      signal: sseAbort.signal,
    });
    const sseDone = (async () => {
      try {
        for await (const frame of sseFrames(sse.body!)) {
          if (frame.event === 'complete') ended.sse = true;
          if (frame.event === 'next') {
            // An interruption comes as a `next` whose payload carries errors and no data, then `complete`.
            const payload = JSON.parse(frame.data) as { data?: { jobEvents: Seen } | null; errors?: unknown[] };
            if (payload.errors) sseErrors.push(payload.errors);
            if (payload.data) sseEvents.push(payload.data.jobEvents);
          }
        }
      } catch {
        // Aborted at the end of the test.
      }
    })();
    // Both subscriptions are registered on B's bus before any job exists.
    await waitFor(() => b.bus.subscriptionCount >= 2, 'both subscriptions to reach the bus', { intervalMs: 5 });

    const JOBS = 20;
    const creates = Array.from(
      { length: JOBS },
      (_, i) => `j${i}: createJob(input: {id: "c${i}", name: "c", externalCall: "ServerOperationConnector:Noop", period: "0:0:1"}) { id }`,
    );
    await gql(a.port, `mutation { ${creates.join('\n')} }`);
    const finished = () => events.filter((e) => e.kind === 'RUN_SUCCEEDED' || e.kind === 'RUN_FAILED').length;
    // A subscription that ends early stops the waiting: the checks below say why it ended.
    await waitFor(
      () => ended.ws || ended.sse || finished() >= 100,
      () => `100 finished runs (${events.length} events)`,
      { timeoutMs: 30_000 },
    );

    await waitFor(
      () => ended.ws || ended.sse || finished() >= 200,
      () => `200 finished runs (${events.length} events)`,
      { timeoutMs: 40_000 },
    );

    await gql(a.port, `mutation { ${Array.from({ length: JOBS }, (_, i) => `p${i}: pauseJob(id: "c${i}") { id }`).join('\n')} }`);
    const admin = postgres(url, { max: 1, onnotice: () => {} });
    after(() => admin.end());
    // Once nothing runs, the database holds every run there will be, each in its final state.
    const deadline = Date.now() + 20_000;
    while ((await admin`select count(*)::int as n from job_runs where status = 'RUNNING'`)[0]!['n'] > 0) {
      assert.ok(Date.now() < deadline, 'runs in flight ended');
      await new Promise((r) => setTimeout(r, 20));
    }
    const rows = await admin<{ id: string; jobId: string; status: string; instance: string }[]>`
      select id::text as id, job_id as "jobId", status, instance from job_runs order by id`;
    // What a subscriber must see of each run, from its row. A due time that came while the job's
    // previous run was still going is a SKIPPED run: one RUN_SKIPPED, no RUN_STARTED (SPEC §3);
    // on a loaded machine a run can outlast its period, or its 1 s timeout (then it ends RUN_FAILED).
    const expected = new Map(
      rows.map((row) => [
        row.id,
        row.status === 'SKIPPED' ? ['RUN_SKIPPED'] : ['RUN_STARTED', row.status === 'SUCCEEDED' ? 'RUN_SUCCEEDED' : 'RUN_FAILED'],
      ]),
    );
    const byRun = (seen: Seen[]) => {
      const kinds = new Map<string, string[]>();
      for (const event of seen) if (event.run) kinds.set(event.run.id, [...(kinds.get(event.run.id) ?? []), event.kind]);
      return kinds;
    };
    const arrived = (seen: Seen[]) => {
      const kinds = byRun(seen);
      return rows.every((row) => (kinds.get(row.id)?.length ?? 0) >= expected.get(row.id)!.length);
    };
    // A last event from A marks the end of the window. A run's end is published once its write
    // commits, so it may be sent after this marker even though the row already shows it ended:
    // the window closes once both the marker and every run's events have arrived ("within
    // milliseconds", SPEC §6; 10 s allowed), or a subscription has ended. What is missing then is
    // reported below, run by run.
    await gql(
      a.port,
      'mutation { createJob(input: {id: "sentinel", name: "s", externalCall: "ServerOperationConnector:Noop", period: "1:0:0", enabled: false}) { id } }',
    );
    const sentinel = (seen: Seen[]) => seen.some((e) => e.kind === 'JOB_CREATED' && e.jobId === 'sentinel');
    const complete = (seen: Seen[], done: boolean) => done || (sentinel(seen) && arrived(seen));
    await waitFor(
      () => complete(events, ended.ws) && complete(sseEvents, ended.sse),
      'every run and the sentinel on both transports',
    ).catch(() => {});
    closing = true;
    sseAbort.abort();
    await sseDone;

    // No fault is injected here: no LISTEN connection drops, no NOTIFY fails, no reply is lost, and
    // every run is executed by A, whose events reach B in the order A published them. Nothing
    // gives B cause to interrupt (SPEC §6), so an EVENTS_INTERRUPTED here is a failure too, and
    // neither subscription may end before the window does.
    assert.deepEqual(subscriptionErrors, [], 'graphql-ws: no interruption');
    assert.deepEqual(sseErrors, [], 'SSE: no interruption');
    assert.deepEqual(ended, { ws: false, sse: false }, 'both subscriptions open to the end');

    assert.ok(
      rows.every((row) => row.instance === 'A'),
      'every run executed by A',
    );
    assert.ok(rows.filter((row) => row.status !== 'SKIPPED').length >= 200, `${rows.length} runs recorded`);
    for (const [transport, seen] of [
      ['graphql-ws', events],
      ['SSE', sseEvents],
    ] as const) {
      assert.ok(sentinel(seen), `${transport}: the sentinel arrived`);
      // The subscriptions began before the jobs existed and ended after every run: each run of A
      // reached them whole, each event once, a run's start before its end; no run is seen in part
      // and none that the database does not hold.
      const kinds = byRun(seen);
      const wrong = [...new Set([...expected.keys(), ...kinds.keys()])]
        .filter((id) => !isDeepStrictEqual(kinds.get(id), expected.get(id)))
        .map((id) => ({
          run: id,
          seen: kinds.get(id) ?? [],
          expected: expected.get(id) ?? [],
          status: rows.find((row) => row.id === id)?.status,
        }));
      assert.deepEqual(wrong, [], `${transport}: runs not seen exactly as recorded`);
      // Each event carries its run as it was then: RUNNING at its start, its final row otherwise.
      const status = new Map(rows.map((row) => [row.id, row.status]));
      for (const event of seen) {
        if (!event.run) continue;
        assert.equal(event.run.instance, 'A', transport);
        assert.equal(
          event.run.status,
          event.kind === 'RUN_STARTED' ? 'RUNNING' : status.get(event.run.id),
          `${transport}: ${event.kind} of run ${event.run.id}`,
        );
      }
      // Per job, in the order things happened: created first, then one run at a time, each
      // started and ended before the next starts (a RUN_SKIPPED is recorded while a run goes on).
      for (let i = 0; i < JOBS; i++) {
        const ofJob = seen.filter((e) => e.jobId === `c${i}`);
        assert.equal(ofJob.filter((e) => e.kind === 'JOB_CREATED').length, 1, `${transport}: c${i} created once`);
        assert.equal(ofJob[0]?.kind, 'JOB_CREATED', `${transport}: c${i} created before its runs`);
        const runs = ofJob
          .filter((e) => e.run && e.kind !== 'RUN_SKIPPED')
          .map((e) => [e.kind === 'RUN_STARTED' ? 'start' : 'end', Number(e.run!.id)] as const);
        const inOrder = runs.every(([phase, id], k) =>
          phase === 'start' ? k % 2 === 0 && (k === 0 || id > runs[k - 1]![1]) : k % 2 === 1 && id === runs[k - 1]![1],
        );
        assert.ok(inOrder, `${transport}: c${i}'s runs one at a time, in order: ${JSON.stringify(runs)}`);
      }
    }
    // Both transports saw the same events in the same order.
    assert.deepEqual(sseEvents, events);
  });
});
