// Tokens and roles (SPEC §8), cell by cell: no token / an unknown token / viewer / operator /
// admin × every query and mutation (over HTTP and over graphql-ws), every subscription (over
// graphql-ws and SSE) and /metrics. Each cell gets its SPEC outcome, and a refusal leaves the
// database exactly as it was. Then: the audit trail names its actor, `me`, header values shown to
// admins only, and no token ever reaching an answer or a log line.
import assert from 'node:assert/strict';
import { after, describe, it } from 'node:test';
import { hasRole, type Role } from '../src/auth/tokens.ts';
import type { GraphQLObjectType } from 'graphql';
import { HIDDEN_HEADER_VALUE } from '../src/graphql/connectors.ts';
import { schema } from '../src/graphql/schema.ts';
import { appFor, gqlOk, type Json } from './helpers/api.ts';
import {
  type Answer,
  authApp,
  authorizationOf,
  CANARIES,
  capturedLog,
  EVERYONE,
  NAME_OF,
  overHttp,
  overWs,
  sseSubscribe,
  tokenStore,
  type Who,
  wsClient,
} from './helpers/auth.ts';
import { snapshot, testDatabase } from './helpers/db.ts';
import { harness, type Harness } from './helpers/harness.ts';
import { subscribeWs } from './helpers/live.ts';
import { waitFor } from './helpers/process.ts';

const { sql } = await testDatabase();

/** A connector header value, which only admins may see. */
const HEADER_SECRET = 'header-value-canary-7c1e9a3b5d';

const h: Harness = harness(sql);
h.connector.define('ok', async () => {});
// Holds its run until it is cancelled.
h.connector.define('hold', (ctx) => new Promise<void>((resolve) => ctx.signal.addEventListener('abort', () => resolve(), { once: true })));
const { log, lines } = capturedLog();
const { port, url } = await authApp(h, tokenStore(), log);
/** Every answer a test got, with who got it, for the canary checks at the end. */
const answers: { who: Who; text: string }[] = [];
const seen = (who: Who, answer: Answer): Answer => {
  answers.push({ who, text: answer.text });
  return answer;
};

/** The same starting point for every cell: job j1, connector c1 with a header; nothing running. */
async function fixtures(): Promise<void> {
  await sql`truncate jobs, job_runs, log_entries, connectors`;
  await h.registry.reload();
  await h.jobs.create({ id: 'j1', name: 'Job one', externalCall: 'Test:ok', period: '1:0:0' });
  await h.connectors.create({ id: 'c1', baseUrl: 'http://127.0.0.1:9/x', headers: [{ name: 'X-Tenant', value: HEADER_SECRET }] });
}

/** Ends what a cell left running: the held run, a manual run of j1. */
async function settle(): Promise<void> {
  const running = await sql<{ id: string }[]>`select id::text from job_runs where status = 'RUNNING'`;
  for (const { id } of running) await h.jobs.cancelRun(id).catch(() => {});
  await waitFor(async () => (await sql`select 1 from job_runs where status = 'RUNNING'`).length === 0, 'no run left RUNNING');
}

interface Op {
  /** The root field it calls (its error's path when refused). */
  field: string;
  /** What the test names it, when the field alone does not say (a nested field, an argument that needs more). */
  name?: string;
  needs: Role;
  query: string;
  /** Extra fixtures; the operation's variables. */
  prepare?: () => Promise<Json>;
  /** What a successful answer must hold, for `who`. */
  check?: (data: Json, who: Role) => void;
}

