// Changes in the mix: while a scenario's faults go on, the harness pauses (with a note), resumes,
// re-periodises, deletes and runs now a subset of the jobs through the public GraphQL API of the
// instances, a few milliseconds after the due times of the jobs it changes (when a change and a
// claim race for the job), also while an instance is down or the database is away. Calls may
// fail then; what committed is read back afterwards from the database's audit trail, and
// chaos/change-spans.ts rebuilds from it the grid spans each changed job was enabled on.
import type { DbClock, Sql } from './audit.ts';
import { nextGridPoint } from './change-spans.ts';
import { type Cluster, sleep } from './cluster.ts';
import { gqlResult } from '../test/helpers/process.ts';

export type ChangeAction = 'pause' | 'resume' | 'period' | 'delete' | 'runNow';

export interface ChangeAttempt {
  jobId: string;
  action: ChangeAction;
  /** A period change's new period, in seconds. */
  periodSeconds?: number;
  /** The due time it was fired just after (database time, ISO); null when fired off the grid (a resume). */
  afterDue: string | null;
  /** When the request went out and when its answer (or the failure to reach the instance) came, database time (epoch ms). */
  sentAt: number;
  /** Null: no answer within the timeout; the call may still commit, at any later time. */
  answeredAt: number | null;
  /** ok; error: answered with a GraphQL error; unreachable: the connection failed; timeout: no answer. */
  outcome: 'ok' | 'error' | 'unreachable' | 'timeout';
  /** The error's code (or message). */
  error?: string;
  port: number;
}

export interface ChangeDriverOptions {
  sql: Sql;
  cluster: Cluster;
  clock: DbClock;
  /** The jobs to change. */
  jobIds: string[];
  /** Those of them to delete, one by one: at a random time in `deleteWindow`, or at once on `hurry`. */
  deleteIds: string[];
  /** Database time (epoch ms) between which the deletes not hurried happen. */
  deleteWindow: [number, number];
  /** A call without an answer after this long is given up (its job gets no further change). */
  timeoutMs?: number;
  /** Seeds the choices (actions, gaps, the ms after a due time), for a run that can be repeated. */
  seed?: number;
}

/** The few ms after a due time a change is fired at: a claim of that due time is usually under way. */
const AFTER_DUE_MS: [number, number] = [1, 15];
/** Period changes pick among these multiples of the job's first period. */
const PERIOD_FACTORS = [1, 2, 3];

interface JobState {
  id: string;
  enabled: boolean;
  periodSeconds: number;
  /** A point of the job's current grid and its period (ms), or null while not known (paused after a period change). */
  grid: { pointMs: number; periodMs: number } | null;
  /** When (database time) to delete it; undefined: never. */
  deleteAt?: number;
  deleted: boolean;
  /** Wakes its loop early (hurry). */
  wake: AbortController;
  hurried: boolean;
}

const JOB_FIELDS = 'enabled periodSeconds nextRunAt';
interface JobAnswer {
  enabled: boolean;
  periodSeconds: number;
  nextRunAt: string | null;
}

/**
 * Fires the changes, one job at a time per loop (each job's calls one after the other, so its
 * audit trail tells them apart), until `stop`. `attempts` lists every call and its outcome.
 */
export class ChangeDriver {
  readonly attempts: ChangeAttempt[] = [];
  readonly seed: number;
  #options: ChangeDriverOptions;
  #random: () => number;
  #jobs = new Map<string, JobState>();
  #loops: Promise<void>[] = [];
  #stop = new AbortController();
  #basePeriodSeconds = new Map<string, number>();

  constructor(options: ChangeDriverOptions) {
    this.#options = options;
    this.seed = options.seed ?? Math.floor(Math.random() * 2 ** 31);
    this.#random = mulberry32(this.seed);
  }

