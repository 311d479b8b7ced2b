// graphile-worker and BullMQ draining no-op jobs on this machine (issue 11), each with the
// settings its documentation gives for throughput, installed from bench/peers/package.json.
// Each trial enqueues all its jobs first (in bulk, untimed), then starts the consumer and times it
// from the first job's start to the last job's completion. Load it through `loadPeers()` of
// index.ts, which installs bench/peers/node_modules first.
import { EventEmitter } from 'node:events';
import { readFile } from 'node:fs/promises';
import net from 'node:net';
import { Queue, Worker } from 'bullmq';
import { Logger, makeWorkerUtils, run, type WorkerEvents } from 'graphile-worker';
import { type BenchContext, dropDatabase, freshDatabase, median, round, type SectionResult, sleep } from '../lib.ts';
import { bareInsert } from './bare.ts';
import type { Peers } from './index.ts';

export { bareInsert };

const jobsPerTrial = (context: BenchContext) => (context.quick ? 2_000 : 20_000);
const trialCount = (context: BenchContext) => (context.quick ? 1 : 3);

/** Start of the first job to completion of the last, in ms. */
interface Drain {
  jobs: number;
  ms: number;
  jobsPerSecond: number;
}

const drained = (jobs: number, firstStart: number, lastEnd: number): Drain => ({
  jobs,
  ms: round(lastEnd - firstStart, 1),
  jobsPerSecond: round(jobs / ((lastEnd - firstStart) / 1000), 0),
});

/** Resolves when `done()` reports all jobs finished, or rejects after `ms` with how far it got. */
function deadline(ms: number, what: string, progress: () => string): { promise: Promise<void>; done(): void; cancel(): void } {
  let resolve!: () => void;
  let reject!: (error: Error) => void;
  const promise = new Promise<void>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  const timer = setTimeout(() => reject(new Error(`${what} did not drain within ${ms} ms: ${progress()}`)), ms);
  return {
    promise,
    done() {
      clearTimeout(timer);
      resolve();
    },
    cancel() {
      clearTimeout(timer);
    },
  };
}

// --- graphile-worker ------------------------------------------------------------------------

/** The configuration of graphile-worker's performance page (worker.graphile.org/docs/performance). */
const GRAPHILE_TUNING = {
  concurrentJobs: 24,
  maxPoolSize: 25,
  localQueue: { size: 500 },
  completeJobBatchDelay: 0,
  failJobBatchDelay: 0,
} as const;

const silentLogger = new Logger(() => (level, message) => {
  if (level === 'error') process.stderr.write(`graphile-worker: ${message}\n`);
});

async function graphileTrial(context: BenchContext, jobs: number): Promise<Drain> {
  const url = await freshDatabase(context, 'graphile_worker');
  try {
    // Enqueue before the runner exists: its schema first, then every job in one add_jobs call.
    const utils = await makeWorkerUtils({ connectionString: url, logger: silentLogger });
    try {
      await utils.migrate();
      const specs = Array.from({ length: jobs }, (_, i) => ({ identifier: 'noop', payload: { i } }));
      for (let i = 0; i < specs.length; i += 5_000) await utils.addJobs(specs.slice(i, i + 5_000));
    } finally {
      await utils.release();
    }

    const events: WorkerEvents = new EventEmitter();
    let firstStart = NaN;
    let lastEnd = NaN;
    let succeeded = 0;
    let failed = 0;
    const all = deadline(120_000, 'graphile-worker', () => `${succeeded} succeeded, ${failed} failed of ${jobs}`);
    events.on('job:start', () => {
      if (Number.isNaN(firstStart)) firstStart = performance.now();
    });
    events.on('job:success', () => {
      if (++succeeded === jobs) {
        lastEnd = performance.now();
        all.done();
      }
    });
    events.on('job:failed', () => void failed++);

    const runner = await run({
      taskList: { noop: async () => {} },
      noHandleSignals: true,
      logger: silentLogger,
      events,
      preset: { worker: { connectionString: url, ...GRAPHILE_TUNING } },
    });
    try {
      await all.promise;
    } finally {
      all.cancel();
      await runner.stop();
    }
    // Batched completion: by now (the runner stopped) every completion must have reached the table.
    const check = await makeWorkerUtils({ connectionString: url, logger: silentLogger });
    try {
      const left = await check.withPgClient((client) =>
        client.query<{ n: number }>('select count(*)::int as n from graphile_worker._private_jobs'),
      );
      const n = left.rows[0]?.n ?? NaN;
      if (n !== 0) throw new Error(`graphile-worker: ${n} jobs left in the table after ${succeeded} successes`);
    } finally {
      await check.release();
    }
    return drained(jobs, firstStart, lastEnd);
  } finally {
    await dropDatabase(context, url);
  }
}

export async function graphileWorker(context: BenchContext): Promise<SectionResult> {
  const jobs = jobsPerTrial(context);
  const trials: Drain[] = [];
  for (let t = 0; t < trialCount(context); t++) trials.push(await graphileTrial(context, jobs));
  const { concurrentJobs, maxPoolSize, localQueue } = GRAPHILE_TUNING;
  return {
    name: 'graphile-worker: draining no-op jobs',
    rows: [
      {
        metric: `graphile-worker ${await packageVersion('graphile-worker')}`,
        value: median(trials.map((t) => t.jobsPerSecond)),
        unit: 'jobs/s',
        note:
          `median of ${trials.length} × ${jobs.toLocaleString('en')} jobs; concurrency ${concurrentJobs}, pool ${maxPoolSize}, ` +
          `local queue ${localQueue.size}, batched completion; ${context.databaseKind} PostgreSQL`,
      },
    ],
    data: { version: await packageVersion('graphile-worker'), settings: GRAPHILE_TUNING, trials },
  };
}

