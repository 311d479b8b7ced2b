/**
 * What stands between a claim's planned runs and their calls (SPEC §3b), decided by a pure
 * function over the plans and the locked rows of the connectors they call: a connector's circuit
 * breaker turns runs into SKIPPED ones (or one of them into its probe), and its limit of
 * concurrent calls leaves jobs waiting, due and untouched, until calls end.
 */
import type { JobClaimPlan, PlannedRun } from '../scheduling/claim-plan.ts';
import { admitCall, type Breaker, type Circuit, circuitOpenError } from './circuit.ts';

/** A connector as the claim sees it, its row locked. */
export interface GatedConnector {
  id: string;
  /** Null: no breaker. */
  breaker: Breaker | null;
  circuit: Circuit;
  /** The probe a HALF_OPEN circuit records is still running. */
  probeInFlight: boolean;
  /** At most this many calls at once; null: unlimited. */
  limit: number | null;
  /** Its calls in progress now: the RUNNING runs of the jobs that use it, on every instance. */
  running: number;
}

export interface Probe {
  connectorId: string;
  /** The planned run making the probe call. */
  run: PlannedRun;
  /** The circuit while it is in flight (HALF_OPEN), to be written with the run's id once it is inserted. */
  circuit: Circuit;
}

export interface Gated {
  plans: JobClaimPlan[];
  probes: Probe[];
  /** Jobs whose plans were dropped: they wait, still due, for calls of their connector to end. */
  waiting: string[];
  /** The connectors they wait for. */
  full: string[];
}

/**
 * Gates plans in the order given (the claim's due-time order, so waiting runs start in that
 * order). A plan whose connector has no row here passes as it is. Each run about to call a
 * breaker's connector is admitted, made the probe, or SKIPPED with the circuit's error; a plan
 * whose remaining calls do not fit in its connector's free slots is dropped whole.
 */
export function gatePlans(plans: readonly JobClaimPlan[], connectors: ReadonlyMap<string, GatedConnector>, nowMs: number): Gated {
  const state = new Map([...connectors].map(([id, c]) => [id, { ...c }]));
  const kept: JobClaimPlan[] = [];
  const probes: Probe[] = [];
  const waiting: string[] = [];
  const full = new Set<string>();
  for (const plan of plans) {
    const connector = state.get(plan.job.connectorId);
    if (!connector) {
      kept.push(plan);
      continue;
    }
    let circuit = connector.circuit;
    let probe: PlannedRun | null = null;
    let calls = 0;
    const runs: PlannedRun[] = [];
    for (const run of plan.runs) {
      if (run.status === 'RUNNING' && connector.breaker) {
        const admitted = admitCall(connector.breaker, circuit, run, nowMs, connector.probeInFlight || probe !== null);
        if (admitted.admission === 'skip') {
          runs.push({ ...run, status: 'SKIPPED', error: circuitOpenError(connector.id) });
          continue;
        }
        if (admitted.admission === 'probe') {
          circuit = admitted.circuit;
          probe = run;
        }
      }
      if (run.status === 'RUNNING') calls++;
      runs.push(run);
    }
    if (connector.limit !== null && calls > 0 && connector.running + calls > connector.limit) {
      waiting.push(plan.job.id);
      full.add(connector.id);
      continue;
    }
    connector.running += calls;
    if (probe) {
      connector.circuit = circuit;
      connector.probeInFlight = true;
      probes.push({ connectorId: connector.id, run: probe, circuit });
    }
    kept.push(runs.every((run, i) => run === plan.runs[i]) ? plan : { ...plan, runs });
  }
  return { plans: kept, probes, waiting, full: [...full] };
}
