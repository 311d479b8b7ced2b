// GraphiQL with tokens (SPEC §8): the page loads without a token, and the fetcher it runs sends
// the Headers tab's Authorization with queries and, as connectionParams, with subscriptions.
// The fetcher's own source runs here in Node (ws standing in for the browser's WebSocket).
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { parse } from 'graphql';
import WebSocket from 'ws';
import { TOKEN_FETCHER_SOURCE } from '../src/http/graphiql-token.ts';
import type { Json } from './helpers/api.ts';
import { authApp, capturedLog, TOKENS, tokenStore } from './helpers/auth.ts';
import { testDatabase } from './helpers/db.ts';
import { harness } from './helpers/harness.ts';
import { waitFor } from './helpers/process.ts';

const { sql } = await testDatabase();
const h = harness(sql);
h.connector.define('ok', async () => {});
const { log } = capturedLog();
const { url } = await authApp(h, tokenStore(), log);

type Observer = { next: (value: Json) => void; error: (error: Error) => void; complete: () => void };
type Fetcher = (params: Json, opts: Json) => Promise<Json> | { subscribe: (observer: Observer) => { unsubscribe: () => void } };
// The page's own source, run as the browser runs it.
const makeFetcher = new Function('WebSocket', 'fetch', `${TOKEN_FETCHER_SOURCE}; return serverJobsFetcher;`)(WebSocket, fetch) as (
  endpoint: string,
) => Fetcher;

describe('GraphiQL with tokens', () => {
  it('should load the page without a token, with the token-carrying fetcher in it', async () => {
    const response = await fetch(url, { headers: { accept: 'text/html' } });
    assert.equal(response.status, 200);
    const page = await response.text();
    assert.ok(page.includes('function serverJobsFetcher(endpoint)'), 'the fetcher is inlined');
    assert.ok(page.includes('fetcher: serverJobsFetcher(endpoint)'), 'and given to GraphiQL');
    assert.ok(!/<script[^>]+src=["']https?:/.test(page), 'no script from a CDN');
  });

  it('should send the Headers tab’s token with queries, and refuse without it', async () => {
    const fetcher = makeFetcher(url);
    const query = '{ me { name role } }';
    const ok = await (fetcher(
      { query },
      { headers: { Authorization: `Bearer ${TOKENS.operator}` }, documentAST: parse(query) },
    ) as Promise<Json>);
    assert.deepEqual(ok['data'], { me: { name: 'operator-bot', role: 'OPERATOR' } });
    const refused = await (fetcher({ query }, { headers: {}, documentAST: parse(query) }) as Promise<Json>);
    assert.equal(refused['errors'][0]['extensions']['code'], 'UNAUTHENTICATED');
  });

  it('should carry the token into graphql-ws connectionParams for subscriptions', { timeout: 20_000 }, async () => {
    const fetcher = makeFetcher(url);
    const query = 'subscription Watch { jobEvents { kind jobId } }';
    const received: Json[] = [];
    const base = h.bus.subscriptionCount;
    const subscription = (
      fetcher({ query, operationName: 'Watch' }, { headers: { authorization: `Bearer ${TOKENS.viewer}` }, documentAST: parse(query) }) as {
        subscribe: (observer: Observer) => { unsubscribe: () => void };
      }
    ).subscribe({ next: (value) => received.push(value), error: (error) => received.push({ error: error.message }), complete: () => {} });
    try {
      await waitFor(() => h.bus.subscriptionCount > base, 'the subscription to start');
      await h.jobs.create({ id: 'seen-in-graphiql', name: 'G', externalCall: 'Test:ok', period: '1:0:0' });
      await waitFor(() => received.length > 0, 'an event');
      assert.deepEqual(received[0], { data: { jobEvents: { kind: 'JOB_CREATED', jobId: 'seen-in-graphiql' } } });
    } finally {
      subscription.unsubscribe();
    }
    await waitFor(() => h.bus.subscriptionCount === base, 'the subscription to end when GraphiQL stops it');

    // Without a token in the Headers tab, the connection is refused and GraphiQL says why.
    const errors: string[] = [];
    (fetcher({ query }, { headers: {}, documentAST: parse(query) }) as { subscribe: (observer: Observer) => unknown }).subscribe({
      next: (value) => errors.push(JSON.stringify(value)),
      error: (error) => errors.push(`unexpected Error: ${error.message}`),
      complete: () => {},
    });
    await waitFor(() => errors.length > 0, 'the refusal');
    assert.match(errors[0]!, /"errors":\[\{"message":"Subscription ended \(4401\): no valid token.*Headers tab.*"code":"UNAUTHENTICATED"/);
  });
});