const OPS: Op[] = [
  { field: 'jobs', needs: 'viewer', query: '{ jobs { id } }', check: (d) => assert.deepEqual(d['jobs'], [{ id: 'j1' }]) },
  { field: 'job', needs: 'viewer', query: '{ job(id: "j1") { id name } }', check: (d) => assert.equal(d['job']['name'], 'Job one') },
  { field: 'runs', needs: 'viewer', query: '{ runs(first: 5) { edges { node { id } } } }' },
  { field: 'logEntries', needs: 'viewer', query: '{ logEntries(first: 5) { edges { node { message } } } }' },
  {
    field: 'connectors',
    needs: 'viewer',
    query: '{ connectors { id headers { name value } } }',
    check: (d, who) => {
      const c1 = (d['connectors'] as Json[]).find((c) => c['id'] === 'c1')!;
      assert.deepEqual(c1['headers'], [{ name: 'X-Tenant', value: who === 'admin' ? HEADER_SECRET : HIDDEN_HEADER_VALUE }]);
    },
  },
  {
    field: 'me',
    needs: 'viewer',
    query: '{ me { name role } }',
    check: (d, who) => assert.deepEqual(d['me'], { name: NAME_OF[who], role: who.toUpperCase() }),
  },
  {
    field: 'simulateDowntime',
    needs: 'viewer',
    query: '{ simulateDowntime(from: "2026-01-01T00:00:00Z", to: "2026-01-02T00:00:00Z") { job { id } dueTimes wouldRun } }',
    check: (d) => assert.deepEqual(d['simulateDowntime'], [{ job: { id: 'j1' }, dueTimes: 23, wouldRun: 1 }]),
  },
  {
    field: 'job',
    name: 'job.nextRuns',
    needs: 'viewer',
    query: '{ job(id: "j1") { nextRuns(count: 2) { at localTime dst } } }',
    check: (d) =>
      assert.deepEqual(d['job']['nextRuns'], [
        { at: '2026-01-01T01:00:00.000Z', localTime: '2026-01-01T01:00:00.000+00:00', dst: null },
        { at: '2026-01-01T02:00:00.000Z', localTime: '2026-01-01T02:00:00.000+00:00', dst: null },
      ]),
  },
  {
    field: 'createJob',
    needs: 'operator',
    query: 'mutation { createJob(input: { id: "j2", name: "Two", externalCall: "Test:ok", period: "0:1:0" }) { id } }',
    check: (d) => assert.equal(d['createJob']['id'], 'j2'),
  },
  {
    field: 'updateJob',
    needs: 'operator',
    query: 'mutation { updateJob(id: "j1", input: { name: "Renamed" }) { name } }',
    check: (d) => assert.equal(d['updateJob']['name'], 'Renamed'),
  },
  { field: 'deleteJob', needs: 'operator', query: 'mutation { deleteJob(id: "j1") }', check: (d) => assert.equal(d['deleteJob'], 'j1') },
  {
    field: 'pauseJob',
    needs: 'operator',
    query: 'mutation { pauseJob(id: "j1", note: "n") { enabled } }',
    check: (d) => assert.equal(d['pauseJob']['enabled'], false),
  },
  {
    field: 'resumeJob',
    needs: 'operator',
    query: 'mutation { resumeJob(id: "j1") { enabled } }',
    // Paused first, so that a refused resume would have had something to change.
    prepare: async () => (await h.jobs.pause('j1'), {}),
    check: (d) => assert.equal(d['resumeJob']['enabled'], true),
  },
  {
    field: 'pauseJobs',
    needs: 'operator',
    query: 'mutation { pauseJobs(ids: ["j1"], note: "n") { enabled } }',
    check: (d) => assert.deepEqual(d['pauseJobs'], [{ enabled: false }]),
  },
  {
    field: 'resumeJobs',
    needs: 'operator',
    query: 'mutation { resumeJobs(ids: ["j1"]) { enabled } }',
    prepare: async () => (await h.jobs.pause('j1'), {}),
    check: (d) => assert.deepEqual(d['resumeJobs'], [{ enabled: true }]),
  },
  {
    field: 'runJobNow',
    needs: 'operator',
    query: 'mutation { runJobNow(id: "j1") { trigger } }',
    check: (d) => assert.equal(d['runJobNow']['trigger'], 'MANUAL'),
  },
  {
    field: 'cancelRun',
    needs: 'operator',
    query: 'mutation($id: ID!) { cancelRun(id: $id) { status } }',
    prepare: async () => {
      await h.jobs.create({ id: 'held', name: 'Held', externalCall: 'Test:hold', period: '1:0:0', enabled: false });
      return { id: (await h.jobs.runNow('held')).id };
    },
    check: (d) => assert.equal(d['cancelRun']['status'], 'CANCELLED'),
  },
  {
    field: 'applyJobs',
    needs: 'operator',
    query:
      'mutation { applyJobs(input: { jobs: [{ id: "j2", name: "Two", externalCall: "Test:ok", period: "0:1:0" }] }) { created deleted } }',
    check: (d) => assert.deepEqual(d['applyJobs'], { created: ['j2'], deleted: [] }),
  },
  {
    field: 'applyJobs',
    name: 'applyJobs with prune',
    needs: 'admin',
    query:
      'mutation { applyJobs(input: { jobs: [{ id: "j2", name: "Two", externalCall: "Test:ok", period: "0:1:0" }], prune: true }) { created deleted } }',
    check: (d) => assert.deepEqual(d['applyJobs'], { created: ['j2'], deleted: ['j1'] }),
  },
  {
    field: 'applyJobs',
    name: 'applyJobs with prune, dry run',
    needs: 'admin',
    query: 'mutation { applyJobs(input: { jobs: [], prune: true, dryRun: true }) { deleted } }',
    check: (d) => assert.deepEqual(d['applyJobs'], { deleted: ['j1'] }),
  },
  {
    field: 'createConnector',
    needs: 'admin',
    query: 'mutation { createConnector(input: { id: "c2", baseUrl: "http://127.0.0.1:9/y" }) { id } }',
    check: (d) => assert.equal(d['createConnector']['id'], 'c2'),
  },
  {
    field: 'updateConnector',
    needs: 'admin',
    query: 'mutation { updateConnector(id: "c1", input: { timeoutSeconds: 5 }) { timeoutSeconds } }',
    check: (d) => assert.equal(d['updateConnector']['timeoutSeconds'], 5),
  },
  {
    field: 'deleteConnector',
    needs: 'admin',
    query: 'mutation { deleteConnector(id: "c1", force: true) }',
    check: (d) => assert.equal(d['deleteConnector'], 'c1'),
  },
];

