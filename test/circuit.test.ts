// The circuit breaker's state machine and the claim's gate (SPEC §3b), as pure functions of
// literal circuits, plans and instants.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { admitCall, afterCall, type Breaker, type Circuit, CLOSED_CIRCUIT } from '../src/connectors/circuit.ts';
import { type GatedConnector, gatePlans } from '../src/connectors/gate-plan.ts';
import type { ClaimJob, JobClaimPlan, PlannedRun } from '../src/scheduling/claim-plan.ts';

const at = (iso: string) => new Date(`2026-03-01T${iso}Z`);
const ms = (iso: string) => at(iso).getTime();
const breaker: Breaker = { failures: 3, probeSeconds: 30 };
const open = (over: Partial<Circuit> = {}): Circuit => ({
  state: 'OPEN',
  failures: 3,
  openedAt: at('10:00:00.000'),
  nextProbeAt: at('10:00:30.000'),
  probeRunId: null,
  ...over,
});

describe('counting calls', () => {
  it('should count consecutive failures and open on the breakerFailures-th, its first probe one interval later', () => {
    let circuit = CLOSED_CIRCUIT;
    circuit = afterCall(breaker, circuit, { id: '1', status: 'FAILED' }, ms('09:59:50.000')).circuit;
    circuit = afterCall(breaker, circuit, { id: '2', status: 'TIMED_OUT' }, ms('09:59:55.000')).circuit;
    assert.deepEqual(circuit, { ...CLOSED_CIRCUIT, failures: 2 });
    const third = afterCall(breaker, circuit, { id: '3', status: 'FAILED' }, ms('10:00:00.000'));
    assert.equal(third.change, 'opened');
    assert.deepEqual(third.circuit, open());
  });

  it('should start the count afresh after a success', () => {
    const failed = afterCall(breaker, { ...CLOSED_CIRCUIT, failures: 2 }, { id: '4', status: 'SUCCEEDED' }, ms('10:00:00.000'));
    assert.deepEqual(failed, { circuit: CLOSED_CIRCUIT, change: null, changed: true });
    const again = afterCall(breaker, failed.circuit, { id: '5', status: 'FAILED' }, ms('10:00:01.000'));
    assert.deepEqual(again.circuit, { ...CLOSED_CIRCUIT, failures: 1 });
  });

  it('should change nothing for a success of a healthy circuit, nor for a cancelled or abandoned call', () => {
    assert.equal(afterCall(breaker, CLOSED_CIRCUIT, { id: '1', status: 'SUCCEEDED' }, ms('10:00:00.000')).changed, false);
    const two = { ...CLOSED_CIRCUIT, failures: 2 };
    for (const status of ['CANCELLED', 'ABANDONED'] as const) {
      assert.deepEqual(afterCall(breaker, two, { id: '1', status }, ms('10:00:00.000')), { circuit: two, change: null, changed: false });
      assert.equal(afterCall(breaker, open(), { id: '1', status }, ms('10:00:00.000')).changed, false);
    }
  });

  it('should count a call that was in flight when the circuit opened: a failure adds to the count, a success closes it', () => {
    const failed = afterCall(breaker, open(), { id: '9', status: 'FAILED' }, ms('10:00:05.000'));
    assert.deepEqual(failed, { circuit: open({ failures: 4 }), change: null, changed: true });
    const succeeded = afterCall(breaker, open(), { id: '9', status: 'SUCCEEDED' }, ms('10:00:05.000'));
    assert.deepEqual(succeeded, { circuit: CLOSED_CIRCUIT, change: 'closed', changed: true });
  });
});

