import { randomUUID } from 'node:crypto';
import { settledWithin } from '../clock.ts';
import { earliestDue, vacuumJobs } from '../db/jobs.ts';
import type { RunRow } from '../db/rows.ts';
import { GroupCommit } from '../db/group-commit.ts';
import {
  type ClaimGate,
  claimDueJobs,
  type Claimed,
  finishRuns,
  type FinishedRun,
  type JobAfterEnd,
  type Holder,
  renewLeases,
  type RunEnd,
  runningUnder,
} from '../db/runs.ts';
import { DomainError, toError } from '../errors.ts';
import { clashLogEntry } from './changes.ts';
import { abandonAndPublish } from './abandon.ts';
import { claimLogEntries, planJobClaim } from './claim-plan.ts';
import { autoPauseNote } from './run-end-plan.ts';
import { type InFlight, watchLease } from './lease-watch.ts';
import type { AbortReason } from './outcome.ts';
import { executeRun, type RunDeps, type RunJob } from './run.ts';

export interface SchedulerOptions {
  instance: string;
  leaseSeconds: number;
  /** How many due jobs one claim transaction takes. */
  batchSize?: number;
  /** The longest the loop sleeps without looking, for changes made by other instances. */
  maxIdleMs?: number;
  /** Counts for metrics: due times claimed, failed rounds. */
  observe?: { claimed(count: number): void; failed(): void };
  /** Pauses a job whose consecutive failures reached its `autoPauseAfterFailures` (SPEC §3b). */
  autoPause?: (jobId: string, note: string) => Promise<unknown>;
  /** What may stand between a due run and its call: connectors' circuit breakers and limits. */
  gate?: ClaimGate;
}

export interface Started extends Claimed {
  /** The end of the run, for a claim that started one (not for a SKIPPED due time). */
  done: Promise<RunRow | null> | null;
}

/** How soon to look again at a due job another instance's claim holds locked. */
const LOCKED_RETRY_MS = 50;

export const SHUTDOWN_REASON: AbortReason = { status: 'ABANDONED', error: 'instance shut down' };
const LEASE_LOST: AbortReason = { status: 'ABANDONED', error: 'lease lost: another instance took the run over' };
const CANCELLED: AbortReason = { status: 'CANCELLED', error: 'cancelled by request' };
/** The error of a run whose claim committed but whose reply never reached this process. */
export const REPLY_LOST = 'claim reply lost: the run was claimed but its holder never started it';

/** How often the jobs table is vacuumed (see vacuumJobs): whatever the database's autovacuum does. */
const VACUUM_JOBS_MS = 60_000;

/** How soon a failed renewal round is tried again, at most: a lease must not lapse for want of a try. */
const MAINTENANCE_RETRY_MS = 1000;

/**
 * One loop per process: it sleeps until the earliest due time the database knows of (or until
 * woken by a change), claims every due job in batches, and starts their runs without waiting
 * for them. A second timer renews the leases of the runs in flight and marks ABANDONED the runs
 * whose holders stopped renewing; a run whose lease this process could not renew in time is
 * aborted here before it expires, and runs whose claim reply was lost are ended. Failures of the
 * loop are logged and retried with backoff; they never end it.
 */
export class Scheduler {
  readonly holder: Holder;
  #deps: Omit<RunDeps, 'token'>;
  /** Run ends written together: one statement and one commit for the ends of a moment. */
  #ends: GroupCommit<RunEnd & { runId: string }, FinishedRun | null>;
  /** What every run of this process is performed with. */
  #runDeps: RunDeps;
  #options: Required<SchedulerOptions>;
  #inFlight = new Map<string, InFlight>();
  #running = false;
  #loop: Promise<void> | null = null;
  #wake = new AbortController();
  #stop = new AbortController();
  /** Stops lease maintenance: only after the runs in flight have ended, so their leases hold meanwhile. */
  #stopMaintenance = new AbortController();
  #halted = new AbortController();
  #maintenance: Promise<void> | null = null;
  #healthy = true;
  /** Claims and manual runs' inserts whose answer has not arrived yet. */
  #claimsPending = 0;
  /** Counts every claim or insert begun: a look for lost replies during which one began is not trusted. */
  #claimsBegun = 0;
  /** A claim or insert failed: it may have committed with its reply lost. */
  #replyMaybeLost = false;
  #recovering: Promise<RunRow[]> | null = null;
  /** Runs ended "claim reply lost": should their reply turn up after all, they are not launched. */
  #recovered = new Set<string>();

