// A connector's circuit breaker (SPEC §3b) against a local HTTP service that fails and recovers:
// first on a controlled clock through one scheduler, then on two whole instances sharing a
// database, whose circuits and connectorEvents must agree.
import assert from 'node:assert/strict';
import { after, beforeEach, describe, it } from 'node:test';
import { createClient } from 'graphql-ws';
import postgres from 'postgres';
import WebSocket from 'ws';
import type { RunRow } from '../src/db/rows.ts';
import { appFor, assertError, gql as gqlApp, gqlOk } from './helpers/api.ts';
import { gate } from './helpers/connector.ts';
import { createTestDatabase, testDatabase } from './helpers/db.ts';
import { harness, nextEvent, T0, tickAndSettle } from './helpers/harness.ts';
import { type Handler, origin, recorded, routes } from './helpers/http-testbed.ts';
import { testInstance } from './helpers/instance.ts';
import { subscribeWs } from './helpers/live.ts';
import { gql, waitFor } from './helpers/process.ts';

const { sql } = await testDatabase();
beforeEach(() => sql`truncate jobs, job_runs, log_entries, connectors`);

const OPEN_ERROR = 'connector OneC unavailable (circuit open)';
const at = (seconds: number) => new Date(T0 + seconds * 1000);
const iso = (seconds: number) => at(seconds).toISOString();

/** The service answers 503 while `down.value`, 200 otherwise; a call may be held until `hold` opens. */
function service(down: { value: boolean }, hold?: () => Promise<void> | undefined): Handler {
  return (_req, res) =>
    void Promise.resolve(hold?.()).then(() => {
      if (down.value) res.writeHead(503).end('down for maintenance');
      else res.writeHead(200).end('ok');
    });
}

const runs = () =>
  sql<Pick<RunRow, 'jobId' | 'trigger' | 'status' | 'error' | 'scheduledAt'>[]>`
    select job_id, trigger, status, error, scheduled_at from job_runs order by scheduled_at, id`;
const circuitOf = async () =>
  (
    await sql<{ circuitState: string; circuitFailures: number; circuitOpenedAt: Date | null; circuitNextProbeAt: Date | null }[]>`
    select circuit_state, circuit_failures, circuit_opened_at, circuit_next_probe_at from connectors where id = 'OneC'`
  )[0]!;
const circuitEntries = () =>
  sql<{ level: string; message: string; jobId: string | null }[]>`
    select level, message, job_id from log_entries where message like 'Connector OneC circuit%' order by id`;