/** What SPEC §8 says `who` gets for an operation needing `needs`. */
const outcomeOf = (who: Who, needs: Role): 'UNAUTHENTICATED' | 'FORBIDDEN' | 'ok' =>
  who === 'none' || who === 'unknown' ? 'UNAUTHENTICATED' : hasRole({ name: who, role: who }, needs) ? 'ok' : 'FORBIDDEN';

async function cell(op: Op, who: Who, transport: 'http' | 'ws'): Promise<void> {
  await fixtures();
  try {
    const variables = (await op.prepare?.()) ?? {};
    const before = await snapshot(sql);
    const answer = seen(
      who,
      transport === 'http' ? await overHttp(url, who, op.query, variables) : await overWs(port, who, op.query, variables),
    );
    const outcome = outcomeOf(who, op.needs);
    if (outcome === 'UNAUTHENTICATED') {
      if (transport === 'http') {
        assert.equal(answer.status, 401, answer.text);
        assert.deepEqual(answer.errors?.[0]?.extensions, { code: 'UNAUTHENTICATED' }, answer.text);
        assert.equal(answer.data, undefined, 'nothing was executed');
        assert.match(answer.text, /www-authenticate,Bearer/i);
      } else {
        assert.equal(answer.closeCode, 4401, answer.text);
      }
    } else if (outcome === 'FORBIDDEN') {
      if (transport === 'http') assert.equal(answer.status, 200, answer.text);
      assert.equal(answer.errors?.length, 1, answer.text);
      assert.equal(answer.errors![0]!.extensions?.['code'], 'FORBIDDEN', answer.text);
      assert.deepEqual(answer.errors![0]!.path, [op.field]);
      assert.equal(answer.data, null, answer.text);
      if (transport === 'ws') assert.equal(answer.open, true, 'the socket stays open for the other operations');
    } else {
      assert.equal(answer.errors, undefined, answer.text);
      op.check?.(answer.data!, who as Role);
      if (transport === 'ws') assert.equal(answer.open, true);
    }
    if (outcome !== 'ok') assert.equal(await snapshot(sql), before, 'a refused operation changed nothing');
  } finally {
    await settle();
  }
}