  constructor(deps: Omit<RunDeps, 'token'>, options: SchedulerOptions) {
    this.#deps = deps;
    this.#options = {
      batchSize: 500,
      maxIdleMs: 5000,
      observe: { claimed: () => {}, failed: () => {} },
      autoPause: () => Promise.resolve(),
      gate: { admit: (_tx, plans) => Promise.resolve({ plans }) },
      ...options,
    };
    // A fresh token per process start: a restarted instance never keeps its predecessor's runs.
    this.holder = { instance: options.instance, token: randomUUID() };
    this.#ends = new GroupCommit((ends) => finishRuns(deps.sql, this.holder.token, ends));
    this.#runDeps = {
      ...deps,
      token: this.holder.token,
      halted: this.#halted.signal,
      endRun: (runId, end) => this.#ends.submit({ ...end, runId }),
      ended: (run, job, finished) => this.#afterEnd(run, job, finished),
    };
  }

  /** What stands between a due run and its call (connectors' breakers and limits): manual runs go through it too. */
  get gate(): ClaimGate {
    return this.#options.gate;
  }

  get leaseMs(): number {
    return this.#options.leaseSeconds * 1000;
  }

  /** True while the loop runs and its last round reached the database. */
  get healthy(): boolean {
    return this.#running && this.#healthy;
  }

  /** Runs this process is performing now. */
  get inFlightCount(): number {
    return this.#inFlight.size;
  }

  start(): void {
    if (this.#running) return;
    this.#running = true;
    this.#loop = this.#runLoop();
    this.#maintenance = this.#runMaintenance();
  }

  /** Look again now: a job was created, changed or resumed. */
  wake(): void {
    this.#wake.abort();
  }

  /**
   * Claims everything due at the clock's now and starts those runs without waiting for them.
   * Returns the claims, each started run with the promise of its end. Tests call it directly
   * with a controlled clock; the loop claims through `#claimDue`, which keeps none of them.
   */
  async tick(): Promise<Started[]> {
    const all: Started[] = [];
    await this.#claimDue((started) => all.push(started));
    return all;
  }

  /**
   * Claims due jobs batch after batch until a batch is not full, handing each claim to `onClaim`.
   * Resolves with how many were claimed. Under overload a backlog keeps every batch full for as
   * long as it lasts, so nothing of a claim is kept here: its run holds only what it needs.
   */
  async #claimDue(onClaim?: (started: Started) => void): Promise<number> {
    let count = 0;
    // Connectors found with no call free: the round's later batches pass over their jobs, which
    // would otherwise fill every batch and keep other connectors' due jobs from being claimed.
    const full = new Set<string>();
    // A shutdown that begins during a large backlog stops claiming between batches.
    while (!this.#stop.signal.aborted) {
      const now = this.#deps.clock.now();
      const { claimed, clashes, held, failuresCounted } = await this.claiming(
        claimDueJobs(
          this.#deps.sql,
          { now: new Date(now), limit: this.#options.batchSize, holder: this.holder, leaseMs: this.leaseMs, except: [...full] },
          (job) => planJobClaim(job, now),
          (run, planned) => claimLogEntries(run, planned, now),
          (planned) => clashLogEntry(planned, now),
          this.#options.gate,
        ),
      );
      count += claimed.length;
      if (claimed.length > 0) this.#options.observe.claimed(claimed.length);
      for (const claim of claimed) {
        this.#publishClaim(claim);
        const done = claim.run.status === 'RUNNING' ? this.launch(claim.run, claim.job) : null;
        onClaim?.({ ...claim, done });
      }
      for (const entry of clashes) this.#deps.bus.publish('log:added', { entry });
      // A retry dropped at the claim made its attempt's failure final: it may reach the job's auto-pause.
      for (const job of failuresCounted ?? []) this.#autoPauseIfDue(job.id, job, job.lastError);
      for (const connectorId of held.connectors) full.add(connectorId);
      if (claimed.length + clashes.length + held.jobs < this.#options.batchSize) break;
    }
    return count;
  }

  /**
   * Starts a run the caller has inserted (a manual run) under this process's lease. A run
   * launched already is not launched again; nor is one ended because its claim reply was lost.
   */
  launch(run: RunRow, job: RunJob): Promise<RunRow | null> {
    const launched = this.#inFlight.get(run.id);
    if (launched) return launched.done;
    if (this.#recovered.has(run.id)) return Promise.resolve(null);
    const abort = new AbortController();
    const done = executeRun(this.#runDeps, run, job, abort)
      .catch((error: unknown) => {
        this.#deps.log.error({ err: toError(error), runId: run.id }, 'run failed unexpectedly');
        return null;
      })
      .finally(() => this.#inFlight.delete(run.id));
    const flight: InFlight = { abort, done, leaseUntil: run.leaseExpiresAt?.getTime() ?? this.#deps.clock.now() + this.leaseMs };
    this.#inFlight.set(run.id, flight);
    void watchLease(this.#deps.clock, flight, this.leaseMs);
    return done;
  }

  /**
   * Tracks a transaction that claims runs under this process's lease (a claim, a manual run's
   * insert) until it answers. One that fails may have committed with its reply lost: its runs
   * are then RUNNING under this lease but were never launched, and would hold their jobs until
   * the lease sweep; the next round that reaches the database ends them (see `maintain`).
   */
  claiming<T>(work: Promise<T>): Promise<T> {
    this.#claimsPending++;
    this.#claimsBegun++;
    return work.then(
      (value) => {
        this.#claimsPending--;
        return value;
      },
      (error: unknown) => {
        this.#claimsPending--;
        // An answer such as CONFLICT was a reply: nothing was lost.
        if (!(error instanceof DomainError)) this.#replyMaybeLost = true;
        throw error;
      },
    );
  }

  /** Cancels a run this process holds; resolves to its final row, or undefined when not held here. */
  cancelLocal(runId: string): Promise<RunRow | null> | undefined {
    const flight = this.#inFlight.get(runId);
    if (!flight) return undefined;
    flight.abort.abort(CANCELLED);
    return flight.done;
  }

  /**
   * Renews the leases of the runs in flight (aborting those this process lost or whose cancel
   * was requested elsewhere) and marks ABANDONED every run whose lease expired.
   */
  async maintain(): Promise<RunRow[]> {
    const { sql, clock } = this.#deps;
    const now = clock.now();
    // Only the runs this renewal asked about: a run launched while it was in flight is not in its answer.
    const asked = [...this.#inFlight.keys()];
    const until = now + this.leaseMs;
    const held = await renewLeases(sql, this.holder.token, asked, new Date(until));
    for (const runId of asked) {
      const flight = this.#inFlight.get(runId);
      if (!flight) continue;
      if (!held.has(runId)) flight.abort.abort(LEASE_LOST);
      else if (held.get(runId)) flight.abort.abort(CANCELLED);
      else flight.leaseUntil = Math.max(flight.leaseUntil, until);
    }
    const expired = await abandonAndPublish(this.#deps, {
      now: new Date(now),
      expiredBefore: new Date(now),
      error: 'lease expired: the instance running it stopped',
    });
    if (expired.length > 0) {
      // A due time waiting under QUEUE_ONE, or a retry, may start now that their jobs' runs ended.
      this.wake();
      // Their holder stopped (killed, frozen, cut off): events it recorded just before may never
      // have been sent, and nobody can tell which. Subscriptions everywhere are told (SPEC §6).
      const holders = [...new Set(expired.map((run) => run.instance ?? 'an instance'))].join(', ');
      this.#deps.bus.lost(`${holders} stopped while running jobs; events it recorded last may not have been sent`);
    }
    return [...expired, ...(await this.#recoverLostClaims())];
  }

  /**
   * Ends ABANDONED ("claim reply lost") the runs RUNNING under this process's lease that it
   * never launched, after a claim or insert failed. Looks only while no claim or insert is
   * waiting for its answer, and trusts the answer only if none began meanwhile: a run whose
   * reply is merely slow is launched by its claim, not ended here.
   */
  #recoverLostClaims(): Promise<RunRow[]> {
    if (!this.#replyMaybeLost || this.#claimsPending > 0 || this.#halted.signal.aborted) return Promise.resolve([]);
    this.#recovering ??= (async () => {
      const begun = this.#claimsBegun;
      const running = await runningUnder(this.#deps.sql, this.holder.token);
      if (this.#claimsBegun !== begun) return [];
      this.#replyMaybeLost = false;
      const orphans = running.filter((id) => !this.#inFlight.has(id));
      if (orphans.length === 0) return [];
      for (const id of orphans) this.#recovered.add(id);
      const now = new Date(this.#deps.clock.now());
      const ended = await abandonAndPublish(this.#deps, { now, heldBy: this.holder.token, runIds: orphans, error: REPLY_LOST });
      if (ended.length > 0) this.#deps.log.warn({ runs: ended.map((r) => r.id) }, 'ended runs whose claim reply was lost');
      return ended;
    })()
      .catch((error: unknown) => {
        this.#replyMaybeLost = true;
        throw error;
      })
      .finally(() => (this.#recovering = null));
    return this.#recovering;
  }

  /** Marks ABANDONED the runs of every other holder: used when this process owns the database alone. */
  async abandonOrphans(): Promise<RunRow[]> {
    return abandonAndPublish(this.#deps, {
      now: new Date(this.#deps.clock.now()),
      exceptToken: this.holder.token,
      error: 'instance crashed: the run was in progress when its process stopped',
    });
  }

  /**
   * Stops claiming, lets runs in flight finish within the grace period, then aborts the rest
   * (recorded ABANDONED, "instance shut down") and waits for their ends to be written.
   */
  async stop(graceMs: number): Promise<void> {
    if (!this.#running) return;
    this.#running = false;
    this.#stop.abort();
    this.#wake.abort();
    await this.#loop;
    const pending = [...this.#inFlight.values()];
    if (pending.length > 0) {
      await settledWithin(this.#deps.clock, Promise.allSettled(pending.map((f) => f.done)), graceMs);
      for (const flight of this.#inFlight.values()) flight.abort.abort(SHUTDOWN_REASON);
      // Their ends get one more try each; a database that is away does not hold the exit.
      this.#halted.abort();
      await Promise.allSettled([...this.#inFlight.values()].map((f) => f.done));
    }
    this.#stopMaintenance.abort();
    await this.#maintenance;
  }

  async #runLoop(): Promise<void> {
    const { clock, log, sql } = this.#deps;
    let failures = 0;
    while (this.#running) {
      let sleepUntil: number;
      // A fresh wake signal per round: a wake() during the round makes the next sleep return at once.
      const wake = this.#wake;
      try {
        const claimed = await this.#claimDue();
        // After a failed round: runs whose claim reply was lost end at once, not at the lease sweep.
        await this.#recoverLostClaims();
        const next = await earliestDue(sql);
        const now = clock.now();
        sleepUntil = next ? Math.min(next.getTime(), now + this.#options.maxIdleMs) : now + this.#options.maxIdleMs;
        // A due job that could not be claimed is locked by another instance's claim: look again
        // shortly rather than spin on it.
        if (claimed === 0 && sleepUntil <= now) sleepUntil = now + LOCKED_RETRY_MS;
        failures = 0;
        this.#healthy = true;
      } catch (error) {
        failures++;
        this.#healthy = false;
        this.#options.observe.failed();
        // Capped low: an instance must resume within seconds of the database coming back.
        const backoff = Math.min(5000, 250 * 2 ** Math.min(failures, 5));
        log.error({ err: toError(error), retryInMs: backoff }, 'scheduler round failed; retrying');
        sleepUntil = clock.now() + backoff;
      }
      if (wake.signal.aborted) this.#wake = new AbortController();
      else await clock.sleepUntil(sleepUntil, AbortSignal.any([wake.signal, this.#stop.signal]));
      if (this.#wake.signal.aborted) this.#wake = new AbortController();
    }
  }

  async #runMaintenance(): Promise<void> {
    const { clock, log } = this.#deps;
    // Renewing three times per lease keeps a healthy holder's lease from lapsing on a slow round.
    const every = this.leaseMs / 3;
    let lastVacuum = clock.now();
    let vacuuming: Promise<void> | null = null;
    while (!this.#stopMaintenance.signal.aborted) {
      // The next round is timed from this one's start, so a slow round does not stretch the gap.
      const started = clock.now();
      let next = started + every;
      try {
        await this.maintain();
      } catch (error) {
        this.#options.observe.failed();
        log.error({ err: toError(error) }, 'lease maintenance failed; retrying');
        // Soon: every renewal missed brings the runs in flight closer to being aborted.
        next = Math.min(next, clock.now() + MAINTENANCE_RETRY_MS);
      }
      // Beside the renewals, never in their way.
      if (!vacuuming && started >= lastVacuum + VACUUM_JOBS_MS) {
        lastVacuum = started;
        vacuuming = vacuumJobs(this.#deps.sql)
          .catch((error: unknown) => log.warn({ err: toError(error) }, 'vacuuming the jobs table failed; trying again later'))
          .finally(() => (vacuuming = null));
      }
      await clock.sleepUntil(next, this.#stopMaintenance.signal);
    }
    await vacuuming;
  }

  /**
   * After a run's end is written: a due time waiting under QUEUE_ONE, a retry, or a run waiting
   * for a call of its connector to end can start now or soon, so the loop looks again; a job whose
   * failures reached its limit is paused; the connector's circuit counts the call (the run is done
   * once it has).
   */
  #afterEnd(run: RunRow, job: RunJob, finished: FinishedRun): Promise<void> | undefined {
    const { gate } = this.#options;
    if (job.overlap === 'QUEUE_ONE' || run.trigger === 'MANUAL' || job.retryMaxAttempts > 1 || gate.holdsBack?.(job.connectorId))
      this.wake();
    if (finished.job) this.#autoPauseIfDue(run.jobId, finished.job, run.error);
    return gate.ended?.(run, job) ?? undefined;
  }

  /** Pauses a job whose consecutive failures reached its limit; the job service checks again under the row lock. */
  #autoPauseIfDue(jobId: string, after: JobAfterEnd, lastError: string | null): void {
    if (!after.enabled || after.autoPauseAfterFailures === null || after.consecutiveFailures < after.autoPauseAfterFailures) return;
    this.#options
      .autoPause(jobId, autoPauseNote(after.consecutiveFailures, lastError))
      .catch((error: unknown) => this.#deps.log.error({ err: toError(error), jobId }, 'auto-pausing a job failed'));
  }

  #publishClaim({ run, entries }: Claimed): void {
    const at = new Date(this.#deps.clock.now());
    if (run.status === 'SKIPPED') this.#deps.bus.publish('run:skipped', { at, run });
    for (const entry of entries) this.#deps.bus.publish('log:added', { entry });
  }
}
