// The checks of a chaos scenario: what its audit, its faults, its changes and its subscribers'
// events must show for the scenario to pass.
import type { AuditReport } from './audit.ts';
import type { Cluster } from './cluster.ts';
import type { DeliveryReport } from './delivery.ts';
import { type ChangeReport, type Check, type FaultKind, RESUME_BOUND_MS, type ScenarioOptions, type ScenarioResult } from './scenario.ts';

export const check = (name: string, ok: boolean, detail: string): Check => ({ name, ok, detail });
const zero = (name: string, value: number, examples?: unknown[]): Check =>
  check(name, value === 0, value === 0 ? '0' : `${value}${examples?.length ? ` e.g. ${JSON.stringify(examples.slice(0, 3))}` : ''}`);

export function checksFor(
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
    check(
      'runs recorded',
      a.runs > 0 && a.jobs === options.jobs,
      `${a.runs} runs of ${a.jobs} jobs, ${a.dueTimes} due times (${a.cron.dueTimes} of ${a.cron.jobs} cron jobs), ${a.retries.runs} retries`,
    ),
    zero('duplicate runs (job, due time)', a.duplicates, a.examples.duplicates),
    zero('due times unaccounted for', a.unaccounted, a.examples.unaccounted),
    zero('due times accounted twice', a.doubleAccounted, a.examples.doubleAccounted),
    zero('due times off the grid', a.offGrid, a.examples.offGrid),
    zero('runs left RUNNING', a.leftRunning, a.examples.leftRunning),
    // Every run that started, SCHEDULE (coalesced or not) and MANUAL alike.
    zero('runs started before their scheduledAt', a.earlyStarts, a.examples.earlyStarts),
    zero('SKIPPED runs without a WARNING', a.skippedUnlogged, a.examples.skippedUnlogged),
    zero('log entries written by stale runs', a.staleLogWrites, a.examples.staleLogWrites),
    // SPEC §3b: runs are unique per (job, due time, attempt), and every attempt is accounted for.
    zero('attempts run twice (job, due time, attempt)', a.retries.attemptDuplicates, a.retries.examples.attemptDuplicates),
    zero('retries without a failed previous attempt', a.retries.orphans, a.retries.examples.orphans),
    zero("retries whose retryOf is not the first attempt's id", a.retries.wrongRetryOf, a.retries.examples.wrongRetryOf),
    zero('attempts above retry.maxAttempts', a.retries.overMax, a.retries.examples.overMax),
    zero('failed attempts whose retry is unaccounted for', a.retries.unaccounted, a.retries.examples.unaccounted),
    // A run is ABANDONED only when its lease expired, its instance shut down, its holder could not
    // renew in time and aborted it, or its claim's reply was lost — never while held.
    zero('runs ABANDONED for another reason', a.abandoned.other, a.examples.abandonedOther),
    zero(
      'unexpected instance exits',
      ctx.cluster.instances.reduce((n, i) => n + i.crashes.length, 0),
      ctx.cluster.instances.flatMap((i) => i.crashes.map((c) => ({ instance: i.id, exit: c.exit, tail: c.tail.slice(-5) }))),
    ),
  ];

  // No due time missed: without faults, and when instances are killed (their runs in flight are ABANDONED runs, not misses).
  if (scenario === 'healthy' || scenario === 'clock-skew' || kinds.includes('kill')) {
    const allowed = options.allowCoalesced === true;
    checks.push(
      check(
        `coalesced runs (missed due times)${allowed ? ', reported only' : ''}`,
        allowed || a.coalesced.runs === 0,
        `${a.coalesced.runs} runs, ${a.coalesced.missed} missed due times`,
      ),
    );
  }
  if (scenario === 'healthy' || scenario === 'clock-skew') {
    checks.push(zero('runs ABANDONED by lease expiry', a.abandoned.leaseExpired));
  }
  // While the database is away nobody can mark a run: the bound holds for faults of instances only.
  if (!outage) {
    checks.push(
      check(
        `ABANDONED within 2 × LEASE_SECONDS (${boundMs} ms)`,
        a.abandoned.overBound === 0,
        `${a.abandoned.leaseExpired} lease-expired, max ${a.abandoned.latencyMs.max ?? '-'} ms${a.abandoned.overBound ? `; over: ${JSON.stringify(a.examples.overBound.slice(0, 3))}` : ''}`,
      ),
    );
  }
  if (kinds.includes('kill') || kinds.includes('freeze')) {
    const runs = ctx.held.flatMap((h) => h.runs.map((r) => ({ ...r, kind: h.kind, resumedAt: h.resumedAt })));
    // A run of a job the harness deleted meanwhile ends CANCELLED ("job deleted") instead.
    const bad = runs.filter(
      (r) =>
        !(
          r.status === 'CANCELLED' &&
          r.error === 'job deleted' &&
          (r.resumedAt === undefined || (r.finishedAt?.getTime() ?? Infinity) <= Date.parse(r.resumedAt))
        ) &&
        (r.status !== 'ABANDONED' ||
          !(r.error ?? '').startsWith('lease expired') ||
          (r.abandonLatencyMs ?? Infinity) > boundMs ||
          (r.resumedAt !== undefined && (!r.finishedAt || r.finishedAt.getTime() > Date.parse(r.resumedAt)))),
    );
    checks.push(
      check(
        kinds.includes('freeze')
          ? 'runs of frozen processes ABANDONED while frozen, within the bound'
          : 'runs of killed processes ABANDONED within the bound',
        ctx.held.length > 0 && bad.length === 0,
        `${ctx.held.length} faults, ${runs.length} runs held${bad.length ? `; not as expected: ${JSON.stringify(bad.slice(0, 3))}` : ''}`,
      ),
    );
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
    checks.push(
      check(
        `every instance resumed within ${RESUME_BOUND_MS / 1000} s`,
        ctx.resume.length > 0 && late.length === 0,
        late.length ? late.join('; ') : `${ctx.resume.length} faults, slowest ${worst} ms`,
      ),
    );
    const restarted = kinds.includes('kill') ? [] : ctx.cluster.instances.filter((i) => i.generation !== 1 || ctx.pids.get(i.id) !== i.pid);
    checks.push(
      check(
        'no instance restarted',
        restarted.length === 0,
        restarted.length ? restarted.map((i) => i.id).join(', ') : 'same processes throughout',
      ),
    );
  }
  const c = ctx.changes;
  if (c) {
    const committed = Object.values(c.committed).reduce((n, v) => n + v, 0);
    checks.push(
      check(
        'changes committed and replayed from the audit trail',
        committed > 0 && c.mismatches.length === 0 && c.unmatched === 0,
        `${c.attempts} calls, ${committed} committed (${Object.entries(c.committed)
          .map(([k, v]) => `${k} ${v}`)
          .join(', ')})` +
          (c.unmatched ? `; ${c.unmatched} committed changes no call accounts for` : '') +
          (c.mismatches.length
            ? `; replay disagrees with ${c.mismatches.length} jobs, e.g. ${JSON.stringify(c.mismatches.slice(0, 3))}`
            : ''),
      ),
    );
    if (ctx.kinds.length > 0) {
      checks.push(
        check(
          'changes fired during faults',
          c.duringFaults > 0,
          `${c.duringFaults} calls (${
            Object.entries(c.duringFaultsByOutcome)
              .map(([k, v]) => `${k} ${v}`)
              .join(', ') || 'none'
          })`,
        ),
      );
    }
  }
  const e = ctx.events;
  if (e) {
    // Every subscription may have been interrupted (under load, or by an outage): then nothing was required, which the counts show.
    checks.push(
      check(
        'subscribers on every instance received events',
        e.events > 0 && e.notResubscribed === 0,
        `${e.segments} subscriptions on ${e.subscribers} subscribers, ${e.events} events, ${e.required} required` +
          (e.notResubscribed ? `; ${e.notResubscribed} interrupted without a new subscription` : ''),
      ),
    );
    checks.push(zero('events missing without EVENTS_INTERRUPTED (silent gaps)', e.missing, e.examples.missing));
    // Events a killed instance recorded and never sent: nobody could know, yet SPEC §6 wants no gap without EVENTS_INTERRUPTED.
    const allowed = options.allowLostWithKill === true;
    checks.push(
      check(
        `events that died unsent with a killed instance, no EVENTS_INTERRUPTED${allowed ? ', reported only' : ''}`,
        allowed || e.lostWithKill === 0,
        e.lostWithKill === 0 ? '0' : `${e.lostWithKill} e.g. ${JSON.stringify(e.examples.lostWithKill.slice(0, 3))}`,
      ),
    );
    checks.push(zero('events delivered twice', e.duplicates, e.examples.duplicates));
    checks.push(zero('events out of order per job', e.outOfOrder, e.examples.outOfOrder));
    checks.push(zero('events disagreeing with the runs', e.mismatched, e.examples.mismatched));
    checks.push(zero('subscriptions ended otherwise while their instance was up', e.unexpectedEnds, e.examples.unexpectedEnds));
  }
  if (scenario === 'clock-skew') {
    const skewed = ctx.clockOffsets.map((offset, i) => ({ offset, id: ctx.cluster.instances[i]!.id }));
    checks.push(
      check(
        'skewed instances ran jobs',
        skewed.every((s) => (a.byInstance[s.id] ?? 0) > 0),
        skewed.map((s) => `${s.id} (${s.offset}): ${a.byInstance[s.id] ?? 0} runs`).join(', '),
      ),
    );
  }
  return checks;
}