describe('role matrix: queries and mutations', () => {
  it('should cover every root field of the schema (a field added later must join the matrix)', () => {
    const fields = (type: GraphQLObjectType | null | undefined) => Object.keys(type?.getFields() ?? {}).sort();
    const covered = (mutation: boolean) =>
      [...new Set(OPS.filter((op) => op.query.startsWith('mutation') === mutation).map((op) => op.field))].sort();
    assert.deepEqual(fields(schema.getQueryType()), covered(false));
    assert.deepEqual(fields(schema.getMutationType()), covered(true));
    assert.deepEqual(fields(schema.getSubscriptionType()), SUBSCRIPTIONS.map((sub) => sub.field).sort());
  });

  for (const transport of ['http', 'ws'] as const) {
    for (const op of OPS) {
      for (const who of EVERYONE) {
        it(`${transport} ${op.name ?? op.field} as ${who}: ${outcomeOf(who, op.needs)}`, () => cell(op, who, transport));
      }
    }
  }
});

const SUBSCRIPTIONS = [
  {
    field: 'jobEvents',
    query: 'subscription { jobEvents { kind jobId } }',
    check: (d: Json) => assert.equal(d['jobEvents']['kind'], 'JOB_CREATED'),
  },
  {
    field: 'logEntryAdded',
    query: 'subscription { logEntryAdded { message } }',
    check: (d: Json) => assert.match(d['logEntryAdded']['message'], /created/),
  },
  {
    field: 'connectorEvents',
    query: 'subscription { connectorEvents { kind connectorId circuit { state failures } } }',
    // A connector whose circuit opens at its first failed call (nothing listens on port 9), called once.
    happen: async () => {
      await h.connectors.update('c1', { breakerFailures: 1 });
      const job = await h.jobs.create({ id: `circuit-${Date.now()}`, name: 'Circuit', externalCall: 'c1:ping', period: '1:0:0' });
      await h.jobs.runNow(job.id);
    },
    check: (d: Json) =>
      assert.deepEqual(d['connectorEvents'], { kind: 'CIRCUIT_OPENED', connectorId: 'c1', circuit: { state: 'OPEN', failures: 1 } }),
  },
];

