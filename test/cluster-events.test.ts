import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, describe, it } from 'node:test';
import { createClient } from 'graphql-ws';
import postgres from 'postgres';
import WebSocket from 'ws';
import { loadConfig } from '../src/config.ts';
import { startService, type Service } from '../src/service.ts';
import { createTestDatabase } from './helpers/db.ts';
import { silentLog } from './helpers/harness.ts';
import { sseFrames } from './helpers/live.ts';

const url = await createTestDatabase();
const operationsDir = fs.mkdtempSync(path.join(os.tmpdir(), 'cluster-ops-'));
fs.writeFileSync(path.join(operationsDir, 'ops.mjs'), "export default { Noop: async () => {} };\n");
after(() => fs.rmSync(operationsDir, { recursive: true, force: true }));

async function instance(id: string): Promise<Service> {
  const config = loadConfig({ DATABASE_URL: url, PORT: '0', INSTANCE_ID: id, SERVER_OPERATIONS_DIR: operationsDir, SHUTDOWN_GRACE_SECONDS: '5' });
  const service = await startService({ config, log: silentLog });
  after(() => service.stop());
  return service;
}

async function gql(port: number, query: string): Promise<Record<string, unknown>> {
  const response = await fetch(`http://127.0.0.1:${port}/graphql`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ query }),
  });
  const body = (await response.json()) as { data: Record<string, unknown>; errors?: unknown };
  assert.equal(body.errors, undefined, JSON.stringify(body.errors));
  return body.data;
}

interface Seen {
  kind: string;
  jobId: string;
  run: { id: string; status: string; instance: string } | null;
}

/** Waits until `check` holds, re-checking on every event; fails after `ms`. */
function until(events: Seen[], check: () => boolean, ms: number, what: string, onEvent: Set<() => void>): Promise<void> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      onEvent.delete(test);
      reject(new Error(`timed out waiting for ${what} (${events.length} events)`));
    }, ms);
    const test = () => {
      if (check()) {
        clearTimeout(timer);
        onEvent.delete(test);
        resolve();
      }
    };
    onEvent.add(test);
    test();
  });
}

describe('events across instances', () => {
  it('should deliver every run of instance A to a graphql-ws subscriber on instance B, in order', async () => {
    const a = await instance('A');
    const b = await instance('B');
    // B only serves subscribers here: every run is executed by A.
    await b.scheduler.stop(0);

    const events: Seen[] = [];
    const subscriptionErrors: unknown[] = [];
    const onEvent = new Set<() => void>();
    const client = createClient({ url: `ws://127.0.0.1:${b.port}/graphql`, webSocketImpl: WebSocket, retryAttempts: 0 });
    after(() => client.dispose());
    const ready = new Promise<void>((resolve) => client.on('connected', () => resolve()));
    client.subscribe<{ jobEvents: Seen }>(
      { query: 'subscription { jobEvents { kind jobId run { id status instance } } }' },
      {
        next: (result) => {
          if (result.data) events.push(result.data.jobEvents);
          for (const check of onEvent) check();
        },
        // Closing at teardown also reports here; only errors during the test count.
        error: (error) => subscriptionErrors.push(error),
        complete: () => {},
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
          if (frame.event !== 'next') continue;
          sseEvents.push((JSON.parse(frame.data) as { data: { jobEvents: Seen } }).data.jobEvents);
          for (const check of onEvent) check();
        }
      } catch {
        // Aborted at the end of the test.
      }
    })();
    // Both subscriptions are registered on B's bus before any job exists.
    while (b.bus.subscriptionCount < 2) await new Promise((r) => setTimeout(r, 5));

    const JOBS = 20;
    const creates = Array.from({ length: JOBS }, (_, i) => `j${i}: createJob(input: {id: "c${i}", name: "c", externalCall: "ServerOperationConnector:Noop", period: "0:0:1"}) { id }`);
    await gql(a.port, `mutation { ${creates.join('\n')} }`);
    const finished = () => events.filter((e) => e.kind === 'RUN_SUCCEEDED').length;
    await until(events, () => finished() >= 100, 30_000, '100 finished runs', onEvent);

    await until(events, () => finished() >= 200, 40_000, '200 finished runs', onEvent);

    await gql(a.port, `mutation { ${Array.from({ length: JOBS }, (_, i) => `p${i}: pauseJob(id: "c${i}") { id }`).join('\n')} }`);
    const admin = postgres(url, { max: 1, onnotice: () => {} });
    after(() => admin.end());
    // Once nothing runs, a last event from A marks the end: A's events reach B in order, so
    // everything before it has arrived when it does.
    const deadline = Date.now() + 20_000;
    while ((await admin`select count(*)::int as n from job_runs where status = 'RUNNING'`)[0]!['n'] > 0) {
      assert.ok(Date.now() < deadline, 'runs in flight ended');
      await new Promise((r) => setTimeout(r, 20));
    }
    await gql(a.port, 'mutation { createJob(input: {id: "sentinel", name: "s", externalCall: "ServerOperationConnector:Noop", period: "1:0:0", enabled: false}) { id } }');
    const sentinel = (seen: Seen[]) => seen.some((e) => e.kind === 'JOB_CREATED' && e.jobId === 'sentinel');
    await until(events, () => sentinel(events) && sentinel(sseEvents), 10_000, 'the sentinel on both transports', onEvent);
    sseAbort.abort();
    await sseDone;

    for (const [transport, seen] of [['graphql-ws', events], ['SSE', sseEvents]] as const) {
      // Every run A executed and that ended while B listened: started then ended, each once, in order.
      const byRun = new Map<string, string[]>();
      for (const event of seen) if (event.run) byRun.set(event.run.id, [...(byRun.get(event.run.id) ?? []), event.kind]);
      const sequences = [...byRun.values()];
      const complete = sequences.filter((kinds) => kinds.length === 2);
      assert.ok(complete.length >= 200, `${transport}: ${complete.length} runs seen whole`);
      for (const kinds of complete) assert.deepEqual(kinds, ['RUN_STARTED', 'RUN_SUCCEEDED'], transport);
      // The subscriptions began before the jobs existed and ended after every run: none is seen in part.
      assert.equal(sequences.length - complete.length, 0, `${transport}: runs seen in part`);
      assert.ok(seen.every((e) => !e.run || e.run.instance === 'A'), transport);
    }
    // Both transports saw the same events in the same order.
    assert.deepEqual(sseEvents.slice(0, events.length), events);
    assert.deepEqual(subscriptionErrors, []);
    // Per job, events arrive in the order the runs happened.
    for (let i = 0; i < JOBS; i++) {
      const ids = events.filter((e) => e.jobId === `c${i}` && e.kind === 'RUN_STARTED').map((e) => Number(e.run!.id));
      assert.deepEqual(ids, [...ids].sort((x, y) => x - y));
    }
  });
});
