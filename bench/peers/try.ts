// Runs the peers' sections alone and prints what they measured: a way to try them without the
// whole of `npm run bench`.
//
//   npx tsx bench/peers/try.ts [--quick] [bare|graphile|bullmq ...]
//
// Uses BENCH_DATABASE_URL (else a throwaway embedded PostgreSQL) and BENCH_REDIS_URL (else
// redis://127.0.0.1:6379).
import { openBench, type SectionResult } from '../lib.ts';
import { loadPeers } from './index.ts';

const args = process.argv.slice(2);
const quick = args.includes('--quick');
const chosen = args.filter((a) => !a.startsWith('--'));
const wanted = (name: string) => chosen.length === 0 || chosen.includes(name);

const peers = await loadPeers();
const bench = await openBench(quick);
const results: SectionResult[] = [];
try {
  console.log(`database: ${bench.context.databaseKind}${quick ? ', quick' : ''}`);
  const sections = [
    ['bare', peers.bareInsert],
    ['graphile', peers.graphileWorker],
    ['bullmq', peers.bullmq],
  ] as const;
  for (const [name, section] of sections) {
    if (!wanted(name)) continue;
    const started = performance.now();
    const result = await section(bench.context);
    results.push(result);
    console.log(`\n${result.name} (${((performance.now() - started) / 1000).toFixed(1)} s)`);
    for (const row of result.rows)
      console.log(`  ${row.metric}: ${row.value}${row.unit ? ` ${row.unit}` : ''}${row.note ? `  (${row.note})` : ''}`);
    if (result.data !== undefined) console.log(`  ${JSON.stringify(result.data)}`);
  }
} finally {
  await bench.close();
}
