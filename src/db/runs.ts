import type { Queryable, Sql } from './client.ts';
import { insertLogEntries, type NewLogEntry } from './log.ts';
import type { ClaimJob, JobClaimPlan, PlannedRun } from '../scheduling/claim-plan.ts';
import type { EndEffects } from '../scheduling/run-end-plan.ts';
import type { EndStatus, JobRow, LogRow, RunRow, RunStatus } from './rows.ts';

export interface Holder {
  instance: string;
  /** This process's lease token: the fencing token of every run it holds. */
  token: string;
}

export interface Claimed {
  run: RunRow;
  job: JobRow;
  entries: LogRow[];
}

export interface ClaimResult {
  claimed: Claimed[];
  /**
   * Entries about jobs rather than a run inserted: a retry dropped, or a due time whose run was
   * not inserted because a run for that due time existed already.
   */
  clashes: LogRow[];
  /** Jobs the gate left waiting (their connectors have no call free), and those connectors. */
  held: { jobs: number; connectors: string[] };
  /** Jobs whose dropped retry made a failure final, counted: they may have reached their auto-pause. */
  failuresCounted?: (JobAfterEnd & { id: string; lastError: string | null })[];
}

/**
 * What may stand between a planned run and its call (a connector's circuit breaker or its limit
 * of concurrent calls): called in the claim transaction before the runs are inserted, it may drop
 * a job's plan (the job stays due, untouched, and is looked at again) or turn planned RUNNING runs
 * into SKIPPED ones with an error; `inserted` then sees the runs as inserted.
 */
export interface Admission {
  plans: JobClaimPlan[];
  inserted?: (tx: Queryable, runs: RunRow[]) => Promise<void>;
  /** The connectors whose plans it dropped for want of a free call, and how many plans. */
  held?: { jobs: number; connectors: string[] };
}

export interface ClaimGate {
  admit(tx: Queryable, plans: JobClaimPlan[], now: Date): Promise<Admission>;
  /**
   * The same for a manual run of a job whose row the caller has locked: null when it may call
   * now, or the error of a run recorded SKIPPED instead. May throw a CONFLICT (no call free).
   */
  admitManual?(tx: Queryable, job: JobRow, now: Date): Promise<string | null>;
  /** A run's end was written: what it does to its connector (a circuit's count). Never rejects. */
  ended?(run: RunRow, job: JobRow): Promise<void> | null;
  /** Runs of jobs calling this connector may be waiting for one of its calls to end. */
  holdsBack?(connectorId: string): boolean;
}

/**
 * Claims due jobs in one transaction: locks up to `limit` enabled jobs with something to do —
 * a due time reached, or a QUEUE_ONE due time or retry that can start (skipping rows another
 * instance holds) — lets `plan` decide each one's runs and bookkeeping, writes them, and the log
 * entries `describe` gives for the runs. The job row lock plus the unique (job, due time) and
 * (job, due time, attempt) keys make the claim exactly-once across instances; the decisions are
 * the caller's pure functions. A planned run whose key is taken already is not inserted, and
 * `describeClash` says so in the log.
 */
