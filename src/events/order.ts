import type { RunRow } from '../db/rows.ts';
import type { TopicEvent, Topics } from './topics.ts';

type RunStarted = { topic: 'run:started'; payload: Topics['run:started'] };
type RunFinished = { topic: 'run:finished'; payload: Topics['run:finished'] };

export interface RunOrderDeps {
  /** Hands an event on to the subscribers. */
  emit(event: TopicEvent): void;
  /** Ends the subscriptions that see this job's events: their order could not be kept. */
  interrupt(reason: string, jobId: string): void;
  /** The current rows of these runs; without it, a start waits for the ends to arrive. */
  readRuns?: ((ids: string[]) => Promise<RunRow[]>) | undefined;
  /** How long a start waits for the end of the job's previous run before giving up. */
  waitMs: number;
}

interface Hold {
  /** The event held: a run's start, or the end of a run whose start was not shown here. */
  start: RunStarted | RunFinished;
  /** The job's earlier runs whose end has not reached the subscribers yet. */
  waitFor: Set<string>;
  /** The job's events that arrived meanwhile, kept in arrival order. */
  queued: TopicEvent[];
  timer: NodeJS.Timeout;
}

interface JobState {
  /** Runs whose start reached the subscribers and whose end has not. */
  open: Set<string>;
  /** The last runs whose end reached the subscribers (to drop a second copy of an end). */
  ended: string[];
  /**
   * Runs whose end was shown read back from its row: the instance that recorded it still sends
   * it, possibly much later (a process stopped between its commit and its notification), and
   * that copy is dropped however many runs of the job went by meanwhile.
   */
  readBack: string[];
  /** The highest run id whose start reached the subscribers: every earlier run of the job has ended. */
  latestStart: bigint | null;
  hold: Hold | null;
  /** The highest run id whose event reached the subscribers: runs of a job are numbered in the order they were claimed. */
  latest: bigint | null;
}

/** How many ended runs per job are remembered, how many read-back ends, and how many jobs. */
const ENDED_KEPT = 16;
const READ_BACK_KEPT = 64;
const JOBS_KEPT = 10_000;

/**
 * Puts each job's run events in the order they happened before subscribers see them, whichever
 * instance sent them. A job runs one run at a time (the database allows one RUNNING run per
 * job), so when a run's start arrives while the job's previous run still looks open here, that
 * run has ended in the database: its end is on its way from the instance that recorded it (a
 * start from instance B can overtake the end of the previous run on A, and B's own start is
 * delivered locally at once). The start is held, with the job's later events, until that end
 * arrives — or is read back from its row, which is the event the other instance sends — and is
 * released after it. If neither comes within `waitMs`, the job's subscriptions are ended with
 * EVENTS_INTERRUPTED rather than shown the runs out of order; so are they when a run's start
 * arrives after its end (a run cancelled by another instance just as it started), and when a
 * run's end arrives, not shown before, after a later run of the job was shown started. An end
 * shown read back is remembered until its own notification comes, however late (its instance
 * may have been stopped between its commit and its notification), and that copy is dropped.
 *
 * Events of other jobs, log entries and internal topics are never held.
 */
export class RunOrder {
  #jobs = new Map<string, JobState>();

  constructor(private readonly deps: RunOrderDeps) {}

  accept(event: TopicEvent): void {
    const jobId = jobOf(event);
    if (jobId === null) return this.deps.emit(event);
    const state = this.#state(jobId);
    if (state.hold) {
      if (event.topic === 'run:finished' && state.hold.waitFor.has(event.payload.run.id)) {
        // The end the held start waits for: it goes first.
        this.#end(state, event);
        state.hold.waitFor.delete(event.payload.run.id);
        if (state.hold.waitFor.size === 0) this.#release(jobId, state);
      } else {
        state.hold.queued.push(event);
      }
      return;
    }
    this.#process(jobId, state, event);
  }

