// Drives a cluster through its public API: jobs are created with GraphQL mutations, many per
// request (one alias per job), spread over the instances; chaos/changes.ts changes them.
import { gql } from '../test/helpers/process.ts';

export interface JobsToCreate {
  /** How many jobs; their ids are `${prefix}-0001` … */
  count: number;
  prefix?: string;
  /** `h:m:s`, e.g. '0:0:1'. */
  period: string;
  /** e.g. 'ServerOperationConnector:Noop'. */
  externalCall: string;
  timeoutSeconds?: number;
  /** Jobs per request. */
  batchSize?: number;
  /** Per job, fields that replace or add to the ones above (a null one is left out: `period: null` for a cron job). */
  inputOf?: (id: string) => Record<string, unknown> | undefined;
}

export function jobIds(count: number, prefix = 'chaos'): string[] {
  const width = Math.max(4, String(count).length);
  return Array.from({ length: count }, (_, i) => `${prefix}-${String(i + 1).padStart(width, '0')}`);
}

/**
 * Creates the jobs in batches of aliased `createJob` mutations, each batch through the next
 * port `nextPort()` gives (so the instances share the work and the anchors come from every
 * instance's clock). Resolves with the ids.
 */
export async function createJobs(nextPort: () => number, spec: JobsToCreate): Promise<string[]> {
  const ids = jobIds(spec.count, spec.prefix);
  // Within the service's GRAPHQL_MAX_ALIASES (30 by default): one alias per job.
  const batchSize = spec.batchSize ?? 25;
  for (let start = 0; start < ids.length; start += batchSize) {
    const batch = ids.slice(start, start + batchSize);
    const params = batch.map((_, i) => `$i${i}: CreateJobInput!`).join(', ');
    const fields = batch.map((_, i) => `j${i}: createJob(input: $i${i}) { id }`).join('\n  ');
    const variables = Object.fromEntries(
      batch.map((id, i) => {
        const input: Record<string, unknown> = {
          id,
          name: `Chaos job ${id}`,
          externalCall: spec.externalCall,
          period: spec.period,
          ...(spec.timeoutSeconds ? { timeoutSeconds: spec.timeoutSeconds } : {}),
          ...spec.inputOf?.(id),
        };
        return [`i${i}`, Object.fromEntries(Object.entries(input).filter(([, value]) => value !== null))];
      }),
    );
    const data = await gql<Record<string, { id: string }>>(nextPort(), `mutation (${params}) {\n  ${fields}\n}`, variables);
    const created = Object.values(data).map((job) => job.id);
    if (created.length !== batch.length) throw new Error(`created ${created.length} of ${batch.length} jobs`);
  }
  return ids;
}

/** GET /health of an instance: its status code, or 0 when it does not answer. */
export async function health(port: number, timeoutMs = 2_000): Promise<number> {
  try {
    const response = await fetch(`http://127.0.0.1:${port}/health`, { signal: AbortSignal.timeout(timeoutMs) });
    await response.arrayBuffer();
    return response.status;
  } catch {
    return 0;
  }
}