export async function claimDueJobs(
  sql: Sql,
  args: {
    now: Date;
    limit: number;
    holder: Holder;
    leaseMs: number;
    /** Connectors whose jobs this claim passes over: their calls were all taken a moment ago (see ClaimResult.held). */
    except?: readonly string[];
  },
  plan: (job: ClaimJob) => JobClaimPlan | null,
  describe: (run: RunRow, planned: PlannedRun) => NewLogEntry[],
  describeClash: (planned: PlannedRun) => NewLogEntry,
  gate?: ClaimGate,
): Promise<ClaimResult> {
  return sql.begin(async (tx) => {
    const locked = await tx<JobRow[]>`
      select * from jobs j
      where j.enabled and (
        j.next_due_at <= ${args.now}
        or ((j.queued_due_at is not null or j.retry_at <= ${args.now}) and ${startable(tx)}))
        ${args.except?.length ? tx`and j.connector_id <> all(${tx.array([...args.except])}::text[])` : tx``}
      order by least(j.next_due_at, j.queued_due_at, j.retry_at)
      limit ${args.limit}
      for update skip locked`;
    const none = { jobs: 0, connectors: [] };
    if (locked.length === 0) return { claimed: [], clashes: [], held: none };
    // Read after the locks are held (a fresh snapshot): a manual run committed while this claim
    // waited is seen, so the due time becomes SKIPPED instead of running beside it.
    const running = await tx<{ jobId: string; count: number }[]>`
      select job_id, count(*)::int as count from job_runs
      where status = 'RUNNING' and job_id = any(${tx.array(locked.map((j) => j.id))}::text[])
      group by job_id`;
    const counts = new Map(running.map((r) => [r.jobId, r.count]));
    let plans = locked.map((job) => plan({ ...job, running: counts.get(job.id) ?? 0 })).filter((p) => p !== null);
    const admitted = gate ? await gate.admit(tx, plans, args.now) : null;
    if (admitted) plans = admitted.plans;
    const held = admitted?.held ?? none;
    if (plans.length === 0) return { claimed: [], clashes: [], held };
    const after = plans.map((p) => p.after);
    const iso = (date: Date | null) => date?.toISOString() ?? null;
    // Sent without waiting for its answer: the runs' insert below does not depend on it, and
    // both go out together (pipelined on the transaction's connection), one round trip for two.
    const updating = tx<(JobAfterEnd & { id: string; lastError: string | null })[]>`
      update jobs set next_due_at = v.next_due_at, queued_due_at = v.queued_due_at, queued_missed = v.queued_missed,
             consecutive_failures = consecutive_failures + case when v.retry_dropped then 1 else 0 end,
             retry_at = case when v.retry_cleared then null else retry_at end,
             retry_attempt = case when v.retry_cleared then null else retry_attempt end,
             retry_of = case when v.retry_cleared then null else retry_of end,
             retry_scheduled_at = case when v.retry_cleared then null else retry_scheduled_at end
      from unnest(${tx.array(after.map((a) => a.id))}::text[],
                  ${tx.array(after.map((a) => iso(a.nextDueAt)) as string[])}::timestamptz[],
                  ${tx.array(after.map((a) => iso(a.queuedDueAt)) as string[])}::timestamptz[],
                  ${tx.array(after.map((a) => a.queuedMissed))}::int[],
                  ${tx.array(after.map((a) => a.retryCleared))}::boolean[],
                  ${tx.array(after.map((a) => a.retryDropped))}::boolean[])
           as v(id, next_due_at, queued_due_at, queued_missed, retry_cleared, retry_dropped)
      where jobs.id = v.id
      returning case when v.retry_dropped then jobs.id end as id, consecutive_failures, auto_pause_after_failures, enabled,
                case when v.retry_dropped then (
                  select r.error from job_runs r where r.job_id = jobs.id and r.status in ('FAILED', 'TIMED_OUT')
                  order by r.scheduled_at desc, r.attempt desc limit 1) end as last_error`.execute();
    const planned = plans.flatMap((p) => p.runs);
    const leaseUntil = new Date(args.now.getTime() + args.leaseMs);
    const inserting =
      planned.length === 0
        ? Promise.resolve([] as RunRow[])
        : tx<RunRow[]>`
      insert into job_runs (job_id, trigger, scheduled_at, started_at, finished_at, status, error, instance, missed,
                            attempt, retry_of, lease_token, lease_expires_at)
      -- A SKIPPED due time never started (SPEC §2): no started_at, so it shows no lateness and
      -- no duration; its finished_at is when it was recorded.
      select v.job_id, v.trigger, v.scheduled_at,
             case when v.status = 'RUNNING' then ${args.now}::timestamptz end,
             case when v.status = 'SKIPPED' then ${args.now}::timestamptz end,
             v.status, v.error, ${args.holder.instance}, v.missed, v.attempt, v.retry_of,
             case when v.status = 'RUNNING' then ${args.holder.token}::uuid end,
             case when v.status = 'RUNNING' then ${leaseUntil}::timestamptz end
      from unnest(${tx.array(planned.map((r) => r.jobId))}::text[],
                  ${tx.array(planned.map((r) => r.trigger))}::text[],
                  ${tx.array(planned.map((r) => r.scheduledAt.toISOString()))}::timestamptz[],
                  ${tx.array(planned.map((r) => r.status))}::text[],
                  ${tx.array(planned.map((r) => r.error) as string[])}::text[],
                  ${tx.array(planned.map((r) => r.missed))}::int[],
                  ${tx.array(planned.map((r) => r.attempt))}::int[],
                  ${tx.array(planned.map((r) => r.retryOf) as string[])}::bigint[])
           as v(job_id, trigger, scheduled_at, status, error, missed, attempt, retry_of)
      -- Only a repeat of the same due time (or attempt) is ignored, and logged below. A job's
      -- next_due_at lies after every due time recorded for its id (the claim and every change
      -- keep it so), so a repeat is not expected: it is never silent.
      on conflict do nothing
      returning *`.execute();
    const [counted, runs] = await Promise.all([updating, inserting]);
    const failuresCounted = counted.filter((row) => row.id !== null);
    await admitted?.inserted?.(tx, runs);
    const jobsById = new Map<string, JobRow>(plans.map((p) => [p.job.id, p.job]));
    const key = (r: { jobId: string; trigger: string; scheduledAt: Date; attempt: number }) =>
      `${r.jobId}\u0000${r.trigger}\u0000${r.scheduledAt.getTime()}\u0000${r.attempt}`;
    const plannedByKey = new Map(planned.map((p) => [key(p), p]));
    const claimed = runs.map((run) => ({ run, job: jobsById.get(run.jobId)!, entries: [] as LogRow[] }));
    const inserted = new Set(runs.map(key));
    const clashed = planned.filter((p) => !inserted.has(key(p))).map(describeClash);
    const entries = await insertLogEntries(tx, [
      ...plans.flatMap((p) => p.entries),
      ...claimed.flatMap((c) => describe(c.run, plannedByKey.get(key(c.run))!)),
      ...clashed,
    ]);
    const byRun = new Map(claimed.map((c) => [c.run.id, c]));
    for (const entry of entries) if (entry.runId !== null) byRun.get(entry.runId)?.entries.push(entry);
    return { claimed, clashes: entries.filter((entry) => entry.runId === null), held, failuresCounted };
  });
}

