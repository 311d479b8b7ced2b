// The per-call cost of operation isolation (issue 7): a no-op operation on the main thread (as
// built-ins run) against the same no-op on a worker thread, one at a time and 50 at a time.
import pino from 'pino';
import { ServerOperationsConnector } from '../../src/connectors/server-operations.ts';
import type { CallContext } from '../../src/connectors/types.ts';
import { type BenchContext, round, type SectionResult, summary } from '../lib.ts';

export async function callCost(opsDir: string) {
  const connector = new ServerOperationsConnector({
    dir: opsDir,
    builtins: { InProcessNoop: async () => {} },
    databaseUrl: 'postgres://127.0.0.1:1/unused', // a no-op never queries: postgres.js connects lazily
    instance: 'bench',
    workers: 2,
    log: pino({ level: 'silent' }),
  });
  await connector.start();
  const ctx = (): CallContext => ({
    signal: new AbortController().signal,
    log: async () => {},
    jobId: 'bench',
    runId: '1',
    scheduledAt: new Date(),
    sql: undefined as never,
  });
  const sequential = async (name: string, n: number) => {
    const micros: number[] = [];
    for (let i = 0; i < n; i++) {
      const start = process.hrtime.bigint();
      await connector.call(name, ctx());
      micros.push(Number(process.hrtime.bigint() - start) / 1000);
    }
    return summary(micros);
  };
  const concurrent = async (name: string, batches: number, width: number) => {
    const start = performance.now();
    const cpu = process.cpuUsage();
    for (let b = 0; b < batches; b++) await Promise.all(Array.from({ length: width }, () => connector.call(name, ctx())));
    const seconds = (performance.now() - start) / 1000;
    const used = process.cpuUsage(cpu);
    return {
      callsPerSecond: Math.round((batches * width) / seconds),
      cpuMicrosPerCall: round((used.user + used.system) / (batches * width)),
    };
  };
  const result: Record<string, unknown> = {};
  for (const [label, name] of [
    ['in-process', 'InProcessNoop'],
    ['worker', 'Noop'],
  ] as const) {
    await sequential(name, 500); // warm-up
    result[label] = { sequentialMicros: await sequential(name, 5000), concurrent50: await concurrent(name, 200, 50) };
  }
  await connector.stop();
  return result as Record<
    'in-process' | 'worker',
    { sequentialMicros: ReturnType<typeof summary>; concurrent50: { callsPerSecond: number; cpuMicrosPerCall: number } }
  >;
}

export default async function isolation(context: BenchContext): Promise<SectionResult> {
  const cost = await callCost(context.operationsDir);
  const rows = (['in-process', 'worker'] as const).map((label) => {
    const { sequentialMicros: s, concurrent50: c } = cost[label];
    return {
      metric: `no-op call ${label}: p50 / p99 one at a time`,
      value: `${round(s.p50)} / ${round(s.p99)}`,
      unit: 'µs',
      note: `${c.callsPerSecond} calls/s and ${c.cpuMicrosPerCall} µs CPU a call, 50 at a time`,
    };
  });
  return { name: 'isolation', rows, data: cost };
}
