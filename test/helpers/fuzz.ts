// The fuzz test of SPEC §8, shared by test/fuzz.test.ts (its short form in `npm test`) and
// scripts/fuzz.ts (`npm run fuzz`, the long form): generated malformed requests — the documents of
// fuzz-documents.ts sent in every way HTTP allows, and ways it does not: GET and POST, right and
// wrong content types, broken JSON, bad variables and operation names, odd paths and headers — to
// one running service. Each answer must be a coded GraphQL error or a 4xx (valid, harmless
// queries may succeed), never a 5xx, an INTERNAL_SERVER_ERROR, a stack trace, SQL text or a
// secret; the service logs no error; and the database's rows stay exactly as they were.
import fs from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { Writable } from 'node:stream';
import fc from 'fast-check';
import pino from 'pino';
import postgres from 'postgres';
import { loadConfig } from '../../src/config.ts';
import { type Instance, startInstance } from '../../src/instance.ts';
import { type DocumentContext, type Fixtures, loadPublishedSchema, operationArbitrary } from './fuzz-documents.ts';
import { LONG } from './fuzz-values.ts';

export interface FuzzRequest {
  method: string;
  path: string;
  headers: Record<string, string>;
  body?: string | Buffer;
  kind: string;
}

export interface Answer {
  status: number;
  contentType: string;
  body: string;
  /** No answer: a timeout or a dropped connection. */
  error?: string;
}

const PATHS = [
  '/graphql/',
  '/graphql?x=1',
  '/GRAPHQL',
  '/',
  '/health',
  '/health/live',
  '/metrics',
  '/nope',
  '/graphql/../graphql',
  '/%zz',
  `/${LONG(3000)}`,
  '/graphql?query=%zz',
];
const ACCEPTS = [
  'application/json',
  'application/graphql-response+json',
  'application/graphql-response+json, application/json;q=0.9',
  'application/xml',
  'text/plain',
  'x/y;q=bad',
];
/** Accepts that let a valid subscription open a stream, which is no malformed request: never sent with one. */
const STREAMING_ACCEPTS = ['text/event-stream', 'multipart/mixed', '*/*', 'text/*'];
const CONTENT_TYPES = [
  'application/json',
  'application/json; charset=utf-8',
  'application/json; charset=latin1',
  'application/json; charset=utf-16',
  'application/graphql+json',
  'application/x-json',
  'application/json; boundary=x',
  '',
];
const odd = [0, 1.5, true, null, [], {}, 'text', '{"a":', LONG(10_000)];