// --- BullMQ ---------------------------------------------------------------------------------

const BULLMQ_CONCURRENCY = 50;

/** Where Redis is: BENCH_REDIS_URL, else the machine's own. */
function redisTarget(): { host: string; port: number } {
  const url = new URL(process.env['BENCH_REDIS_URL'] ?? 'redis://127.0.0.1:6379');
  return { host: url.hostname, port: Number(url.port || 6379) };
}

/** Whether Redis answers PING within a second (no retries, no client library). */
function redisAnswers(target: { host: string; port: number }): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = net.connect(target);
    const finish = (ok: boolean) => {
      socket.destroy();
      resolve(ok);
    };
    socket.setTimeout(1_000, () => finish(false));
    socket.on('error', () => finish(false));
    socket.on('connect', () => socket.write('PING\r\n'));
    socket.on('data', (data) => finish(data.toString().startsWith('+PONG')));
  });
}

async function bullmqTrial(jobs: number, trial: number): Promise<Drain> {
  const target = redisTarget();
  // A connection that gives up instead of retrying forever, should Redis go away mid-trial.
  const connection = { ...target, maxRetriesPerRequest: null, retryStrategy: (times: number) => (times > 3 ? null : 100) };
  const name = `server-jobs-bench-${process.pid}-${trial}-${Date.now()}`;
  const queue = new Queue(name, { connection });
  let worker: Worker | undefined;
  try {
    // Completed jobs are not kept (the usual setting at volume): the work per job is then taking
    // it and deleting it, as in graphile-worker.
    const opts = { removeOnComplete: true, removeOnFail: true };
    for (let i = 0; i < jobs; i += 1_000) {
      await queue.addBulk(Array.from({ length: Math.min(1_000, jobs - i) }, (_, k) => ({ name: 'noop', data: { i: i + k }, opts })));
    }
    let firstStart = NaN;
    let lastEnd = NaN;
    let completed = 0;
    let failed = 0;
    const all = deadline(120_000, 'BullMQ', () => `${completed} completed, ${failed} failed of ${jobs}`);
    worker = new Worker(
      name,
      async () => {
        if (Number.isNaN(firstStart)) firstStart = performance.now();
      },
      { connection, concurrency: BULLMQ_CONCURRENCY, autorun: false },
    );
    worker.on('completed', () => {
      if (++completed === jobs) {
        lastEnd = performance.now();
        all.done();
      }
    });
    worker.on('failed', () => void failed++);
    worker.on('error', () => {}); // a lost connection shows as the deadline's error
    void worker.run().catch(() => {});
    try {
      await all.promise;
    } finally {
      all.cancel();
    }
    const counts = await queue.getJobCounts('wait', 'active', 'delayed', 'failed');
    const left = Object.values(counts).reduce((a, b) => a + b, 0);
    if (left !== 0) throw new Error(`BullMQ: jobs left after draining: ${JSON.stringify(counts)}`);
    return drained(jobs, firstStart, lastEnd);
  } finally {
    await worker?.close(true).catch(() => {});
    await queue.obliterate({ force: true }).catch(() => {});
    await queue.close().catch(() => {});
  }
}

export async function bullmq(context: BenchContext): Promise<SectionResult> {
  const name = 'BullMQ: draining no-op jobs';
  const target = redisTarget();
  if (!(await redisAnswers(target))) {
    return {
      name,
      rows: [{ metric: 'BullMQ', value: 'skipped', note: `no Redis answered at ${target.host}:${target.port} (set BENCH_REDIS_URL)` }],
    };
  }
  const jobs = jobsPerTrial(context);
  const trials: Drain[] = [];
  for (let t = 0; t < trialCount(context); t++) {
    trials.push(await bullmqTrial(jobs, t));
    await sleep(200);
  }
  return {
    name,
    rows: [
      {
        metric: `BullMQ ${await packageVersion('bullmq')}`,
        value: median(trials.map((t) => t.jobsPerSecond)),
        unit: 'jobs/s',
        note: `median of ${trials.length} × ${jobs.toLocaleString('en')} jobs; one Worker at concurrency ${BULLMQ_CONCURRENCY}, removeOnComplete; Redis ${target.host}:${target.port}`,
      },
    ],
    data: { version: await packageVersion('bullmq'), concurrency: BULLMQ_CONCURRENCY, trials },
  };
}

/** The installed version of a peer, from its package.json in bench/peers/node_modules. */
async function packageVersion(name: string): Promise<string> {
  const file = new URL(`./node_modules/${name}/package.json`, import.meta.url);
  return (JSON.parse(await readFile(file, 'utf8')) as { version: string }).version;
}

// The loader's contract (index.ts), checked by bench/peers/tsconfig.json.
const _sections: Peers = { bareInsert, graphileWorker, bullmq };
