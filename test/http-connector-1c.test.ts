import assert from 'node:assert/strict';
import http from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { after, beforeEach, describe, it } from 'node:test';
import type { RunRow } from '../src/db/rows.ts';
import { appFor, gql, gqlOk } from './helpers/api.ts';
import { testDatabase } from './helpers/db.ts';
import { harness, T0, tickAndSettle } from './helpers/harness.ts';

// A 1C:Enterprise-style HTTP service on loopback, called by jobs through the API and the
// scheduler. Every request is recorded as it came off the wire: the raw request target and the
// raw header lines (names as sent, in order), with the connection it arrived on.

const { sql } = await testDatabase();
beforeEach(() => {
  seen.length = 0;
  answers.clear();
  return sql`truncate jobs, job_runs, log_entries, connectors`;
});

interface Seen {
  method: string;
  /** The request target exactly as sent. */
  path: string;
  /** The header lines exactly as sent: [name, value] in order. */
  headers: [string, string][];
  socket: Socket;
  remotePort: number;
}
type Answer = (req: http.IncomingMessage, res: http.ServerResponse) => void;

const seen: Seen[] = [];
/** How the service answers, by raw request target; 204 when not listed. */
const answers = new Map<string, Answer>();
/** Resolves when the server sees the connection close. */
const closed = new WeakMap<Socket, Promise<void>>();

const server = http.createServer((req, res) => {
  const headers: [string, string][] = [];
  for (let i = 0; i < req.rawHeaders.length; i += 2) headers.push([req.rawHeaders[i]!, req.rawHeaders[i + 1]!]);
  seen.push({ method: req.method!, path: req.url!, headers, socket: req.socket, remotePort: req.socket.remotePort! });
  req.resume();
  (answers.get(req.url!) ?? ((_req, r) => r.writeHead(204).end()))(req, res);
});
// The server keeps idle connections longer than the connectors do (as 1C's Apache or IIS does).
server.keepAliveTimeout = 120_000;
server.on('connection', (socket: Socket) => closed.set(socket, new Promise((resolve) => socket.once('close', () => resolve()))));
await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
const port = (server.address() as AddressInfo).port;
const host = `127.0.0.1:${port}`;
after(() => {
  server.closeAllConnections();
  server.close();
});

const BASE = `http://${host}/base`;
/** `выгрузка` percent-encoded as UTF-8. */
const VYGRUZKA = '%D0%B2%D1%8B%D0%B3%D1%80%D1%83%D0%B7%D0%BA%D0%B0';
/** `Выгрузить Документы` as one path segment. */
const VYGRUZIT_DOKUMENTY =
  '%D0%92%D1%8B%D0%B3%D1%80%D1%83%D0%B7%D0%B8%D1%82%D1%8C%20%D0%94%D0%BE%D0%BA%D1%83%D0%BC%D0%B5%D0%BD%D1%82%D1%8B';
/** base64 of the UTF-8 bytes of `Администратор:пароль` (RFC 7617). */
const BASIC_ADMIN = 'Basic 0JDQtNC80LjQvdC40YHRgtGA0LDRgtC+0YA60L/QsNGA0L7Qu9GM';
/** Every printable ASCII character but the space at the ends (HTTP trims those). */
const PRINTABLE = Array.from({ length: 0x7e - 0x21 + 1 }, (_, i) => String.fromCharCode(0x21 + i)).join(' ');

function setup() {
  // Idle connections are kept longer than these tests take, so that reuse never depends on speed.
  const h = harness(sql, { http: { freeSocketTimeoutMs: 120_000 } });
  const app = appFor(h);
  return { h, app };
}
type App = ReturnType<typeof setup>['app'];

const CREATE_CONNECTOR = 'mutation($input: CreateConnectorInput!) { createConnector(input: $input) { id } }';
const UPDATE_CONNECTOR = 'mutation($id: ID!, $input: UpdateConnectorInput!) { updateConnector(id: $id, input: $input) { id } }';
const CREATE_JOB = 'mutation($input: CreateJobInput!) { createJob(input: $input) { id } }';