  /**
   * Forgets every job's order: all subscriptions were just interrupted (a reconnect of the
   * listener, lost events), so what they were shown no longer constrains what comes next, and
   * runs that looked open here may have ended unseen. Held events go on to the new subscribers.
   */
  reset(): void {
    const jobs = [...this.#jobs];
    this.#jobs.clear();
    for (const [, state] of jobs) {
      if (!state.hold) continue;
      clearTimeout(state.hold.timer);
      for (const event of [state.hold.start, ...state.hold.queued]) this.accept(event);
    }
  }

  /** Runs held back now, across jobs: for tests and metrics. */
  get holding(): number {
    let count = 0;
    for (const state of this.#jobs.values()) if (state.hold) count++;
    return count;
  }

  #process(jobId: string, state: JobState, event: TopicEvent): void {
    if (event.topic === 'run:started' || event.topic === 'run:skipped') {
      const { run } = event.payload;
      if (state.ended.includes(run.id)) {
        this.deps.interrupt(`the start of run ${run.id} arrived after its end`, jobId);
        return;
      }
      if (state.open.has(run.id)) return;
      // A later run of the job was shown already (its instance's notification overtook this one's
      // by more than a period): too late to put this one before it.
      if (state.latest !== null && BigInt(run.id) < state.latest) {
        this.deps.interrupt(`run ${run.id} arrived after a later run of its job`, jobId);
        return;
      }
      if (event.topic === 'run:skipped') return this.#emit(state, event);
      const earlier = [...state.open];
      if (earlier.length > 0) return this.#hold(jobId, state, event, earlier);
      state.open.add(run.id);
      this.#emit(state, event);
    } else if (event.topic === 'run:finished') {
      const { id } = event.payload.run;
      // The late copy of an end shown read back from its row.
      const copy = state.readBack.indexOf(id);
      if (copy !== -1) return void state.readBack.splice(copy, 1);
      // A second copy (the end was read back before the other instance's notification came).
      if (state.ended.includes(id)) return;
      if (!state.open.has(id)) {
        // A later run of the job was shown started, so this one had ended before; its end was not
        // shown here and cannot be put in its place any more.
        if (state.latestStart !== null && BigInt(id) < state.latestStart) {
          this.deps.interrupt(`the end of run ${id} arrived after a later run of its job`, jobId);
          return;
        }
        // Its start was not shown here (its holder stopped before sending it, say), but earlier runs
        // of the job still look open: they ended before it began, and their ends go first.
        const earlier = [...state.open].filter((open) => BigInt(open) < BigInt(id));
        if (earlier.length > 0) return this.#hold(jobId, state, event, earlier);
      }
      this.#end(state, event);
    } else {
      this.deps.emit(event);
    }
  }

  #end(state: JobState, event: RunFinished): void {
    state.open.delete(event.payload.run.id);
    state.ended.push(event.payload.run.id);
    if (state.ended.length > ENDED_KEPT) state.ended.shift();
    this.#emit(state, event);
  }

  #emit(state: JobState, event: TopicEvent): void {
    if (event.topic === 'run:started' || event.topic === 'run:skipped' || event.topic === 'run:finished') {
      const id = BigInt(event.payload.run.id);
      if (state.latest === null || id > state.latest) state.latest = id;
      if (event.topic === 'run:started' && (state.latestStart === null || id > state.latestStart)) state.latestStart = id;
    }
    this.deps.emit(event);
  }

  #hold(jobId: string, state: JobState, start: RunStarted | RunFinished, earlier: string[]): void {
    const hold: Hold = {
      start,
      waitFor: new Set(earlier),
      queued: [],
      timer: setTimeout(() => {
        if (state.hold !== hold) return;
        // Their ends did not come and could not be read: subscribers would see this job out of order.
        for (const id of hold.waitFor) state.open.delete(id);
        this.deps.interrupt(`the end of run ${[...hold.waitFor].join(', ')} did not arrive in time`, jobId);
        this.#release(jobId, state);
      }, this.deps.waitMs),
    };
    state.hold = hold;
    const { readRuns } = this.deps;
    if (!readRuns) return;
    readRuns(earlier).then(
      (rows) => {
        if (state.hold !== hold) return;
        const found = new Map(rows.map((row) => [row.id, row]));
        for (const id of [...hold.waitFor]) {
          const row = found.get(id);
          // Still running (runs that may overlap) or gone: nothing to wait for.
          if (!row || row.status === 'RUNNING') {
            if (!row) state.open.delete(id);
            hold.waitFor.delete(id);
            continue;
          }
          // The stored end is the event its instance sends: the same row, at its finishedAt.
          this.#end(state, { topic: 'run:finished', payload: { at: row.finishedAt ?? start.payload.at, run: row } });
          state.readBack.push(id);
          if (state.readBack.length > READ_BACK_KEPT) state.readBack.shift();
          hold.waitFor.delete(id);
        }
        if (hold.waitFor.size === 0) this.#release(jobId, state);
      },
      // Unreadable: the timer decides.
      () => {},
    );
  }

  #release(jobId: string, state: JobState): void {
    const hold = state.hold;
    if (!hold) return;
    state.hold = null;
    clearTimeout(hold.timer);
    if (hold.start.topic === 'run:finished') this.#end(state, hold.start);
    else {
      state.open.add(hold.start.payload.run.id);
      this.#emit(state, hold.start);
    }
    for (let i = 0; i < hold.queued.length; i++) {
      const event = hold.queued[i]!;
      if (state.hold) {
        this.accept(event);
        continue;
      }
      this.#process(jobId, state, event);
    }
  }

  #state(jobId: string): JobState {
    let state = this.#jobs.get(jobId);
    if (state) {
      // Most recently used last, so the oldest are dropped first.
      this.#jobs.delete(jobId);
      this.#jobs.set(jobId, state);
      return state;
    }
    state = { open: new Set(), ended: [], readBack: [], hold: null, latest: null, latestStart: null };
    this.#jobs.set(jobId, state);
    if (this.#jobs.size > JOBS_KEPT) {
      for (const [id, old] of this.#jobs) {
        if (old.hold) continue;
        this.#jobs.delete(id);
        break;
      }
    }
    return state;
  }
}

/** The job an event belongs to, for the events whose per-job order subscribers see; else null. */
function jobOf(event: TopicEvent): string | null {
  switch (event.topic) {
    case 'job:created':
    case 'job:updated':
      return event.payload.job.id;
    case 'job:deleted':
      return event.payload.jobId;
    case 'run:started':
    case 'run:skipped':
    case 'run:finished':
      return event.payload.run.jobId;
    default:
      return null;
  }
}
