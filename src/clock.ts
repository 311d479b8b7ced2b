/**
 * Time is a dependency. Every scheduling decision asks a Clock; in production it is the system
 * clock corrected by the measured offset to the database's clock_timestamp(), so instances with
 * skewed clocks still agree; tests pass a ManualClock and move it.
 */
export interface Clock {
  /** Epoch milliseconds. */
  now(): number;
  /** Resolves when the clock reaches `atMs` (at once if it has), or when `signal` aborts. */
  sleepUntil(atMs: number, signal?: AbortSignal): Promise<void>;
}

/** Node timers cap at about 24.8 days; longer sleeps are chained. */
const MAX_TIMER_MS = 2 ** 31 - 1;

/** The system clock shifted by an offset (database time minus local time) that can be re-measured. */
export class OffsetClock implements Clock {
  #offsetMs = 0;

  get offsetMs(): number {
    return this.#offsetMs;
  }

  setOffset(offsetMs: number): void {
    this.#offsetMs = offsetMs;
  }

  now(): number {
    return Date.now() + this.#offsetMs;
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
      const arm = () => {
        const wait = atMs - this.now();
        if (wait <= 0) return done();
        timer = setTimeout(arm, Math.min(wait, MAX_TIMER_MS));
      };
      signal?.addEventListener('abort', done, { once: true });
      arm();
    });
  }
}
