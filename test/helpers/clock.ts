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
