import assert from 'node:assert/strict';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { Writable } from 'node:stream';
import { after, beforeEach, describe, it } from 'node:test';
import pino from 'pino';
import type { RunRow } from '../src/db/rows.ts';
import { appFor, gql, gqlOk } from './helpers/api.ts';
import { testDatabase } from './helpers/db.ts';
import { harness, T0, tickAndSettle } from './helpers/harness.ts';

const { sql } = await testDatabase();
beforeEach(() => sql`truncate jobs, job_runs, log_entries, connectors`);

const CANARY = 'CANARY-t0ken-7f3a9c';

/** A stand-in 1C HTTP service on loopback: answers by path. */
const requests: { method: string; url: string; headers: http.IncomingHttpHeaders }[] = [];
const server = http.createServer((req, res) => {
  requests.push({ method: req.method!, url: req.url!, headers: req.headers });
  const path = decodeURIComponent(req.url!.split('/').pop()!);
  if (path === 'МояФункция') return res.writeHead(200).end('ok');
  if (path === 'broken') return res.writeHead(500).end(`internal failure; echo ${req.headers.authorization}`);
  if (path === 'metadata') return res.writeHead(302, { location: 'http://169.254.169.254/latest/meta-data' }).end();
  if (path === 'slow') return; // never answers
  res.writeHead(404).end();
});
await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
const port = (server.address() as AddressInfo).port;
after(() => {
  server.closeAllConnections();
  server.close();
});

// Everything the service logs, to prove the secret never reaches it.
let logged = '';
const log = pino({ level: 'trace' }, new Writable({ write: (chunk, _enc, done) => ((logged += String(chunk)), done()) }));

function setup() {
  const h = harness(sql);
  const app = appFor(h, { log });
  return { h, app };
}

async function createOneC(app: ReturnType<typeof setup>['app'], extra = '') {
  return gqlOk(
    app,
    `mutation { createConnector(input: { id: "OneC_8_Connector", baseUrl: "http://127.0.0.1:${port}/hs/jobs/",
       authScheme: BEARER, secret: "${CANARY}", headers: [{ name: "X-Tenant", value: "north" }], timeoutSeconds: 2 ${extra} }) {
       id kind builtIn baseUrl headers { name value } authScheme hasSecret timeoutSeconds createdAt } }`,
  );
}

