// The chaos scenarios: a cluster on a fresh database, jobs created through the API, faults
// injected on a schedule, every instance stopped, then the audit and the scenario's checks.
// Throughout, a subset of the jobs is paused, resumed, re-periodised, deleted and run now a few ms
// after their due times (chaos/changes.ts), and subscribers on every instance receive the job
// events (chaos/events.ts); the audit covers the changed jobs and checks the events received.
//
//   healthy     no faults
//   kill        SIGKILL one instance every `faultEvery` s (round robin) and restart it
//   freeze      SIGSTOP one instance past 2 × LEASE_SECONDS while it holds runs, then SIGCONT
//   db-restart  stop the PostgreSQL server, keep it down `downSeconds`, start it again
//   terminate   pg_terminate_backend every connection of the service
//   clock-skew  one instance's system clock 5 minutes ahead (and one 5 minutes behind, with 3+)
import fs from 'node:fs/promises';
import path from 'node:path';
import type { Setting } from '../src/config.ts';
import { audit, type AuditReport, auditClient, dbClock, dbNow, type HeldRun, lateClaims, progress, resumeLatencies, runningRunsOf, runsById, type Sql } from './audit.ts';
import { type ChangeAttempt, ChangeDriver, changedSpans, type ChangedSpans, type ChangeSummary } from './changes.ts';
import { Cluster, faketimeMissing, type Instance, sleep } from './cluster.ts';
import type { ChaosServer } from './database.ts';
import { createJobs, health } from './drive.ts';
import { checkDelivery, type DeliveryReport, runFacts, Subscribers } from './events.ts';

export const SCENARIOS = ['healthy', 'kill', 'freeze', 'db-restart', 'terminate', 'clock-skew'] as const;
export type ScenarioName = (typeof SCENARIOS)[number];
export type FaultKind = 'kill' | 'freeze' | 'terminate' | 'db-restart';

/** How soon an instance must run jobs again after the database comes back (the acceptance figure). */
export const RESUME_BOUND_MS = 10_000;

export interface ScenarioOptions {
  scenario: ScenarioName;
  /** A fresh database for this scenario (the instances migrate it). */
  databaseUrl: string;
  /** The server, for db-restart. */
  server?: ChaosServer;
  /** Operations directory and instance logs go here. */
  workDir: string;
  instances: number;
  jobs: number;
  /** How long the fault phase lasts, after the jobs exist. */
  durationSeconds: number;
  leaseSeconds: number;
  /** The jobs' period, `h:m:s`. */
  period?: string;
  /** The operation the jobs call: Noop, or Work (waits `workMs`, then writes one log entry). Default per scenario. */
  operation?: 'Noop' | 'Work';
  workMs?: number;
  /** kill / freeze / terminate / db-restart: seconds between faults (the first comes after one interval). */
  faultEverySeconds?: number;
  /** Explicit faults instead of the scenario's schedule: what, and when (seconds into the fault phase). Kinds may mix. */
  faultPlan?: { atSeconds: number; kind: FaultKind }[];
  /** A name for the report (default: the scenario's). */
  label?: string;
  /** db-restart: how long the server stays down. */
  downSeconds?: number;
  /** clock-skew: libfaketime offsets, one per skewed instance. */
  clockOffsets?: string[];
  shutdownGraceSeconds?: number;
  /** Checks that the scenario's faults may legitimately break under heavy load are reported, not failed. */
  allowCoalesced?: boolean;
  /** Events a killed instance recorded but never sent (see DeliveryReport.lostWithKill) are reported, not failed. */
  allowLostWithKill?: boolean;
  /** How many jobs the harness changes during the scenario (default: a tenth of them, at least 1; 0: none). */
  changeJobs?: number;
  /** Subscribers to jobEvents on every instance, over graphql-ws and SSE (default true). */
  subscribers?: boolean;
  /** Seeds the changes' choices. */
  seed?: number;
  /** Progress lines. */
  log?: (line: string) => void;
}

export interface Check {
  name: string;
  ok: boolean;
  detail: string;
}

export interface FaultEvent {
  /** Database time. */
  at: string;
  kind: string;
  instance?: string;
  detail?: Record<string, unknown>;
}

