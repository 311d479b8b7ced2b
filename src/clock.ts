import { performance } from 'node:perf_hooks';

/**
 * Time is a dependency. Every scheduling decision asks a Clock; in production it is the local
 * monotonic clock mapped onto the database's clock_timestamp() by measured samples, so instances
 * with skewed clocks still agree; tests pass a ManualClock and move it.
 */
export interface Clock {
  /** Epoch milliseconds. */
  now(): number;
  /** Resolves when the clock reaches `atMs` (at once if it has), or when `signal` aborts. */
  sleepUntil(atMs: number, signal?: AbortSignal): Promise<void>;
}

/** Where local time comes from: a dependency, so tests can step the system clock. */
export interface TimeSource {
  /** Milliseconds that only ever go forward at a steady rate, from an arbitrary origin (performance.now()). */
  monotonicMs(): number;
  /** The system clock, epoch milliseconds; it may be stepped at any time (Date.now()). */
  wallMs(): number;
}

export const systemTime: TimeSource = { monotonicMs: () => performance.now(), wallMs: () => Date.now() };

/** One reading of the database's clock, bracketed by local monotonic readings taken around its round trip. */
export interface ClockSample {
  /** Local monotonic time just before the query was sent. */
  sentMs: number;
  /** The database's clock_timestamp(), epoch milliseconds. */
  dbMs: number;
  /** Local monotonic time just after the answer arrived. */
  receivedMs: number;
}

export interface OffsetEstimate {
  /**
   * Database time minus local monotonic time, at its lower bound: the database read its clock
   * somewhere within the round trip, so the true offset lies in [dbMs − receivedMs, dbMs − sentMs];
   * taking the lower end means a time computed with it is never ahead of the database's clock.
   */
  offsetMs: number;
  /** The chosen sample's round trip: how much the estimate may lag behind the database's clock. */
  roundTripMs: number;
  /** Local monotonic time of the sample, from which drift is counted. */
  atMs: number;
}

/**
 * The best of several samples: the one with the shortest round trip (a sample that waited in a
 * queue, or paid for a connection's set-up, has a wide interval and is worth little), its offset
 * taken at the lower bound. Null when there is no usable sample.
 */
export function bestOffset(samples: readonly ClockSample[]): OffsetEstimate | null {
  let best: ClockSample | null = null;
  for (const sample of samples) {
    const { sentMs, dbMs, receivedMs } = sample;
    if (![sentMs, dbMs, receivedMs].every(Number.isFinite) || receivedMs < sentMs) continue;
    if (!best || receivedMs - sentMs < best.receivedMs - best.sentMs) best = sample;
  }
  if (!best) return null;
  return { offsetMs: best.dbMs - best.receivedMs, roundTripMs: best.receivedMs - best.sentMs, atMs: best.receivedMs };
}

/**
 * How far a local monotonic clock may run fast against the database's between two syncs, in
 * parts per million: clocks disciplined by NTP stay well within it. Counted against "now", so
 * that drift between syncs cannot make it early either.
 */
export const DEFAULT_MAX_DRIFT_PPM = 50;

/**
 * How many syncs in a row may be passed over for the estimate in use before one is taken anyway:
 * a database clock that was stepped is followed within that many syncs, even by slow samples.
 */
export const MAX_SYNCS_PASSED_OVER = 5;

/** Node timers cap at about 24.8 days; longer sleeps are chained. */
const MAX_TIMER_MS = 2 ** 31 - 1;

/**
 * The database's clock as this process can know it without asking: the local monotonic clock
 * plus an offset measured from samples of the database's clock_timestamp() (see `bestOffset`).
 *
 * - Never ahead of the database: the offset is the lower bound of the best sample's interval,
 *   and an allowance for drift is taken off as time passes since that sample.
 * - Unmoved by a stepped system clock: between syncs only the monotonic clock counts (the
 *   system clock serves only until the first sync).
 * - Never backwards once synced: a re-sync that would move "now" back holds it where it was
 *   until the new estimate catches up.
 *
 * Whole milliseconds, like Date.now(): rounding down keeps it from being ahead.
 */
export class OffsetClock implements Clock {
  readonly time: TimeSource;
  readonly #maxDriftPpm: number;
  #offsetMs: number;
  #atMs: number;
  #roundTripMs: number | null = null;
  /** The highest value returned before the last sync: "now" never goes below it. */
  #floorMs = -Infinity;
  /** Syncs in a row whose estimate was worse than the one in use. */
  #passedOver = 0;

