// GraphQL hardening on the real service (SPEC §8): documents over a limit are refused with HTTP
// 400 and GRAPHQL_VALIDATION_FAILED (over graphql-ws too), a body over MAX_BODY_BYTES with 413,
// never a 5xx and never a change; the standard introspection query still works; GRAPHIQL=false
// and INTROSPECTION=false turn those off.
import assert from 'node:assert/strict';
import http from 'node:http';
import { after, before, describe, it } from 'node:test';
import { getIntrospectionQuery } from 'graphql';
import { createClient } from 'graphql-ws';
import WebSocket from 'ws';
import { snapshot, testDatabase } from './helpers/db.ts';
import { ServiceProcess, stopAll } from './helpers/process.ts';
import { errorCode, rawRequest, type RawResponse } from './helpers/web.ts';

const db = await testDatabase();
const lockedDb = await testDatabase();
let service: ServiceProcess;
let port: number;
/** A service with GRAPHIQL=false, INTROSPECTION=false and small limits of its own. */
let lockedPort: number;

/**
 * No daily housekeeping: these services check that refused requests change nothing, and one
 * started after HOUSEKEEPING_AT writes its housekeeping entry at any moment of its first seconds.
 */
const NO_HOUSEKEEPING = { LOG_RETENTION_DAYS: '0', RUN_RETENTION_DAYS: '0' };

before(async () => {
  service = new ServiceProcess({ DATABASE_URL: db.url, ...NO_HOUSEKEEPING });
  const locked = new ServiceProcess({
    DATABASE_URL: lockedDb.url,
    ...NO_HOUSEKEEPING,
    GRAPHIQL: 'false',
    INTROSPECTION: 'false',
    GRAPHQL_MAX_DEPTH: '3',
    MAX_BODY_BYTES: '65536',
  });
  [port, lockedPort] = await Promise.all([service.waitUntilListening(), locked.waitUntilListening()]);
});
after(() => stopAll());

const post = (query: string, target = port, variables?: Record<string, unknown>) =>
  rawRequest({ port: target, method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ query, variables }) });

/** Posts a document and checks it was refused as over a limit, with nothing changed; resolves with the message. */
async function overLimit(query: string, message: RegExp, target = port): Promise<void> {
  const before = await snapshot(db.sql);
  const response: RawResponse = await post(query, target);
  assert.equal(response.status, 400, response.body.slice(0, 500));
  assert.equal(errorCode(response.json), 'GRAPHQL_VALIDATION_FAILED', response.body.slice(0, 500));
  assert.match(response.body, message);
  assert.doesNotMatch(response.body, /\bat .*\.(ts|js):\d+/, 'a stack trace leaked');
  assert.deepEqual(await snapshot(db.sql), before);
}

/** `{ jobs { lastRun { job { lastRun … { id } } } } }`, of depth `depth` as Armor counts it (`{ jobs { id } }` is 2). */
function deep(depth: number): string {
  const wrappers = Array.from({ length: depth - 2 }, (_, i) => (i % 2 === 0 ? 'lastRun' : 'job'));
  let inner = 'id';
  for (const name of wrappers.reverse()) inner = `${name} { ${inner} }`;
  return `{ jobs { ${inner} } }`;
}

const CREATE = (id: string, selection: string) =>
  `mutation { createJob(input: { id: "${id}", name: "x", externalCall: "ServerOperationConnector:Noop", period: "0:0:5" }) { ${selection} } }`;

