// What a web page in the operator's browser could send to a service on 127.0.0.1 (SPEC §8), sent
// to the real service: each cross-site path is refused before any operation runs, and the
// database is unchanged after every refusal.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import WebSocket from 'ws';
import { snapshot, testDatabase } from './helpers/db.ts';
import { ServiceProcess, stopAll } from './helpers/process.ts';
import { corsHeaders, errorCode, rawRequest, type RawResponse } from './helpers/web.ts';

const db = await testDatabase();
const LISTED = 'http://dashboard.example:8080';
const FOREIGN = 'https://evil.example';
const MUTATION = `mutation { createJob(input: { id: "from-a-page", name: "CSRF", externalCall: "ServerOperationConnector:Noop", period: "0:0:5" }) { id } }`;

let service: ServiceProcess;
let port: number;

before(async () => {
  // No daily housekeeping: its entry, written in the first seconds after a start past HOUSEKEEPING_AT,
  // would show among the changes a refused request must not make.
  service = new ServiceProcess({ DATABASE_URL: db.url, CORS_ORIGINS: LISTED, LOG_RETENTION_DAYS: '0', RUN_RETENTION_DAYS: '0' });
  port = await service.waitUntilListening();
});
after(() => stopAll());

/** Sends a request and checks that it was refused with `status` and that no table changed. */
async function refused(send: () => Promise<RawResponse>, status: number): Promise<RawResponse> {
  const before = await snapshot(db.sql);
  const response = await send();
  assert.equal(response.status, status, `expected ${status}, got ${response.status}: ${response.body.slice(0, 300)}`);
  assert.deepEqual(await snapshot(db.sql), before, 'a refused request changed the database');
  assert.deepEqual(corsHeaders(response.headers), {}, 'a refusal carried CORS headers');
  return response;
}

/** How a WebSocket upgrade with these headers ends: opened, or the HTTP status it was refused with. */
function upgrade(headers: Record<string, string>): Promise<{ opened: boolean; status?: number }> {
  return new Promise((resolve, reject) => {
    const socket = new WebSocket(`ws://127.0.0.1:${port}/graphql`, 'graphql-transport-ws', { headers });
    socket.once('open', () => {
      socket.close();
      resolve({ opened: true });
    });
    socket.once('unexpected-response', (_req, res) => {
      resolve({ opened: false, status: res.statusCode });
      socket.terminate();
    });
    socket.once('error', (error) => reject(error));
  });
}

