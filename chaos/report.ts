// The figures of a chaos run: a table per scenario on stdout, and everything as JSON in
// bench/results/chaos-<timestamp>.json.
import fs from 'node:fs/promises';
import path from 'node:path';
import { repoRoot } from '../test/helpers/process.ts';
import type { ScenarioResult } from './scenario.ts';

const ms = (value: number | null) => (value == null ? '-' : `${Math.round(value)} ms`);

/** The table of one scenario, as lines of text. */
export function formatScenario(result: ScenarioResult): string {
  const { params: p, audit: a } = result;
  const lines: string[] = [];
  const head = `== ${result.label}: ${p.instances} instances, ${p.jobs} jobs (period ${p.period}, ${p.operation}), ${p.durationSeconds} s, LEASE_SECONDS=${p.leaseSeconds}`;
  lines.push(head);
  if (result.skipped) {
    lines.push(`   SKIPPED: ${result.skipped}`);
    return lines.join('\n');
  }
  const extra = [
    p.faultEverySeconds != null ? `a fault every ${p.faultEverySeconds} s` : '',
    p.faultEverySeconds == null && p.faultPlan.length
      ? `faults: ${p.faultPlan.map((f) => `${f.kind} at ${f.atSeconds} s`).join(', ')}`
      : '',
    p.downSeconds != null ? `database down ${p.downSeconds} s` : '',
    p.clockOffsets.length ? `clock offsets ${p.clockOffsets.join(', ')}` : '',
    p.mix ? `of the jobs ${p.mix.cron} cron, ${p.mix.retry} retrying, ${p.mix.queue} QUEUE_ONE` : '',
    p.changeJobs ? `${p.changeJobs} jobs changed` : '',
    p.subscribers ? 'subscribers on every instance' : '',
  ].filter(Boolean);
  const injected = result.faults.filter((f) => !['stopping', 'restarted', 'database stopping', 'SIGCONT'].includes(f.kind)).length;
  if (extra.length) lines.push(`   ${extra.join('; ')}; ${injected} faults injected`);
  const rows: [string, string][] = [
    [
      'runs',
      `${a.runs} (${Object.entries(a.byStatus)
        .map(([s, n]) => `${s} ${n}`)
        .join(', ')})`,
    ],
    [
      'runs per instance',
      Object.entries(a.byInstance)
        .map(([i, n]) => `${i} ${n}`)
        .join(', '),
    ],
    ['due times audited (of cron jobs)', `${a.dueTimes} (${a.cron.dueTimes} of ${a.cron.jobs} jobs)`],
    ['duplicate runs', String(a.duplicates)],
    ['due times unaccounted for', String(a.unaccounted)],
    ['due times accounted twice', String(a.doubleAccounted)],
    ['due times off the grid', String(a.offGrid)],
    ["due times in a change's bracket (left out)", `${a.unsure.dueTimes} (${a.unsure.leftOut})`],
    ['QUEUE_ONE due times still waiting at the end', String(a.queuedPending)],
    ['runs left RUNNING', String(a.leftRunning)],
    ['runs started before scheduledAt', String(a.earlyStarts)],
    ['coalesced runs / missed due times', `${a.coalesced.runs} / ${a.coalesced.missed}`],
    [
      'SKIPPED runs (recorded by a change)',
      `${a.skipped} (${a.changeSkipped.runs}, for ${a.changeSkipped.dueTimes} due times); ${a.skippedUnlogged} without a WARNING`,
    ],
    [
      'ABANDONED (lease expired / shutdown / lease lost / reply lost / other)',
      `${a.abandoned.total} (${a.abandoned.leaseExpired} / ${a.abandoned.shutdown} / ${a.abandoned.leaseLost} / ${a.abandoned.replyLost} / ${a.abandoned.other})`,
    ],
    [
      'abandon latency p50 / max (bound)',
      `${ms(a.abandoned.latencyMs.p50)} / ${ms(a.abandoned.latencyMs.max)} (${a.abandoned.boundMs} ms), ${a.abandoned.overBound} over` +
        (a.abandoned.excluded ? ` (${a.abandoned.excluded} late claims left out)` : ''),
    ],
    ['stale log writes', String(a.staleLogWrites)],
    [
      'retries / failed non-final attempts (retried, waiting, dropped, cleared)',
      `${a.retries.runs} / ${a.retries.nonFinalFailures} (${a.retries.retried}, ${a.retries.pending}, ${a.retries.dropped}, ${a.retries.clearedByChange})`,
    ],
    [
      'attempts twice / orphan retries / wrong retryOf / over max / retries lost',
      `${a.retries.attemptDuplicates} / ${a.retries.orphans} / ${a.retries.wrongRetryOf} / ${a.retries.overMax} / ${a.retries.unaccounted}`,
    ],
    ['lateness p50 / p99 / max', `${ms(a.latenessMs.p50)} / ${ms(a.latenessMs.p99)} / ${ms(a.latenessMs.max)}`],
  ];
  const c = result.changes;
  if (c) {
    const counts = (o: Record<string, number>) =>
      Object.entries(o)
        .map(([k, v]) => `${k} ${v}`)
        .join(', ') || 'none';
    rows.push(['changes fired', `${c.attempts} calls on ${c.jobs} jobs (${counts(c.byAction)}); ${counts(c.byOutcome)}`]);
    rows.push([
      'changes committed',
      `${counts(c.committed)}; ${c.committedDespiteFailure} despite a failed call, ${c.failedUncommitted} failed calls not committed`,
    ]);
    rows.push(['changes during faults', `${c.duringFaults} (${counts(c.duringFaultsByOutcome)})`]);
  }
  const e = result.events;
  if (e) {
    rows.push(['subscribers / subscriptions / events', `${e.subscribers} / ${e.segments} / ${e.events}`]);
    rows.push(['subscriptions interrupted / closed by a kill / other', `${e.interrupted} / ${e.closedByKill} / ${e.unexpectedEnds}`]);
    rows.push([
      'events required / missing (silent gaps) / died with a killed instance',
      `${e.required} / ${e.missing} / ${e.lostWithKill}`,
    ]);
    rows.push(['events duplicated / out of order / disagreeing', `${e.duplicates} / ${e.outOfOrder} / ${e.mismatched}`]);
  }
  for (const r of result.resume) {
    const show = (v: number | null | undefined) => (v == null ? 'never' : `${v} ms`);
    rows.push([
      `resumed after ${r.kind} ${r.at.slice(11, 23)} (run / health)`,
      Object.entries(r.latencyMs)
        .map(([i, v]) => `${i} ${show(v)} / ${show(r.healthMs[i])}`)
        .join(', '),
    ]);
  }
  for (const h of result.held) {
    const abandoned = h.runs.filter((r) => r.status === 'ABANDONED');
    const worst = Math.max(0, ...abandoned.map((r) => r.abandonLatencyMs ?? 0));
    rows.push([
      `${h.kind} ${h.instance} at ${h.at.slice(11, 23)}`,
      `${h.runs.length} runs held, ${abandoned.length} ABANDONED${abandoned.length ? ` (max ${worst} ms after last renewal)` : ''}`,
    ]);
  }
  const width = Math.max(...rows.map(([k]) => k.length));
  for (const [k, v] of rows) lines.push(`   ${k.padEnd(width)}  ${v}`);
  lines.push('   checks:');
  for (const c of result.checks) lines.push(`     ${c.ok ? 'PASS' : 'FAIL'}  ${c.name}: ${c.detail}`);
  lines.push(`   ${result.ok ? 'OK' : 'FAILED'} in ${result.wallSeconds} s`);
  return lines.join('\n');
}