/** A waiting QUEUE_ONE due time or retry can start: no run of its job is in progress, or its overlap policy is ALLOW. */
function startable(sql: Queryable) {
  return sql`(j.overlap = 'ALLOW' or not exists (select 1 from job_runs r where r.job_id = j.id and r.status = 'RUNNING'))`;
}

/**
 * Records due times a change of the job leaves behind as one SKIPPED run (trigger SCHEDULE)
 * that never started. Returns null when a run for that due time exists already.
 */
export async function insertSkippedRun(
  sql: Queryable,
  args: { jobId: string; scheduledAt: Date; missed: number; now: Date; instance: string },
): Promise<RunRow | null> {
  const rows = await sql<RunRow[]>`
    insert into job_runs (job_id, trigger, scheduled_at, finished_at, status, instance, missed)
    values (${args.jobId}, 'SCHEDULE', ${args.scheduledAt}, ${args.now}, 'SKIPPED', ${args.instance}, ${args.missed})
    on conflict (job_id, scheduled_at) where trigger = 'SCHEDULE' do nothing
    returning *`;
  return rows[0] ?? null;
}

/** The latest due time a SCHEDULE run of this job id stands for, in epoch ms; null when there is none. */
export async function lastScheduledAt(sql: Queryable, jobId: string): Promise<number | null> {
  const [row] = await sql<{ at: Date | null }[]>`
    select max(scheduled_at) as at from job_runs where job_id = ${jobId} and trigger = 'SCHEDULE'`;
  return row?.at ? row.at.getTime() : null;
}

/** How many runs of a job are in progress: read with the job row locked, it holds until the commit. */
export async function runningCount(sql: Queryable, jobId: string): Promise<number> {
  const [row] = await sql<{ count: number }[]>`select count(*)::int as count from job_runs where job_id = ${jobId} and status = 'RUNNING'`;
  return row!.count;
}

