// The options and the result of a chaos scenario (chaos/faults.ts runs one, chaos/checks.ts
// judges it, chaos/report.ts prints it), and the result of one that could not run.
import type { AuditReport } from './audit.ts';
import type { HeldRun } from './fault-queries.ts';
import { emptyRetryReport } from './retries.ts';
import type { ChangedSpans } from './change-spans.ts';
import type { ChangeAttempt, ChangeSummary } from './changes.ts';
import type { ChaosServer } from './database.ts';
import type { DeliveryReport } from './delivery.ts';
import type { JobMix } from './mix.ts';

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
  /** How many jobs the harness changes during the scenario (default: a tenth of them, at least 1; 0: none). Period jobs only. */
  changeJobs?: number;
  /** How many of the jobs are cron, retrying and QUEUE_ONE jobs (chaos/mix.ts; default a tenth of each). */
  mix?: JobMix;
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
    mix: JobMix;
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

export function skippedResult(scenario: ScenarioName, label: string, params: ScenarioResult['params'], why: string): ScenarioResult {
  const empty: AuditReport = {
    jobs: 0,
    runs: 0,
    byStatus: {},
    byInstance: {},
    dueTimes: 0,
    cron: { jobs: 0, dueTimes: 0 },
    queuedPending: 0,
    retries: emptyRetryReport(),
    duplicates: 0,
    unaccounted: 0,
    doubleAccounted: 0,
    offGrid: 0,
    leftRunning: 0,
    earlyStarts: 0,
    coalesced: { runs: 0, missed: 0 },
    skipped: 0,
    changeSkipped: { runs: 0, dueTimes: 0 },
    skippedUnlogged: 0,
    unsure: { dueTimes: 0, leftOut: 0 },
    abandoned: {
      total: 0,
      leaseExpired: 0,
      shutdown: 0,
      leaseLost: 0,
      replyLost: 0,
      other: 0,
      latencyMs: { count: 0, p50: null, p99: null, max: null },
      boundMs: 0,
      overBound: 0,
      excluded: 0,
    },
    staleLogWrites: 0,
    latenessMs: { count: 0, p50: null, p99: null, max: null },
    examples: {
      duplicates: [],
      unaccounted: [],
      doubleAccounted: [],
      offGrid: [],
      leftRunning: [],
      earlyStarts: [],
      skippedUnlogged: [],
      staleLogWrites: [],
      overBound: [],
      abandonedOther: [],
    },
  };
  return {
    scenario,
    label,
    params,
    wallSeconds: 0,
    audit: empty,
    faults: [],
    resume: [],
    held: [],
    changes: null,
    events: null,
    checks: [],
    ok: true,
    skipped: why,
  };
}