/**
 * What failed in a scenario, with the examples the audit kept (up to 10 of each) and, for the
 * jobs they name, the changes the harness made to them: the lines to read when a check fails.
 */
export function explainFailures(result: ScenarioResult): string {
  if (result.ok || result.skipped) return '';
  const lines = [`-- ${result.label}: what failed`];
  for (const c of result.checks.filter((check) => !check.ok)) lines.push(`   FAIL  ${c.name}`);
  const list = (title: string, items: readonly unknown[] | undefined) => {
    if (!items?.length) return;
    lines.push(`   ${title}:`);
    for (const item of items.slice(0, 10)) lines.push(`     ${JSON.stringify(item)}`);
  };
  const x = result.audit.examples;
  list('duplicate runs', x.duplicates);
  list('due times unaccounted for', x.unaccounted);
  list('due times accounted twice', x.doubleAccounted);
  list('due times off the grid', x.offGrid);
  list('runs left RUNNING', x.leftRunning);
  list('runs started before scheduledAt', x.earlyStarts);
  list('SKIPPED runs without a WARNING', x.skippedUnlogged);
  list('stale log writes', x.staleLogWrites);
  const r = result.audit.retries.examples;
  list('attempts run twice', r.attemptDuplicates);
  list('retries without a failed previous attempt', r.orphans);
  list("retries whose retryOf is not the first attempt's id", r.wrongRetryOf);
  list('attempts above retry.maxAttempts', r.overMax);
  list('failed attempts whose retry is unaccounted for', r.unaccounted);
  list('ABANDONED over the bound', x.overBound);
  list('ABANDONED for another reason', x.abandonedOther);
  const c = result.changes;
  if (c) {
    list('changed jobs the replay disagrees with', c.mismatches);
    list('failed change calls', c.failedExamples);
  }
  const e = result.events;
  if (e) {
    list('events missing (silent gaps)', e.examples.missing);
    list('events that died unsent with a killed instance', e.examples.lostWithKill);
    list('events delivered twice', e.examples.duplicates);
    list('events out of order', e.examples.outOfOrder);
    list('events disagreeing with the runs', e.examples.mismatched);
    list('subscriptions ended otherwise', e.examples.unexpectedEnds);
  }
  // The changes of the jobs named above, in order: when each call went out and was answered.
  const named = [...x.unaccounted, ...x.doubleAccounted, ...x.offGrid, ...r.unaccounted, ...(c?.mismatches ?? [])].map(
    (item) => item.jobId,
  );
  for (const jobId of [...new Set(named)].slice(0, 5)) {
    const calls = c?.calls.filter((call) => call.jobId === jobId) ?? [];
    if (calls.length === 0) continue;
    lines.push(`   changes of ${jobId} (sent … answered, database time):`);
    for (const call of calls) {
      const when = `${new Date(call.sentAt).toISOString().slice(11, 23)} … ${call.answeredAt === null ? 'no answer' : new Date(call.answeredAt).toISOString().slice(11, 23)}`;
      lines.push(
        `     ${when}  ${call.action}${call.periodSeconds ? ` to ${call.periodSeconds} s` : ''}` +
          `${call.afterDue ? ` after due ${call.afterDue.slice(11, 23)}` : ''} → ${call.outcome}${call.error ? ` (${call.error})` : ''}`,
      );
    }
  }
  return lines.join('\n');
}

export interface ChaosReport {
  startedAt: string;
  finishedAt: string;
  machine: { node: string; platform: string; cpus: number };
  database: string;
  ok: boolean;
  scenarios: ScenarioResult[];
}

/** Writes the JSON to bench/results/chaos-<timestamp>.json (or `file`); resolves with its path. */
export async function writeReport(report: ChaosReport, file?: string): Promise<string> {
  const target = file ?? path.join(repoRoot, 'bench', 'results', `chaos-${report.startedAt.replace(/[:.]/g, '-')}.json`);
  await fs.mkdir(path.dirname(target), { recursive: true });
  await fs.writeFile(target, `${JSON.stringify(report, null, 2)}\n`);
  return target;
}
