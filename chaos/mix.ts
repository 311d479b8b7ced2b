// The jobs of SPEC §3b in the chaos mix, beside the plain period jobs: cron jobs (every 2 s in
// UTC, every second in Europe/Berlin), jobs whose operation fails or times out some of the time
// and which are retried, and QUEUE_ONE jobs whose runs outlast their period (some of them failing
// and retried too: a failed run with a due time waiting behind it). The audit checks their due
// times like any other (cron instants included) and their retry attempts (chaos/retries.ts).

/** How many jobs of each kind the mix has; the rest of the jobs are plain. */
export interface JobMix {
  cron: number;
  retry: number;
  queue: number;
}
export type JobKind = 'plain' | keyof JobMix;

/** The default: a tenth of the jobs of each kind. */
export const defaultMix = (jobs: number): JobMix => {
  const n = Math.round(jobs / 10);
  return { cron: n, retry: n, queue: n };
};

/** How long Slow takes: longer than the QUEUE_ONE jobs' period of 1 s, so due times wait and some are SKIPPED. */
export const SLOW_MS = 1500;

/** The operations the mix's jobs call, for the harness's operations module (chaos/faults.ts). Deterministic by run id. */
export const MIX_OPERATIONS = `
  // Fails two calls in three, and one in six hangs until its timeout: TIMED_OUT (both are retried).
  async Flaky(ctx) {
    const n = Number(ctx.runId) % 6;
    if (n === 5) await sleep(600_000, undefined, { signal: ctx.signal });
    if (n >= 2) throw new Error('chaos: flaky failure');
  },
  // Outlasts its period (QUEUE_ONE).
  async Slow(ctx) {
    await sleep(${SLOW_MS}, undefined, { signal: ctx.signal });
  },`;

export interface MixedJob {
  kind: JobKind;
  /** What createJob gets beside the id, name and plain defaults (`period: null` for a cron job). */
  input: Record<string, unknown>;
}

/**
 * The kind and createJob input of each job: the last `cron + retry + queue` ids take the kinds in
 * turn (cron, retry, queue, cron, …), and within a kind they alternate between two variants:
 *
 * - cron: `*\/2 * * * * *` in UTC; `* * * * * *` in Europe/Berlin (the scenario's operation);
 * - retry: Flaky every 2 s, 3 attempts at once (backoff 0); Flaky at `*\/3 * * * * *`, 3 attempts
 *   1 s then 2 s apart (the third usually dropped: the next due time comes first); timeout 1 s;
 * - queue: QUEUE_ONE every second: Slow, timeout 5 s; Flaky, timeout 2 s (its hangs outlast the
 *   period), 3 attempts at once.
 */
export function mixJobs(ids: string[], mix: JobMix): Map<string, MixedJob> {
  const kinds: (keyof JobMix)[] = [];
  const left = { ...mix };
  while (left.cron + left.retry + left.queue > 0) {
    for (const kind of ['cron', 'retry', 'queue'] as const) {
      if (left[kind] > 0) {
        kinds.push(kind);
        left[kind]--;
      }
    }
  }
  const mixed = new Map<string, MixedJob>();
  const start = Math.max(0, ids.length - kinds.length);
  const seen: Record<keyof JobMix, number> = { cron: 0, retry: 0, queue: 0 };
  ids.forEach((id, i) => {
    const kind = i >= start ? kinds[i - start]! : null;
    if (kind === null) {
      mixed.set(id, { kind: 'plain', input: {} });
      return;
    }
    const variant = seen[kind]++ % 2;
    mixed.set(id, { kind, input: inputOf(kind, variant) });
  });
  return mixed;
}

const call = (method: string) => `ServerOperationConnector:${method}`;

function inputOf(kind: keyof JobMix, variant: number): Record<string, unknown> {
  switch (kind) {
    case 'cron':
      return variant === 0 ? { period: null, cron: '*/2 * * * * *' } : { period: null, cron: '* * * * * *', timeZone: 'Europe/Berlin' };
    case 'retry':
      return variant === 0
        ? {
            period: '0:0:2',
            externalCall: call('Flaky'),
            timeoutSeconds: 1,
            retry: { maxAttempts: 3, backoffSeconds: 0, backoffFactor: 1 },
          }
        : {
            period: null,
            cron: '*/3 * * * * *',
            externalCall: call('Flaky'),
            timeoutSeconds: 1,
            retry: { maxAttempts: 3, backoffSeconds: 1, backoffFactor: 2, maxBackoffSeconds: 60 },
          };
    case 'queue':
      return variant === 0
        ? { period: '0:0:1', overlap: 'QUEUE_ONE', externalCall: call('Slow'), timeoutSeconds: 5 }
        : {
            period: '0:0:1',
            overlap: 'QUEUE_ONE',
            externalCall: call('Flaky'),
            timeoutSeconds: 2,
            retry: { maxAttempts: 3, backoffSeconds: 0, backoffFactor: 1 },
          };
  }
}

/** A job the harness may change (pause, resume, re-periodise, delete): a period job; its replay (chaos/change-spans.ts) is a grid's. */
export const changeable = (job: MixedJob): boolean => job.input['cron'] === undefined;