describe('HTTP connectors through the API', () => {
  it('should create a connector, list it without its secret, and call it from a job', async () => {
    const { h, app } = setup();
    const created = await createOneC(app);
    assert.deepEqual(created, {
      createConnector: {
        id: 'OneC_8_Connector',
        kind: 'HTTP',
        builtIn: false,
        baseUrl: `http://127.0.0.1:${port}/hs/jobs`,
        headers: [{ name: 'X-Tenant', value: 'north' }],
        authScheme: 'BEARER',
        hasSecret: true,
        timeoutSeconds: 2,
        createdAt: new Date(T0).toISOString(),
      },
    });
    const listed = await gqlOk<{ connectors: { id: string; builtIn: boolean }[] }>(app, '{ connectors { id builtIn } }');
    assert.deepEqual(
      listed.connectors.map((c) => [c.id, c.builtIn]),
      [
        ['Test', false],
        ['OneC_8_Connector', false],
      ],
    );

    await h.jobs.create({ id: 'onec', name: '1C', externalCall: 'OneC_8_Connector:МояФункция', period: '0:0:10' });
    h.clock.set(T0 + 10_000);
    requests.length = 0;
    const [started] = await tickAndSettle(h);
    const end = await started!.done;
    assert.equal(end?.status, 'SUCCEEDED');
    assert.equal(requests.length, 1);
    const [request] = requests;
    assert.equal(request!.method, 'POST');
    assert.equal(request!.url, `/hs/jobs/${encodeURIComponent('МояФункция')}`);
    assert.equal(request!.headers['authorization'], `Bearer ${CANARY}`);
    assert.equal(request!.headers['x-tenant'], 'north');
    assert.equal(request!.headers['x-job-id'], 'onec');
    assert.equal(request!.headers['x-run-id'], end!.id);
    assert.equal(request!.headers['x-scheduled-at'], new Date(T0 + 10_000).toISOString());
  });

  it('should record FAILED with the status and an excerpt, TIMED_OUT, refused connections and refused redirects', async () => {
    const { h, app } = setup();
    await createOneC(app);
    await gqlOk(app, `mutation { createConnector(input: { id: "Closed", baseUrl: "http://127.0.0.1:1" }) { id } }`);
    for (const [id, call] of [
      ['broken', 'OneC_8_Connector:broken'],
      ['slow', 'OneC_8_Connector:slow'],
      ['refused', 'Closed:anything'],
      ['redirect', 'OneC_8_Connector:metadata'],
    ]) {
      await h.jobs.create({ id: id!, name: id!, externalCall: call!, period: '0:1:0', timeoutSeconds: 30 });
    }
    h.clock.set(T0 + 60_000);
    await tickAndSettle(h);
    const runs = await sql<RunRow[]>`select * from job_runs order by job_id`;
    const byJob = Object.fromEntries(runs.map((r) => [r.jobId, r]));
    assert.equal(byJob['broken']!.status, 'FAILED');
    assert.match(byJob['broken']!.error!, /HTTP 500.*internal failure/);
    assert.equal(byJob['slow']!.status, 'TIMED_OUT');
    assert.equal(byJob['refused']!.status, 'FAILED');
    assert.match(byJob['refused']!.error!, /refused/);
    assert.equal(byJob['redirect']!.status, 'FAILED');
    assert.match(byJob['redirect']!.error!, /169\.254\.169\.254.*refused|refused.*169\.254\.169\.254/);
    const errors = await sql`select job_id from log_entries where level = 'ERROR' order by job_id`;
    assert.deepEqual(
      errors.map((e) => e['jobId']),
      ['broken', 'redirect', 'refused', 'slow'],
    );

    // The secret is nowhere a client or an operator can read it.
    const everything = await gql(
      app,
      `{ connectors { id baseUrl headers { name value } hasSecret }
      runs(first: 50) { edges { node { error } } } logEntries(first: 100) { edges { node { message details } } } }`,
    );
    assert.ok(!everything.text.includes(CANARY), 'GraphQL responses never carry the secret');
    assert.ok(!everything.text.includes('t0ken'));
    assert.ok(!logged.includes(CANARY), 'log output never carries the secret');
  });

  it('should reject bad connector input with a code and a field, and change nothing', async () => {
    const { app } = setup();
    const cases: [string, string, string][] = [
      ['id: "1bad", baseUrl: "http://127.0.0.1/"', 'BAD_USER_INPUT', 'id'],
      ['id: "A", kind: SERVER_OPERATIONS, baseUrl: "http://127.0.0.1/"', 'BAD_USER_INPUT', 'kind'],
      ['id: "A", baseUrl: "ftp://127.0.0.1/"', 'BAD_USER_INPUT', 'baseUrl'],
      ['id: "A", baseUrl: "http://user:pw@127.0.0.1/"', 'BAD_USER_INPUT', 'baseUrl'],
      ['id: "A", baseUrl: "http://127.0.0.1/", secret: "x"', 'BAD_USER_INPUT', 'secret'],
      ['id: "A", baseUrl: "http://127.0.0.1/", authScheme: BASIC, secret: "no-colon"', 'BAD_USER_INPUT', 'secret'],
      ['id: "A", baseUrl: "http://127.0.0.1/", headers: [{ name: "Authorization", value: "x" }]', 'BAD_USER_INPUT', 'headers'],
      ['id: "A", baseUrl: "http://127.0.0.1/", timeoutSeconds: 0', 'BAD_USER_INPUT', 'timeoutSeconds'],
      // The harness's own connector stands in for the built-in ServerOperationConnector.
      ['id: "Test", baseUrl: "http://127.0.0.1/"', 'CONFLICT', ''],
    ];
    for (const [input, code, field] of cases) {
      const result = await gql(app, `mutation { createConnector(input: { ${input} }) { id } }`);
      assert.equal(result.errors?.[0]?.extensions?.code, code, input);
      if (field) assert.equal(result.errors?.[0]?.extensions?.field, field, input);
    }
    assert.equal((await sql`select count(*)::int as n from connectors`)[0]!['n'], 0);
    await createOneC(app);
    const duplicate = await gql(
      app,
      `mutation { createConnector(input: { id: "OneC_8_Connector", baseUrl: "http://127.0.0.1/" }) { id } }`,
    );
    assert.equal(duplicate.errors?.[0]?.extensions?.code, 'CONFLICT');
  });

  it('should update a connector, keep the secret unless changed, and clear it with the scheme', async () => {
    const { app } = setup();
    await createOneC(app);
    const moved = await gqlOk<{ updateConnector: { baseUrl: string; hasSecret: boolean } }>(
      app,
      `mutation { updateConnector(id: "OneC_8_Connector", input: { baseUrl: "http://127.0.0.1:${port}/v2" }) { baseUrl hasSecret } }`,
    );
    assert.deepEqual(moved.updateConnector, { baseUrl: `http://127.0.0.1:${port}/v2`, hasSecret: true });
    const cleared = await gqlOk<{ updateConnector: { authScheme: string | null; hasSecret: boolean } }>(
      app,
      `mutation { updateConnector(id: "OneC_8_Connector", input: { authScheme: null }) { authScheme hasSecret } }`,
    );
    assert.deepEqual(cleared.updateConnector, { authScheme: null, hasSecret: false });
    const missing = await gql(app, `mutation { updateConnector(id: "Nope", input: { timeoutSeconds: 3 }) { id } }`);
    assert.equal(missing.errors?.[0]?.extensions?.code, 'NOT_FOUND');
  });

  it('should refuse to delete a connector that jobs use unless forced, and warn about jobs calling a missing one', async () => {
    const { h, app } = setup();
    await createOneC(app);
    await h.jobs.create({ id: 'user', name: 'x', externalCall: 'OneC_8_Connector:МояФункция', period: '0:1:0' });
    const refused = await gql(app, 'mutation { deleteConnector(id: "OneC_8_Connector") }');
    assert.equal(refused.errors?.[0]?.extensions?.code, 'CONFLICT');
    assert.match(refused.errors![0]!.message, /user/);
    const forced = await gqlOk<{ deleteConnector: string }>(app, 'mutation { deleteConnector(id: "OneC_8_Connector", force: true) }');
    assert.equal(forced.deleteConnector, 'OneC_8_Connector');
    h.clock.set(T0 + 60_000);
    await tickAndSettle(h);
    const [run] = await sql<RunRow[]>`select * from job_runs where job_id = 'user'`;
    assert.equal(run!.status, 'FAILED');
    assert.match(run!.error!, /Unknown connector "OneC_8_Connector"/);

    await h.jobs.create({ id: 'early', name: 'x', externalCall: 'NotYet:Method', period: '0:1:0' });
    const [warning] = await sql`select message from log_entries where job_id = 'early' and level = 'WARNING'`;
    assert.match(String(warning!['message']), /NotYet.*does not exist/);
  });
});
