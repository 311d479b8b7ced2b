// Drives a cluster through its public API: jobs are created with GraphQL mutations, many per
// request (one alias per job), spread over the instances; chaos/changes.ts changes them.

export interface GraphQLResult<T> {
  data?: T | null;
  errors?: { message: string; extensions?: Record<string, unknown> }[];
}

/**
 * POSTs one operation to an instance's /graphql and resolves with its answer, errors included;
 * rejects when no answer came (the instance unreachable, or `timeoutMs` passed: a TimeoutError)
 * or the answer is not GraphQL.
 */
export async function post<T = Record<string, unknown>>(
  port: number,
  query: string,
  variables: Record<string, unknown> = {},
  timeoutMs = 30_000,
): Promise<GraphQLResult<T>> {
  const response = await fetch(`http://127.0.0.1:${port}/graphql`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', accept: 'application/json' },
    body: JSON.stringify({ query, variables }),
    signal: AbortSignal.timeout(timeoutMs),
  });
  const text = await response.text();
  try {
    return JSON.parse(text) as GraphQLResult<T>;
  } catch {
    throw new Error(`/graphql on port ${port} answered ${response.status}: ${text.slice(0, 500)}`);
  }
}

/** POSTs one operation to an instance's /graphql; throws on HTTP or GraphQL errors. */
export async function gql<T = Record<string, unknown>>(
  port: number,
  query: string,
  variables: Record<string, unknown> = {},
  timeoutMs = 30_000,
): Promise<T> {
  const result = await post<T>(port, query, variables, timeoutMs);
  if (result.errors?.length || !result.data) throw new Error(`GraphQL errors from port ${port}: ${JSON.stringify(result.errors ?? result).slice(0, 1000)}`);
  return result.data;
}

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
  const batchSize = spec.batchSize ?? 50;
  for (let start = 0; start < ids.length; start += batchSize) {
    const batch = ids.slice(start, start + batchSize);
    const params = batch.map((_, i) => `$i${i}: CreateJobInput!`).join(', ');
    const fields = batch.map((_, i) => `j${i}: createJob(input: $i${i}) { id }`).join('\n  ');
    const variables = Object.fromEntries(
      batch.map((id, i) => [
        `i${i}`,
        {
          id,
          name: `Chaos job ${id}`,
          externalCall: spec.externalCall,
          period: spec.period,
          ...(spec.timeoutSeconds ? { timeoutSeconds: spec.timeoutSeconds } : {}),
        },
      ]),
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