describe('role matrix: subscriptions', () => {
  let n = 0;
  /** Something for a subscription to receive: a job created (as `local`, by the service itself). */
  const happen = () => h.jobs.create({ id: `live-${++n}`, name: 'Live', externalCall: 'Test:ok', period: '1:0:0' });

  for (const sub of SUBSCRIPTIONS) {
    for (const who of EVERYONE) {
      const allowed = outcomeOf(who, 'viewer') === 'ok';
      it(`ws ${sub.field} as ${who}: ${allowed ? 'events' : 'closed 4401'}`, async () => {
        await fixtures();
        const before = await snapshot(sql);
        let closed: number | undefined;
        const client = wsClient(port, who, { closed: (code) => (closed = code) });
        const base = h.bus.subscriptionCount;
        const live = subscribeWs(client, sub.query);
        try {
          if (allowed) {
            await waitFor(() => h.bus.subscriptionCount > base, 'the subscription to start');
            await (sub.happen ?? happen)();
            const [first] = await live.until(1);
            answers.push({ who, text: JSON.stringify(first) });
            sub.check(first!);
          } else {
            await waitFor(() => closed !== undefined, 'the connection to close');
            assert.equal(closed, 4401);
            assert.equal(live.items.length, 0);
            assert.equal(await snapshot(sql), before);
          }
        } finally {
          live.dispose();
          await client.dispose();
        }
      });

      it(`sse ${sub.field} as ${who}: ${allowed ? 'events' : '401'}`, async () => {
        await fixtures();
        const before = await snapshot(sql);
        const stop = new AbortController();
        const base = h.bus.subscriptionCount;
        try {
          const { response, frames } = await sseSubscribe(url, who, sub.query, stop.signal);
          if (allowed) {
            assert.equal(response.status, 200);
            await waitFor(() => h.bus.subscriptionCount > base, 'the subscription to start');
            await (sub.happen ?? happen)();
            const frame = (await frames!.next()).value!;
            answers.push({ who, text: frame.data });
            assert.equal(frame.event, 'next');
            sub.check((JSON.parse(frame.data) as { data: Json }).data);
          } else {
            const text = await response.text();
            answers.push({ who, text });
            assert.equal(response.status, 401, text);
            // The error comes in the form the client asked for: one `next` event, then `complete`.
            assert.match(response.headers.get('content-type') ?? '', /text\/event-stream/);
            const next = /event: next\ndata: (.*)\n/.exec(text);
            assert.ok(next && text.includes('event: complete'), text);
            assert.equal((JSON.parse(next[1]!) as { errors: Json[] }).errors[0]!['extensions']['code'], 'UNAUTHENTICATED');
            assert.equal(await snapshot(sql), before);
          }
        } finally {
          stop.abort();
        }
      });
    }
  }
});

describe('role matrix: /metrics', () => {
  for (const who of EVERYONE) {
    const allowed = outcomeOf(who, 'viewer') === 'ok';
    it(`/metrics as ${who}: ${allowed ? '200' : '401'}`, async () => {
      const authorization = authorizationOf(who);
      const response = await fetch(`http://127.0.0.1:${port}/metrics`, { headers: authorization ? { authorization } : {} });
      const text = await response.text();
      answers.push({ who, text });
      assert.equal(response.status, allowed ? 200 : 401, text);
      if (allowed) assert.match(text, /server_jobs_auth_test 1/);
      else assert.equal(response.headers.get('www-authenticate'), 'Bearer realm="server-jobs"');
    });
  }

  it('/health and /health/live need no token', async () => {
    for (const path of ['/health', '/health/live']) {
      const response = await fetch(`http://127.0.0.1:${port}${path}`);
      assert.equal(response.status, 200, path);
    }
  });
});

