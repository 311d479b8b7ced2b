import type { Logger } from 'pino';
import type { Clock } from '../clock.ts';
import type { Queryable, Sql } from '../db/client.ts';
import { lockConnectors, readConnector, saveCircuit } from '../db/connectors.ts';
import { insertLogEntries, type NewLogEntry } from '../db/log.ts';
import type { ConnectorRow, EndStatus, JobRow, RunRow } from '../db/rows.ts';
import { type Admission, type ClaimGate, runningCallsOf, stillRunning } from '../db/runs.ts';
import { conflict, toError } from '../errors.ts';
import type { EventBus } from '../events/bus.ts';
import type { JobClaimPlan } from '../scheduling/claim-plan.ts';
import { admitCall, afterCall, breakerOf, type Circuit, circuitOf, circuitOpenError } from './circuit.ts';
import { type GatedConnector, gatePlans, type Probe } from './gate-plan.ts';

/** The stored settings of a connector that gate its calls. */
export type GateSettings = Pick<ConnectorRow, 'breakerFailures' | 'maxConcurrent'>;

export interface ConnectorGateDeps {
  sql: Sql;
  clock: Clock;
  bus: EventBus;
  log: Logger;
  /**
   * A configured connector's settings as this instance knows them (the registry's copy), null for
   * a built-in or unknown one: only connectors with a breaker or a limit cost the claim a look at
   * their rows, which then decide.
   */
  settingsOf: (connectorId: string) => GateSettings | null;
}

const gates = (settings: GateSettings | null): boolean =>
  settings !== null && (settings.breakerFailures !== null || settings.maxConcurrent !== null);

/**
 * Connectors' circuit breakers and limits of concurrent calls (SPEC §3b), between the claim and
 * the calls. Both live in the connectors' rows, read and changed under their row locks inside the
 * claim's transaction, so every instance sharing the database agrees: a run of an open circuit
 * is SKIPPED (but for the probe), and a job whose connector has no call free stays due and
 * untouched until one ends. The circuit counts each call's end once it is written.
 */
export class ConnectorGate implements ClaimGate {
  constructor(private readonly deps: ConnectorGateDeps) {}

  holdsBack(connectorId: string): boolean {
    return (this.deps.settingsOf(connectorId)?.maxConcurrent ?? null) !== null;
  }

  async admit(tx: Queryable, plans: JobClaimPlan[], now: Date): Promise<Admission> {
    const ids = [...new Set(plans.map((plan) => plan.job.connectorId))].filter((id) => gates(this.deps.settingsOf(id)));
    if (ids.length === 0) return { plans };
    const gated = gatePlans(plans, await this.#connectors(tx, ids, now), now.getTime());
    const held = { jobs: gated.waiting.length, connectors: gated.full };
    if (gated.probes.length === 0) return { plans: gated.plans, held };
    return { plans: gated.plans, held, inserted: (tx2, runs) => recordProbes(tx2, gated.probes, runs) };
  }

  async admitManual(tx: Queryable, job: JobRow, now: Date): Promise<string | null> {
    if (!gates(this.deps.settingsOf(job.connectorId))) return null;
    const connector = (await this.#connectors(tx, [job.connectorId], now)).get(job.connectorId);
    if (!connector) return null;
    if (
      connector.breaker &&
      admitCall(connector.breaker, connector.circuit, { trigger: 'MANUAL' }, now.getTime(), true).admission === 'skip'
    )
      return circuitOpenError(connector.id);
    if (connector.limit !== null && connector.running >= connector.limit)
      throw conflict(
        `Connector ${connector.id} has ${connector.running} calls in progress, as many as its maxConcurrent allows; run the job again when one ends.`,
      );
    return null;
  }

  ended(run: RunRow, job: JobRow): Promise<void> | null {
    if ((this.deps.settingsOf(job.connectorId)?.breakerFailures ?? null) === null) return null;
    return this.#count(run, job.connectorId).catch((error: unknown) =>
      this.deps.log.error(
        { err: toError(error), runId: run.id, connectorId: job.connectorId },
        'counting a call in its connector circuit failed',
      ),
    );
  }

  /**
   * The connectors' rows, locked, with their calls in progress. The count is sent with the lock
   * (one round trip) and runs after it, so it sees every call admitted by a claim that held the
   * lock before. A connector whose limit this instance does not know of yet is counted after.
   */
  async #connectors(tx: Queryable, ids: string[], now: Date): Promise<Map<string, GatedConnector>> {
    const counted = ids.some((id) => this.holdsBack(id));
    const [rows, counts] = await Promise.all([lockConnectors(tx, ids), counted ? runningCallsOf(tx, ids) : null]);
    const running = counts ?? (rows.some((row) => row.maxConcurrent !== null) ? await runningCallsOf(tx, ids) : new Map<string, number>());
    // A HALF_OPEN circuit whose next probe is due: is the probe it records still running, or did it
    // end without its end reaching the circuit (its instance stopped)?
    const probeOf = (row: ConnectorRow) => (row.circuitState === 'HALF_OPEN' ? row.circuitProbeRunId : null);
    const checked = rows
      .filter((row) => probeOf(row) !== null && (row.circuitNextProbeAt === null || row.circuitNextProbeAt <= now))
      .map((row) => probeOf(row)!);
    const alive = await stillRunning(tx, checked);
    return new Map(
      rows.map((row) => [
        row.id,
        {
          id: row.id,
          breaker: breakerOf(row),
          circuit: circuitOf(row),
          probeInFlight: probeOf(row) !== null && (!checked.includes(probeOf(row)!) || alive.has(probeOf(row)!)),
          limit: row.maxConcurrent,
          running: running.get(row.id) ?? 0,
        },
      ]),
    );
  }

