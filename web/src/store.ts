// The jobs the page knows, kept current by the `jobEvents` subscription: every job (from the
// `jobs` query), the runs in progress (a job with one is `running`), and the strips of recent
// outcomes of the rows on screen. Events are applied in batches, some 20 times a second at most,
// so that a burst of thousands costs a few renders, not thousands. While updates are paused
// (`Pause updates`) they wait, and are applied when updates resume.
import { type Api, ApiError } from './api.ts';
import { JOB_EVENTS, JOBS, RUNNING, STRIPS } from './documents.ts';
import { type Job, type JobEvent, type Run, withRun } from './model.ts';

/** Runs per strip. */
export const STRIP_LENGTH = 12;
/** Past this many waiting events the page reloads its lists instead of applying them one by one. */
const MAX_HELD = 20_000;
const BATCH_MS = 50;

interface Page<T> {
  edges: { node: T }[];
  pageInfo: { hasNextPage: boolean; endCursor: string | null };
}

export class JobStore {
  readonly jobs = new Map<string, Job>();
  /** Run id → job id, of the runs in progress. */
  readonly #running = new Map<string, string>();
  /** Job id → how many of its runs are in progress. */
  readonly #runningCount = new Map<string, number>();
  readonly strips = new Map<string, Run[]>();
  #stripsWanted = new Set<string>();
  #stripsLoading = false;

  /** Bumped by every change: what a view compares to know whether to compute again. */
  version = 0;
  loaded = false;
  error: string | null = null;
  #listeners = new Set<() => void>();
  #eventListeners = new Set<(event: JobEvent) => void>();
  #refreshListeners = new Set<() => void>();

  #held = false;
  #queue: JobEvent[] = [];
  #overflowed = false;
  #timer: ReturnType<typeof setTimeout> | undefined;
  /** Events that arrive while a refresh reads the lists: applied after it, on top of them. */
  #refreshing: JobEvent[] | null = null;
  #stop: (() => void) | null = null;

  constructor(private readonly api: Api) {}

  /** Asks for what `start` reads first, before it is called (while the page asks who it is). */
  static prefetch(api: Api): void {
    api.prefetch(JOBS);
    api.prefetch(RUNNING, { after: null });
  }

