import assert from 'node:assert/strict';
import { after, describe, it } from 'node:test';
import { type Client, createClient } from 'graphql-ws';
import WebSocket from 'ws';
import { appFor, gqlOk } from './helpers/api.ts';
import { testDatabase } from './helpers/db.ts';
import { harness } from './helpers/harness.ts';
import { type Collected, subscribeWs } from './helpers/live.ts';
import { waitFor } from './helpers/process.ts';

const { sql } = await testDatabase();

const WATCH = 'subscription { jobEvents { kind jobId } }';
const CREATE = `mutation($input: CreateJobInput!) { createJob(input: $input) { id } }`;

interface Seen {
  jobEvents: { kind: string; jobId: string };
}

describe('graphql-ws subscribers asking the same thing (one execution shared)', () => {
  it('should give each every event once, go on for the others when one leaves, and end only those open at an interruption', async () => {
    const h = harness(sql);
    const app = appFor(h);
    const port = await app.listen(0, '127.0.0.1');
    const clients: Client[] = [];
    const client = () => {
      const made = createClient({ url: `ws://127.0.0.1:${port}/graphql`, webSocketImpl: WebSocket, retryAttempts: 0 });
      clients.push(made);
      return made;
    };
    after(async () => {
      await Promise.all(clients.map((c) => c.dispose()));
      await app.close();
    });
    const base = h.bus.subscriberCount;
    const subscribed = (count: number) => waitFor(() => h.bus.subscriberCount === base + count, `${count} subscriptions on the bus`);
    const create = (id: string) => gqlOk(app, CREATE, { input: { id, name: id, externalCall: 'Test:ok', period: '1:0:0' } });
    const jobs = (seen: Collected<Seen>) => seen.items.map((i) => i.jobEvents.jobId);

    // Two connections and a second subscription on one of them: three subscribers, each counted.
    const [one, two] = [client(), client()];
    const first = subscribeWs<Seen>(one, WATCH);
    const second = subscribeWs<Seen>(two, WATCH);
    const third = subscribeWs<Seen>(one, WATCH);
    await subscribed(3);
    await create('a');
    await Promise.all([first, second, third].map((s) => s.until(1, 'JOB_CREATED of a')));

    first.dispose();
    await subscribed(2);
    await create('b');
    await second.until(2, 'JOB_CREATED of b');
    await third.until(2, 'JOB_CREATED of b');
    assert.deepEqual(jobs(second), ['a', 'b']);
    assert.deepEqual(jobs(third), ['a', 'b']);
    assert.deepEqual(jobs(first), ['a'], 'nothing after it left');

    h.bus.interrupt('a test');
    const ended = (s: Collected<Seen>) => waitFor(() => s.errors.length > 0, 'the interruption to arrive');
    await Promise.all([ended(second), ended(third)]);
    for (const s of [second, third]) {
      const [errors] = s.errors as { extensions?: { code?: string } }[][];
      assert.equal(errors?.[0]?.extensions?.code, 'EVENTS_INTERRUPTED');
    }
    await subscribed(0);

    // Asked again after the interruption: not affected by it, and served afresh.
    const later = subscribeWs<Seen>(two, WATCH);
    await subscribed(1);
    await create('c');
    await later.until(1, 'JOB_CREATED of c');
    assert.deepEqual(jobs(later), ['c']);
    assert.deepEqual(later.errors, []);
    later.dispose();
    await subscribed(0);
  });
});