/**
 * Starts a manual run (the caller holds the job row lock and has checked the overlap policy), or
 * records it SKIPPED, never started, with the error `skipped` gives (its connector's circuit is open).
 */
export async function insertManualRun(
  sql: Queryable,
  args: { jobId: string; now: Date; holder: Holder; leaseMs: number; skipped?: string | null },
): Promise<RunRow> {
  const rows = args.skipped
    ? await sql<RunRow[]>`
        insert into job_runs (job_id, trigger, scheduled_at, finished_at, status, error, instance)
        values (${args.jobId}, 'MANUAL', ${args.now}, ${args.now}, 'SKIPPED', ${args.skipped}, ${args.holder.instance})
        returning *`
    : await sql<RunRow[]>`
        insert into job_runs (job_id, trigger, scheduled_at, started_at, status, instance, lease_token, lease_expires_at)
        values (${args.jobId}, 'MANUAL', ${args.now}, ${args.now}, 'RUNNING', ${args.holder.instance},
                ${args.holder.token}, ${new Date(args.now.getTime() + args.leaseMs)})
        returning *`;
  return rows[0]!;
}

/**
 * The calls in progress to each of these connectors, on every instance: the RUNNING runs of the
 * jobs that use them (read through the small index of running runs). Connectors with none are absent.
 */
export async function runningCallsOf(sql: Queryable, connectorIds: readonly string[]): Promise<Map<string, number>> {
  const rows = await sql<{ connectorId: string; count: number }[]>`
    select j.connector_id, count(*)::int as count
    from job_runs r join jobs j on j.id = r.job_id
    where r.status = 'RUNNING' and j.connector_id = any(${sql.array([...connectorIds])}::text[])
    group by j.connector_id`;
  return new Map(rows.map((row) => [row.connectorId, row.count]));
}

/** Which of these runs are still in progress. */
export async function stillRunning(sql: Queryable, runIds: readonly string[]): Promise<Set<string>> {
  if (runIds.length === 0) return new Set();
  const rows = await sql<{ id: string }[]>`
    select id from job_runs where id = any(${sql.array([...runIds])}::bigint[]) and status = 'RUNNING'`;
  return new Set(rows.map((row) => row.id));
}

export interface RunEnd {
  status: EndStatus;
  error: string | null;
  now: Date;
  log?: Pick<LogRow, 'level' | 'message' | 'details'> | undefined;
  /** What the end does to its job: a retry to wait for, a final outcome to count (SPEC §3b). */
  effects?: EndEffects | undefined;
}

/** A job's failure count as a run's end left it. */
export interface JobAfterEnd {
  consecutiveFailures: number;
  autoPauseAfterFailures: number | null;
  enabled: boolean;
}

export interface FinishedRun {
  run: RunRow;
  entry: LogRow | null;
  /** This end was committed already, by an earlier try whose reply was lost: the stored row is returned. */
  repeated: boolean;
  /** The job after the end's effects, when it had any (and the job still exists). */
  job?: JobAfterEnd | undefined;
  /** The WARNING of a retry dropped because this end's retry and another wanted the job's one slot. */
  dropped?: LogRow | undefined;
}

/**
 * Ends a run, fenced by its lease token: refused (null) when the run is no longer held by this
 * token, e.g. it was marked ABANDONED after this process lost its lease. The run's closing log
 * entry is written in the same transaction, so it exists exactly when the end does.
 *
 * A try whose reply was lost may have committed: the run is then no longer RUNNING, and the
 * fence alone would refuse the next try as if the run had been taken away. So a refused end
 * looks at the row: if it holds exactly this end (this token, status, error and finishedAt —
 * an end written by anyone else differs in its error and time), it was this end, committed
 * earlier; the stored row and entry are returned (`repeated`), so its event is still published.
 */