export interface ScenarioResult {
  scenario: ScenarioName;
  label: string;
  params: {
    instances: number;
    jobs: number;
    durationSeconds: number;
    leaseSeconds: number;
    period: string;
    operation: string;
    faultEverySeconds: number | null;
    faultPlan: { atSeconds: number; kind: FaultKind }[];
    downSeconds: number | null;
    clockOffsets: string[];
    changeJobs: number;
    subscribers: boolean;
  };
  /** Wall-clock seconds the scenario took, start to audit. */
  wallSeconds: number;
  audit: AuditReport;
  faults: FaultEvent[];
  /**
   * db-restart / terminate: per fault and instance, ms from the database being back to the
   * instance's first run (`latencyMs`) and to its first /health 200 (`healthMs`: its scheduler
   * completed a round); null: not within the watch.
   */
  resume: { at: string; kind: FaultKind; latencyMs: Record<string, number | null>; healthMs: Record<string, number | null> }[];
  /** kill / freeze: the runs the instance held when it was killed or frozen, and what became of them. */
  held: {
    at: string;
    kind: string;
    instance: string;
    runs: HeldRun[];
    resumedAt?: string;
    /** Freeze: runs it claimed just before the freeze but committed only on resume (already past their lease). */
    lateClaims?: string[];
  }[];
  /** The changes fired, what committed, and how many met a fault. */
  changes: ChangeReport | null;
  /** Event delivery to the subscribers. */
  events: DeliveryReport | null;
  checks: Check[];
  ok: boolean;
  /** Set when the scenario could not run here (e.g. no faketime). */
  skipped?: string;
}

export interface ChangeReport extends ChangeSummary, Omit<ChangedSpans, 'spans'> {
  /** Deletes among the changed jobs planned. */
  deletesPlanned: number;
  /** Calls sent or answered while a fault was on (an instance down or frozen, the database away or its connections cut). */
  duringFaults: number;
  /** Their outcomes. */
  duringFaultsByOutcome: Record<string, number>;
  /** A few calls that failed, for diagnosis. */
  failedExamples: ChangeAttempt[];
  /** Every call, for diagnosis (the changes of a job an example names). */
  calls: ChangeAttempt[];
}

const DEFAULT_OPERATION: Record<ScenarioName, 'Noop' | 'Work'> = {
  healthy: 'Noop',
  kill: 'Work',
  freeze: 'Work',
  'db-restart': 'Noop',
  terminate: 'Noop',
  'clock-skew': 'Noop',
};

const DEFAULT_FAULT_EVERY: Record<ScenarioName, number | null> = {
  healthy: null,
  kill: 30,
  freeze: 30,
  'db-restart': null, // once, in the middle
  terminate: 30,
  'clock-skew': null,
};

export const iso = (d: Date) => d.toISOString();

/** The operations the chaos jobs call. */
export async function writeOperations(dir: string, workMs: number): Promise<void> {
  await fs.mkdir(dir, { recursive: true });
  await fs.writeFile(
    path.join(dir, 'chaos.mjs'),
    `// Written by the chaos harness.
import { setTimeout as sleep } from 'node:timers/promises';

export default {
  async Noop() {},
  // Takes a while, stops when the run is aborted, and writes one log entry before it finishes:
  // a stale process's entry would show up in the audit.
  async Work(ctx) {
    await sleep(${workMs}, undefined, { signal: ctx.signal });
    await ctx.log('INFO', 'chaos work done');
  },
};
`,
  );
}

/** Why a scenario cannot run on this machine or with this server, or undefined. */
export function cannotRun(scenario: ScenarioName, server: ChaosServer | undefined, kinds: FaultKind[] = []): string | undefined {
  if (scenario === 'clock-skew') return faketimeMissing();
  if ((scenario === 'db-restart' || kinds.includes('db-restart')) && !server?.restartable) return 'the database is not one the harness started (CHAOS_DATABASE_URL), so it cannot restart it';
  return undefined;
}

