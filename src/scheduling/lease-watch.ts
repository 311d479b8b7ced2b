import type { Clock } from '../clock.ts';
import type { RunRow } from '../db/rows.ts';
import type { AbortReason } from './outcome.ts';

/** A run this process performs. */
export interface InFlight {
  abort: AbortController;
  done: Promise<RunRow | null>;
  /** When the run's lease expires as this process knows it (its clock): set by its claim, moved by each renewal that succeeds. */
  leaseUntil: number;
}

/**
 * The share of a lease kept in reserve: a holder that has not renewed a run's lease by the time
 * only this much of it is left aborts the run's call. It covers how far this process's clock may
 * lag the database's (the round trip of its clock sample), a timer that fires late, and the
 * call's own stop, so that the call has ended before another instance may take the run over.
 */
const LEASE_RESERVE = 0.2;

/**
 * Aborts a run's call once its lease, as this process last renewed it, is nearly spent (its
 * database away, its renewals starved): no call goes on past its lease while another instance
 * may take the job over (SPEC §3). Timed by this process's own clock from the last renewal
 * that succeeded, not by the database, which it may be unable to reach.
 */
export async function watchLease(clock: Clock, flight: InFlight, leaseMs: number): Promise<void> {
  const { signal } = flight.abort;
  const reserve = leaseMs * LEASE_RESERVE;
  while (!signal.aborted) {
    const deadline = flight.leaseUntil - reserve;
    if (clock.now() >= deadline) {
      flight.abort.abort({ status: 'ABANDONED', error: `lease lost: could not renew within ${leaseMs / 1000} s` } satisfies AbortReason);
      return;
    }
    await clock.sleepUntil(deadline, signal);
  }
}