describe('probing', () => {
  const due = { trigger: 'SCHEDULE' as const };

  it('should skip every run before nextProbeAt, and let the first due run after it probe (HALF_OPEN, the next probe one interval on)', () => {
    assert.equal(admitCall(breaker, open(), due, ms('10:00:29.999'), false).admission, 'skip');
    const probe = admitCall(breaker, open(), due, ms('10:00:31.250'), false);
    assert.equal(probe.admission, 'probe');
    assert.deepEqual(probe.circuit, open({ state: 'HALF_OPEN', nextProbeAt: at('10:01:01.250') }));
  });

  it('should let a retry probe, but never a manual run', () => {
    assert.equal(admitCall(breaker, open(), { trigger: 'RETRY' }, ms('10:00:30.000'), false).admission, 'probe');
    assert.equal(admitCall(breaker, open(), { trigger: 'MANUAL' }, ms('10:00:30.000'), false).admission, 'skip');
  });

  it('should skip everything while the probe is in flight, even past its next probe time', () => {
    const halfOpen = open({ state: 'HALF_OPEN', nextProbeAt: at('10:01:00.000'), probeRunId: '17' });
    assert.equal(admitCall(breaker, halfOpen, due, ms('10:02:00.000'), true).admission, 'skip');
  });

  it('should probe again once a probe ended without its end reaching the circuit (its instance stopped)', () => {
    const halfOpen = open({ state: 'HALF_OPEN', nextProbeAt: at('10:01:00.000'), probeRunId: '17' });
    assert.equal(admitCall(breaker, halfOpen, due, ms('10:00:59.000'), false).admission, 'skip');
    assert.equal(admitCall(breaker, halfOpen, due, ms('10:01:00.000'), false).admission, 'probe');
  });

  it('should let every call through while CLOSED', () => {
    assert.deepEqual(admitCall(breaker, { ...CLOSED_CIRCUIT, failures: 2 }, { trigger: 'MANUAL' }, ms('10:00:00.000'), false), {
      admission: 'call',
      circuit: { ...CLOSED_CIRCUIT, failures: 2 },
    });
  });

  it('should close on a successful probe, failures back to 0', () => {
    const halfOpen = open({ state: 'HALF_OPEN', nextProbeAt: at('10:01:00.000'), probeRunId: '17' });
    assert.deepEqual(afterCall(breaker, halfOpen, { id: '17', status: 'SUCCEEDED' }, ms('10:00:31.000')), {
      circuit: CLOSED_CIRCUIT,
      change: 'closed',
      changed: true,
    });
  });

  it('should stay open after a failed probe, the next probe an interval after the last one began', () => {
    const halfOpen = open({ state: 'HALF_OPEN', nextProbeAt: at('10:01:00.000'), probeRunId: '17' });
    const failed = afterCall(breaker, halfOpen, { id: '17', status: 'TIMED_OUT' }, ms('10:00:45.000'));
    assert.deepEqual(failed, { circuit: open({ failures: 4, nextProbeAt: at('10:01:00.000') }), change: null, changed: true });
  });

  it('should reopen after a cancelled probe without counting it, and count a straggler while the probe is in flight', () => {
    const halfOpen = open({ state: 'HALF_OPEN', nextProbeAt: at('10:01:00.000'), probeRunId: '17' });
    assert.deepEqual(
      afterCall(breaker, halfOpen, { id: '17', status: 'CANCELLED' }, ms('10:00:40.000')).circuit,
      open({ nextProbeAt: at('10:01:00.000') }),
    );
    assert.deepEqual(afterCall(breaker, halfOpen, { id: '12', status: 'FAILED' }, ms('10:00:40.000')).circuit, {
      ...halfOpen,
      failures: 4,
    });
  });
});