export async function finishRun(sql: Sql, runId: string, token: string, end: RunEnd): Promise<FinishedRun | null> {
  const { log } = end;
  const [written] = await finishRuns(sql, token, [{ ...end, runId }]);
  if (written) return written;
  const [run] = await sql<RunRow[]>`
    select * from job_runs
    where id = ${runId} and lease_token = ${token} and status = ${end.status}
      and finished_at = ${end.now} and error is not distinct from ${end.error}`;
  if (!run) return null;
  const [entry] = log
    ? await sql<LogRow[]>`
        select * from log_entries
        where run_id = ${runId} and at = ${end.now} and level = ${log.level} and message = ${log.message}
        order by id limit 1`
    : [];
  return { run, entry: entry ?? null, repeated: true };
}

/**
 * Ends many runs held by one token in one transaction (one commit for all of them): the first
 * try of each end, so none can have been committed before. Answers, in the order asked, each
 * run's FinishedRun, or null where the fence refused it. A retry after a failure goes through
 * `finishRun`, which recognises an end committed by a try whose reply was lost.
 */
export async function finishRuns(sql: Sql, token: string, ends: (RunEnd & { runId: string })[]): Promise<(FinishedRun | null)[]> {
  if (ends.length === 0) return [];
  const write = async (q: Queryable) => {
    const runs = await q<RunRow[]>`
      with v as materialized (${lockHeldRuns(
        q,
        token,
        q`select * from unnest(${q.array(ends.map((e) => e.runId))}::bigint[],
                               ${q.array(ends.map((e) => e.status))}::text[],
                               ${q.array(ends.map((e) => e.error) as string[])}::text[],
                               ${q.array(ends.map((e) => e.now.toISOString()))}::timestamptz[]) as v(id, status, error, finished_at)`,
      )})
      update job_runs r set status = v.status, error = v.error, finished_at = v.finished_at
      from v where r.id = v.id
      returning r.*`;
    const byId = new Map(runs.map((run) => [run.id, run]));
    const logged = ends.filter((e) => e.log && byId.has(e.runId));
    const entries = await insertLogEntries(
      q,
      logged.map((e) => ({ at: e.now, ...e.log!, jobId: byId.get(e.runId)!.jobId, runId: e.runId })),
    );
    const entryOf = new Map(entries.map((entry) => [entry.runId, entry]));
    const effected = ends.filter((e) => e.effects && byId.has(e.runId));
    const effects = await applyEndEffects(
      q,
      effected.map((e) => ({ jobId: byId.get(e.runId)!.jobId, effects: e.effects!, now: e.now })),
    );
    const drops = effects.map((effect) => effect.dropped).filter((entry) => entry !== null);
    const dropped = await insertLogEntries(q, drops);
    const effectOf = new Map(
      effected.map((e, i) => [
        e.runId,
        { job: effects[i]!.job, dropped: effects[i]!.dropped ? dropped[drops.indexOf(effects[i]!.dropped!)] : undefined },
      ]),
    );
    return ends.map((e) => {
      const run = byId.get(e.runId);
      const effect = effectOf.get(e.runId);
      return run ? { run, entry: entryOf.get(e.runId) ?? null, repeated: false, job: effect?.job, dropped: effect?.dropped } : null;
    });
  };
  // Successes write no entries: one statement, no transaction round trips.
  return ends.some((e) => e.log || e.effects) ? sql.begin(write) : write(sql);
}

/**
 * Writes what run ends do to their jobs: the retry each failed attempt leaves waiting, and the
 * count of consecutive failures (a final failure adds one, a final success resets it). Answers,
 * per end in the order given, its job's count as it now stands (none for a deleted job) and the
 * WARNING of a retry dropped for another.
 *
 * A job has one retry slot. Two failed attempts of different due times can both want it only when
 * their runs overlap (ALLOW): the later due time's retry keeps it, and the other is dropped with a
 * WARNING, as when the next due time arrives first — never overwritten in silence. Ends of one job
 * in one batch are written one after the other, in the order given.
 */