export async function runScenario(options: ScenarioOptions): Promise<ScenarioResult> {
  const began = Date.now();
  const say = options.log ?? (() => {});
  const leaseMs = options.leaseSeconds * 1000;
  const operation = options.operation ?? DEFAULT_OPERATION[options.scenario];
  const period = options.period ?? '0:0:1';
  const faultEvery = options.faultPlan ? null : (options.faultEverySeconds ?? DEFAULT_FAULT_EVERY[options.scenario]);
  const faultPlan = options.faultPlan ?? defaultPlan(options.scenario, options.durationSeconds, faultEvery);
  const kinds = [...new Set(faultPlan.map((f) => f.kind))];
  const downSeconds = kinds.includes('db-restart') ? (options.downSeconds ?? 5) : null;
  const clockOffsets =
    options.scenario === 'clock-skew' ? (options.clockOffsets ?? (options.instances >= 3 ? ['+5m', '-5m'] : ['+5m'])) : [];
  const label = options.label ?? options.scenario;
  const changeJobs = Math.min(options.jobs, options.changeJobs ?? Math.max(1, Math.round(options.jobs / 10)));
  const withSubscribers = options.subscribers ?? true;
  const params: ScenarioResult['params'] = {
    instances: options.instances,
    jobs: options.jobs,
    durationSeconds: options.durationSeconds,
    leaseSeconds: options.leaseSeconds,
    period,
    operation,
    faultEverySeconds: faultEvery,
    faultPlan,
    downSeconds,
    clockOffsets,
    changeJobs,
    subscribers: withSubscribers,
  };
  const faults: FaultEvent[] = [];
  const resume: ScenarioResult['resume'] = [];
  const held: ScenarioResult['held'] = [];

  const why = cannotRun(options.scenario, options.server, kinds);
  if (why) return skippedResult(options.scenario, label, params, why);

  const operationsDir = path.join(options.workDir, 'operations');
  const logDir = path.join(options.workDir, 'logs');
  await writeOperations(operationsDir, options.workMs ?? 300);
  await fs.mkdir(logDir, { recursive: true });

  const sql = auditClient(options.databaseUrl);
  const cluster = new Cluster({
    size: options.instances,
    prefix: `chaos-${options.scenario}`,
    env: {
      DATABASE_URL: options.databaseUrl,
      SERVER_OPERATIONS_DIR: operationsDir,
      LEASE_SECONDS: String(options.leaseSeconds),
      SHUTDOWN_GRACE_SECONDS: String(options.shutdownGraceSeconds ?? 5),
      LOG_LEVEL: 'info',
    } satisfies Partial<Record<Setting, string>>, // a renamed or removed setting fails to compile here
    clockOffsets: Object.fromEntries(clockOffsets.map((offset, i) => [i, offset])),
    logDir,
  });
  const note = async (kind: string, instance?: Instance, detail?: Record<string, unknown>) => {
    const event: FaultEvent = { at: iso(await dbNow(sql)), kind, ...(instance ? { instance: instance.id } : {}), ...(detail ? { detail } : {}) };
    faults.push(event);
    say(`  ${event.at} ${kind}${instance ? ` ${instance.id}` : ''}${detail ? ` ${JSON.stringify(detail)}` : ''}`);
    return event;
  };

  let subscribers: Subscribers | null = null;
  let driver: ChangeDriver | null = null;
  let changed: string[] = [];
  let deleteIds: string[] = [];
  try {
    say(`starting ${options.instances} instance(s)${clockOffsets.length ? ` (clock offsets: ${clockOffsets.join(', ')})` : ''}`);
    await cluster.start();
    const pids = new Map(cluster.instances.map((i) => [i.id, i.pid]));
    const clock = await dbClock(sql);
    if (withSubscribers) {
      say(`subscribing to jobEvents on every instance (graphql-ws and SSE)`);
      subscribers = new Subscribers(cluster, sql, clock);
      subscribers.start();
      // Connected before the jobs exist: their JOB_CREATED events are the subscriptions' first.
      await sleep(500);
    }
    say(`creating ${options.jobs} jobs (period ${period}, ServerOperationConnector:${operation})`);
    const ids = await createJobs(() => cluster.anyPort(), {
      count: options.jobs,
      prefix: 'chaos',
      period,
      externalCall: `ServerOperationConnector:${operation}`,
    });
    if (subscribers && !(await subscribers.receiving())) say('  (not every subscriber is receiving yet)');
    const phaseStart = Date.now();
    const phaseEnd = phaseStart + options.durationSeconds * 1000;
    let lastFaultEnd = phaseStart;
    if (faultPlan.length === 0) lastFaultEnd = phaseEnd;
    if (changeJobs > 0) {
      // Spread over the jobs; a quarter of them (at least one) are deleted on the way.
      changed = spread(ids, changeJobs);
      deleteIds = changed.filter((_, i) => i % 4 === 1 || changed.length === 1);
      const at = (fraction: number) => clock.at(phaseStart + fraction * options.durationSeconds * 1000);
      driver = new ChangeDriver({ sql, cluster, clock, jobIds: changed, deleteIds, deleteWindow: [at(0.2), at(0.9)], ...(options.seed !== undefined ? { seed: options.seed } : {}) });
      say(`changing ${changed.length} jobs a few ms after their due times (${deleteIds.length} to be deleted; seed ${driver.seed})`);
      await driver.start();
    }
    const monitor = startMonitor(sql, say, phaseStart);

    try {
      let round = 0;
      const watches: Promise<void>[] = [];
      for (const fault of faultPlan) {
        await sleep(Math.max(0, phaseStart + fault.atSeconds * 1000 - Date.now()));
        // Changes of every kind meet the fault: a few jobs act at their next due time, one is deleted then.
        driver?.hurry();
        switch (fault.kind) {
          case 'kill': {
            const target = pickTarget(cluster, round++);
            if (!target) break;
            const killedAt = await note('SIGKILL', target, { pid: target.pid });
            await target.kill();
            // Statements the process had sent are finished by the server; then its runs are what it held.
            await sleep(300);
            const ids = await runningRunsOf(sql, target.id);
            held.push({ at: killedAt.at, kind: 'killed', instance: target.id, runs: ids.map((id) => ({ id }) as HeldRun) });
            await target.start();
            await note('restarted', target, { pid: target.pid, heldRuns: ids.length });
            pids.set(target.id, target.pid);
            break;
          }
          case 'freeze': {
            const target = pickTarget(cluster, round++);
            if (!target) break;
            target.freeze();
            const frozenAt = await note('SIGSTOP', target, { pid: target.pid });
            await sleep(300);
            const ids = await runningRunsOf(sql, target.id);
            // Past the bound by which every one of its runs must have been marked ABANDONED.
            await sleep(2 * leaseMs + 2_000 - 300);
            const resumed = await note('SIGCONT', target, { heldRuns: ids.length });
            target.resume();
            held.push({ at: frozenAt.at, kind: 'frozen', instance: target.id, runs: ids.map((id) => ({ id }) as HeldRun), resumedAt: resumed.at });
            break;
          }
          case 'terminate': {
            const [row] = await sql<{ n: string }[]>`
              select count(pg_terminate_backend(pid)) as n from pg_stat_activity
              where application_name like 'server-jobs%' and datname = current_database()`;
            const event = await note('pg_terminate_backend', undefined, { connections: Number(row!.n) });
            resume.push({ at: event.at, kind: 'terminate', latencyMs: {}, healthMs: {} });
            watches.push(watchHealth(cluster, resume.at(-1)!.healthMs));
            break;
          }
          case 'db-restart': {
            await note('database stopping');
            await options.server!.restart(downSeconds! * 1000);
            const event = await note('database back', undefined, { downSeconds });
            resume.push({ at: event.at, kind: 'db-restart', latencyMs: {}, healthMs: {} });
            watches.push(watchHealth(cluster, resume.at(-1)!.healthMs));
            break;
          }
        }
        lastFaultEnd = Date.now();
      }
      await sleep(Math.max(0, phaseEnd - Date.now()));
      if (driver) {
        await driver.stop();
        lastFaultEnd = Math.max(lastFaultEnd, Date.now());
      }
      await Promise.all(watches);
      await settle(sql, { lastFaultEnd, leaseMs, kinds, held });
      // Resume figures need runs after the fault: measured before the stop.
      for (const r of resume) r.latencyMs = await resumeLatencies(sql, cluster.instances.map((i) => i.id), new Date(r.at));
    } finally {
      monitor.stop();
      await driver?.stop();
    }

    if (subscribers) {
      // What happens from here on is not required of the subscribers; what happened before has its turn to arrive.
      subscribers.markEnd();
      await subscribers.drain();
      await subscribers.stop();
    }
    say('stopping the instances (SIGTERM)');
    await note('stopping');
    await cluster.stop((options.shutdownGraceSeconds ?? 5) * 1000 + 20_000);

    for (const h of held) {
      const ids = h.runs.map((r) => r.id);
      h.runs = await runsById(sql, ids, options.leaseSeconds);
      if (h.resumedAt) h.lateClaims = await lateClaims(sql, h.instance, new Date(h.at), new Date(h.resumedAt), ids);
    }
    const excludeFromBound = held.flatMap((h) => h.lateClaims ?? []);
    let changes: ChangeReport | null = null;
    let spans: ChangedSpans['spans'] = [];
    if (driver) {
      const { spans: replayed, ...rest } = await changedSpans(sql, {
        jobIds: changed,
        attempts: driver.attempts,
        untilMs: (await dbNow(sql)).getTime(),
        // The harness's clock against the database's, and the instances' against it (never ahead, a few ms behind at most).
        marginMs: Math.ceil(clock.rttMs / 2) + 25,
      });
      spans = replayed;
      const windows = faultWindows(faults);
      const during = driver.attempts.filter((a) => windows.some(([from, to]) => a.sentAt <= to && (a.answeredAt ?? Infinity) >= from));
      changes = {
        ...driver.summary(),
        ...rest,
        deletesPlanned: deleteIds.length,
        duringFaults: during.length,
        duringFaultsByOutcome: countBy(during, (a) => a.outcome),
        failedExamples: driver.attempts.filter((a) => a.outcome !== 'ok' && a.error !== 'CONFLICT').slice(0, 10),
        calls: driver.attempts,
      };
    }
    const report = await audit(sql, { jobPrefix: 'chaos-', leaseSeconds: options.leaseSeconds, excludeFromBound, spans });
    let events: DeliveryReport | null = null;
    if (subscribers) {
      const killed = faults.filter((f) => f.kind === 'SIGKILL');
      events = checkDelivery({
        segments: subscribers.segments,
        runs: await runFacts(sql, 'chaos-'),
        windowEnd: subscribers.windowEnd!,
        killedPids: new Set(killed.map((f) => Number(f.detail?.['pid']))),
        kills: killed.map((f) => ({ instance: f.instance!, at: Date.parse(f.at) })),
        subscribers: cluster.instances.length * 2,
      });
    }
    const checks = checksFor(options, report, { cluster, pids, resume, held, clockOffsets, kinds, changes, events });
    const ok = checks.every((c) => c.ok);
    return {
      scenario: options.scenario, label, params, wallSeconds: Math.round((Date.now() - began) / 100) / 10,
      audit: report, faults, resume, held, changes, events, checks, ok,
    };
  } catch (error) {
    // A scenario that cannot get going (an instance that does not start, jobs not created in time on
    // a starved machine) fails alone: the next scenarios still run.
    const failed = skippedResult(options.scenario, label, params, '');
    delete failed.skipped;
    const detail = error instanceof Error ? (error.stack ?? error.message).split('\n').slice(0, 6).join(' | ') : String(error);
    return { ...failed, faults, wallSeconds: Math.round((Date.now() - began) / 100) / 10, checks: [check('scenario ran to its audit', false, detail)], ok: false };
  } finally {
    await driver?.stop();
    await subscribers?.stop();
    await cluster.killAll();
    cluster.close();
    await sql.end({ timeout: 2 }).catch(() => {});
  }
}