describe('a circuit breaker on a controlled clock', () => {
  it('should open after breakerFailures consecutive failures across jobs, skip runs, probe once per interval and close on the first success', async () => {
    const h = harness(sql);
    const app = appFor(h);
    const down = { value: true };
    let held: ReturnType<typeof gate> | null = null;
    routes.set(
      '/Load',
      service(down, () => held?.promise),
    );
    const opened = nextEvent(h.bus, 'circuit:opened');
    const closed = nextEvent(h.bus, 'circuit:closed');
    await gqlOk(
      app,
      `mutation { createConnector(input: { id: "OneC", baseUrl: "${origin}", breakerFailures: 3, breakerProbeSeconds: 30 }) { id } }`,
    );
    await h.jobs.create({ id: 'a', name: 'a', externalCall: 'OneC:Load', period: '0:0:10' });
    await h.jobs.create({ id: 'b', name: 'b', externalCall: 'OneC:Load', period: '0:0:10', startAt: at(15) });
    const tickAt = async (seconds: number) => {
      h.clock.set(T0 + seconds * 1000);
      return tickAndSettle(h);
    };

    // Three failures in a row, of two jobs: the third opens the circuit.
    for (const s of [10, 15]) await tickAt(s);
    assert.deepEqual(await circuitOf(), { circuitState: 'CLOSED', circuitFailures: 2, circuitOpenedAt: null, circuitNextProbeAt: null });
    await tickAt(20);
    assert.deepEqual(await circuitOf(), { circuitState: 'OPEN', circuitFailures: 3, circuitOpenedAt: at(20), circuitNextProbeAt: at(50) });
    assert.deepEqual(await opened, {
      at: at(20),
      connectorId: 'OneC',
      circuit: { state: 'OPEN', failures: 3, openedAt: at(20), nextProbeAt: at(50), probeRunId: null },
    });

    // Open: every run is SKIPPED until nextProbeAt; the service is not called.
    for (const s of [25, 30, 35, 40, 45]) await tickAt(s);
    assert.equal(recorded.length, 3);

    // The first due run at nextProbeAt is the probe: HALF_OPEN while it is in flight, the others skipped.
    held = gate();
    h.clock.set(T0 + 50_000);
    const [probe] = await h.scheduler.tick();
    assert.equal(probe!.run.status, 'RUNNING');
    await waitFor(() => recorded.length === 4, 'the probe call to reach the service');
    const listed = await gqlOk<{ connectors: { id: string; circuit: unknown }[] }>(
      app,
      '{ connectors { id circuit { state failures openedAt nextProbeAt } } }',
    );
    assert.deepEqual(listed.connectors.find((c) => c.id === 'OneC')!.circuit, {
      state: 'HALF_OPEN',
      failures: 3,
      openedAt: iso(20),
      nextProbeAt: iso(80),
    });
    await tickAt(55);
    held.open();
    held = null;
    await probe!.done;
    // The probe failed: open again, the next probe an interval after this one began.
    assert.deepEqual(await circuitOf(), { circuitState: 'OPEN', circuitFailures: 4, circuitOpenedAt: at(20), circuitNextProbeAt: at(80) });
    for (const s of [60, 65, 70, 75]) await tickAt(s);

    // A manual run while open is SKIPPED too: it never probes.
    h.clock.set(T0 + 77_000);
    const manual = await h.jobs.runNow('b');
    assert.deepEqual([manual.trigger, manual.status, manual.error, manual.startedAt], ['MANUAL', 'SKIPPED', OPEN_ERROR, null]);

    // The service is back: the next probe succeeds and closes the circuit; runs call again.
    down.value = false;
    await tickAt(80);
    assert.deepEqual(await circuitOf(), { circuitState: 'CLOSED', circuitFailures: 0, circuitOpenedAt: null, circuitNextProbeAt: null });
    assert.deepEqual(await closed, {
      at: at(80),
      connectorId: 'OneC',
      circuit: { state: 'CLOSED', failures: 0, openedAt: null, nextProbeAt: null, probeRunId: null },
    });
    await tickAt(85);

    const calls = recorded.map((r) => `${decodeURIComponent(String(r.headers['x-job-id']))}@${r.headers['x-scheduled-at']}`);
    assert.deepEqual(calls, [`a@${iso(10)}`, `b@${iso(15)}`, `a@${iso(20)}`, `a@${iso(50)}`, `a@${iso(80)}`, `b@${iso(85)}`]);
    const skipped = (s: number, jobId: string) => ({
      jobId,
      trigger: 'SCHEDULE',
      status: 'SKIPPED',
      error: OPEN_ERROR,
      scheduledAt: at(s),
    });
    const called = (s: number, jobId: string, status: string, error: string | null) => ({
      jobId,
      trigger: 'SCHEDULE',
      status,
      error,
      scheduledAt: at(s),
    });
    const failure = `HTTP 503 Service Unavailable from POST ${origin}/Load: down for maintenance`;
    assert.deepEqual(
      [...(await runs())],
      [
        called(10, 'a', 'FAILED', failure),
        called(15, 'b', 'FAILED', failure),
        called(20, 'a', 'FAILED', failure),
        skipped(25, 'b'),
        skipped(30, 'a'),
        skipped(35, 'b'),
        skipped(40, 'a'),
        skipped(45, 'b'),
        called(50, 'a', 'FAILED', failure),
        skipped(55, 'b'),
        skipped(60, 'a'),
        skipped(65, 'b'),
        skipped(70, 'a'),
        skipped(75, 'b'),
        { jobId: 'b', trigger: 'MANUAL', status: 'SKIPPED', error: OPEN_ERROR, scheduledAt: at(77) },
        called(80, 'a', 'SUCCEEDED', null),
        called(85, 'b', 'SUCCEEDED', null),
      ],
    );
    assert.deepEqual(
      [...(await circuitEntries())],
      [
        { level: 'WARNING', message: 'Connector OneC circuit opened after 3 consecutive failures', jobId: null },
        { level: 'INFO', message: 'Connector OneC circuit closed', jobId: null },
      ],
    );
    const [warning] = await sql<
      { message: string }[]
    >`select message from log_entries where job_id = 'b' and level = 'WARNING' and message like '%25.000Z%'`;
    assert.equal(warning!.message, `Job "b" skipped its run due at ${iso(25)}: ${OPEN_ERROR}`);
  });

  it('should count a call in flight when the circuit opened: a failure adds to the count, a success closes it', async () => {
    // Leases longer than the clock's jumps, which no renewal accompanies here.
    const h = harness(sql, { leaseSeconds: 600 });
    const down = { value: true };
    const slow = { fail: gate(), succeed: gate() };
    routes.set('/Load', service(down));
    routes.set('/SlowFail', (_req, res) => void slow.fail.promise.then(() => res.writeHead(500).end('no')));
    routes.set('/SlowOk', (_req, res) => void slow.succeed.promise.then(() => res.writeHead(200).end('ok')));
    await h.connectors.create({ id: 'OneC', baseUrl: origin, breakerFailures: 2 });
    await h.jobs.create({ id: 'slow-fail', name: 'x', externalCall: 'OneC:SlowFail', period: '0:1:0', startAt: at(1) });
    await h.jobs.create({ id: 'slow-ok', name: 'x', externalCall: 'OneC:SlowOk', period: '0:1:0', startAt: at(1) });
    await h.jobs.create({ id: 'fails', name: 'x', externalCall: 'OneC:Load', period: '0:0:10' });
    h.clock.set(T0 + 1000);
    const inFlight = await h.scheduler.tick();
    assert.equal(inFlight.length, 2);
    for (const s of [10, 20]) {
      h.clock.set(T0 + s * 1000);
      await tickAndSettle(h);
    }
    assert.deepEqual(await circuitOf(), { circuitState: 'OPEN', circuitFailures: 2, circuitOpenedAt: at(20), circuitNextProbeAt: at(50) });
    const closed = nextEvent(h.bus, 'circuit:closed');
    slow.fail.open();
    await Promise.all(inFlight.filter((s) => s.run.jobId === 'slow-fail').map((s) => s.done));
    assert.equal((await circuitOf()).circuitFailures, 3);
    slow.succeed.open();
    await Promise.all(inFlight.map((s) => s.done));
    assert.deepEqual(await circuitOf(), { circuitState: 'CLOSED', circuitFailures: 0, circuitOpenedAt: null, circuitNextProbeAt: null });
    assert.equal((await closed).connectorId, 'OneC');
  });

  it('should not count cancelled calls, and skip a retry while the circuit is open', async () => {
    const h = harness(sql);
    routes.set('/Load', service({ value: true }));
    routes.set('/Hang', () => {});
    await h.connectors.create({ id: 'OneC', baseUrl: origin, breakerFailures: 2, breakerProbeSeconds: 60 });
    await h.jobs.create({ id: 'hangs', name: 'x', externalCall: 'OneC:Hang', period: '0:1:0', startAt: at(1) });
    await h.jobs.create({
      id: 'retries',
      name: 'x',
      externalCall: 'OneC:Load',
      period: '0:1:0',
      startAt: at(10),
      retry: { maxAttempts: 3, backoffSeconds: 5, backoffFactor: 1 },
    });
    h.clock.set(T0 + 1000);
    const [hanging] = await h.scheduler.tick();
    await waitFor(() => recorded.length === 1, 'the call to hang');
    await h.jobs.cancelRun(hanging!.run.id);
    await hanging!.done;
    assert.equal((await circuitOf()).circuitFailures, 0, 'a cancelled call counts for nothing');

    h.clock.set(T0 + 10_000);
    await tickAndSettle(h);
    assert.deepEqual([(await circuitOf()).circuitState, (await circuitOf()).circuitFailures], ['CLOSED', 1]);
    // The first retry (5 s ± 10% later) fails too, and opens the circuit; the second is skipped.
    h.clock.set(T0 + 16_000);
    await tickAndSettle(h);
    assert.equal((await circuitOf()).circuitState, 'OPEN');
    h.clock.set(T0 + 22_000);
    await tickAndSettle(h);
    const retries = (await runs()).filter((r) => r.jobId === 'retries');
    assert.deepEqual(
      retries.map((r) => [r.trigger, r.status]),
      [
        ['SCHEDULE', 'FAILED'],
        ['RETRY', 'FAILED'],
        ['RETRY', 'SKIPPED'],
      ],
    );
    assert.equal(retries[2]!.error, OPEN_ERROR);
  });

  it('should close an open circuit when its breaker is turned off, and show no circuit then', async () => {
    const h = harness(sql);
    const app = appFor(h);
    routes.set('/Load', service({ value: true }));
    await h.connectors.create({ id: 'OneC', baseUrl: origin, breakerFailures: 1 });
    await h.jobs.create({ id: 'a', name: 'a', externalCall: 'OneC:Load', period: '0:0:10' });
    h.clock.set(T0 + 10_000);
    await tickAndSettle(h);
    assert.equal((await circuitOf()).circuitState, 'OPEN');
    const closed = nextEvent(h.bus, 'circuit:closed');
    const updated = await gqlOk<{ updateConnector: unknown }>(
      app,
      'mutation { updateConnector(id: "OneC", input: { breakerFailures: null }) { breakerFailures breakerProbeSeconds circuit { state } } }',
    );
    assert.deepEqual(updated.updateConnector, { breakerFailures: null, breakerProbeSeconds: 30, circuit: null });
    assert.deepEqual(await closed, { at: at(10), connectorId: 'OneC', circuit: null });
    assert.deepEqual((await circuitEntries()).at(-1), { level: 'INFO', message: 'Connector OneC circuit closed', jobId: null });
    h.clock.set(T0 + 20_000);
    await tickAndSettle(h);
    assert.equal((await runs()).at(-1)!.status, 'FAILED', 'called again, without a breaker');
  });
});