async function createOneC(app: App, input: Record<string, unknown> = {}) {
  await gqlOk(app, CREATE_CONNECTOR, {
    input: {
      id: 'OneC_8_Connector',
      baseUrl: `${BASE}/`,
      authScheme: 'BASIC',
      secret: 'Администратор:пароль',
      headers: [
        { name: 'X-Tenant', value: 'north' },
        { name: 'X-Printable', value: PRINTABLE },
      ],
      timeoutSeconds: 1,
      ...input,
    },
  });
}

async function createJob(app: App, id: string, externalCall: string, period = '0:0:10') {
  await gqlOk(app, CREATE_JOB, { input: { id, name: id, externalCall, period, timeoutSeconds: 60 } });
}

/** The header lines every call sends to the connector's own origin, in order. */
function expectedHeaders(jobId: string, run: RunRow, extra: { auth?: string | null; method?: 'POST' | 'GET' } = {}): [string, string][] {
  const auth = extra.auth === undefined ? BASIC_ADMIN : extra.auth;
  return [
    ...(auth === null
      ? []
      : ([
          ['x-tenant', 'north'],
          ['x-printable', PRINTABLE],
        ] as [string, string][])),
    ['user-agent', 'server-jobs'],
    ['x-job-id', jobId],
    ['x-run-id', run.id],
    ['x-scheduled-at', run.scheduledAt.toISOString()],
    ...(auth === null ? [] : ([['authorization', auth]] as [string, string][])),
    ...((extra.method ?? 'POST') === 'POST' ? ([['content-length', '0']] as [string, string][]) : []),
    ['Host', host],
    ['Connection', 'keep-alive'],
  ];
}

/** Runs what is due at `ms` and returns the ended runs by job id. */
async function runAt(h: ReturnType<typeof setup>['h'], ms: number): Promise<Record<string, RunRow>> {
  h.clock.set(ms);
  const started = await tickAndSettle(h);
  const ends = await Promise.all(started.map((s) => s.done));
  return Object.fromEntries(ends.map((end) => [end!.jobId, end!]));
}