  /**
   * Counts an ended call in its connector's circuit. Most ends change nothing (a success while
   * the circuit is healthy): those cost one read and take no lock. A failure is counted under
   * the row's lock; opening and closing are logged and announced on every instance.
   */
  async #count(run: RunRow, connectorId: string): Promise<void> {
    const { sql, clock, bus } = this.deps;
    const ended = { id: run.id, status: run.status as EndStatus };
    const nowMs = clock.now();
    if (ended.status !== 'FAILED' && ended.status !== 'TIMED_OUT') {
      const row = await readConnector(sql, connectorId);
      const breaker = row && breakerOf(row);
      if (!breaker || !afterCall(breaker, circuitOf(row), ended, nowMs).changed) return;
    }
    const at = new Date(nowMs);
    const written = await sql.begin(async (tx) => {
      const [row] = await lockConnectors(tx, [connectorId]);
      const breaker = row && breakerOf(row);
      if (!breaker) return null;
      const after = afterCall(breaker, circuitOf(row), ended, nowMs);
      if (!after.changed) return null;
      await saveCircuit(tx, connectorId, after.circuit);
      const entries = after.change ? await insertLogEntries(tx, [circuitEntry(connectorId, after.change, after.circuit, run, at)]) : [];
      return { ...after, entries };
    });
    if (!written) return;
    if (written.change)
      bus.publish(written.change === 'opened' ? 'circuit:opened' : 'circuit:closed', { at, connectorId, circuit: written.circuit });
    for (const entry of written.entries) bus.publish('log:added', { entry });
  }
}

/** Records, in the claim's transaction, the run making each probe call (a probe not inserted changes nothing). */
async function recordProbes(tx: Queryable, probes: Probe[], runs: RunRow[]): Promise<void> {
  for (const probe of probes) {
    const planned = probe.run;
    const run = runs.find(
      (r) =>
        r.jobId === planned.jobId &&
        r.trigger === planned.trigger &&
        r.attempt === planned.attempt &&
        r.scheduledAt.getTime() === planned.scheduledAt.getTime(),
    );
    if (run) await saveCircuit(tx, probe.connectorId, { ...probe.circuit, probeRunId: run.id });
  }
}

/** The entry of a circuit opening (WARNING) or closing (INFO), about the connector: no job, no run. */
export function circuitEntry(
  connectorId: string,
  change: 'opened' | 'closed',
  circuit: Circuit | null,
  run: RunRow | null,
  at: Date,
): NewLogEntry {
  const cause = run ? { runId: run.id, jobId: run.jobId } : {};
  if (change === 'closed')
    return { at, level: 'INFO', message: `Connector ${connectorId} circuit closed`, details: { connectorId, ...cause } };
  return {
    at,
    level: 'WARNING',
    message: `Connector ${connectorId} circuit opened after ${circuit!.failures} consecutive failures`,
    details: {
      connectorId,
      failures: circuit!.failures,
      nextProbeAt: circuit!.nextProbeAt?.toISOString() ?? null,
      lastError: run?.error ?? null,
      ...cause,
    },
  };
}
