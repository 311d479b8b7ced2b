import DataLoader from 'dataloader';
import { type GraphQLResolveInfo, Kind } from 'graphql';
import type { Queryable } from '../db/client.ts';
import { findJobs } from '../db/jobs.ts';
import type { JobRow, RunRow } from '../db/rows.ts';
import { lastRunsOf, pageRunsOfJobs } from '../db/runs.ts';

/** A page of one job's runs: the job, the page size (fetched one extra) and the cursor after which it starts. */
export interface RunsPageKey {
  jobId: string;
  first: number;
  after: { at: Date; id: string } | null;
}

/**
 * The per-row lookups of the API (a job's last run or runs, a run's job, an event's job), each
 * gathered over one tick into one statement, so a page of n rows costs one query per field,
 * not n (the N+1 of issue 11).
 *
 * They batch, they do not cache (`cache: false`): nothing is kept past the statement that
 * answered it, so every lookup sees the database as it is, including over a subscription's
 * context, which lives as long as the subscription. That also lets one set serve every request
 * of an app: lookups of concurrent requests, or of the subscribers an event reaches at once,
 * share their statements.
 */
export interface Loaders {
  job: DataLoader<string, JobRow | null>;
  lastRun: DataLoader<string, RunRow | null>;
  runsPage: DataLoader<RunsPageKey, RunRow[]>;
}

export function createLoaders(sql: Queryable): Loaders {
  return {
    job: new DataLoader(async (ids) => answerEach(ids, await findJobs(sql, distinct(ids)), (job) => job.id), { cache: false }),
    lastRun: new DataLoader(async (ids) => answerEach(ids, await lastRunsOf(sql, distinct(ids)), (run) => run.jobId), { cache: false }),
    runsPage: new DataLoader(loadRunsPages(sql), { cache: false }),
  };
}

const distinct = (keys: readonly string[]): string[] => [...new Set(keys)];

/** Each key's row (null when there is none), in the order of the keys. */
function answerEach<T>(keys: readonly string[], rows: T[], keyOf: (row: T) => string): (T | null)[] {
  const byKey = new Map(rows.map((row) => [keyOf(row), row]));
  return keys.map((key) => byKey.get(key) ?? null);
}

/** Pages of the same size after the same cursor (a list of jobs asking `runs(first: 5)`, say) are one statement. */
function loadRunsPages(sql: Queryable) {
  return async (keys: readonly RunsPageKey[]): Promise<RunRow[][]> => {
    const groups = new Map<string, RunsPageKey[]>();
    for (const key of keys) {
      const group = `${key.first}|${key.after?.at.toISOString() ?? ''}|${key.after?.id ?? ''}`;
      const members = groups.get(group);
      if (members) members.push(key);
      else groups.set(group, [key]);
    }
    const pages = new Map<RunsPageKey, RunRow[]>();
    await Promise.all(
      [...groups.values()].map(async (group) => {
        const { first, after } = group[0]!;
        const rowsOf = new Map<string, RunRow[]>(group.map((key) => [key.jobId, []]));
        for (const run of await pageRunsOfJobs(sql, [...rowsOf.keys()], { first, after })) rowsOf.get(run.jobId)!.push(run);
        for (const key of group) pages.set(key, rowsOf.get(key.jobId)!);
      }),
    );
    return keys.map((key) => pages.get(key)!);
  };
}

/** Last runs read along with their list of jobs (`withLastRuns`), per row. */
const readAlong = new WeakMap<JobRow, RunRow | null>();

/**
 * Reads the last runs of a list of jobs right after it, when the list's selection asks for
 * `lastRun` (as a field of its own: a fragment's is left to the loader). Each job then answers
 * its last run at once: a list of 1,000 jobs makes no 1,000 promises, and the CPU they cost
 * (most of what `lastRun` added to a `jobs` page) is saved.
 */
export async function withLastRuns(sql: Queryable, jobs: JobRow[], info: GraphQLResolveInfo): Promise<JobRow[]> {
  const asked = info.fieldNodes.some((node) =>
    node.selectionSet?.selections.some((s) => s.kind === Kind.FIELD && s.name.value === 'lastRun'),
  );
  if (!asked || jobs.length === 0) return jobs;
  const runs = new Map(
    (
      await lastRunsOf(
        sql,
        jobs.map((job) => job.id),
      )
    ).map((run) => [run.jobId, run]),
  );
  for (const job of jobs) readAlong.set(job, runs.get(job.id) ?? null);
  return jobs;
}

/** A job's last run: the one read along with its list, else through the loader. */
export function lastRunFor(job: JobRow, loaders: Loaders): RunRow | null | Promise<RunRow | null> {
  const run = readAlong.get(job);
  return run !== undefined ? run : loaders.lastRun.load(job.id);
}