/** One generated request: a document wrapped in a transport, good or bad. */
export function requestArbitrary(ctx: DocumentContext): fc.Arbitrary<FuzzRequest> {
  return fc.tuple(operationArbitrary(ctx), fc.gen()).map(([op, g]) => {
    const accepts = op.subscription ? ACCEPTS : [...ACCEPTS, ...STREAMING_ACCEPTS];
    // Mostly what a GraphQL client accepts, so that most requests reach the service's own checks;
    // text/html rarely: a GET of it answers GraphiQL's page, megabytes that are the same every time.
    const roll = g(fc.nat, 299);
    const headers: Record<string, string> = {
      accept:
        roll === 0 ? 'text/html' : roll < 200 ? g(() => fc.constantFrom(...ACCEPTS.slice(0, 3))) : g(() => fc.constantFrom(...accepts)),
    };
    // Most carry the header that lets a GET, a form or a text/plain body past CSRF prevention
    // (SPEC §8), as a GraphQL client's would; the others check that prevention.
    if (g(fc.nat, 3) !== 0) headers['x-graphql-yoga-csrf'] = '1';
    const requestPath = g(fc.nat, 19) === 0 ? g(() => fc.constantFrom(...PATHS)) : '/graphql';
    // A mutation may be safe only through its variables (the one refused value is in one): a
    // transport that drops them (an application/graphql body, odd variables) could turn it into
    // a valid change, so such operations are sent only in ways that carry them whole.
    const carried = Object.keys(op.variables ?? {}).length > 0;
    const transports = [
      'json',
      'json',
      'json',
      'json',
      'json',
      'json',
      'odd json',
      'broken json',
      'get',
      'get',
      'form',
      'text',
      'multipart',
      'method',
      ...(carried ? [] : ['graphql']),
    ];
    const transport = g(() => fc.constantFrom(...transports));
    const payload = (): Record<string, unknown> => ({ query: op.query, variables: op.variables, operationName: op.operationName });
    const request = (method: string, body?: string | Buffer, contentType?: string, at = requestPath): FuzzRequest => {
      if (contentType) headers['content-type'] = contentType;
      return { method, path: at, headers, body, kind: `${op.kind} / ${transport}` };
    };
    switch (transport) {
      case 'json':
        return request(
          'POST',
          JSON.stringify(payload()),
          g(() => fc.constantFrom(...CONTENT_TYPES.slice(0, 2))),
        );
      case 'odd json': {
        const body = payload();
        const key = g(() => fc.constantFrom('query', 'operationName', 'extensions', ...(carried ? [] : ['variables'])));
        body[key] =
          key === 'extensions'
            ? g(() => fc.constantFrom<unknown>({ persistedQuery: { version: 1, sha256Hash: 'x' } }, 'x', [1], null))
            : g(() => fc.constantFrom(...odd));
        if (key === 'variables' && g(fc.boolean)) body[key] = JSON.stringify(op.variables ?? {});
        const whole = g(fc.nat, 5) === 0 ? g(() => fc.constantFrom<unknown>([body, body], [], null, 'query', 1)) : body;
        return request(
          'POST',
          JSON.stringify(whole),
          g(() => fc.constantFrom(...CONTENT_TYPES)),
        );
      }
      case 'broken json': {
        const text = JSON.stringify(payload());
        const broken = g(() =>
          fc.oneof(
            fc.double({ min: 0, max: 1, noNaN: true }).map((at) => text.slice(0, Math.floor(text.length * at))),
            fc.constantFrom(
              '',
              '{',
              '}',
              'null',
              'true',
              '"query"',
              '{"query": }',
              `{"query": "${op.query.replace(/"/g, '')}`,
              '\ufeff{}',
              '{"query":"{ jobs { id } }"}garbage',
              `${'['.repeat(100_000)}`,
              `{"query":"{ jobs { id } }","variables":${'{"a":'.repeat(20_000)}1${'}'.repeat(20_000)}}`,
            ),
            fc.uint8Array({ maxLength: 300 }).map((bytes) => Buffer.from(bytes)),
          ),
        );
        return request(
          'POST',
          broken,
          g(() => fc.constantFrom(...CONTENT_TYPES)),
        );
      }
      case 'get': {
        const params = new URLSearchParams();
        params.set('query', op.query);
        if (op.variables) params.set('variables', g(fc.boolean) ? JSON.stringify(op.variables) : '{"broken":');
        if (op.operationName !== undefined) params.set('operationName', op.operationName);
        if (g(fc.nat, 4) === 0) params.append('query', '{ jobs { id } }');
        const at = requestPath.includes('?') ? requestPath : `${requestPath}?${params.toString()}`;
        if (g(fc.nat, 3) === 0) headers['content-type'] = 'application/json';
        return request('GET', g(fc.nat, 9) === 0 ? JSON.stringify(payload()) : undefined, undefined, at);
      }
      case 'graphql':
        return request('POST', op.query, 'application/graphql');
      case 'form':
        return request(
          'POST',
          new URLSearchParams({ query: op.query, variables: JSON.stringify(op.variables ?? {}) }).toString(),
          'application/x-www-form-urlencoded',
        );
      case 'text':
        return request(
          'POST',
          JSON.stringify(payload()),
          g(() => fc.constantFrom('text/plain', 'text/plain;charset=UTF-8', 'application/octet-stream')),
        );
      case 'multipart': {
        const boundary = 'fuzzboundary';
        const operations = g(fc.boolean) ? JSON.stringify(payload()) : '{"query":';
        const map = g(() => fc.constantFrom('{}', '{"0":["variables.input"]}', '{"0":"x"}', 'not json'));
        const body = `--${boundary}\r\nContent-Disposition: form-data; name="operations"\r\n\r\n${operations}\r\n--${boundary}\r\nContent-Disposition: form-data; name="map"\r\n\r\n${map}\r\n--${boundary}\r\nContent-Disposition: form-data; name="0"; filename="a.txt"\r\nContent-Type: text/plain\r\n\r\nx\r\n${g(fc.boolean) ? `--${boundary}--\r\n` : ''}`;
        return request('POST', body, g(fc.boolean) ? `multipart/form-data; boundary=${boundary}` : 'multipart/form-data');
      }
      default:
        return request(
          g(() => fc.constantFrom('PUT', 'DELETE', 'PATCH', 'OPTIONS', 'HEAD', 'TRACE', 'PROPFIND')),
          JSON.stringify(payload()),
          'application/json',
        );
    }
  });
}

const agent = new http.Agent({ keepAlive: true, maxSockets: 8 });

