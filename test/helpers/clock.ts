import type { Clock } from '../../src/clock.ts';

/**
 * A clock that moves only when told to. Sleepers wake when `set`/`advance` passes their time,
 * in time order.
 */
export class ManualClock implements Clock {
  #now: number;
  #sleepers = new Set<{ atMs: number; wake: () => void }>();

  constructor(startMs: number) {
    this.#now = startMs;
  }

  now(): number {
    return this.#now;
  }

  advance(ms: number): void {
    this.set(this.#now + ms);
  }

  set(ms: number): void {
    this.#now = ms;
    const due = [...this.#sleepers].filter((s) => s.atMs <= ms).sort((a, b) => a.atMs - b.atMs);
    for (const sleeper of due) sleeper.wake();
  }

  /**
   * Resolves with what `promise` gives, moving the clock on by `stepMs` at a time (a few real ms
   * apart, for what each step wakes to run) until it has settled: for work that retries after
   * pauses by this clock, such as writing a run's end while the database is away.
   */
  async advanceUntilSettled<T>(promise: Promise<T>, stepMs: number): Promise<T> {
    let settled = false;
    void promise.then(
      () => (settled = true),
      () => (settled = true),
    );
    while (!settled) {
      this.advance(stepMs);
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    return promise;
  }

  sleepUntil(atMs: number, signal?: AbortSignal): Promise<void> {
    return new Promise((resolve) => {
      if (signal?.aborted || atMs <= this.#now) return resolve();
      const sleeper = {
        atMs,
        wake: () => {
          this.#sleepers.delete(sleeper);
          signal?.removeEventListener('abort', sleeper.wake);
          resolve();
        },
      };
      this.#sleepers.add(sleeper);
      signal?.addEventListener('abort', sleeper.wake, { once: true });
    });
  }
}