describe('breaker settings through the API', () => {
  it('should create and show breakerFailures, breakerProbeSeconds (30 by default), maxConcurrent and a CLOSED circuit', async () => {
    const app = appFor(harness(sql));
    const FIELDS = 'id breakerFailures breakerProbeSeconds maxConcurrent circuit { state failures openedAt nextProbeAt }';
    const created = await gqlOk<{ createConnector: unknown }>(
      app,
      `mutation { createConnector(input: { id: "OneC", baseUrl: "${origin}", breakerFailures: 5, maxConcurrent: 2 }) { ${FIELDS} } }`,
    );
    assert.deepEqual(created.createConnector, {
      id: 'OneC',
      breakerFailures: 5,
      breakerProbeSeconds: 30,
      maxConcurrent: 2,
      circuit: { state: 'CLOSED', failures: 0, openedAt: null, nextProbeAt: null },
    });
    const updated = await gqlOk<{ updateConnector: unknown }>(
      app,
      `mutation { updateConnector(id: "OneC", input: { breakerProbeSeconds: 90, maxConcurrent: null }) { ${FIELDS} } }`,
    );
    assert.deepEqual(updated.updateConnector, {
      id: 'OneC',
      breakerFailures: 5,
      breakerProbeSeconds: 90,
      maxConcurrent: null,
      circuit: { state: 'CLOSED', failures: 0, openedAt: null, nextProbeAt: null },
    });
    const listed = await gqlOk<{ connectors: unknown[] }>(app, `{ connectors { ${FIELDS} } }`);
    assert.deepEqual(listed.connectors[0], {
      id: 'Test',
      breakerFailures: null,
      breakerProbeSeconds: null,
      maxConcurrent: null,
      circuit: null,
    });
  });

  it('should refuse settings out of range with BAD_USER_INPUT naming the field, changing nothing', async () => {
    const app = appFor(harness(sql));
    await gqlOk(app, `mutation { createConnector(input: { id: "OneC", baseUrl: "${origin}" }) { id } }`);
    const before = await sql`select * from connectors`;
    for (const [field, value] of [
      ['breakerFailures', 0],
      ['breakerFailures', 1001],
      ['breakerProbeSeconds', 0],
      ['breakerProbeSeconds', 86_401],
      ['maxConcurrent', 0],
      ['maxConcurrent', -3],
    ] as const) {
      const create = await gqlApp(
        app,
        `mutation { createConnector(input: { id: "Other", baseUrl: "${origin}", ${field}: ${value} }) { id } }`,
      );
      assertError(create, 'BAD_USER_INPUT', field);
      const update = await gqlApp(app, `mutation { updateConnector(id: "OneC", input: { ${field}: ${value} }) { id } }`);
      assertError(update, 'BAD_USER_INPUT', field);
    }
    assert.deepEqual(await sql`select * from connectors`, before);
  });
});