/**
 * Sends one request; an answer not finished within `timeoutMs` is no answer. A kept-alive
 * connection the server closed as the request went out (after an earlier request's unread body,
 * say) is retried once on a new connection: only a request that fails there too has no answer.
 */
export async function send(base: URL, req: FuzzRequest, timeoutMs = 10_000): Promise<Answer> {
  const answer = await sendOnce(base, req, timeoutMs, agent);
  return answer.error && /socket hang up|ECONNRESET|EPIPE/.test(answer.error) ? sendOnce(base, req, timeoutMs, false) : answer;
}

const withLength = (req: FuzzRequest): Record<string, string> =>
  req.body === undefined ? req.headers : { ...req.headers, 'content-length': String(Buffer.byteLength(req.body)) };

function sendOnce(base: URL, req: FuzzRequest, timeoutMs: number, via: http.Agent | false): Promise<Answer> {
  return new Promise((resolve) => {
    const request = http.request(
      // Node frames a GET's body by neither length nor chunks unless told: the length is always given.
      {
        host: base.hostname,
        port: base.port,
        method: req.method,
        path: req.path,
        headers: withLength(req),
        agent: via,
        timeout: timeoutMs,
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (chunk: Buffer) => chunks.push(chunk));
        res.on('end', () =>
          resolve({
            status: res.statusCode ?? 0,
            contentType: String(res.headers['content-type'] ?? ''),
            body: Buffer.concat(chunks).toString('utf8'),
          }),
        );
        res.on('error', (error) => resolve({ status: 0, contentType: '', body: '', error: String(error) }));
      },
    );
    request.on('timeout', () => request.destroy(new Error(`no answer within ${timeoutMs} ms`)));
    request.on('error', (error) => resolve({ status: 0, contentType: '', body: '', error: error.message }));
    request.end(req.body);
  });
}