/** The scenario's faults: one every `every` seconds through the phase; db-restart once, in the middle, unless `every` is given. */
function defaultPlan(scenario: ScenarioName, durationSeconds: number, every: number | null): { atSeconds: number; kind: FaultKind }[] {
  if (scenario === 'healthy' || scenario === 'clock-skew') return [];
  if (every == null) return scenario === 'db-restart' ? [{ atSeconds: durationSeconds / 2, kind: scenario }] : [];
  const plan: { atSeconds: number; kind: FaultKind }[] = [];
  for (let t = every; t < durationSeconds; t += every) plan.push({ atSeconds: t, kind: scenario });
  return plan;
}

/**
 * Waits, after the last fault, until nothing a fault left behind is still RUNNING: the runs a
 * killed process held must have been marked ABANDONED (polled, at most 2 × LEASE_SECONDS + 2 s);
 * after a database fault, a run whose end could not be written or whose claim's commit was
 * lost is only marked once its lease expired, so the full bound is waited.
 */
async function settle(
  sql: Sql,
  { lastFaultEnd, leaseMs, kinds, held }: { lastFaultEnd: number; leaseMs: number; kinds: FaultKind[]; held: ScenarioResult['held'] },
): Promise<void> {
  const bound = lastFaultEnd + 2 * leaseMs + 2_000;
  if (kinds.includes('terminate') || kinds.includes('db-restart')) return sleep(Math.max(0, bound - Date.now()));
  // A resumed process gets time for a lease-maintenance round (every LEASE_SECONDS / 3): its stale writes come then at the latest.
  const minimum = kinds.includes('freeze') ? leaseMs / 3 + 2_000 : 1_000;
  await sleep(Math.max(0, lastFaultEnd + minimum - Date.now()));
  const ids = held.flatMap((h) => h.runs.map((r) => r.id));
  while (ids.length > 0 && Date.now() < bound) {
    const [row] = await sql<{ n: string }[]>`select count(*) as n from job_runs where id = any(${ids}::bigint[]) and status = 'RUNNING'`;
    if (Number(row!.n) === 0) return;
    await sleep(250);
  }
}