describe('a 1C HTTP service called by jobs', () => {
  it('should send Cyrillic job ids, Cyrillic methods with spaces, a Cyrillic BASIC secret and the custom headers byte for byte', async () => {
    const { h, app } = setup();
    await createOneC(app);
    await createJob(app, 'выгрузка', 'OneC_8_Connector:Выгрузить Документы');
    await createJob(app, 'job-1.a_b', 'OneC_8_Connector:Ping');

    const runs = await runAt(h, T0 + 10_000);
    assert.equal(runs['выгрузка']?.status, 'SUCCEEDED', runs['выгрузка']?.error ?? '');
    assert.equal(runs['job-1.a_b']?.status, 'SUCCEEDED', runs['job-1.a_b']?.error ?? '');
    assert.equal(runs['выгрузка']!.scheduledAt.toISOString(), '2026-01-01T00:00:10.000Z');

    const byPath = Object.fromEntries(seen.map((s) => [s.path, s]));
    assert.deepEqual(Object.keys(byPath).sort(), [`/base/${VYGRUZIT_DOKUMENTY}`, '/base/Ping']);
    const cyrillic = byPath[`/base/${VYGRUZIT_DOKUMENTY}`]!;
    assert.equal(cyrillic.method, 'POST');
    assert.deepEqual(cyrillic.headers, expectedHeaders(VYGRUZKA, runs['выгрузка']!));
    // A Latin id goes out unchanged: encodeURIComponent leaves letters, digits and - . _ alone.
    assert.deepEqual(byPath['/base/Ping']!.headers, expectedHeaders('job-1.a_b', runs['job-1.a_b']!));
    // What went out is ASCII, so the server's reading of it is the bytes themselves.
    for (const [name, value] of seen.flatMap((s) => s.headers)) assert.match(`${name}: ${value}`, /^[\x20-\x7e]+$/);
    assert.equal(decodeURIComponent(cyrillic.headers.find(([n]) => n === 'x-job-id')![1]), 'выгрузка');
    assert.equal(Buffer.from(BASIC_ADMIN.slice('Basic '.length), 'base64').toString('utf8'), 'Администратор:пароль');
  });

  it('should record a 500 as FAILED with the status, a hanging target as TIMED_OUT and a redirect to a refused address as FAILED', async () => {
    const { h, app } = setup();
    await createOneC(app);
    answers.set(`/base/${VYGRUZIT_DOKUMENTY}`, (_req, res) =>
      res.writeHead(500, { 'content-type': 'text/plain; charset=utf-8' }).end('Ошибка: база\nнедоступна'),
    );
    let hanging: Socket | undefined;
    answers.set(
      '/base/%D0%94%D0%BE%D0%BB%D0%B3%D0%B0%D1%8F%20%D0%9E%D0%BF%D0%B5%D1%80%D0%B0%D1%86%D0%B8%D1%8F',
      (req) => (hanging = req.socket),
    );
    answers.set('/base/Metadata', (_req, res) => res.writeHead(302, { location: 'http://169.254.169.254/latest/meta-data' }).end());
    answers.set('/base/Loopback', (_req, res) => res.writeHead(307, { location: `http://127.0.0.2:${port}/base/x` }).end());
    await createJob(app, 'выгрузка', 'OneC_8_Connector:Выгрузить Документы');
    await createJob(app, 'зависание', 'OneC_8_Connector:Долгая Операция');
    await createJob(app, 'метаданные', 'OneC_8_Connector:Metadata');
    await createJob(app, 'петля', 'OneC_8_Connector:Loopback');

    const runs = await runAt(h, T0 + 10_000);
    assert.deepEqual(Object.fromEntries(Object.entries(runs).map(([id, run]) => [id, [run.status, run.error]])), {
      выгрузка: ['FAILED', `HTTP 500 Internal Server Error from POST ${BASE}/${VYGRUZIT_DOKUMENTY}: Ошибка: база недоступна`],
      зависание: [
        'TIMED_OUT',
        `No answer from POST ${BASE}/%D0%94%D0%BE%D0%BB%D0%B3%D0%B0%D1%8F%20%D0%9E%D0%BF%D0%B5%D1%80%D0%B0%D1%86%D0%B8%D1%8F within 1 s`,
      ],
      метаданные: ['FAILED', 'redirect to http://169.254.169.254/latest/meta-data refused: link-local address (cloud metadata)'],
      петля: ['FAILED', `redirect to http://127.0.0.2:${port}/base/x refused: loopback address, not on HTTP_CONNECTOR_ALLOW_HOSTS`],
    });
    // The timed-out request was abandoned, its connection closed rather than left open.
    assert.ok(hanging);
    await closed.get(hanging);

    // Each request reached the service once, byte for byte; no refused address was connected to.
    assert.deepEqual(
      seen.map((s) => s.path).sort(),
      [
        '/base/Loopback',
        '/base/Metadata',
        `/base/${VYGRUZIT_DOKUMENTY}`,
        '/base/%D0%94%D0%BE%D0%BB%D0%B3%D0%B0%D1%8F%20%D0%9E%D0%BF%D0%B5%D1%80%D0%B0%D1%86%D0%B8%D1%8F',
      ].sort(),
    );
    const jobIds: Record<string, string> = {
      [`/base/${VYGRUZIT_DOKUMENTY}`]: 'выгрузка',
      '/base/%D0%94%D0%BE%D0%BB%D0%B3%D0%B0%D1%8F%20%D0%9E%D0%BF%D0%B5%D1%80%D0%B0%D1%86%D0%B8%D1%8F': 'зависание',
      '/base/Metadata': 'метаданные',
      '/base/Loopback': 'петля',
    };
    for (const request of seen) {
      const jobId = jobIds[request.path]!;
      assert.deepEqual(request.headers, expectedHeaders(encodeURIComponent(jobId), runs[jobId]!), request.path);
    }

    // Every failure is an ERROR entry of its job.
    const errors = await sql<{ jobId: string }[]>`select job_id from log_entries where level = 'ERROR' order by job_id`;
    assert.deepEqual(errors.map((e) => e.jobId).sort(), ['выгрузка', 'зависание', 'метаданные', 'петля'].sort());
  });
});

