// `npm run fuzz`: the long form of the fuzz test of SPEC §8 (test/fuzz.test.ts is its short form
// in `npm test`; both use test/helpers/fuzz.ts). Starts one instance on a throwaway embedded
// PostgreSQL (or on DATABASE_URL's server, in a database of its own making) and sends it
// FUZZ_RUNS generated malformed requests (default 100,000), printing its figures as it goes.
//
//   npm run fuzz                          100,000 requests, a random seed
//   FUZZ_RUNS=20000 FUZZ_SEED=42 npm run fuzz
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { runFuzz, startFuzzTarget, type FuzzReport } from '../test/helpers/fuzz.ts';

const runs = Number(process.env['FUZZ_RUNS'] ?? 100_000);
const seed = Number(process.env['FUZZ_SEED'] ?? Math.floor(Math.random() * 2 ** 31));
if (!Number.isInteger(runs) || runs < 1 || !Number.isInteger(seed)) {
  console.error('FUZZ_RUNS must be a positive whole number and FUZZ_SEED a whole number');
  process.exit(2);
}

const figures = (r: FuzzReport) =>
  `${r.operations} operations tried, ${r.unexpected} unexpected answers, ${r.serverErrors} 5xx, ${r.rowsChanged} rows changed, ${r.loggedErrors} errors logged (${Math.round(r.ms / 1000)} s)`;

const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'server-jobs-fuzz-'));
await fs.promises.chmod(dataDir, 0o755); // as root, the embedded server runs as user postgres
console.log(`fuzz: ${runs} requests, seed ${seed} (replay with FUZZ_SEED=${seed})`);
const target = await startFuzzTarget({ DATA_DIR: path.join(dataDir, 'data'), LOG_LEVEL: 'warn' });
let report: FuzzReport;
let last = 0;
try {
  report = await runFuzz(target, {
    runs,
    seed,
    keep: 25,
    onProgress: (r) => {
      if (r.operations - last >= 5000 || r.operations === runs) {
        last = r.operations;
        console.log(`fuzz: ${figures(r)}`);
      }
    },
  });
} finally {
  await target.stop();
  fs.rmSync(dataDir, { recursive: true, force: true });
}
for (const example of report.examples) console.log(`\n${example}`);
const kinds = Object.entries(report.kinds).sort(([, a], [, b]) => b.ms - a.ms);
const { generate, send, check } = report.timing;
console.log(
  `\ntime: ${Math.round(generate / 1000)} s generating, ${Math.round(send / 1000)} s waiting for answers, ${Math.round(check / 1000)} s checking the rows`,
);
console.log('kinds of case, the slowest first (count, ms in all, unexpected):');
for (const [kind, k] of kinds.slice(0, 15)) console.log(`  ${kind}: ${k.count}, ${Math.round(k.ms)} ms, ${k.unexpected}`);
const bad = kinds.filter(([, k]) => k.unexpected > 0);
if (bad.length > 0) console.log(`unexpected answers by kind: ${bad.map(([kind, k]) => `${kind} ${k.unexpected}`).join('; ')}`);
console.log(`\nfuzz (seed ${seed}): ${figures(report)}`);
process.exit(report.unexpected + report.serverErrors + report.rowsChanged + report.loggedErrors === 0 ? 0 : 1);