/** Polls every instance's /health from now until it answers 200 (or for twice the resume bound); records the ms. */
function watchHealth(cluster: Cluster, into: Record<string, number | null>): Promise<void> {
  const from = Date.now();
  return Promise.all(
    cluster.instances.map(async (instance) => {
      into[instance.id] = null;
      while (Date.now() - from < 2 * RESUME_BOUND_MS) {
        if (instance.state === 'running' && (await health(instance.port, 1_000)) === 200) {
          into[instance.id] = Date.now() - from;
          return;
        }
        await sleep(200);
      }
    }),
  ).then(() => {});
}

/** `count` of the ids, spread evenly over them. */
function spread(ids: string[], count: number): string[] {
  const step = ids.length / count;
  return Array.from({ length: count }, (_, i) => ids[Math.floor(i * step)]!);
}

/** When faults were on, database time (epoch ms): an instance killed until restarted, frozen until resumed, the database away until back, connections cut (for 2 s). */
function faultWindows(faults: FaultEvent[]): [number, number][] {
  const windows: [number, number][] = [];
  const ends: Record<string, string> = { SIGKILL: 'restarted', SIGSTOP: 'SIGCONT', 'database stopping': 'database back' };
  faults.forEach((fault, i) => {
    const from = Date.parse(fault.at);
    if (fault.kind === 'pg_terminate_backend') windows.push([from, from + 2_000]);
    const endKind = ends[fault.kind];
    if (!endKind) return;
    const end = faults.slice(i + 1).find((f) => f.kind === endKind && f.instance === fault.instance);
    windows.push([from, end ? Date.parse(end.at) : Infinity]);
  });
  return windows;
}

