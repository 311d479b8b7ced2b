import type { Logger } from 'pino';
import type { Clock } from '../clock.ts';
import { describePurge, type Purged, purgeDetails, purgeOlderThan, type RetainedTable } from '../connectors/builtin-operations.ts';
import type { Sql } from '../db/client.ts';
import { claimHousekeepingDay, finishHousekeepingDay } from '../db/housekeeping-days.ts';
import { insertLogEntries, type NewLogEntry } from '../db/log.ts';
import { toError } from '../errors.ts';
import type { EventBus } from '../events/bus.ts';
import { type HousekeepingDay, latestDue, nextDay, retryDelayMs, type TimeOfDay } from './schedule.ts';

/**
 * After each batch it pauses as long as the batch took: a backlog of millions of rows takes twice
 * as long, and the runs keep their lateness (bench/sections/purge.ts measures it).
 */
const PAUSE_FACTOR = 1;

export interface HousekeeperDeps {
  /** Not the scheduler's pool: a long purge must not take connections that claims and run ends need. */
  sql: Sql;
  clock: Clock;
  bus: EventBus;
  log: Logger;
}

export interface HousekeeperOptions {
  instance: string;
  /** When, in UTC, each day's housekeeping is due. */
  at: TimeOfDay;
  logRetentionDays: number;
  runRetentionDays: number;
}

/** What one pass did with a day's housekeeping. */
export type HousekeepingPass =
  | { kind: 'done'; day: string; purged: Purged[]; interrupted: boolean }
  /** Another instance claimed the day. */
  | { kind: 'taken'; day: string }
  | { kind: 'failed'; day: string; error: Error; retryAtMs: number };

/**
 * The daily housekeeping of SPEC §4: at HOUSEKEEPING_AT (UTC) one instance of the cluster claims
 * the day, purges runs and log entries past their retention (in batches, as the built-in
 * operations do, through the same code) and writes an INFO entry saying what it deleted. A
 * failure is logged and tried again later with backoff; it never stops the service.
 */
export class Housekeeper {
  readonly #deps: HousekeeperDeps;
  readonly #options: HousekeeperOptions;
  readonly #stop = new AbortController();
  readonly #listeners = new Set<(pass: HousekeepingPass) => void>();
  #loop: Promise<void> | null = null;

  constructor(deps: HousekeeperDeps, options: HousekeeperOptions) {
    this.#deps = deps;
    this.#options = options;
  }

  /** With both retentions 0 everything is kept forever, and there is nothing to do. */
  get enabled(): boolean {
    return this.#options.logRetentionDays > 0 || this.#options.runRetentionDays > 0;
  }

  start(): void {
    if (!this.enabled) return this.#deps.log.info('daily housekeeping is off: LOG_RETENTION_DAYS and RUN_RETENTION_DAYS are 0');
    this.#loop ??= this.#run();
  }

  /** Stops between two batches; a day left unfinished is the next day's to catch up. */
  async stop(): Promise<void> {
    this.#stop.abort();
    await this.#loop;
  }

  /** Calls `listener` after every pass; returns a function that stops it. */
  onPass(listener: (pass: HousekeepingPass) => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  async #run(): Promise<void> {
    const { clock } = this.#deps;
    const signal = this.#stop.signal;
    let failures = 0;
    while (!signal.aborted) {
      const day = latestDue(clock.now(), this.#options.at);
      let pass: HousekeepingPass;
      try {
        pass = await this.#housekeep(day, signal);
        failures = 0;
      } catch (thrown) {
        if (signal.aborted) break;
        failures++;
        pass = { kind: 'failed', day: day.day, error: toError(thrown), retryAtMs: clock.now() + retryDelayMs(failures) };
        await this.#reportFailure(pass);
      }
      this.#emit(pass);
      await clock.sleepUntil(pass.kind === 'failed' ? pass.retryAtMs : nextDay(day), signal);
    }
  }

  /** `day`'s housekeeping, if this instance is the one to do it. */
  async #housekeep(day: HousekeepingDay, signal: AbortSignal): Promise<HousekeepingPass> {
    const { sql, clock } = this.#deps;
    const { instance, runRetentionDays, logRetentionDays } = this.#options;
    if (!(await claimHousekeepingDay(sql, day.day, instance, new Date(clock.now())))) return { kind: 'taken', day: day.day };
    const now = clock.now();
    const retention: [RetainedTable, number][] = [
      ['job_runs', runRetentionDays],
      ['log_entries', logRetentionDays],
    ];
    const purged: Purged[] = [];
    const pacing = { clock, pauseFactor: PAUSE_FACTOR };
    for (const [table, days] of retention) purged.push(await purgeOlderThan(sql, table, days, now, signal, pacing));
    const interrupted = signal.aborted;
    const note = interrupted ? ' (stopped by a shutdown: the rest waits for the next housekeeping)' : '';
    await this.#write({
      at: new Date(clock.now()),
      level: 'INFO',
      message: `Daily housekeeping of ${day.day}: ${purged.map(describePurge).join('; ')}${note}`,
      details: { day: day.day, instance, interrupted, purged: purged.map(purgeDetails) },
    });
    if (!interrupted) await finishHousekeepingDay(sql, day.day, instance, new Date(clock.now()));
    this.#deps.log.info({ day: day.day, purged: purged.map(purgeDetails), interrupted }, 'daily housekeeping done');
    return { kind: 'done', day: day.day, purged, interrupted };
  }

  async #reportFailure(pass: Extract<HousekeepingPass, { kind: 'failed' }>): Promise<void> {
    const retryAt = new Date(pass.retryAtMs).toISOString();
    this.#deps.log.error({ err: pass.error, day: pass.day, retryAt }, 'daily housekeeping failed; it will be tried again');
    // Best effort: the failure may well be the database's.
    await this.#write({
      at: new Date(this.#deps.clock.now()),
      level: 'ERROR',
      message: `Daily housekeeping of ${pass.day} failed: ${pass.error.message}; trying again at ${retryAt}`,
      details: { day: pass.day, instance: this.#options.instance, retryAt },
    }).catch(() => {});
  }

  async #write(entry: NewLogEntry): Promise<void> {
    for (const written of await insertLogEntries(this.#deps.sql, [entry])) this.#deps.bus.publish('log:added', { entry: written });
  }

  #emit(pass: HousekeepingPass): void {
    for (const listener of this.#listeners) {
      try {
        listener(pass);
      } catch (error) {
        this.#deps.log.error({ err: error }, 'a housekeeping listener failed');
      }
    }
  }
}