const LEAKS: [RegExp, string][] = [
  [/\n\s*at [^\n]*:\d+:\d+/, 'a stack trace'],
  [/node:internal|node_modules\/|\bsrc\/[\w/-]+\.ts\b/, 'a source path'],
  [
    /PostgresError|syntax error at or near|violates [\w ]*constraint|invalid input syntax for|invalid byte sequence|out of range for type|timestamp out of range|relation "\w+" does not exist|"routine"\s*:|SQLSTATE/i,
    'SQL text',
  ],
  [/\b(select\s+[\w*,\s"]+\s+from\s+\w+|insert\s+into\s+\w+|update\s+\w+\s+set\s|delete\s+from\s+\w+)/i, 'SQL text'],
  [/INTERNAL_SERVER_ERROR|Unexpected error\./, 'a masked internal error'],
];

/** What is wrong with an answer, or null when it is one the contract allows. */
export function judge(req: FuzzRequest, answer: Answer, secrets: readonly string[]): string | null {
  if (answer.error) return `no answer (${answer.error})`;
  if (answer.status >= 500) return `HTTP ${answer.status}`;
  // GraphiQL's page (GET, HTML) is the same code for every request: only secrets are looked for in it.
  const html = answer.contentType.startsWith('text/html');
  for (const [pattern, what] of LEAKS) if (!html && pattern.test(answer.body)) return `${what} in the answer`;
  for (const secret of secrets) if (answer.body.includes(secret)) return 'a secret in the answer';
  if (answer.status >= 400 || answer.status === 0) return null;
  const graphql = req.path.split('?')[0]!.toLowerCase().replace(/\/+$/, '') === '/graphql';
  if (!graphql || req.method === 'HEAD' || req.method === 'OPTIONS' || answer.status === 204 || answer.status === 302) return null;
  if (answer.contentType.startsWith('text/html')) return req.method === 'GET' ? null : `HTML for a ${req.method}`;
  const results = answer.contentType.startsWith('text/event-stream')
    ? answer.body
        .split('\n')
        .filter((l) => l.startsWith('data:') && l.slice(5).trim() !== '')
        .map((l) => l.slice(5))
    : answer.contentType.startsWith('multipart/mixed')
      ? []
      : [answer.body];
  for (const text of results) {
    let result: { errors?: { extensions?: { code?: unknown } }[] };
    try {
      result = JSON.parse(text) as typeof result;
    } catch {
      return `HTTP ${answer.status} with a body that is not JSON`;
    }
    if (result.errors?.some((e) => typeof e?.extensions?.code !== 'string'))
      return `HTTP ${answer.status} with an error that has no extensions.code`;
  }
  return null;
}

const tablesOf = (sql: postgres.Sql) =>
  sql<
    { name: string }[]
  >`select table_name as name from information_schema.tables where table_schema = 'public' and table_type = 'BASE TABLE' order by 1`;

/** The rows of every table of the service, as text (a row changed shows as one gone, one new). */
export async function snapshotRows(sql: postgres.Sql): Promise<Set<string>> {
  const rows = new Set<string>();
  for (const { name } of await tablesOf(sql)) {
    for (const { row } of await sql<{ row: string }[]>`select to_jsonb(t)::text as row from ${sql(name)} t`) rows.add(`${name}: ${row}`);
  }
  return rows;
}

/** One digest of every row of every table: a cheap check after each group of requests. */
async function digester(sql: postgres.Sql): Promise<() => Promise<string>> {
  const parts = (await tablesOf(sql)).map(
    ({ name }) =>
      `coalesce((select md5(string_agg(to_jsonb(t)::text, ',' order by to_jsonb(t)::text)) from "${name.replace(/"/g, '""')}" t), '')`,
  );
  const query = `select ${parts.length > 0 ? parts.join(` || '|' || `) : "''"} as digest`;
  return async () => (await sql.unsafe<{ digest: string }[]>(query))[0]!.digest;
}

export const rowsChanged = (before: Set<string>, after: Set<string>): number =>
  [...after].filter((r) => !before.has(r)).length + [...before].filter((r) => !after.has(r)).length;

export interface FuzzTarget {
  base: URL;
  sql: postgres.Sql;
  instance: Instance;
  fixtures: Fixtures;
  /** The connector secret the fixtures hold: it must never come back. */
  secrets: string[];
  /** Error records (pino level ≥ 50) the service logged. */
  errors: Record<string, unknown>[];
  stop(): Promise<void>;
}

/** Starts an instance in this process (on `settings`' database, or an embedded one) with the fixtures in place. */
export async function startFuzzTarget(settings: Record<string, string>): Promise<FuzzTarget> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'fuzz-ops-'));
  fs.writeFileSync(path.join(dir, 'ops.mjs'), 'export default { Noop: async () => {} };\n');
  const errors: Record<string, unknown>[] = [];
  const stream = new Writable({
    write(chunk: Buffer, _encoding, done) {
      for (const line of chunk.toString('utf8').split('\n').filter(Boolean)) {
        const record = JSON.parse(line) as Record<string, unknown>;
        if (Number(record['level']) >= 50) errors.push(record);
      }
      done();
    },
  });
  const config = loadConfig({
    PORT: '0',
    SERVER_OPERATIONS_DIR: dir,
    SERVER_OPERATIONS_WORKERS: '1',
    SHUTDOWN_GRACE_SECONDS: '1',
    // No daily housekeeping: its entry would count as a row changed by a refused request.
    LOG_RETENTION_DAYS: '0',
    RUN_RETENTION_DAYS: '0',
    ...settings,
  });
  const instance = await startInstance({ config, log: pino({ level: 'warn' }, stream) });
  const sql = postgres(instance.databaseUrl, { max: 2, onnotice: () => {} });
  const base = new URL(`http://127.0.0.1:${instance.port}`);
  const secret = 'fuzz-canary-secret-5b1e';
  const fixtures: Fixtures = { jobId: 'fuzz-job', connectorId: 'FuzzHttp', runId: '' };
  const api = async (query: string) => {
    const answer = await send(base, {
      method: 'POST',
      path: '/graphql',
      headers: { 'content-type': 'application/json', accept: 'application/json' },
      body: JSON.stringify({ query }),
      kind: 'fixture',
    });
    const body = JSON.parse(answer.body) as { data?: Record<string, { id: string }>; errors?: unknown };
    if (!body.data || body.errors) throw new Error(`fixture ${query}: ${answer.body}`);
    return body.data;
  };
  await api(
    `mutation { createConnector(input: { id: "FuzzHttp", baseUrl: "http://127.0.0.1:9", authScheme: BEARER, secret: "${secret}" }) { id } }`,
  );
  await api(
    `mutation { createJob(input: { id: "fuzz-job", name: "Fuzz", externalCall: "ServerOperationConnector:Noop", period: "1:0:0", enabled: false }) { id } }`,
  );
  fixtures.runId = (await api(`mutation { runJobNow(id: "fuzz-job") { id } }`))['runJobNow']!.id;
  for (let i = 0; i < 200; i++) {
    const [run] = await sql<{ status: string }[]>`select status from job_runs where id = ${fixtures.runId}`;
    if (run?.status !== 'RUNNING') break;
    await new Promise((resolve) => setTimeout(resolve, 25));
  }
  return {
    base,
    sql,
    instance,
    fixtures,
    secrets: [secret],
    errors,
    stop: async () => {
      agent.destroy();
      await sql.end();
      await instance.stop();
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
}

export interface FuzzReport {
  seed: number;
  operations: number;
  unexpected: number;
  serverErrors: number;
  rowsChanged: number;
  loggedErrors: number;
  /** Up to `keep` of the unexpected answers: what was sent, what came back, why it is wrong. */
  examples: string[];
  ms: number;
  /** Per kind of case ("mutation fields / json", ...): how many, how long their groups took, how many unexpected. */
  kinds: Record<string, { count: number; ms: number; unexpected: number }>;
  /** Where the time went: generating requests, waiting for answers, checking the rows. */
  timing: { generate: number; send: number; check: number };
}

const show = (req: FuzzRequest, answer: Answer, why: string) =>
  `${why} [${req.kind}] ${req.method} ${req.path.slice(0, 300)} ${JSON.stringify(req.headers)} ${String(req.body ?? '').slice(0, 600)}\n  → ${answer.status} ${answer.body.slice(0, 400)}`;

/**
 * Sends `runs` generated requests (`concurrency` at a time), checking every answer and, after every
 * group, that no row changed. Returns the figures.
 */
export async function runFuzz(
  target: FuzzTarget,
  options: { runs: number; seed: number; concurrency?: number; keep?: number; onProgress?: (report: FuzzReport) => void },
): Promise<FuzzReport> {
  const started = Date.now();
  const ctx: DocumentContext = { schema: loadPublishedSchema(), fixtures: target.fixtures };
  const arbitrary = requestArbitrary(ctx);
  const concurrency = options.concurrency ?? 4;
  const report: FuzzReport = {
    seed: options.seed,
    operations: 0,
    unexpected: 0,
    serverErrors: 0,
    rowsChanged: 0,
    loggedErrors: 0,
    examples: [],
    ms: 0,
    kinds: {},
    timing: { generate: 0, send: 0, check: 0 },
  };
  const first = await snapshotRows(target.sql);
  const digest = await digester(target.sql);
  let digestBefore = await digest();
  let before = first;
  const errorsBefore = target.errors.length;
  const chunk = 250;
  for (let done = 0; done < options.runs; done += chunk) {
    const generating = Date.now();
    const requests = fc.sample(arbitrary, { numRuns: Math.min(chunk, options.runs - done), seed: options.seed + done });
    report.timing.generate += Date.now() - generating;
    for (let i = 0; i < requests.length; i += concurrency) {
      const group = requests.slice(i, i + concurrency);
      const sent = Date.now();
      const answers = await Promise.all(group.map((req) => send(target.base, req)));
      report.timing.send += Date.now() - sent;
      const took = (Date.now() - sent) / group.length;
      const errorsNow = target.errors.length;
      group.forEach((req, j) => {
        report.operations++;
        const answer = answers[j]!;
        const why = judge(req, answer, target.secrets);
        const kind = (report.kinds[req.kind] ??= { count: 0, ms: 0, unexpected: 0 });
        kind.count++;
        kind.ms += took;
        if (why) kind.unexpected++;
        if (answer.status >= 500) report.serverErrors++;
        if (why) {
          report.unexpected++;
          if (report.examples.length < (options.keep ?? 10)) report.examples.push(show(req, answer, why));
        }
      });
      const checking = Date.now();
      const digestAfter = await digest();
      report.timing.check += Date.now() - checking;
      if (digestAfter !== digestBefore || errorsNow > errorsBefore + report.loggedErrors) {
        const after = digestAfter !== digestBefore ? await snapshotRows(target.sql) : before;
        digestBefore = digestAfter;
        const what =
          rowsChanged(before, after) > 0
            ? 'rows changed'
            : `the service logged an error: ${JSON.stringify(target.errors.at(-1)).slice(0, 400)}`;
        report.unexpected += group.length;
        group.forEach(
          (req, j) =>
            report.examples.length < (options.keep ?? 10) &&
            report.examples.push(show(req, answers[j]!, `${what} (one of a group of ${group.length})`)),
        );
        report.loggedErrors = target.errors.length - errorsBefore;
        before = after;
      }
    }
    report.rowsChanged = rowsChanged(first, before);
    report.ms = Date.now() - started;
    options.onProgress?.(report);
  }
  report.ms = Date.now() - started;
  return report;
}