describe('connections to a 1C service', () => {
  it('should reuse one connection between runs, keep it across unrelated changes, and close it when the connector changes or is deleted', async () => {
    const { h, app } = setup();
    await createOneC(app);
    await createJob(app, 'выгрузка', 'OneC_8_Connector:Выгрузить Документы');
    const connector = h.registry.get('OneC_8_Connector');

    assert.equal((await runAt(h, T0 + 10_000))['выгрузка']?.status, 'SUCCEEDED');
    // An unrelated connector change reloads the registry: this connector and its pool stay.
    await gqlOk(app, CREATE_CONNECTOR, { input: { id: 'Other', baseUrl: 'http://127.0.0.1:1/' } });
    assert.equal(h.registry.get('OneC_8_Connector'), connector, 'an unchanged connector keeps its instance');
    const second = await runAt(h, T0 + 20_000);
    assert.equal(second['выгрузка']?.status, 'SUCCEEDED');

    assert.equal(seen.length, 2);
    const [one, two] = seen;
    assert.equal(two!.socket, one!.socket, 'the second run arrived on the first run’s connection');
    assert.equal(two!.remotePort, one!.remotePort);
    assert.deepEqual(two!.headers, expectedHeaders(VYGRUZKA, second['выгрузка']!));

    // A change of the connector closes its kept connection.
    await gqlOk(app, UPDATE_CONNECTOR, { id: 'OneC_8_Connector', input: { timeoutSeconds: 5 } });
    await closed.get(one!.socket);
    assert.notEqual(h.registry.get('OneC_8_Connector'), connector);
    assert.equal((await runAt(h, T0 + 30_000))['выгрузка']?.status, 'SUCCEEDED');
    const three = seen[2]!;
    assert.notEqual(three.socket, one!.socket, 'the changed connector opened a connection of its own');

    // So does deleting it.
    await gqlOk(app, 'mutation { deleteConnector(id: "OneC_8_Connector", force: true) }');
    await closed.get(three.socket);
  });

  it('should send a request again once when the service had closed the kept connection, and only then', async () => {
    const { h, app } = setup();
    await createOneC(app);
    await createJob(app, 'выгрузка', 'OneC_8_Connector:Выгрузить Документы');
    assert.equal((await runAt(h, T0 + 10_000))['выгрузка']?.status, 'SUCCEEDED');
    const kept = seen[0]!.socket;

    // The service drops the kept connection as the next request arrives on it (the keep-alive
    // race: it had decided to close it): the request goes again on a new connection.
    answers.set(`/base/${VYGRUZIT_DOKUMENTY}`, (req, res) => {
      if (req.socket === kept) req.socket.destroy();
      else res.writeHead(204).end();
    });
    const runs = await runAt(h, T0 + 20_000);
    assert.equal(runs['выгрузка']?.status, 'SUCCEEDED', runs['выгрузка']?.error ?? '');
    assert.equal(seen.length, 3);
    assert.equal(seen[1]!.socket, kept);
    assert.notEqual(seen[2]!.socket, kept);
    // The same run both times, so a service that did act on the first can recognise the repeat.
    assert.deepEqual(seen[2]!.headers, seen[1]!.headers);
    assert.deepEqual(seen[2]!.headers, expectedHeaders(VYGRUZKA, runs['выгрузка']!));

    // On a new connection the same failure is the run's: nothing is sent twice.
    await gqlOk(app, CREATE_CONNECTOR, { input: { id: 'Fresh', baseUrl: `${BASE}/` } });
    await createJob(app, 'сбой', 'Fresh:Drop');
    answers.set('/base/Drop', (req) => req.socket.destroy());
    const dropped = await runAt(h, T0 + 30_000);
    assert.equal(dropped['сбой']?.status, 'FAILED');
    assert.equal(dropped['сбой']?.error, `POST ${BASE}/Drop failed: the server closed the connection without an answer`);
    assert.equal(seen.filter((s) => s.path === '/base/Drop').length, 1);
  });
});