describe('audit entries name their actor', () => {
  after(settle);

  it('should put the token’s name in details.actor of every job, run and connector change', async () => {
    await sql`truncate jobs, job_runs, log_entries, connectors`;
    await h.registry.reload();
    const as = async (who: Role, query: string, variables?: Json) => {
      const answer = seen(who, await overHttp(url, who, query, variables));
      assert.equal(answer.errors, undefined, answer.text);
      return answer.data!;
    };
    await as('operator', 'mutation { createJob(input: { id: "a", name: "A", externalCall: "Test:hold", period: "1:0:0" }) { id } }');
    await as('operator', 'mutation { updateJob(id: "a", input: { name: "A2" }) { id } }');
    await as('operator', 'mutation { pauseJob(id: "a") { id } }');
    await as('operator', 'mutation { resumeJob(id: "a") { id } }');
    const run = (await as('operator', 'mutation { runJobNow(id: "a") { id } }'))['runJobNow']['id'] as string;
    await as('admin', 'mutation($id: ID!) { cancelRun(id: $id) { status } }', { id: run });
    await as('operator', 'mutation { deleteJob(id: "a") }');
    const list = (name: string) => `[{ id: "l", name: "${name}", externalCall: "Test:ok", period: "1:0:0" }]`;
    await as('operator', `mutation { applyJobs(input: { jobs: ${list('L')} }) { created } }`);
    await as('operator', `mutation { applyJobs(input: { jobs: ${list('L2')} }) { created } }`);
    await as('admin', 'mutation { applyJobs(input: { jobs: [], prune: true }) { deleted } }');
    await as('admin', 'mutation { createConnector(input: { id: "k", baseUrl: "http://127.0.0.1:9/k" }) { id } }');
    await as('admin', 'mutation { updateConnector(id: "k", input: { timeoutSeconds: 9 }) { id } }');
    await as('admin', 'mutation { deleteConnector(id: "k") }');

    const entries = await sql<
      { message: string; details: Json | null; runId: string | null }[]
    >`select message, details, run_id from log_entries where level = 'INFO' order by id`;
    // A manual run's and a cancel's entries name the run in details; entries with a runId are the run's own.
    assert.deepEqual(
      entries.filter((e) => e.details?.['runId']).map((e) => [e.details!['runId'], e.runId]),
      [
        [run, null],
        [run, null],
      ],
    );
    assert.deepEqual(
      entries.map((e) => [e.message, e.details?.['actor']]),
      [
        ['Job "a" created', 'operator-bot'],
        ['Job "a" updated', 'operator-bot'],
        ['Job "a" paused', 'operator-bot'],
        ['Job "a" resumed', 'operator-bot'],
        [`Job "a" run ${run} started by request`, 'operator-bot'],
        [`Job "a" run ${run} cancelled by request`, 'admin-bot'],
        ['Job "a" deleted', 'operator-bot'],
        ['Job "l" created', 'operator-bot'],
        ['Job "l" updated', 'operator-bot'],
        ['Job "l" deleted', 'admin-bot'],
        ['Connector k created', 'admin-bot'],
        ['Connector k updated', 'admin-bot'],
        ['Connector k deleted', 'admin-bot'],
      ],
    );
  });

  it('should name `local` with auth off, and `me` should say local / ADMIN', async () => {
    await sql`truncate jobs, job_runs, log_entries, connectors`;
    const open = appFor(h);
    assert.deepEqual((await gqlOk(open, '{ me { name role } }'))['me'], { name: 'local', role: 'ADMIN' });
    await gqlOk(open, 'mutation { createJob(input: { id: "b", name: "B", externalCall: "Test:ok", period: "1:0:0" }) { id } }');
    await gqlOk(open, 'mutation { pauseJob(id: "b") { id } }');
    await gqlOk(
      open,
      'mutation { createConnector(input: { id: "kb", baseUrl: "http://127.0.0.1:9/k", headers: [{ name: "X-A", value: "visible" }] }) { id } }',
    );
    const headers = (await gqlOk(open, '{ connectors { id headers { value } } }'))['connectors'].find((c: Json) => c['id'] === 'kb')[
      'headers'
    ];
    assert.deepEqual(headers, [{ value: 'visible' }], 'local is an admin: header values shown');
    const actors = await sql<{ actor: string }[]>`select details->>'actor' as actor from log_entries where level = 'INFO' order by id`;
    assert.deepEqual(
      actors.map((a) => a.actor),
      ['local', 'local', 'local'],
    );
  });
});

describe('canaries', () => {
  it('should never show a token in an answer, a log line or a log entry, nor a header value to a non-admin', async () => {
    const entries = JSON.stringify(await sql`select * from log_entries`);
    for (const token of CANARIES) assert.ok(!entries.includes(token), 'a log entry shows a token');
    assert.ok(answers.length > 150, `the matrix ran (${answers.length} answers)`);
    for (const { who, text } of answers) {
      for (const token of CANARIES) assert.ok(!text.includes(token), `an answer to ${who} shows a token: ${text.slice(0, 300)}`);
      if (who !== 'admin') assert.ok(!text.includes(HEADER_SECRET), `an answer to ${who} shows a header value: ${text.slice(0, 300)}`);
    }
    for (const line of lines) for (const token of CANARIES) assert.ok(!line.includes(token), `a log line shows a token: ${line}`);
  });
});