  constructor(options: { time?: TimeSource; maxDriftPpm?: number } = {}) {
    this.time = options.time ?? systemTime;
    this.#maxDriftPpm = options.maxDriftPpm ?? DEFAULT_MAX_DRIFT_PPM;
    // Until the first sync: the system clock, read once, carried forward by the monotonic one.
    this.#atMs = this.time.monotonicMs();
    this.#offsetMs = this.time.wallMs() - this.#atMs;
  }

  /** Database time minus the system clock, as now estimated (for logs). */
  get offsetMs(): number {
    return this.now() - this.time.wallMs();
  }

  /** The round trip of the sample in use, or null before the first sync. */
  get roundTripMs(): number | null {
    return this.#roundTripMs;
  }

  /**
   * Takes a new estimate; "now" moves forward to it, or holds still until it catches up. The
   * first one is taken as it is: until then "now" was only the system clock's guess.
   */
  adopt(estimate: OffsetEstimate): void {
    if (this.#roundTripMs !== null) this.#floorMs = this.now();
    this.#offsetMs = estimate.offsetMs;
    this.#atMs = estimate.atMs;
    this.#roundTripMs = estimate.roundTripMs;
  }

  /**
   * How far "now" may lag the database's clock under the estimate in use: its sample's round
   * trip plus the drift allowance since. Null before the first sync.
   */
  uncertaintyMs(): number | null {
    if (this.#roundTripMs === null) return null;
    return this.#roundTripMs + (Math.max(0, this.time.monotonicMs() - this.#atMs) * this.#maxDriftPpm) / 1e6;
  }

  /**
   * Takes samples with `sample` (which reads the local side with this clock's `time`) and adopts
   * the best, unless the estimate in use is still more precise: samples taken while this
   * process's event loop was busy (just after it was paused, under a burst) have long round trips,
   * and adopting one would leave "now" behind the database by that much until the next sync. Such
   * an estimate is passed over, at most MAX_SYNCS_PASSED_OVER times in a row. Returns the estimate
   * in use afterwards; rejects, keeping the current one, when the sampler fails or gives no usable
   * sample.
   */
  async sync(sample: (time: TimeSource) => Promise<ClockSample[]>): Promise<OffsetEstimate> {
    const estimate = bestOffset(await sample(this.time));
    if (!estimate) throw new Error('no usable sample of the database clock');
    const current = this.uncertaintyMs();
    if (current !== null && estimate.roundTripMs > current && this.#passedOver < MAX_SYNCS_PASSED_OVER) {
      this.#passedOver++;
      return { offsetMs: this.#offsetMs, roundTripMs: this.#roundTripMs!, atMs: this.#atMs };
    }
    this.#passedOver = 0;
    this.adopt(estimate);
    return estimate;
  }

  now(): number {
    const local = this.time.monotonicMs();
    const drift = (Math.max(0, local - this.#atMs) * this.#maxDriftPpm) / 1e6;
    return Math.floor(Math.max(this.#floorMs, local + this.#offsetMs - drift));
  }

  sleepUntil(atMs: number, signal?: AbortSignal): Promise<void> {
    return new Promise((resolve) => {
      if (signal?.aborted) return resolve();
      let timer: NodeJS.Timeout | undefined;
      const done = () => {
        clearTimeout(timer);
        signal?.removeEventListener('abort', done);
        resolve();
      };
      // Timers may fire early by the clock (they round, and the clock runs slow by its drift
      // allowance): each wake-up looks again, and sleeps on until `now()` has reached `atMs`.
      const arm = () => {
        const wait = atMs - this.now();
        if (wait <= 0) return done();
        timer = setTimeout(arm, Math.min(Math.max(1, Math.ceil(wait)), MAX_TIMER_MS));
      };
      signal?.addEventListener('abort', done, { once: true });
      arm();
    });
  }
}

/** Resolves `ms` from now by `clock`, or when `signal` aborts. */
export const sleepFor = (clock: Clock, ms: number, signal?: AbortSignal): Promise<void> => clock.sleepUntil(clock.now() + ms, signal);

/** The promise's value, or undefined when it has not settled within `ms` by `clock`. */
export async function settledWithin<T>(clock: Clock, promise: Promise<T>, ms: number): Promise<T | undefined> {
  const stop = new AbortController();
  try {
    return await Promise.race([promise, sleepFor(clock, ms, stop.signal).then(() => undefined)]);
  } finally {
    stop.abort('settled');
  }
}