describe('GraphQL limits', () => {
  it('should refuse a document deeper than GRAPHQL_MAX_DEPTH (12), a mutation included, and accept one at it', async () => {
    await overLimit(deep(13), /depth limit of 12 exceeded, found 13/i);
    // A mutation over the limit is refused before it runs: no job.
    await overLimit(
      CREATE(
        'too-deep',
        `id lastRun { job { lastRun { job { lastRun { job { lastRun { job { lastRun { job { lastRun { job { lastRun { id } } } } } } } } } } } } }`,
      ),
      /depth limit/i,
    );
    const fine = await post(deep(12));
    assert.equal(fine.status, 200, fine.body);
  });

  it('should refuse more than GRAPHQL_MAX_ALIASES (30) aliases', async () => {
    const aliases = (n: number) => `{ ${Array.from({ length: n }, (_, i) => `a${i}: jobs { id }`).join(' ')} }`;
    await overLimit(aliases(31), /aliases limit of 30 exceeded/i);
    assert.equal((await post(aliases(30))).status, 200);
  });

  it('should refuse more than GRAPHQL_MAX_DIRECTIVES (20) directives', async () => {
    const directives = (n: number) => `{ jobs { id ${'@include(if: true) '.repeat(n)} } }`;
    await overLimit(directives(21), /directives limit of 20 exceeded/i);
  });

  it('should refuse more than GRAPHQL_MAX_TOKENS (5000) tokens while parsing', async () => {
    await overLimit(`{ jobs { ${'id '.repeat(5000)} } }`, /token limit of 5000 exceeded/i);
  });

  it('should refuse an operation costlier than GRAPHQL_MAX_COST (5000)', async () => {
    // Runs whose jobs each list 100 runs: 100 × (3 + 100 × 3) objects.
    await overLimit(
      `{ runs(first: 100) { edges { node { job { runs(first: 100) { edges { node { id } } } } } } } }`,
      /cost limit of 5000 exceeded, found 30400/i,
    );
    // Pages through variables count as the most they may hold (500), omitted ones as the default (50).
    await overLimit(
      `query ($a: Int, $b: Int) { runs(first: $a) { edges { node { job { runs(first: $b) { edges { node { id } } } } } } } }`,
      /cost limit of 5000 exceeded, found 752000/i,
    );
    await overLimit(
      `query { runs(first: 100) { ...R } } fragment R on JobRunConnection { edges { node { job { runs(first: $n) { edges { node { id } } } } } } }`.replace(
        'query {',
        'query ($n: Int) {',
      ),
      /cost limit of 5000 exceeded/i,
    );
    // A whole page of 500 runs (1,500 objects), by a literal or a variable, is fine.
    const fields = 'id jobId status scheduledAt startedAt finishedAt error instance missed';
    assert.equal((await post(`{ runs(first: 500) { edges { cursor node { ${fields} } } } }`)).status, 200);
    assert.equal(
      (await post(`query ($first: Int) { runs(first: $first) { edges { cursor node { ${fields} } } } }`, port, { first: 500 })).status,
      200,
    );
  });

  it('should answer the standard introspection query (GraphiQL loads its schema with it)', async () => {
    const query = getIntrospectionQuery({
      descriptions: true,
      specifiedByUrl: true,
      directiveIsRepeatable: true,
      schemaDescription: true,
      inputValueDeprecation: true,
    });
    const response = await post(query);
    assert.equal(response.status, 200, response.body.slice(0, 500));
    const schema = (response.json as { data: { __schema: { types: { name: string }[] } } }).data.__schema;
    assert.ok(schema.types.some((type) => type.name === 'Job'));
  });

  it('should answer a body over MAX_BODY_BYTES (4 MiB) with 413, never a 5xx', async () => {
    const before = await snapshot(db.sql);
    const body = JSON.stringify({ query: CREATE('huge', 'id'), variables: { pad: 'x'.repeat(4 * 1024 * 1024) } });
    const response = await rawRequest({ port, method: 'POST', headers: { 'content-type': 'application/json' }, body });
    assert.equal(response.status, 413, response.body.slice(0, 300));
    assert.equal(errorCode(response.json), 'PAYLOAD_TOO_LARGE');
    assert.deepEqual(await snapshot(db.sql), before);
    // Just under the limit is read and answered (here: a GraphQL answer, not a 413).
    const under = JSON.stringify({ query: '{ jobs { id } }', variables: { pad: 'x'.repeat(4 * 1024 * 1024 - 200) } });
    assert.equal((await rawRequest({ port, method: 'POST', headers: { 'content-type': 'application/json' }, body: under })).status, 200);
    // Broken JSON and empty bodies (declared, or chunked) are 4xx too, answered at once.
    const broken = await rawRequest({
      port,
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: '{"query": "{ jobs { id } }"',
    });
    assert.ok(broken.status >= 400 && broken.status < 500, `broken JSON answered ${broken.status}`);
    const empty = await rawRequest({ port, method: 'POST', headers: { 'content-type': 'application/json' }, body: '', timeoutMs: 5000 });
    assert.ok(empty.status >= 400 && empty.status < 500, `an empty body answered ${empty.status}`);
    const chunked = await rawRequest({
      port,
      method: 'POST',
      headers: { 'content-type': 'application/json', 'transfer-encoding': 'chunked' },
      timeoutMs: 5000,
    });
    assert.ok(chunked.status >= 400 && chunked.status < 500, `an empty chunked body answered ${chunked.status}`);
  });

  it('should take a client that goes away in the middle of its body in its stride', async () => {
    /** Sends the start of a body, lets it reach the service, then drops the connection. */
    const goAwayMidBody = (headers: Record<string, string>, start: string) =>
      new Promise<void>((resolve) => {
        const req = http.request({
          host: '127.0.0.1',
          port,
          method: 'POST',
          path: '/graphql',
          headers: { 'content-type': 'application/json', ...headers },
        });
        req.on('error', () => {});
        req.write(start, () => setTimeout(() => (req.destroy(), resolve()), 100));
      });
    await goAwayMidBody({ 'content-length': '100000' }, '{"query": "{ jobs { id } }", "pad": "');
    await goAwayMidBody({ 'transfer-encoding': 'chunked' }, '{"query": ');
    await new Promise((resolve) => setTimeout(resolve, 200));
    assert.equal((await post('{ jobs { id } }')).status, 200);
    assert.ok(!service.records.some((r) => r.level !== undefined && r.level >= 50), `the service logged an error:\n${service.output}`);
  });

  it('should apply the limits over graphql-ws, and close a socket whose message is over MAX_BODY_BYTES', async () => {
    const client = createClient({ url: `ws://127.0.0.1:${port}/graphql`, webSocketImpl: WebSocket, retryAttempts: 0, lazy: true });
    try {
      const errors = await new Promise<unknown>((resolve) => {
        client.subscribe(
          {
            query: `subscription { jobEvents { job { lastRun { job { lastRun { job { lastRun { job { lastRun { job { lastRun { job { lastRun { id } } } } } } } } } } } } } }`,
          },
          { next: (value) => resolve(value), error: (error) => resolve(error), complete: () => resolve('complete') },
        );
      });
      assert.ok(Array.isArray(errors), `expected GraphQL errors, got ${JSON.stringify(errors)}`);
      const first = (errors as { message: string; extensions?: { code?: string } }[])[0]!;
      assert.equal(first.extensions?.code, 'GRAPHQL_VALIDATION_FAILED');
      assert.match(first.message, /depth limit of 12/i);
      const tokens = await new Promise<unknown>((resolve) => {
        client.subscribe(
          { query: `subscription { jobEvents { ${'kind '.repeat(5000)} } }` },
          { next: resolve, error: resolve, complete: () => resolve('complete') },
        );
      });
      assert.equal(
        (tokens as { extensions?: { code?: string } }[])[0]?.extensions?.code,
        'GRAPHQL_VALIDATION_FAILED',
        JSON.stringify(tokens),
      );
    } finally {
      await client.dispose();
    }
    // A message over MAX_BODY_BYTES (64 KiB on the second service): the socket is closed with 1009.
    const code = await new Promise<number>((resolve, reject) => {
      const socket = new WebSocket(`ws://127.0.0.1:${lockedPort}/graphql`, 'graphql-transport-ws');
      socket.once('open', () => socket.send(JSON.stringify({ type: 'connection_init', payload: { pad: 'x'.repeat(70_000) } })));
      socket.once('close', (closeCode) => resolve(closeCode));
      socket.once('error', () => {});
      setTimeout(() => reject(new Error('the socket was not closed')), 10_000).unref();
    });
    assert.equal(code, 1009);
  });

  it('should apply its own settings: GRAPHQL_MAX_DEPTH=3 and MAX_BODY_BYTES=65536', async () => {
    const response = await post(deep(4), lockedPort);
    assert.equal(response.status, 400);
    assert.match(response.body, /depth limit of 3 exceeded/i);
    assert.equal((await post(deep(3), lockedPort)).status, 200);
    const big = await rawRequest({
      port: lockedPort,
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ query: '{ jobs { id } }', pad: 'x'.repeat(70_000) }),
    });
    assert.equal(big.status, 413);
  });
});

describe('GRAPHIQL and INTROSPECTION', () => {
  it('should serve GraphiQL by default and not with GRAPHIQL=false', async () => {
    const page = await rawRequest({ port, headers: { accept: 'text/html' } });
    assert.equal(page.status, 200);
    assert.match(page.body, /<html/i);
    const off = await rawRequest({ port: lockedPort, headers: { accept: 'text/html' } });
    assert.equal(off.status, 404);
    assert.match(off.body, /GRAPHIQL=false/);
  });

  it('should refuse introspection with a coded error when INTROSPECTION=false, and still answer queries', async () => {
    const before = await snapshot(lockedDb.sql);
    for (const query of [getIntrospectionQuery(), '{ __type(name: "Job") { name } }']) {
      const response = await post(query, lockedPort);
      assert.equal(response.status, 400, response.body.slice(0, 300));
      assert.equal(errorCode(response.json), 'GRAPHQL_VALIDATION_FAILED');
      assert.match(response.body, /introspection has been disabled/i);
    }
    assert.deepEqual(await snapshot(lockedDb.sql), before);
    const ok = await post('{ jobs { id __typename } }', lockedPort);
    assert.equal(ok.status, 200, ok.body);
  });
});