  /** Reads the jobs' grids from the database and starts a loop per job. */
  async start(): Promise<void> {
    const { sql, jobIds, deleteIds, deleteWindow } = this.#options;
    const rows = await sql<{ id: string; anchorAt: Date; periodSeconds: number }[]>`
      select id, anchor_at, period_seconds from jobs where id = any(${jobIds}::text[])`;
    for (const row of rows) {
      const deleteAt = deleteIds.includes(row.id) ? deleteWindow[0] + this.#random() * (deleteWindow[1] - deleteWindow[0]) : undefined;
      this.#basePeriodSeconds.set(row.id, row.periodSeconds);
      this.#jobs.set(row.id, {
        id: row.id,
        enabled: true,
        periodSeconds: row.periodSeconds,
        grid: { pointMs: row.anchorAt.getTime(), periodMs: row.periodSeconds * 1000 },
        ...(deleteAt !== undefined ? { deleteAt } : {}),
        deleted: false,
        wake: new AbortController(),
        hurried: false,
      });
    }
    for (const job of this.#jobs.values()) this.#loops.push(this.#loop(job));
  }

  /**
   * A fault is about to begin: a few jobs act at their next due time instead of later, and one
   * job due for deletion is deleted then, so that changes of every kind meet the fault.
   */
  hurry(count = 4): void {
    const live = [...this.#jobs.values()].filter((j) => !j.deleted);
    const toDelete = live.find((j) => j.deleteAt !== undefined && j.deleteAt > this.#options.clock.now());
    if (toDelete) toDelete.deleteAt = this.#options.clock.now();
    const picked = new Set(toDelete ? [toDelete] : []);
    for (const job of shuffle(live, this.#random)) {
      if (picked.size >= count) break;
      picked.add(job);
    }
    for (const job of picked) {
      job.hurried = true;
      job.wake.abort();
    }
  }

  /** Stops firing and waits for the calls in flight to be answered (or to time out). */
  async stop(): Promise<void> {
    this.#stop.abort();
    for (const job of this.#jobs.values()) job.wake.abort();
    await Promise.all(this.#loops);
  }

  /** Counts per action and outcome. */
  summary(): ChangeSummary {
    const byAction: Record<string, number> = {};
    const byOutcome: Record<string, number> = {};
    for (const a of this.attempts) {
      byAction[a.action] = (byAction[a.action] ?? 0) + 1;
      byOutcome[a.outcome] = (byOutcome[a.outcome] ?? 0) + 1;
    }
    return { jobs: this.#jobs.size, attempts: this.attempts.length, byAction, byOutcome, seed: this.seed };
  }

  get #stopped(): boolean {
    return this.#stop.signal.aborted;
  }

  async #loop(job: JobState): Promise<void> {
    while (!this.#stopped && !job.deleted) {
      const action = this.#choose(job);
      const { fireAt, afterDue } = this.#when(job);
      await this.#sleepUntil(job, fireAt);
      if (this.#stopped) return;
      if (job.hurried && job.wake.signal.aborted) {
        // Woken early: plan again, from now.
        job.wake = new AbortController();
        continue;
      }
      job.hurried = false;
      const attempt = await this.#fire(job, action, afterDue);
      if (attempt.outcome === 'timeout') return; // its outcome may come at any time: no further change of this job
      if (attempt.outcome !== 'ok' && action !== 'runNow') await this.#resync(job);
    }
  }

  #choose(job: JobState): ChangeAction {
    const now = this.#options.clock.now();
    if (job.deleteAt !== undefined && now >= job.deleteAt - 3_000) return 'delete';
    const r = this.#random();
    if (!job.enabled) return r < 0.75 ? 'resume' : r < 0.9 ? 'period' : 'runNow';
    if (!job.grid) return 'pause';
    return r < 0.45 ? 'pause' : r < 0.8 ? 'period' : 'runNow';
  }

  /** Database time to fire at: a few ms after one of the job's next due times, or (a resume) around a point of its grid. */
  #when(job: JobState): { fireAt: number; afterDue: string | null } {
    const now = this.#options.clock.now();
    const [lo, hi] = AFTER_DUE_MS;
    const after = lo + Math.floor(this.#random() * (hi - lo + 1));
    if (job.enabled && job.grid) {
      const { pointMs, periodMs } = job.grid;
      const wait = job.hurried ? 0 : Math.floor(this.#random() * 3);
      // Never fire at a due time already passed: the plan's own lateness would otherwise pile up.
      const due = nextGridPoint(pointMs, periodMs, now + 50) + wait * periodMs;
      return { fireAt: due + after, afterDue: new Date(due).toISOString() };
    }
    // Paused: a while later, a few ms before or after what would be a due time (a resume keeps the grid).
    const pause = job.hurried ? 0 : 1_000 + this.#random() * 2_000;
    if (job.grid) {
      const point = nextGridPoint(job.grid.pointMs, job.grid.periodMs, now + pause + 50);
      return { fireAt: point + (this.#random() < 0.5 ? -after : after), afterDue: null };
    }
    return { fireAt: now + pause, afterDue: null };
  }

  async #sleepUntil(job: JobState, dbMs: number): Promise<void> {
    const signal = job.wake.signal;
    while (!this.#stopped && !signal.aborted) {
      const left = dbMs - this.#options.clock.now();
      if (left <= 0) return;
      // Coarse sleep, then a short one: timers are late by a ms or two, not early.
      await sleep(Math.max(1, Math.min(left > 30 ? left - 20 : left, 1_000)));
    }
  }

  async #fire(job: JobState, action: ChangeAction, afterDue: string | null): Promise<ChangeAttempt> {
    const { cluster, clock } = this.#options;
    const base = this.#basePeriodSeconds.get(job.id)!;
    let periodSeconds: number | undefined;
    if (action === 'period') {
      const choices = PERIOD_FACTORS.map((f) => f * base).filter((s) => s !== job.periodSeconds);
      periodSeconds = choices[Math.floor(this.#random() * choices.length)]!;
    }
    const [query, variables] = request(action, job.id, periodSeconds);
    let port = 0;
    try {
      port = cluster.anyPort();
    } catch {
      /* no instance running: recorded as unreachable */
    }
    const attempt: ChangeAttempt = {
      jobId: job.id,
      action,
      ...(periodSeconds !== undefined ? { periodSeconds } : {}),
      afterDue,
      sentAt: clock.now(),
      answeredAt: null,
      outcome: 'ok',
      port,
    };
    this.attempts.push(attempt);
    if (!port) {
      Object.assign(attempt, { answeredAt: clock.now(), outcome: 'unreachable', error: 'no instance running' });
      return attempt;
    }
    try {
      const result = await gqlResult<Record<string, JobAnswer | string | null>>(port, query, variables, this.#options.timeoutMs ?? 60_000);
      attempt.answeredAt = clock.now();
      const error = result.errors?.[0];
      if (error) {
        attempt.outcome = 'error';
        attempt.error = String(error.extensions?.['code'] ?? error.message).slice(0, 200);
        return attempt;
      }
      const answer = result.data ? Object.values(result.data)[0] : null;
      if (action === 'delete') job.deleted = true;
      else if (action !== 'runNow' && answer && typeof answer === 'object') this.#apply(job, answer);
    } catch (error) {
      const timedOut = error instanceof Error && (error.name === 'TimeoutError' || error.name === 'AbortError');
      if (timedOut) {
        attempt.outcome = 'timeout';
      } else {
        attempt.answeredAt = clock.now();
        attempt.outcome = 'unreachable';
        attempt.error =
          error instanceof Error
            ? `${error.message}${error.cause instanceof Error ? `: ${error.cause.message}` : ''}`.slice(0, 200)
            : String(error);
      }
    }
    return attempt;
  }

  /** What an answer says about the job: paused or not, its period, and its grid when it runs. */
  #apply(job: JobState, answer: JobAnswer): void {
    if (answer.periodSeconds !== job.periodSeconds && !answer.enabled) job.grid = null; // re-anchored while paused: unknown until a resume
    job.enabled = answer.enabled;
    job.periodSeconds = answer.periodSeconds;
    if (answer.enabled && answer.nextRunAt) job.grid = { pointMs: Date.parse(answer.nextRunAt), periodMs: answer.periodSeconds * 1000 };
  }

  /** After a call that failed, the job as it is now (the call may have committed): read until an instance answers. */
  async #resync(job: JobState): Promise<void> {
    while (!this.#stopped) {
      try {
        const result = await gqlResult<{ job: JobAnswer | null }>(
          this.#options.cluster.anyPort(),
          `query ($id: ID!) { job(id: $id) { ${JOB_FIELDS} } }`,
          { id: job.id },
          5_000,
        );
        if (result.data && !result.errors?.length) {
          if (result.data.job === null) job.deleted = true;
          else this.#apply(job, result.data.job);
          return;
        }
      } catch {
        /* not answering yet */
      }
      await sleep(300);
    }
  }
}

export interface ChangeSummary {
  jobs: number;
  attempts: number;
  byAction: Record<string, number>;
  byOutcome: Record<string, number>;
  seed: number;
}

function request(action: ChangeAction, id: string, periodSeconds?: number): [string, Record<string, unknown>] {
  switch (action) {
    case 'pause':
      return [
        `mutation ($id: ID!, $note: String) { pauseJob(id: $id, note: $note) { ${JOB_FIELDS} } }`,
        { id, note: 'chaos: paused at a due time' },
      ];
    case 'resume':
      return [`mutation ($id: ID!) { resumeJob(id: $id) { ${JOB_FIELDS} } }`, { id }];
    case 'period':
      return [
        `mutation ($id: ID!, $period: String!) { updateJob(id: $id, input: { period: $period }) { ${JOB_FIELDS} } }`,
        { id, period: hms(periodSeconds!) },
      ];
    case 'delete':
      return ['mutation ($id: ID!) { deleteJob(id: $id) }', { id }];
    case 'runNow':
      return ['mutation ($id: ID!) { runJobNow(id: $id) { id } }', { id }];
  }
}

/** `h:mm:ss` of a number of seconds. */
export function hms(seconds: number): string {
  return `${Math.floor(seconds / 3600)}:${String(Math.floor((seconds % 3600) / 60)).padStart(2, '0')}:${String(seconds % 60).padStart(2, '0')}`;
}

function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function shuffle<T>(items: T[], random: () => number): T[] {
  const copy = [...items];
  for (let i = copy.length - 1; i > 0; i--) {
    const j = Math.floor(random() * (i + 1));
    [copy[i], copy[j]] = [copy[j]!, copy[i]!];
  }
  return copy;
}