function countBy<T>(items: T[], key: (item: T) => string): Record<string, number> {
  const counts: Record<string, number> = {};
  for (const item of items) counts[key(item)] = (counts[key(item)] ?? 0) + 1;
  return counts;
}

/** The next instance to hit: round robin over the running ones. */
function pickTarget(cluster: Cluster, round: number): Instance | undefined {
  const running = cluster.running;
  return running[round % Math.max(1, running.length)];
}

function startMonitor(sql: Sql, say: (line: string) => void, since: number): { stop(): void } {
  let stopped = false;
  const loop = (async () => {
    while (!stopped) {
      for (let i = 0; i < 100 && !stopped; i++) await sleep(100);
      if (stopped) return;
      const p = await progress(sql, 'chaos-').catch(() => undefined);
      const t = Math.round((Date.now() - since) / 1000);
      say(p ? `  t+${t}s runs=${p.runs} running=${p.running} started in the last 10 s=${p.last10s}` : `  t+${t}s (database not answering)`);
    }
  })();
  return {
    stop: () => {
      stopped = true;
      void loop;
    },
  };
}

function skippedResult(scenario: ScenarioName, label: string, params: ScenarioResult['params'], why: string): ScenarioResult {
  const empty: AuditReport = {
    jobs: 0, runs: 0, byStatus: {}, byInstance: {}, dueTimes: 0, duplicates: 0, unaccounted: 0, doubleAccounted: 0, offGrid: 0,
    leftRunning: 0, earlyStarts: 0, coalesced: { runs: 0, missed: 0 }, skipped: 0, changeSkipped: { runs: 0, dueTimes: 0 }, skippedUnlogged: 0,
    unsure: { dueTimes: 0, leftOut: 0 },
    abandoned: {
      total: 0, leaseExpired: 0, shutdown: 0, leaseLost: 0, replyLost: 0, other: 0,
      latencyMs: { count: 0, p50: null, p99: null, max: null }, boundMs: 0, overBound: 0, excluded: 0,
    },
    staleLogWrites: 0, latenessMs: { count: 0, p50: null, p99: null, max: null },
    examples: {
      duplicates: [], unaccounted: [], doubleAccounted: [], offGrid: [], leftRunning: [], earlyStarts: [], skippedUnlogged: [],
      staleLogWrites: [], overBound: [], abandonedOther: [],
    },
  };
  return {
    scenario, label, params, wallSeconds: 0, audit: empty, faults: [], resume: [], held: [], changes: null, events: null, checks: [], ok: true, skipped: why,
  };
}

const check = (name: string, ok: boolean, detail: string): Check => ({ name, ok, detail });
const zero = (name: string, value: number, examples?: unknown[]): Check =>
  check(name, value === 0, value === 0 ? '0' : `${value}${examples?.length ? ` e.g. ${JSON.stringify(examples.slice(0, 3))}` : ''}`);