describe('cross-site requests', () => {
  it('should run no operation from a form post (application/x-www-form-urlencoded)', async () => {
    const response = await refused(
      () =>
        rawRequest({
          port,
          method: 'POST',
          headers: { origin: FOREIGN, 'content-type': 'application/x-www-form-urlencoded' },
          body: `query=${encodeURIComponent(MUTATION)}`,
        }),
      403,
    );
    assert.equal(errorCode(response.json), 'CSRF_PREVENTED');
    assert.match(response.body, /X-GraphQL-Yoga-CSRF/);
  });

  it('should run no operation from a text/plain body', async () => {
    await refused(
      () =>
        rawRequest({
          port,
          method: 'POST',
          headers: { origin: FOREIGN, 'content-type': 'text/plain;charset=UTF-8' },
          body: JSON.stringify({ query: MUTATION }),
        }),
      403,
    );
  });

  it('should run no operation from a multipart/form-data body', async () => {
    const boundary = '----formboundary7MA4YWxk';
    const body = [
      `--${boundary}`,
      'Content-Disposition: form-data; name="operations"',
      '',
      JSON.stringify({ query: MUTATION }),
      `--${boundary}`,
      'Content-Disposition: form-data; name="map"',
      '',
      '{}',
      `--${boundary}--`,
      '',
    ].join('\r\n');
    await refused(
      () =>
        rawRequest({
          port,
          method: 'POST',
          headers: { origin: FOREIGN, 'content-type': `multipart/form-data; boundary=${boundary}` },
          body,
        }),
      403,
    );
  });

  it('should refuse a GET without a non-simple header, and a mutation over GET in any case', async () => {
    const path = `/graphql?query=${encodeURIComponent(MUTATION)}`;
    await refused(() => rawRequest({ port, path, headers: { origin: FOREIGN } }), 403);
    // With the documented header (a browser cannot add it cross-site without a preflight): still no mutation over GET.
    await refused(() => rawRequest({ port, path, headers: { 'x-graphql-yoga-csrf': '1' } }), 405);
    // A GET query with the header is served, and so is an SSE subscription over GET.
    const query = await rawRequest({
      port,
      path: `/graphql?query=${encodeURIComponent('{ jobs { id } }')}`,
      headers: { 'x-graphql-yoga-csrf': '1' },
    });
    assert.equal(query.status, 200, query.body);
    assert.deepEqual(query.json, { data: { jobs: [] } });
    const sse = `http://127.0.0.1:${port}/graphql?query=${encodeURIComponent('subscription { jobEvents { kind } }')}`;
    const abort = new AbortController();
    try {
      const withHeader = await fetch(sse, { headers: { accept: 'text/event-stream', 'x-graphql-yoga-csrf': '1' }, signal: abort.signal });
      assert.equal(withHeader.status, 200);
      assert.match(withHeader.headers.get('content-type') ?? '', /text\/event-stream/);
    } finally {
      abort.abort();
    }
    const without = await fetch(sse, { headers: { accept: 'text/event-stream' } });
    assert.equal(without.status, 403);
    await without.text();
  });

  it('should answer a preflight from a foreign Origin, and its requests, with no CORS headers', async () => {
    const preflight = await rawRequest({
      port,
      method: 'OPTIONS',
      headers: {
        origin: FOREIGN,
        'access-control-request-method': 'POST',
        'access-control-request-headers': 'content-type, authorization',
      },
    });
    assert.ok(preflight.status < 500, `preflight answered ${preflight.status}`);
    assert.deepEqual(corsHeaders(preflight.headers), {});
    // A JSON POST (which a browser sends only after that preflight, so never from that page):
    // its answer carries no CORS headers either, so a page could not read it.
    const read = await rawRequest({
      port,
      method: 'POST',
      headers: { origin: FOREIGN, 'content-type': 'application/json' },
      body: JSON.stringify({ query: '{ jobs { id } }' }),
    });
    assert.equal(read.status, 200);
    assert.deepEqual(corsHeaders(read.headers), {});
  });

  it('should give an origin on CORS_ORIGINS exactly its CORS headers', async () => {
    const preflight = await rawRequest({
      port,
      method: 'OPTIONS',
      headers: { origin: LISTED, 'access-control-request-method': 'POST', 'access-control-request-headers': 'content-type, authorization' },
    });
    assert.equal(preflight.status, 204);
    const cors = corsHeaders(preflight.headers);
    assert.equal(cors['access-control-allow-origin'], LISTED);
    assert.equal(cors['access-control-allow-methods'], 'GET, POST');
    assert.deepEqual(String(cors['access-control-allow-headers']).split(/,\s*/).sort(), [
      'accept',
      'authorization',
      'content-type',
      'x-graphql-yoga-csrf',
    ]);
    assert.equal(cors['access-control-allow-credentials'], undefined, 'no credentials: tokens travel in Authorization');
    assert.match(String(preflight.headers['vary']), /Origin/);
    const read = await rawRequest({
      port,
      method: 'POST',
      headers: { origin: LISTED, 'content-type': 'application/json' },
      body: JSON.stringify({ query: '{ jobs { id } }' }),
    });
    assert.equal(read.status, 200);
    assert.equal(read.headers['access-control-allow-origin'], LISTED);
    assert.equal(read.headers['access-control-allow-credentials'], undefined);
    // Another origin at the same time gets nothing (no reflection).
    const other = await rawRequest({
      port,
      method: 'POST',
      headers: { origin: 'http://dashboard.example:8081', 'content-type': 'application/json' },
      body: JSON.stringify({ query: '{ jobs { id } }' }),
    });
    assert.deepEqual(corsHeaders(other.headers), {});
  });

  it('should refuse a foreign Host with 403, except on /health and /health/live', async () => {
    const mutation = JSON.stringify({ query: MUTATION });
    const response = await refused(
      () =>
        rawRequest({
          port,
          method: 'POST',
          headers: { host: `rebound.evil.example:${port}`, 'content-type': 'application/json' },
          body: mutation,
        }),
      403,
    );
    assert.equal(errorCode(response.json), 'FORBIDDEN_HOST');
    assert.match(response.body, /ALLOWED_HOSTS/);
    await refused(() => rawRequest({ port, path: '/metrics', headers: { host: 'rebound.evil.example' } }), 403);
    await refused(() => rawRequest({ port, path: '/graphql', headers: { host: 'rebound.evil.example', accept: 'text/html' } }), 403);
    for (const path of ['/health', '/health/live']) {
      const probe = await rawRequest({ port, path, headers: { host: 'any-name.internal' } });
      assert.equal(probe.status, 200, `${path}: ${probe.body}`);
    }
    // The loopback names, with or without a port, are served.
    for (const host of [`localhost:${port}`, `127.0.0.1:${port}`, `[::1]:${port}`, 'LOCALHOST', 'localhost.']) {
      const ok = await rawRequest({
        port,
        method: 'POST',
        headers: { host, 'content-type': 'application/json' },
        body: JSON.stringify({ query: '{ jobs { id } }' }),
      });
      assert.equal(ok.status, 200, `Host ${host}: ${ok.body}`);
    }
  });

  it('should refuse a WebSocket upgrade from another site, or to a foreign Host, before it completes', async () => {
    const before = await snapshot(db.sql);
    assert.deepEqual(await upgrade({ origin: FOREIGN }), { opened: false, status: 403 });
    assert.deepEqual(await upgrade({ origin: 'null' }), { opened: false, status: 403 });
    assert.deepEqual(await upgrade({ host: `rebound.evil.example:${port}` }), { opened: false, status: 403 });
    assert.deepEqual(await snapshot(db.sql), before);
    // GraphiQL's own page (same origin), an origin on CORS_ORIGINS, and clients with no Origin (not browsers) connect.
    assert.deepEqual(await upgrade({ origin: `http://127.0.0.1:${port}` }), { opened: true });
    assert.deepEqual(await upgrade({ origin: LISTED }), { opened: true });
    assert.deepEqual(await upgrade({}), { opened: true });
  });

  it('should still run the same mutation from a JSON POST (what GraphiQL and clients send)', async () => {
    const response = await rawRequest({
      port,
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ query: MUTATION }),
    });
    assert.equal(response.status, 200, response.body);
    assert.deepEqual(response.json, { data: { createJob: { id: 'from-a-page' } } });
  });
});