describe('a circuit breaker on two instances', () => {
  it('should open after breakerFailures, probe once per interval and close on the first success, the same on both instances', async () => {
    const url = await createTestDatabase();
    const down = { value: true };
    const calls: { at: number; jobId: string }[] = [];
    routes.set('/Load', (req, res) => {
      calls.push({ at: Date.now(), jobId: decodeURIComponent(String(req.headers['x-job-id'])) });
      service(down)(req, res);
    });
    const settings = (id: string) => ({ DATABASE_URL: url, INSTANCE_ID: id, HTTP_CONNECTOR_ALLOW_HOSTS: '127.0.0.1', LEASE_SECONDS: '4' });
    const a = await testInstance(settings('A'));
    const b = await testInstance(settings('B'));
    const EVENT = 'subscription { connectorEvents { kind at connectorId circuit { state failures openedAt nextProbeAt } } }';
    const watch = (port: number) => {
      const client = createClient({ url: `ws://127.0.0.1:${port}/graphql`, webSocketImpl: WebSocket, retryAttempts: 0 });
      after(() => client.dispose());
      return subscribeWs<{ connectorEvents: { kind: string; circuit: { state: string } | null } }>(client, EVENT);
    };
    const onA = watch(a.port);
    const onB = watch(b.port);
    // Both subscriptions are live before anything happens (an event before would not reach them).
    await Promise.all([a, b].map((i) => waitFor(() => i.bus.subscriptionCount === 1, 'the subscription to be open', { timeoutMs: 5000 })));

    await gql(
      a.port,
      `mutation { createConnector(input: { id: "OneC", baseUrl: "${origin}", breakerFailures: 3, breakerProbeSeconds: 1 }) { id } }`,
    );
    await waitFor(
      async () => (await gql<{ connectors: { id: string }[] }>(b.port, '{ connectors { id } }')).connectors.some((c) => c.id === 'OneC'),
      'B to know the connector',
    );
    for (const id of ['j1', 'j2', 'j3'])
      await gql(b.port, `mutation { createJob(input: { id: "${id}", name: "x", externalCall: "OneC:Load", period: "0:0:1" }) { id } }`);

    const [openedA] = await onA.until(1, 'the circuit to open', 15_000);
    const [openedB] = await onB.until(1, 'the circuit to open', 15_000);
    assert.equal(openedA!.connectorEvents.kind, 'CIRCUIT_OPENED');
    assert.deepEqual(openedB, openedA, 'the same event on both instances');
    assert.equal(openedA!.connectorEvents.circuit!.state, 'OPEN');
    const openedAt = Date.now();

    // Open for a few probe intervals: the service sees one probe per second at most, and the runs are SKIPPED.
    await new Promise((resolve) => setTimeout(resolve, 4500));
    const circuitQuery = '{ connectors { id circuit { state failures openedAt nextProbeAt } } }';
    const whileOpen = calls.filter((c) => c.at > openedAt);
    assert.ok(whileOpen.length >= 2 && whileOpen.length <= 5, `probes while open: ${JSON.stringify(whileOpen)}`);
    for (let i = 1; i < whileOpen.length; i++)
      assert.ok(whileOpen[i]!.at - whileOpen[i - 1]!.at >= 900, `probes one interval apart: ${JSON.stringify(whileOpen)}`);
    const sqlOf = postgres(url, { max: 1, onnotice: () => {} });
    after(() => sqlOf.end());
    const [{ skipped }] =
      (await sqlOf`select count(*)::int as skipped from job_runs where status = 'SKIPPED' and error = ${OPEN_ERROR}`) as unknown as [
        { skipped: number },
      ];
    assert.ok(skipped >= 3, `runs skipped while open: ${skipped}`);

    // The service is back: the next probe closes the circuit, on both instances alike.
    down.value = false;
    const [, closedA] = await onA.until(2, 'the circuit to close', 10_000);
    const [, closedB] = await onB.until(2, 'the circuit to close', 10_000);
    assert.deepEqual(closedA!.connectorEvents, {
      ...closedA!.connectorEvents,
      kind: 'CIRCUIT_CLOSED',
      circuit: { state: 'CLOSED', failures: 0, openedAt: null, nextProbeAt: null },
    });
    assert.deepEqual(closedB, closedA);
    const seenA = await gql<{ connectors: unknown[] }>(a.port, circuitQuery);
    const seenB = await gql<{ connectors: unknown[] }>(b.port, circuitQuery);
    assert.deepEqual(seenA, seenB);
    assert.deepEqual((seenA.connectors as { id: string; circuit: unknown }[]).find((c) => c.id === 'OneC')!.circuit, {
      state: 'CLOSED',
      failures: 0,
      openedAt: null,
      nextProbeAt: null,
    });
    const entries = await sqlOf<{ level: string; message: string }[]>`
      select level, message from log_entries where message like 'Connector OneC circuit%' order by id`;
    assert.deepEqual(
      [...entries],
      [
        { level: 'WARNING', message: 'Connector OneC circuit opened after 3 consecutive failures' },
        { level: 'INFO', message: 'Connector OneC circuit closed' },
      ],
    );
    assert.equal(onA.items.length, 2);
    assert.equal(onB.items.length, 2);
  });
});