async function applyEndEffects(
  q: Queryable,
  ends: { jobId: string; effects: EndEffects; now: Date }[],
): Promise<{ job: JobAfterEnd | undefined; dropped: NewLogEntry | null }[]> {
  const answers: { job: JobAfterEnd | undefined; dropped: NewLogEntry | null }[] = ends.map(() => ({ job: undefined, dropped: null }));
  let pending = ends.map((end, index) => ({ ...end, index })).filter((e) => e.effects.retry || e.effects.final);
  while (pending.length > 0) {
    const seen = new Set<string>();
    const round = pending.filter((e) => !seen.has(e.jobId) && seen.add(e.jobId));
    pending = pending.filter((e) => !round.includes(e));
    const iso = (date: Date | undefined) => date?.toISOString() ?? null;
    const rows = await q<
      (JobAfterEnd & { id: string; took: boolean; oldRetryOf: string | null; oldAttempt: number | null; oldScheduledAt: Date | null })[]
    >`
      update jobs j set
        consecutive_failures = case v.final when 'failure' then j.consecutive_failures + 1 when 'success' then 0 else j.consecutive_failures end
          -- A retry that loses the job's one slot (or meets a paused job) leaves its attempt the last: a final failure.
          + case when v.retry_at is not null and (not v.takes or v.old_retry_of is not null) then 1 else 0 end,
        retry_at = case when v.takes then v.retry_at else j.retry_at end,
        retry_attempt = case when v.takes then v.retry_attempt else j.retry_attempt end,
        retry_of = case when v.takes then v.retry_of else j.retry_of end,
        retry_scheduled_at = case when v.takes then v.retry_scheduled_at else j.retry_scheduled_at end
      from (select u.*, u.retry_at is not null and o.enabled and (o.retry_at is null or u.retry_scheduled_at >= o.retry_scheduled_at) as takes,
                   o.retry_of as old_retry_of, o.retry_attempt as old_attempt, o.retry_scheduled_at as old_scheduled_at
            from unnest(${q.array(round.map((e) => e.jobId))}::text[],
                        ${q.array(round.map((e) => e.effects.final) as string[])}::text[],
                        ${q.array(round.map((e) => iso(e.effects.retry?.at)) as string[])}::timestamptz[],
                        ${q.array(round.map((e) => e.effects.retry?.attempt ?? null) as number[])}::int[],
                        ${q.array(round.map((e) => e.effects.retry?.retryOf ?? null) as string[])}::bigint[],
                        ${q.array(round.map((e) => iso(e.effects.retry?.scheduledAt)) as string[])}::timestamptz[])
                 as u(id, final, retry_at, retry_attempt, retry_of, retry_scheduled_at)
            -- Locked before deciding: another instance's end of the same job commits its retry first, or waits.
            join jobs o on o.id = u.id
            -- In id order, as changes to many jobs lock them: two instances ending runs of the same jobs cannot deadlock.
            order by o.id
            for update of o) v
      where j.id = v.id
        -- A success of a job with no failures counted changes nothing: no row version is written.
        and (v.final is distinct from 'success' or j.consecutive_failures <> 0 or v.retry_at is not null)
      returning j.id, j.consecutive_failures, j.auto_pause_after_failures, j.enabled, v.takes as took,
                v.old_retry_of, v.old_attempt, v.old_scheduled_at`;
    const byJob = new Map(rows.map((row) => [row.id, row]));
    for (const end of round) {
      const row = byJob.get(end.jobId);
      if (!row) continue;
      const { consecutiveFailures, autoPauseAfterFailures, enabled } = row;
      const retry = end.effects.retry;
      // The retry that lost the slot: the one waiting, when this end's took it; else this end's own.
      const lost = !retry
        ? null
        : !row.took
          ? retry
          : row.oldRetryOf !== null
            ? { retryOf: row.oldRetryOf, attempt: row.oldAttempt!, scheduledAt: row.oldScheduledAt! }
            : null;
      answers[end.index] = {
        job: { consecutiveFailures, autoPauseAfterFailures, enabled },
        dropped: lost && {
          at: end.now,
          level: 'WARNING',
          message: `Job "${end.jobId}" dropped its retry (attempt ${lost.attempt}) of the run due at ${lost.scheduledAt.toISOString()}: ${
            row.took || row.enabled ? 'a retry of a later due time took its place' : 'the job is paused'
          }`,
          jobId: end.jobId,
          details: { retryOf: lost.retryOf, attempt: lost.attempt, scheduledAt: lost.scheduledAt.toISOString() },
        },
      };
    }
  }
  return answers;
}

