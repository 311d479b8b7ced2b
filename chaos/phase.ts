// The fault phase of a chaos scenario: its plan of faults, whom they hit, when they were on, the
// wait for what they left behind to settle, /health watches after an outage, and progress lines.
import type { Sql } from './audit.ts';
import { progress } from './fault-queries.ts';
import { type Cluster, type Instance, sleep } from './cluster.ts';
import { health } from './drive.ts';
import { type FaultEvent, type FaultKind, RESUME_BOUND_MS, type ScenarioName, type ScenarioResult } from './scenario.ts';

/** The scenario's faults: one every `every` seconds through the phase; db-restart once, in the middle, unless `every` is given. */
export function defaultPlan(
  scenario: ScenarioName,
  durationSeconds: number,
  every: number | null,
): { atSeconds: number; kind: FaultKind }[] {
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
export async function settle(
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
export function watchHealth(cluster: Cluster, into: Record<string, number | null>): Promise<void> {
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
export function spread(ids: string[], count: number): string[] {
  const step = ids.length / count;
  return Array.from({ length: count }, (_, i) => ids[Math.floor(i * step)]!);
}

/** When faults were on, database time (epoch ms): an instance killed until restarted, frozen until resumed, the database away until back, connections cut (for 2 s). */
export function faultWindows(faults: FaultEvent[]): [number, number][] {
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

export function countBy<T>(items: T[], key: (item: T) => string): Record<string, number> {
  const counts: Record<string, number> = {};
  for (const item of items) counts[key(item)] = (counts[key(item)] ?? 0) + 1;
  return counts;
}

/** The next instance to hit: round robin over the running ones. */
export function pickTarget(cluster: Cluster, round: number): Instance | undefined {
  const running = cluster.running;
  return running[round % Math.max(1, running.length)];
}

export function startMonitor(sql: Sql, say: (line: string) => void, since: number): { stop(): void } {
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