  /** Subscribes to every job's events, then reads the lists; again after each reconnection. */
  start(): void {
    const unsubscribe = this.api.subscribe<{ jobEvents: JobEvent }>(
      JOB_EVENTS,
      {},
      {
        next: (data) => this.#receive(data.jobEvents),
        interrupted: () => void this.refresh(),
      },
    );
    const off = this.api.onReconnect(() => void this.refresh());
    this.#stop = () => {
      unsubscribe();
      off();
    };
    void this.refresh();
  }

  stop(): void {
    this.#stop?.();
    clearTimeout(this.#timer);
  }

  /** Reads every job and the runs in progress afresh (the catch-up after a reconnection, SPEC §6). */
  async refresh(): Promise<void> {
    if (this.#refreshing) return;
    this.#refreshing = [];
    try {
      const [{ jobs }, running] = await Promise.all([this.api.request<{ jobs: Job[] }>(JOBS), this.#readRunning()]);
      this.jobs.clear();
      for (const job of jobs) this.jobs.set(job.id, job);
      this.#running.clear();
      this.#runningCount.clear();
      for (const run of running) this.#setRunning(run.id, run.jobId, true);
      // Strips are read again for the rows on screen, as they ask.
      this.strips.clear();
      this.loaded = true;
      this.error = null;
    } catch (error) {
      this.error = error instanceof ApiError ? error.message : String(error);
    }
    const missed = this.#refreshing;
    this.#refreshing = null;
    for (const event of missed) this.#apply(event);
    for (const listener of this.#refreshListeners) listener();
    this.#changed();
  }

  async #readRunning(): Promise<{ id: string; jobId: string }[]> {
    const runs: { id: string; jobId: string }[] = [];
    let after: string | null = null;
    for (let page = 0; page < 20; page++) {
      const { runs: answer }: { runs: Page<{ id: string; jobId: string }> } = await this.api.request(RUNNING, { after });
      runs.push(...answer.edges.map((edge) => edge.node));
      if (!answer.pageInfo.hasNextPage) break;
      after = answer.pageInfo.endCursor;
    }
    return runs;
  }

  isRunning = (jobId: string): boolean => (this.#runningCount.get(jobId) ?? 0) > 0;

  /** The strips of these jobs, read for those that have none yet (the rows on screen). */
  wantStrips(ids: readonly string[]): void {
    for (const id of ids) if (!this.strips.has(id) && this.jobs.has(id)) this.#stripsWanted.add(id);
    void this.#loadStrips();
  }

  async #loadStrips(): Promise<void> {
    if (this.#stripsLoading || this.#stripsWanted.size === 0) return;
    this.#stripsLoading = true;
    const ids = [...this.#stripsWanted].slice(0, 100);
    for (const id of ids) this.#stripsWanted.delete(id);
    try {
      const { jobs } = await this.api.request<{ jobs: { id: string; runs: Page<Run> }[] }>(STRIPS, { ids });
      for (const job of jobs) {
        // Runs that events brought meanwhile stay.
        let strip = job.runs.edges.map((edge) => edge.node);
        for (const run of this.strips.get(job.id) ?? []) strip = withRun(strip, run, STRIP_LENGTH);
        this.strips.set(job.id, strip);
      }
      for (const id of ids) if (!this.strips.has(id)) this.strips.set(id, []);
      this.#changed();
    } catch {
      // Asked again when the rows are next drawn.
    } finally {
      this.#stripsLoading = false;
    }
    if (this.#stripsWanted.size > 0) void this.#loadStrips();
  }

  /** Pause updates: events wait until `hold(false)`. */
  hold(held: boolean): void {
    this.#held = held;
    if (!held) {
      if (this.#overflowed) {
        this.#overflowed = false;
        this.#queue = [];
        void this.refresh();
      } else this.#schedule();
    }
    this.#changed(false);
  }

  get held(): boolean {
    return this.#held;
  }

  /** How many events wait while updates are paused. */
  get waiting(): number {
    return this.#overflowed ? MAX_HELD : this.#queue.length;
  }

  #receive(event: JobEvent): void {
    if (this.#overflowed) return;
    this.#queue.push(event);
    if (this.#queue.length > MAX_HELD) {
      this.#overflowed = true;
      this.#queue = [];
    }
    if (this.#held) {
      // The count of waiting updates is shown; a render per 50 ms at most.
      this.#scheduleNotice();
      return;
    }
    this.#schedule();
  }

  #noticeTimer: ReturnType<typeof setTimeout> | undefined;
  #scheduleNotice(): void {
    if (this.#noticeTimer !== undefined) return;
    this.#noticeTimer = setTimeout(() => {
      this.#noticeTimer = undefined;
      this.#changed(false);
    }, BATCH_MS);
  }

  #schedule(): void {
    this.#timer ??= setTimeout(() => {
      this.#timer = undefined;
      if (this.#held) return;
      const events = this.#queue;
      this.#queue = [];
      for (const event of events) {
        if (this.#refreshing) this.#refreshing.push(event);
        this.#apply(event);
      }
      if (events.length > 0) this.#changed();
    }, BATCH_MS);
  }

  #apply(event: JobEvent): void {
    const { run } = event;
    if (event.kind === 'JOB_DELETED') {
      this.jobs.delete(event.jobId);
      this.strips.delete(event.jobId);
      for (const [runId, jobId] of this.#running) if (jobId === event.jobId) this.#setRunning(runId, jobId, false);
    } else if (event.job) {
      this.jobs.set(event.job.id, event.job);
    }
    if (run) {
      this.#setRunning(run.id, run.jobId, run.status === 'RUNNING');
      const strip = this.strips.get(run.jobId);
      if (strip) this.strips.set(run.jobId, withRun(strip, run, STRIP_LENGTH));
    }
    for (const listener of this.#eventListeners) listener(event);
  }

  #setRunning(runId: string, jobId: string, running: boolean): void {
    const was = this.#running.has(runId);
    if (was === running) return;
    if (running) this.#running.set(runId, jobId);
    else this.#running.delete(runId);
    const count = (this.#runningCount.get(jobId) ?? 0) + (running ? 1 : -1);
    if (count > 0) this.#runningCount.set(jobId, count);
    else this.#runningCount.delete(jobId);
  }

  /** A job as a mutation answered it: shown at once, before its event arrives. */
  put(job: Job): void {
    this.jobs.set(job.id, job);
    this.#changed();
  }

  remove(id: string): void {
    this.jobs.delete(id);
    this.strips.delete(id);
    this.#changed();
  }

  /** `data`: the jobs, runs or strips changed (not only the count of waiting events). */
  #changed(data = true): void {
    if (data) this.version++;
    for (const listener of this.#listeners) listener();
  }

  /** Calls `listener` after every change. */
  subscribe(listener: () => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  /** Calls `listener` with each event as it is applied (held while updates are paused). */
  onEvent(listener: (event: JobEvent) => void): () => void {
    this.#eventListeners.add(listener);
    return () => this.#eventListeners.delete(listener);
  }

  /** Calls `listener` after each refresh: a view of its own (a job's runs) reads again then. */
  onRefresh(listener: () => void): () => void {
    this.#refreshListeners.add(listener);
    return () => this.#refreshListeners.delete(listener);
  }
}