/**
 * Renews the leases of the runs this process is executing. Returns, per run it still holds,
 * whether a cancel was requested; a run missing from the answer is no longer held.
 */
export async function renewLeases(sql: Queryable, token: string, runIds: string[], until: Date): Promise<Map<string, boolean>> {
  if (runIds.length === 0) return new Map();
  const rows = await sql<{ id: string; cancelRequested: boolean }[]>`
    with v as materialized (${lockHeldRuns(sql, token, sql`select unnest(${sql.array(runIds)}::bigint[]) as id`)})
    update job_runs r set lease_expires_at = ${until}
    from v where r.id = v.id
    returning r.id, r.cancel_requested_at is not null as cancel_requested`;
  return new Map(rows.map((r) => [r.id, r.cancelRequested]));
}

/**
 * The rows of `values` (an `id` column and any others) whose runs are still RUNNING under
 * `token`, those runs locked in id order. A holder's renewal of every run in flight and its
 * batches of ends lock through this: each taking its rows in its own order, they deadlocked under
 * load, and PostgreSQL ended one of them after a second's wait while thousands of runs stayed
 * RUNNING. (Runs of other holders are locked by the lease sweep, which takes only runs whose
 * holder stopped renewing them.)
 */
function lockHeldRuns(q: Queryable, token: string, values: ReturnType<Queryable>) {
  return q`
    select v.* from job_runs r join (${values}) v on v.id = r.id
    where r.lease_token = ${token} and r.status = 'RUNNING'
    order by r.id
    for no key update of r`;
}

/** Asks whichever instance holds a running run to cancel it. */
export async function requestCancel(sql: Queryable, runId: string, now: Date): Promise<RunRow | null> {
  const rows = await sql<RunRow[]>`
    update job_runs set cancel_requested_at = coalesce(cancel_requested_at, ${now})
    where id = ${runId} and status = 'RUNNING'
    returning *`;
  return rows[0] ?? null;
}

/**
 * Ends a job's run in progress as CANCELLED, without its holder (used when the job is deleted).
 * The holder's later writes are then refused by the lease fence, which requires RUNNING.
 */
export async function cancelRunsOfJob(sql: Queryable, args: { jobId: string; now: Date; error: string }): Promise<RunRow[]> {
  return sql<RunRow[]>`
    update job_runs set status = 'CANCELLED', finished_at = ${args.now}, error = ${args.error}
    where job_id = ${args.jobId} and status = 'RUNNING'
    returning *`;
}

export interface AbandonedRun extends RunRow {
  externalCall: string | null;
}

/**
 * Marks ABANDONED every run whose lease expired (its process died or froze) — or, with
 * `exceptToken`, every running run not held by that token, used when this process owns the
 * database alone and so knows all other holders are dead — or, with `heldBy`, the given runs
 * still held by that token (runs its holder claimed but never launched).
 */
export async function abandonRuns(
  sql: Queryable,
  args: { now: Date; error: string } & ({ expiredBefore: Date } | { exceptToken: string } | { heldBy: string; runIds: string[] }),
): Promise<AbandonedRun[]> {
  const condition =
    'expiredBefore' in args
      ? sql`lease_expires_at < ${args.expiredBefore}`
      : 'exceptToken' in args
        ? sql`lease_token is distinct from ${args.exceptToken}::uuid`
        : sql`lease_token = ${args.heldBy}::uuid and id = any(${sql.array(args.runIds)}::bigint[])`;
  // Locked in id order, as the holder's renewals and ends lock them (see lockHeldRuns): the sweep
  // may meet a slow holder renewing the very runs whose leases just expired.
  return sql<AbandonedRun[]>`
    with v as materialized (
      select id from job_runs where status = 'RUNNING' and ${condition} order by id for no key update)
    update job_runs set status = 'ABANDONED', finished_at = ${args.now}, error = ${args.error}
    from v where job_runs.id = v.id
    returning job_runs.*, (select j.connector_id || ':' || j.method from jobs j where j.id = job_runs.job_id) as external_call`;
}

/** The ids of the runs in progress under this lease token. */
export async function runningUnder(sql: Queryable, token: string): Promise<string[]> {
  const rows = await sql<{ id: string }[]>`select id from job_runs where status = 'RUNNING' and lease_token = ${token}::uuid`;
  return rows.map((r) => r.id);
}

