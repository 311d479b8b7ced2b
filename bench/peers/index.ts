// The peers `npm run bench` measures beside the service (issue 11): the bare database, graphile-worker
// and BullMQ. graphile-worker and BullMQ are installed as their users would install them, into
// bench/peers/node_modules from this directory's own package.json and package-lock.json, never
// into the service's dependencies. This file imports none of them, so the service's typecheck and
// lint pass without bench/peers/node_modules; `loadPeers()` installs them on first use and loads
// sections.ts, which does.
//
//   const peers = await loadPeers();
//   const results = [await peers.bareInsert(context), await peers.graphileWorker(context), await peers.bullmq(context)];
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import type { BenchContext, SectionResult } from '../lib.ts';

export { bareInsert } from './bare.ts';

export const peersDir = path.dirname(fileURLToPath(import.meta.url));

/** The sections of sections.ts, each cleaning up all it starts. */
export interface Peers {
  /** Rows shaped like `job_runs` into the same table from a plain postgres.js client: multi-row and one by one. */
  bareInsert(context: BenchContext): Promise<SectionResult>;
  /** graphile-worker draining no-op jobs with its documented high-throughput settings. */
  graphileWorker(context: BenchContext): Promise<SectionResult>;
  /** BullMQ on the local Redis draining no-op jobs at concurrency 50; a "skipped" row when Redis does not answer. */
  bullmq(context: BenchContext): Promise<SectionResult>;
}

/** Installs bench/peers/node_modules from the lock file (`npm ci`) when it is missing. */
export async function ensurePeersInstalled(): Promise<void> {
  if (fs.existsSync(path.join(peersDir, 'node_modules', '.package-lock.json'))) return;
  const npm = process.platform === 'win32' ? 'npm.cmd' : 'npm';
  await new Promise<void>((resolve, reject) => {
    // Its output goes to stderr: the bench's stdout is its table.
    const child = spawn(npm, ['ci', '--prefix', peersDir, '--no-audit', '--no-fund'], {
      stdio: ['ignore', process.stderr, process.stderr],
    });
    child.on('error', reject);
    child.on('exit', (code, signal) =>
      code === 0 ? resolve() : reject(new Error(`npm ci --prefix ${peersDir} ended with ${signal ?? `code ${code}`}`)),
    );
  });
}

/** Installs the peers if needed, then loads their sections. */
export async function loadPeers(): Promise<Peers> {
  await ensurePeersInstalled();
  // A computed specifier, so that the service's typecheck does not follow it into packages it
  // does not have; bench/peers/tsconfig.json checks sections.ts against `Peers`.
  const specifier = pathToFileURL(path.join(peersDir, 'sections.ts')).href;
  return (await import(specifier)) as Peers;
}
