/** The part of a piscina worker the choice reads (piscina does not export its worker type). */
export interface WorkerState {
  id: number;
  terminating: boolean;
  destroyed: boolean;
  currentUsage: number;
}

/**
 * Heartbeats of the operation workers: a worker silent for longer than `stallMs` is taken as
 * blocked (a synchronous loop in an operation). Times are the workers' own `Date.now()` beats,
 * compared with this thread's: the same wall clock, so no clock of the scheduler's applies.
 *
 * Silence is counted up to when this thread last read the workers' messages (`heard`), not up
 * to now: a beat this thread has not read yet was not missed. When the main thread itself is
 * starved (the machine overloaded, a long GC), every worker's beats wait unread; counting them
 * as silence took healthy workers for blocked, replaced them, and failed every call they held.
 */
export class WorkerLiveness {
  readonly #lastBeat = new Map<number, number>();
  /** Beats sent before this time have been read. */
  #heardAt: number | null = null;

  constructor(private readonly stallMs: number) {}

  beat(thread: number, atMs: number): void {
    this.#lastBeat.set(thread, atMs);
  }

  /** This thread has read every message the workers sent before `atMs`. */
  heard(atMs: number): void {
    // Not the latest of them: after the wall clock steps back, beats must compare with the new time.
    this.#heardAt = atMs;
  }

  /** A worker that has not beaten yet counts as alive: it is still starting. */
  isAlive(thread: number): boolean {
    const beat = this.#lastBeat.get(thread);
    return beat === undefined || this.#heardAt === null || this.#heardAt - beat <= this.stallMs;
  }

  /** Forgets the threads that no longer exist. */
  keepOnly(threads: ReadonlySet<number>): void {
    for (const thread of this.#lastBeat.keys()) if (!threads.has(thread)) this.#lastBeat.delete(thread);
  }
}

/**
 * The least busy worker that is alive, has room and is not excluded; a silent one only when none
 * is alive (it may merely be slow to beat); null when every worker is full or excluded.
 */
export function pickWorker<W extends WorkerState>(
  workers: Iterable<W>,
  options: { isAlive(id: number): boolean; excluded(id: number): boolean; maxUsage: number },
): W | null {
  let best: W | null = null;
  let fallback: W | null = null;
  for (const worker of workers) {
    if (worker.terminating || worker.destroyed || worker.currentUsage >= options.maxUsage) continue;
    if (options.excluded(worker.id)) continue;
    if (!options.isAlive(worker.id)) {
      if (!fallback || worker.currentUsage < fallback.currentUsage) fallback = worker;
    } else if (!best || worker.currentUsage < best.currentUsage) best = worker;
  }
  return best ?? fallback;
}