describe('header values of a 1C connector', () => {
  it('should refuse a header value outside printable ASCII at createConnector and updateConnector, changing nothing', async () => {
    const { app } = setup();
    for (const value of ['Бухгалтерия', 'tab\there', 'del\x7f', 'café', 'line\nbreak']) {
      const result = await gql(app, CREATE_CONNECTOR, {
        input: { id: 'OneC_8_Connector', baseUrl: `${BASE}/`, headers: [{ name: 'X-Department', value }] },
      });
      assert.equal(result.errors?.[0]?.extensions?.code, 'BAD_USER_INPUT', JSON.stringify(value));
      assert.equal(result.errors?.[0]?.extensions?.field, 'headers', JSON.stringify(value));
    }
    const named = await gql(app, CREATE_CONNECTOR, {
      input: { id: 'OneC_8_Connector', baseUrl: `${BASE}/`, headers: [{ name: 'X-Отдел', value: 'north' }] },
    });
    assert.equal(named.errors?.[0]?.extensions?.code, 'BAD_USER_INPUT');
    assert.equal(named.errors?.[0]?.extensions?.field, 'headers');
    const cyrillic = await gql(app, CREATE_CONNECTOR, {
      input: { id: 'OneC_8_Connector', baseUrl: `${BASE}/`, headers: [{ name: 'X-Department', value: 'Бухгалтерия' }] },
    });
    assert.equal(
      cyrillic.errors?.[0]?.message,
      'The value of header X-Department has a character outside printable ASCII (U+0411 at position 1); header values must be ASCII characters 0x20–0x7E (percent-encode or base64 other text).',
    );
    assert.equal((await sql`select count(*)::int as n from connectors`)[0]!['n'], 0);

    await createOneC(app);
    const before = await sql`select * from connectors`;
    const update = await gql(app, UPDATE_CONNECTOR, {
      id: 'OneC_8_Connector',
      input: { headers: [{ name: 'X-Department', value: 'Бухгалтерия' }], timeoutSeconds: 7 },
    });
    assert.equal(update.errors?.[0]?.extensions?.code, 'BAD_USER_INPUT');
    assert.equal(update.errors?.[0]?.extensions?.field, 'headers');
    assert.deepEqual(await sql`select * from connectors`, before);
    const audit = await sql`select message from log_entries where message like 'Connector %' order by id`;
    assert.deepEqual(
      audit.map((e) => e['message']),
      ['Connector OneC_8_Connector created'],
    );
  });

  it('should fail the runs of a connector stored with such a value before, clearly and without sending', async () => {
    const { h, app } = setup();
    await createOneC(app);
    await sql`update connectors set headers = ${sql.json([{ name: 'X-Department', value: 'Бухгалтерия' }])}`;
    await h.registry.reload();
    await createJob(app, 'выгрузка', 'OneC_8_Connector:Выгрузить Документы');
    const runs = await runAt(h, T0 + 10_000);
    assert.equal(runs['выгрузка']?.status, 'FAILED');
    assert.equal(
      runs['выгрузка']?.error,
      'Connector OneC_8_Connector: the value of header "X-Department" has characters HTTP does not allow; change it with updateConnector',
    );
    assert.equal(seen.length, 0);
  });
});
