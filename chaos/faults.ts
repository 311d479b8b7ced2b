// The chaos scenarios: a cluster on a fresh database, jobs created through the API, faults
// injected on a schedule, every instance stopped, then the audit and the scenario's checks.
// Throughout, a subset of the jobs is paused, resumed, re-periodised, deleted and run now a few ms
// after their due times (chaos/changes.ts), and subscribers on every instance receive the job
// events (chaos/subscribers.ts); the audit covers the changed jobs and the delivery check
// (chaos/delivery.ts) the events received. The fault phase's parts are in chaos/phase.ts, the
// checks that judge a scenario in chaos/checks.ts, its options and result in chaos/scenario.ts.
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
import { audit, auditClient, dbClock, dbNow } from './audit.ts';
import { changedSpans, type ChangedSpans } from './change-spans.ts';
import { ChangeDriver } from './changes.ts';
import { check, checksFor } from './checks.ts';
import { Cluster, faketimeMissing, type Instance, sleep } from './cluster.ts';
import type { ChaosServer } from './database.ts';
import { checkDelivery, type DeliveryReport, runFacts } from './delivery.ts';
import { createJobs, jobIds } from './drive.ts';
import { type HeldRun, lateClaims, resumeLatencies, runningRunsOf, runsById } from './fault-queries.ts';
import { changeable, defaultMix, MIX_OPERATIONS, mixJobs } from './mix.ts';
import { countBy, defaultPlan, faultWindows, pickTarget, settle, spread, startMonitor, watchHealth } from './phase.ts';
import {
  type ChangeReport,
  type FaultEvent,
  type FaultKind,
  type ScenarioName,
  type ScenarioOptions,
  type ScenarioResult,
  skippedResult,
} from './scenario.ts';
import { Subscribers } from './subscribers.ts';

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
  // The mix's (chaos/mix.ts).${MIX_OPERATIONS}
};
`,
  );
}

/** Why a scenario cannot run on this machine or with this server, or undefined. */
export function cannotRun(scenario: ScenarioName, server: ChaosServer | undefined, kinds: FaultKind[] = []): string | undefined {
  if (scenario === 'clock-skew') return faketimeMissing();
  if ((scenario === 'db-restart' || kinds.includes('db-restart')) && !server?.restartable)
    return 'the database is not one the harness started (CHAOS_DATABASE_URL), so it cannot restart it';
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
  const mix = options.mix ?? defaultMix(options.jobs);
  const mixed = mixJobs(jobIds(options.jobs, 'chaos'), mix);
  // Only period jobs are changed: the replay of a change (chaos/change-spans.ts) is a grid's.
  const changeableIds = [...mixed].filter(([, job]) => changeable(job)).map(([id]) => id);
  const changeJobs = Math.min(changeableIds.length, options.changeJobs ?? Math.max(1, Math.round(options.jobs / 10)));
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
    mix,
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
    const event: FaultEvent = {
      at: iso(await dbNow(sql)),
      kind,
      ...(instance ? { instance: instance.id } : {}),
      ...(detail ? { detail } : {}),
    };
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
    say(
      `creating ${options.jobs} jobs (period ${period}, ServerOperationConnector:${operation}; ` +
        `of them ${mix.cron} cron, ${mix.retry} retrying, ${mix.queue} QUEUE_ONE)`,
    );
    await createJobs(() => cluster.anyPort(), {
      count: options.jobs,
      prefix: 'chaos',
      period,
      externalCall: `ServerOperationConnector:${operation}`,
      inputOf: (id) => mixed.get(id)?.input,
    });
    if (subscribers && !(await subscribers.receiving())) say('  (not every subscriber is receiving yet)');
    const phaseStart = Date.now();
    const phaseEnd = phaseStart + options.durationSeconds * 1000;
    let lastFaultEnd = phaseStart;
    if (faultPlan.length === 0) lastFaultEnd = phaseEnd;
    if (changeJobs > 0) {
      // Spread over the jobs; a quarter of them (at least one) are deleted on the way.
      changed = spread(changeableIds, changeJobs);
      deleteIds = changed.filter((_, i) => i % 4 === 1 || changed.length === 1);
      const at = (fraction: number) => clock.at(phaseStart + fraction * options.durationSeconds * 1000);
      driver = new ChangeDriver({
        sql,
        cluster,
        clock,
        jobIds: changed,
        deleteIds,
        deleteWindow: [at(0.2), at(0.9)],
        ...(options.seed !== undefined ? { seed: options.seed } : {}),
      });
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
            held.push({
              at: frozenAt.at,
              kind: 'frozen',
              instance: target.id,
              runs: ids.map((id) => ({ id }) as HeldRun),
              resumedAt: resumed.at,
            });
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
      for (const r of resume)
        r.latencyMs = await resumeLatencies(
          sql,
          cluster.instances.map((i) => i.id),
          new Date(r.at),
        );
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
      scenario: options.scenario,
      label,
      params,
      wallSeconds: Math.round((Date.now() - began) / 100) / 10,
      audit: report,
      faults,
      resume,
      held,
      changes,
      events,
      checks,
      ok,
    };
  } catch (error) {
    // A scenario that cannot get going (an instance that does not start, jobs not created in time on
    // a starved machine) fails alone: the next scenarios still run.
    const failed = skippedResult(options.scenario, label, params, '');
    delete failed.skipped;
    const detail = error instanceof Error ? (error.stack ?? error.message).split('\n').slice(0, 6).join(' | ') : String(error);
    return {
      ...failed,
      faults,
      wallSeconds: Math.round((Date.now() - began) / 100) / 10,
      checks: [check('scenario ran to its audit', false, detail)],
      ok: false,
    };
  } finally {
    await driver?.stop();
    await subscribers?.stop();
    await cluster.killAll();
    cluster.close();
    await sql.end({ timeout: 2 }).catch(() => {});
  }
}