export async function findRun(sql: Queryable, id: string): Promise<RunRow | null> {
  if (!/^\d{1,18}$/.test(id)) return null;
  const rows = await sql<RunRow[]>`select * from job_runs where id = ${id}`;
  return rows[0] ?? null;
}

/** The rows of these runs (those that exist). */
export async function findRuns(sql: Queryable, ids: string[]): Promise<RunRow[]> {
  if (ids.length === 0) return [];
  return sql<RunRow[]>`select * from job_runs where id = any(${sql.array(ids)}::bigint[])`;
}

export interface RunPageArgs {
  jobId?: string | null;
  status?: RunStatus | null;
  first: number;
  after?: { at: Date; id: string } | null;
}

/**
 * Each job's latest run (by due time, then id), for many jobs in one statement: one index probe of
 * job_runs_job_page_idx per job, however long its history. Jobs without runs have no row.
 */
export async function lastRunsOf(sql: Queryable, jobIds: readonly string[]): Promise<RunRow[]> {
  if (jobIds.length === 0) return [];
  return sql<RunRow[]>`
    select r.* from unnest(${sql.array([...jobIds])}::text[]) as k(job_id)
    cross join lateral (
      select * from job_runs where job_runs.job_id = k.job_id order by scheduled_at desc nulls last, id desc nulls last limit 1
    ) r`;
}

/**
 * One page of runs (newest first by due time, then id; one extra to tell whether a next page
 * exists) for each of many jobs, in one statement: each job's page is an index range of
 * job_runs_job_page_idx.
 */
export async function pageRunsOfJobs(
  sql: Queryable,
  jobIds: readonly string[],
  args: { first: number; after?: { at: Date; id: string } | null },
): Promise<RunRow[]> {
  if (jobIds.length === 0) return [];
  return sql<RunRow[]>`
    select r.* from unnest(${sql.array([...jobIds])}::text[]) as k(job_id)
    cross join lateral (
      select * from job_runs
      where job_runs.job_id = k.job_id
        ${args.after ? sql`and (scheduled_at, id) < (${args.after.at}, ${args.after.id})` : sql``}
      order by scheduled_at desc nulls last, id desc nulls last
      limit ${args.first + 1}
    ) r`;
}

/** The latest due time a SCHEDULE run stands for, per job id of many (epoch ms); ids without one are absent. */
export async function lastScheduledAtOf(sql: Queryable, jobIds: readonly string[]): Promise<Map<string, number>> {
  if (jobIds.length === 0) return new Map();
  // A max() per id: one backward probe of job_runs_due_key each, however many runs the id has.
  const rows = await sql<{ jobId: string; at: Date | null }[]>`
    select k.job_id, (select max(scheduled_at) from job_runs r where r.job_id = k.job_id and r.trigger = 'SCHEDULE') as at
    from unnest(${sql.array([...jobIds])}::text[]) as k(job_id)`;
  return new Map(rows.filter((row) => row.at !== null).map((row) => [row.jobId, row.at!.getTime()]));
}

/**
 * Runs newest first by due time, then id (one page, and one extra row to tell whether a next page
 * exists), read in the order of job_runs_page_idx, or job_runs_job_page_idx for one job: a page
 * costs its rows, not a sort of the whole table. The order says NULLS LAST because the indexes
 * do: `desc` alone means NULLS FIRST, which no index has (the columns are never null, but the
 * planner does not look at that), with which a page sorted the whole table.
 */
export async function pageRuns(sql: Queryable, args: RunPageArgs): Promise<RunRow[]> {
  return sql<RunRow[]>`
    select * from job_runs
    where true
      ${args.jobId != null ? sql`and job_id = ${args.jobId}` : sql``}
      ${args.status != null ? sql`and status = ${args.status}` : sql``}
      ${args.after ? sql`and (scheduled_at, id) < (${args.after.at}, ${args.after.id})` : sql``}
    order by scheduled_at desc nulls last, id desc nulls last
    limit ${args.first + 1}`;
}