function checksFor(
  options: ScenarioOptions,
  a: AuditReport,
  ctx: {
    cluster: Cluster;
    pids: Map<string, number | undefined>;
    resume: ScenarioResult['resume'];
    held: ScenarioResult['held'];
    clockOffsets: string[];
    kinds: FaultKind[];
    changes: ChangeReport | null;
    events: DeliveryReport | null;
  },
): Check[] {
  const { scenario } = options;
  const { kinds } = ctx;
  const outage = kinds.includes('terminate') || kinds.includes('db-restart');
  const boundMs = 2 * options.leaseSeconds * 1000;
  const checks: Check[] = [
    check('runs recorded', a.runs > 0 && a.jobs === options.jobs, `${a.runs} runs of ${a.jobs} jobs, ${a.dueTimes} due times`),
    zero('duplicate runs (job, due time)', a.duplicates, a.examples.duplicates),
    zero('due times unaccounted for', a.unaccounted, a.examples.unaccounted),
    zero('due times accounted twice', a.doubleAccounted, a.examples.doubleAccounted),
    zero('due times off the grid', a.offGrid, a.examples.offGrid),
    zero('runs left RUNNING', a.leftRunning, a.examples.leftRunning),
    // Every run that started, SCHEDULE (coalesced or not) and MANUAL alike.
    zero('runs started before their scheduledAt', a.earlyStarts, a.examples.earlyStarts),
    zero('SKIPPED runs without a WARNING', a.skippedUnlogged, a.examples.skippedUnlogged),
    zero('log entries written by stale runs', a.staleLogWrites, a.examples.staleLogWrites),
    // A run is ABANDONED only when its lease expired, its instance shut down, its holder could not
    // renew in time and aborted it, or its claim's reply was lost — never while held.
    zero('runs ABANDONED for another reason', a.abandoned.other, a.examples.abandonedOther),
    zero('unexpected instance exits', ctx.cluster.instances.reduce((n, i) => n + i.crashes.length, 0),
      ctx.cluster.instances.flatMap((i) => i.crashes.map((c) => ({ instance: i.id, exit: c.exit, tail: c.tail.slice(-5) })))),
  ];

  // No due time missed: without faults, and when instances are killed (their runs in flight are ABANDONED runs, not misses).
  if (scenario === 'healthy' || scenario === 'clock-skew' || kinds.includes('kill')) {
    const allowed = options.allowCoalesced === true;
    checks.push(check(`coalesced runs (missed due times)${allowed ? ', reported only' : ''}`, allowed || a.coalesced.runs === 0,
      `${a.coalesced.runs} runs, ${a.coalesced.missed} missed due times`));
  }
  if (scenario === 'healthy' || scenario === 'clock-skew') {
    checks.push(zero('runs ABANDONED by lease expiry', a.abandoned.leaseExpired));
  }
  // While the database is away nobody can mark a run: the bound holds for faults of instances only.
  if (!outage) {
    checks.push(check(`ABANDONED within 2 × LEASE_SECONDS (${boundMs} ms)`, a.abandoned.overBound === 0,
      `${a.abandoned.leaseExpired} lease-expired, max ${a.abandoned.latencyMs.max ?? '-'} ms${a.abandoned.overBound ? `; over: ${JSON.stringify(a.examples.overBound.slice(0, 3))}` : ''}`));
  }
  if (kinds.includes('kill') || kinds.includes('freeze')) {
    const runs = ctx.held.flatMap((h) => h.runs.map((r) => ({ ...r, kind: h.kind, resumedAt: h.resumedAt })));
    // A run of a job the harness deleted meanwhile ends CANCELLED ("job deleted") instead.
    const bad = runs.filter(
      (r) =>
        !(r.status === 'CANCELLED' && r.error === 'job deleted' && (r.resumedAt === undefined || (r.finishedAt?.getTime() ?? Infinity) <= Date.parse(r.resumedAt))) &&
        (r.status !== 'ABANDONED' ||
        !(r.error ?? '').startsWith('lease expired') ||
        (r.abandonLatencyMs ?? Infinity) > boundMs ||
        (r.resumedAt !== undefined && (!r.finishedAt || r.finishedAt.getTime() > Date.parse(r.resumedAt)))),
    );
    checks.push(check(
      kinds.includes('freeze') ? 'runs of frozen processes ABANDONED while frozen, within the bound' : 'runs of killed processes ABANDONED within the bound',
      ctx.held.length > 0 && bad.length === 0,
      `${ctx.held.length} faults, ${runs.length} runs held${bad.length ? `; not as expected: ${JSON.stringify(bad.slice(0, 3))}` : ''}`,
    ));
  }
  if (outage) {
    // Resumed: ran a job again, or at least completed a scheduler round (/health 200), within the bound.
    const late: string[] = [];
    let worst = 0;
    for (const r of ctx.resume) {
      for (const i of ctx.cluster.instances) {
        const run = r.latencyMs[i.id] ?? null;
        const healthy = r.healthMs[i.id] ?? null;
        const resumed = Math.min(run ?? Infinity, healthy ?? Infinity);
        worst = Math.max(worst, resumed);
        if (resumed > RESUME_BOUND_MS) late.push(`${i.id} after ${r.at}: first run ${run ?? 'never'}, /health 200 ${healthy ?? 'never'}`);
      }
    }
    checks.push(check(`every instance resumed within ${RESUME_BOUND_MS / 1000} s`, ctx.resume.length > 0 && late.length === 0,
      late.length ? late.join('; ') : `${ctx.resume.length} faults, slowest ${worst} ms`));
    const restarted = kinds.includes('kill') ? [] : ctx.cluster.instances.filter((i) => i.generation !== 1 || ctx.pids.get(i.id) !== i.pid);
    checks.push(check('no instance restarted', restarted.length === 0, restarted.length ? restarted.map((i) => i.id).join(', ') : 'same processes throughout'));
  }
  const c = ctx.changes;
  if (c) {
    const committed = Object.values(c.committed).reduce((n, v) => n + v, 0);
    checks.push(check('changes committed and replayed from the audit trail', committed > 0 && c.mismatches.length === 0 && c.unmatched === 0,
      `${c.attempts} calls, ${committed} committed (${Object.entries(c.committed).map(([k, v]) => `${k} ${v}`).join(', ')})` +
        (c.unmatched ? `; ${c.unmatched} committed changes no call accounts for` : '') +
        (c.mismatches.length ? `; replay disagrees with ${c.mismatches.length} jobs, e.g. ${JSON.stringify(c.mismatches.slice(0, 3))}` : '')));
    if (ctx.kinds.length > 0) {
      checks.push(check('changes fired during faults', c.duringFaults > 0,
        `${c.duringFaults} calls (${Object.entries(c.duringFaultsByOutcome).map(([k, v]) => `${k} ${v}`).join(', ') || 'none'})`));
    }
  }
  const e = ctx.events;
  if (e) {
    // Every subscription may have been interrupted (under load, or by an outage): then nothing was required, which the counts show.
    checks.push(check('subscribers on every instance received events', e.events > 0 && e.notResubscribed === 0,
      `${e.segments} subscriptions on ${e.subscribers} subscribers, ${e.events} events, ${e.required} required` +
        (e.notResubscribed ? `; ${e.notResubscribed} interrupted without a new subscription` : '')));
    checks.push(zero('events missing without EVENTS_INTERRUPTED (silent gaps)', e.missing, e.examples.missing));
    // Events a killed instance recorded and never sent: nobody could know, yet SPEC §6 wants no gap without EVENTS_INTERRUPTED.
    const allowed = options.allowLostWithKill === true;
    checks.push(check(`events that died unsent with a killed instance, no EVENTS_INTERRUPTED${allowed ? ', reported only' : ''}`,
      allowed || e.lostWithKill === 0, e.lostWithKill === 0 ? '0' : `${e.lostWithKill} e.g. ${JSON.stringify(e.examples.lostWithKill.slice(0, 3))}`));
    checks.push(zero('events delivered twice', e.duplicates, e.examples.duplicates));
    checks.push(zero('events out of order per job', e.outOfOrder, e.examples.outOfOrder));
    checks.push(zero('events disagreeing with the runs', e.mismatched, e.examples.mismatched));
    checks.push(zero('subscriptions ended otherwise while their instance was up', e.unexpectedEnds, e.examples.unexpectedEnds));
  }
  if (scenario === 'clock-skew') {
    const skewed = ctx.clockOffsets.map((offset, i) => ({ offset, id: ctx.cluster.instances[i]!.id }));
    checks.push(check('skewed instances ran jobs', skewed.every((s) => (a.byInstance[s.id] ?? 0) > 0),
      skewed.map((s) => `${s.id} (${s.offset}): ${a.byInstance[s.id] ?? 0} runs`).join(', ')));
  }
  return checks;
}
