/**
 * A connector's circuit breaker (SPEC §3b), decided by pure functions over the circuit as stored
 * in the connector's row, the breaker's settings and the clock. Whoever calls them holds that
 * row's lock and writes what they answer, so every instance sees one circuit.
 *
 * CLOSED: calls go through; each FAILED or TIMED_OUT call adds to `failures`, a success sets it
 * back to 0, and at `breaker.failures` in a row the circuit opens. OPEN: runs are SKIPPED, except
 * one probe call per probe interval, made by a due run (not a manual one): from `nextProbeAt`
 * (`openedAt` + the interval, then the last probe + the interval), the first such run is the
 * probe, and the circuit is HALF_OPEN while it is in flight. The first successful call closes
 * the circuit, the probe or a call that was in flight when it opened; a failed probe leaves it
 * OPEN until the next probe. CANCELLED and ABANDONED calls count for nothing.
 */
import type { CircuitState, ConnectorRow, EndStatus, RunTrigger } from '../db/rows.ts';

export interface Circuit {
  state: CircuitState;
  /** Consecutive failed calls, across all the connector's jobs. */
  failures: number;
  openedAt: Date | null;
  /** When the next probe call may be made (OPEN, or HALF_OPEN should the probe in flight fail). */
  nextProbeAt: Date | null;
  /** The run making the probe call while HALF_OPEN. */
  probeRunId: string | null;
}

/** A connector's breaker settings: `failures` in a row open it; a probe every `probeSeconds`. */
export interface Breaker {
  failures: number;
  probeSeconds: number;
}

export const CLOSED_CIRCUIT: Circuit = { state: 'CLOSED', failures: 0, openedAt: null, nextProbeAt: null, probeRunId: null };

/** The error of a run SKIPPED because its connector's circuit is open. */
export const circuitOpenError = (connectorId: string): string => `connector ${connectorId} unavailable (circuit open)`;

/** What becomes of a run that is about to call the connector. */
export type Admission = 'call' | 'probe' | 'skip';

/**
 * Whether a run may call the connector now, and the circuit after it does. `probeInFlight` says
 * whether the probe recorded in a HALF_OPEN circuit is still running: one that ended without its
 * end reaching the circuit (its instance died) no longer holds back the next probe.
 */
export function admitCall(
  breaker: Breaker,
  circuit: Circuit,
  run: { trigger: RunTrigger },
  nowMs: number,
  probeInFlight: boolean,
): { admission: Admission; circuit: Circuit } {
  if (circuit.state === 'CLOSED') return { admission: 'call', circuit };
  const probing = circuit.state === 'HALF_OPEN' && probeInFlight;
  const due = circuit.nextProbeAt === null || circuit.nextProbeAt.getTime() <= nowMs;
  // A probe is made by a due run: a person asking for a run does not probe for everyone.
  if (probing || !due || run.trigger === 'MANUAL') return { admission: 'skip', circuit };
  return {
    admission: 'probe',
    circuit: { ...circuit, state: 'HALF_OPEN', nextProbeAt: new Date(nowMs + breaker.probeSeconds * 1000), probeRunId: null },
  };
}

/** What a call's end did to the circuit: opened or closed it, or neither. */
export type CircuitChange = 'opened' | 'closed' | null;

/**
 * The circuit after a call ends with `status`. `changed` is false when there is nothing to write
 * (a success of a healthy circuit, a cancelled call that was not the probe).
 */
export function afterCall(
  breaker: Breaker,
  circuit: Circuit,
  run: { id: string; status: EndStatus },
  nowMs: number,
): { circuit: Circuit; change: CircuitChange; changed: boolean } {
  const isProbe = circuit.state === 'HALF_OPEN' && circuit.probeRunId === run.id;
  if (run.status === 'SUCCEEDED') {
    if (circuit.state === 'CLOSED' && circuit.failures === 0) return { circuit, change: null, changed: false };
    return { circuit: CLOSED_CIRCUIT, change: circuit.state === 'CLOSED' ? null : 'closed', changed: true };
  }
  if (run.status === 'FAILED' || run.status === 'TIMED_OUT') {
    const failures = circuit.failures + 1;
    if (circuit.state === 'CLOSED' && failures >= breaker.failures) {
      const opened = {
        state: 'OPEN',
        failures,
        openedAt: new Date(nowMs),
        nextProbeAt: new Date(nowMs + breaker.probeSeconds * 1000),
        probeRunId: null,
      } as const;
      return { circuit: opened, change: 'opened', changed: true };
    }
    // A failed probe leaves it open until the next one (its time was set when the probe began).
    return {
      circuit: isProbe ? { ...circuit, failures, state: 'OPEN', probeRunId: null } : { ...circuit, failures },
      change: null,
      changed: true,
    };
  }
  // Cancelled or abandoned: no verdict on the connector, but a probe that ended so is no longer in flight.
  if (isProbe) return { circuit: { ...circuit, state: 'OPEN', probeRunId: null }, change: null, changed: true };
  return { circuit, change: null, changed: false };
}

/** The circuit a connector's row stores. */
export function circuitOf(row: ConnectorRow): Circuit {
  return {
    state: row.circuitState,
    failures: row.circuitFailures,
    openedAt: row.circuitOpenedAt,
    nextProbeAt: row.circuitNextProbeAt,
    probeRunId: row.circuitProbeRunId,
  };
}

/** A connector's breaker, or null when it has none. */
export const breakerOf = (row: Pick<ConnectorRow, 'breakerFailures' | 'breakerProbeSeconds'>): Breaker | null =>
  row.breakerFailures === null ? null : { failures: row.breakerFailures, probeSeconds: row.breakerProbeSeconds };