describe('gating a claim', () => {
  const NOW = ms('10:00:30.000');
  const job = (id: string, connectorId: string) => ({ id, connectorId }) as ClaimJob;
  const run = (jobId: string, over: Partial<PlannedRun> = {}): PlannedRun => ({
    jobId,
    trigger: 'SCHEDULE',
    scheduledAt: at('10:00:30.000'),
    missed: 0,
    status: 'RUNNING',
    attempt: 1,
    retryOf: null,
    skippedBecause: null,
    error: null,
    ...over,
  });
  const plan = (jobId: string, connectorId: string, runs = [run(jobId)]): JobClaimPlan => ({
    job: job(jobId, connectorId),
    runs,
    after: { id: jobId, nextDueAt: at('10:01:30.000'), queuedDueAt: null, queuedMissed: 0, retryCleared: false, retryDropped: false },
    entries: [],
  });
  const connector = (over: Partial<GatedConnector>): GatedConnector => ({
    id: 'OneC',
    breaker: null,
    circuit: CLOSED_CIRCUIT,
    probeInFlight: false,
    limit: null,
    running: 0,
    ...over,
  });

  it('should pass plans of other connectors as they are', () => {
    const plans = [plan('a', 'Other'), plan('b', 'OneC')];
    const gated = gatePlans(plans, new Map([['OneC', connector({ breaker })]]), NOW);
    assert.deepEqual(gated, { plans, probes: [], waiting: [], full: [] });
    assert.equal(gated.plans[0], plans[0]);
  });

  it('should make the first due run the probe of an open circuit and skip the others with the circuit error', () => {
    const plans = [plan('a', 'OneC'), plan('b', 'OneC', [run('b', { status: 'SKIPPED', skippedBecause: 'overlap' })]), plan('c', 'OneC')];
    const gated = gatePlans(plans, new Map([['OneC', connector({ breaker, circuit: open() })]]), NOW);
    assert.deepEqual(
      gated.plans.map((p) => p.runs.map((r) => [r.jobId, r.status, r.error])),
      [[['a', 'RUNNING', null]], [['b', 'SKIPPED', null]], [['c', 'SKIPPED', 'connector OneC unavailable (circuit open)']]],
    );
    assert.deepEqual(gated.probes, [
      { connectorId: 'OneC', run: plans[0]!.runs[0], circuit: open({ state: 'HALF_OPEN', nextProbeAt: at('10:01:00.000') }) },
    ]);
  });

  it('should start plans in the order given up to the free calls, and leave the rest waiting, untouched', () => {
    const plans = ['a', 'b', 'c', 'd'].map((id) => plan(id, 'OneC'));
    const gated = gatePlans(plans, new Map([['OneC', connector({ limit: 2, running: 1 })]]), NOW);
    assert.deepEqual(
      gated.plans.map((p) => p.job.id),
      ['a'],
    );
    assert.deepEqual([gated.waiting, gated.full], [['b', 'c', 'd'], ['OneC']]);
  });

  it('should let a plan that calls nothing (a due time skipped for overlap) through a full connector', () => {
    const skipped = plan('a', 'OneC', [run('a', { status: 'SKIPPED', skippedBecause: 'overlap' })]);
    const gated = gatePlans([skipped], new Map([['OneC', connector({ limit: 2, running: 2 })]]), NOW);
    assert.deepEqual(gated, { plans: [skipped], probes: [], waiting: [], full: [] });
  });

  it('should not probe with a run that has no free call: the next one that has a call probes', () => {
    const plans = [plan('a', 'OneC')];
    const full = gatePlans(plans, new Map([['OneC', connector({ breaker, circuit: open(), limit: 1, running: 1 })]]), NOW);
    assert.deepEqual(full, { plans: [], probes: [], waiting: ['a'], full: ['OneC'] });
    const free = gatePlans(plans, new Map([['OneC', connector({ breaker, circuit: open(), limit: 1, running: 0 })]]), NOW);
    assert.equal(free.probes.length, 1);
  });

  it('should skip without using a call while the circuit is open', () => {
    const plans = [plan('a', 'OneC'), plan('b', 'OneC')];
    const gated = gatePlans(
      plans,
      new Map([['OneC', connector({ breaker, circuit: open({ nextProbeAt: at('10:05:00.000') }), limit: 1, running: 1 })]]),
      NOW,
    );
    assert.deepEqual(
      gated.plans.map((p) => p.runs[0]!.status),
      ['SKIPPED', 'SKIPPED'],
    );
    assert.deepEqual(gated.waiting, []);
  });
});
