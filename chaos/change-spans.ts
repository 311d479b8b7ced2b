// The grid spans each job the harness changed was enabled on, rebuilt from the database's audit
// trail (the INFO entry each change writes in its own transaction) for the audit (SPEC §3: a
// change never loses a due time; paused periods have no due times; a resume keeps the grid; a
// period change re-anchors it).
import type { Sql } from './audit.ts';
import type { GridSpan } from './coverage.ts';
import type { ChangeAction, ChangeAttempt } from './changes.ts';

export interface ChangedSpans {
  spans: GridSpan[];
  /** Changes that committed, by kind (the INFO entries of the changed jobs, creation left out). */
  committed: Record<string, number>;
  /** Changes that committed although their call failed or got no answer (the entry is the truth). */
  committedDespiteFailure: number;
  /** Calls that failed or got no answer and did not commit. */
  failedUncommitted: number;
  /** Committed changes no call of the harness accounts for: their bracket is open-ended. */
  unmatched: number;
  /** Jobs whose stored row disagrees with the replayed changes (anchor, period, enabled): the replay cannot be trusted for them. */
  mismatches: { jobId: string; problem: string }[];
}

interface Entry {
  id: string;
  jobId: string;
  at: Date;
  message: string;
  details: Record<string, unknown> | null;
}

const VERB_OF: Record<string, ChangeAction | 'create'> = {
  created: 'create',
  paused: 'pause',
  resumed: 'resume',
  updated: 'period',
  deleted: 'delete',
};
/** What an update's details may hold that leaves the grid alone: fields so, and `actor` (who made the change, SPEC §8). */
const GRID_NEUTRAL = new Set(['name', 'externalCall', 'timeoutSeconds', 'actor']);

/**
 * The spans of grid each job was enabled on, replayed from its INFO entries in commit order (a
 * job's changes take its row lock, so their ids are in commit order) and checked against its row:
 *
 * - created at `at` with period P: the grid is `at + k·P`, the first due time `at + P`;
 * - a pause, a period change or a delete of an enabled job ends its span. What it left behind was
 *   decided by the database's clock in its transaction, at an instant after the entry's `at` (the
 *   instance's "now" as the request arrived, never ahead of the database's) and before the call
 *   was answered (or failed): grid points at or before `at` must be accounted for, those up to the
 *   answer may be or not (`unsureAfter`), later ones not (they are off the grid when they are);
 * - a period change re-anchors the grid at its `at`: the new span starts at `at + P'` (its points
 *   up to the answer may be left out, `unsureUntil`, should the change have committed that late);
 * - a resume continues the grid: its first due time is the first grid point after its `at`;
 * - the span still open at the end runs to the row's next_due_at − period.
 *
 * `untilMs` (database time, after the instances stopped) ends the brackets of calls that got no answer.
 */
export async function changedSpans(
  sql: Sql,
  options: { jobIds: string[]; attempts: ChangeAttempt[]; untilMs: number; marginMs: number },
): Promise<ChangedSpans> {
  const { jobIds, attempts, untilMs, marginMs } = options;
  const entries = await sql<Entry[]>`
    select id::text, job_id, at, message, details from log_entries
    where job_id = any(${jobIds}::text[]) and level = 'INFO' and run_id is null
    order by log_entries.id`;
  const rows = await sql<{ id: string; enabled: boolean; anchorAt: Date; periodSeconds: number; nextDueAt: Date }[]>`
    select id, enabled, anchor_at, period_seconds, next_due_at from jobs where id = any(${jobIds}::text[])`;
  const rowOf = new Map(rows.map((r) => [r.id, r]));
  const result: ChangedSpans = { spans: [], committed: {}, committedDespiteFailure: 0, failedUncommitted: 0, unmatched: 0, mismatches: [] };
  const matched = new Set<ChangeAttempt>();

  for (const jobId of jobIds) {
    const own = entries.filter((e) => e.jobId === jobId);
    const calls = attempts.filter((a) => a.jobId === jobId).sort((a, b) => a.sentAt - b.sentAt);
    const problem = (text: string) => result.mismatches.push({ jobId, problem: text });
    let state: {
      enabled: boolean;
      anchorMs: number;
      periodMs: number;
      open: { firstDue: number; unsureUntil?: number } | null;
      deleted: boolean;
    } | null = null;

    /** The latest instant the change of this entry may have decided at: its call's answer (plus the clocks' margin). */
    const upperOf = (entry: Entry, action: ChangeAction): number => {
      const at = entry.at.getTime();
      const call = calls.filter((c) => c.action === action && c.sentAt - marginMs <= at).at(-1);
      if (!call || (call.answeredAt !== null && at > call.answeredAt + marginMs)) {
        result.unmatched++;
        return untilMs;
      }
      matched.add(call);
      if (call.outcome !== 'ok') result.committedDespiteFailure++;
      return call.answeredAt === null ? untilMs : Math.min(untilMs, call.answeredAt + marginMs);
    };
    const close = (entry: Entry, upper: number) => {
      if (!state?.open) return;
      const { firstDue, unsureUntil } = state.open;
      const lastDue = firstDue + Math.floor((upper - firstDue) / state.periodMs) * state.periodMs;
      result.spans.push({
        jobId,
        firstDue: new Date(firstDue),
        lastDue: new Date(lastDue),
        periodMs: state.periodMs,
        unsureAfter: entry.at,
        ...(unsureUntil !== undefined ? { unsureUntil: new Date(unsureUntil) } : {}),
      });
      state.open = null;
    };

    for (const entry of own) {
      const prefix = `Job "${jobId}" `;
      const verb = entry.message.startsWith(prefix) ? VERB_OF[/^\w+/.exec(entry.message.slice(prefix.length))?.[0] ?? ''] : undefined;
      if (!verb) continue; // not a change of the job's own (e.g. a connector warning)
      const at = entry.at.getTime();
      if (verb === 'create') {
        if (state) problem(`created twice (entry ${entry.id})`);
        const periodMs = parsePeriod(entry.details?.['period']);
        if (periodMs === null) {
          problem(`its creation entry ${entry.id} carries no period`);
          break;
        }
        const enabled = entry.details?.['enabled'] !== false;
        state = { enabled, anchorMs: at, periodMs, open: enabled ? { firstDue: at + periodMs } : null, deleted: false };
        continue;
      }
      if (!state || state.deleted) {
        problem(`${verb} (entry ${entry.id}) of a job not created or already deleted`);
        break;
      }
      result.committed[verb] = (result.committed[verb] ?? 0) + 1;
      const upper = upperOf(entry, verb);
      switch (verb) {
        case 'pause':
          if (state.enabled) close(entry, upper);
          state.enabled = false;
          break;
        case 'delete':
          if (state.enabled) close(entry, upper);
          state.enabled = false;
          state.deleted = true;
          break;
        case 'resume':
          if (!state.enabled) {
            state.enabled = true;
            state.open = { firstDue: firstGridPointAfter(state.anchorMs, state.periodMs, at) };
          }
          break;
        case 'period': {
          const fields = Object.keys(entry.details ?? {}).filter((k) => !GRID_NEUTRAL.has(k) && k !== 'period');
          if (fields.length > 0) problem(`update (entry ${entry.id}) of ${fields.join(', ')}: not replayed here`);
          const periodMs = entry.details?.['period'] === undefined ? state.periodMs : parsePeriod(entry.details['period']);
          if (periodMs === null) {
            problem(`update (entry ${entry.id}) with an unreadable period`);
            break;
          }
          if (periodMs === state.periodMs) break; // the same period: no change, the grid stays
          if (state.enabled) close(entry, upper);
          state.anchorMs = at;
          state.periodMs = periodMs;
          if (state.enabled) state.open = { firstDue: at + periodMs, unsureUntil: upper };
          break;
        }
        default:
          break;
      }
    }

    const row = rowOf.get(jobId);
    if (!state) {
      if (!result.mismatches.some((m) => m.jobId === jobId)) problem('no creation entry');
      continue;
    }
    if (state.deleted) {
      if (row) problem('deleted by its entries, but its row is there');
      continue;
    }
    if (!row) {
      problem('its row is gone, but no delete entry says so');
      continue;
    }
    if (row.anchorAt.getTime() !== state.anchorMs || row.periodSeconds * 1000 !== state.periodMs || row.enabled !== state.enabled) {
      problem(
        `row anchor ${row.anchorAt.toISOString()} period ${row.periodSeconds} s enabled ${row.enabled}, replayed anchor ` +
          `${new Date(state.anchorMs).toISOString()} period ${state.periodMs / 1000} s enabled ${state.enabled}`,
      );
    }
    if ((row.nextDueAt.getTime() - state.anchorMs) % state.periodMs !== 0)
      problem(`next_due_at ${row.nextDueAt.toISOString()} is off its grid`);
    if (state.open) {
      const { firstDue, unsureUntil } = state.open;
      result.spans.push({
        jobId,
        firstDue: new Date(firstDue),
        lastDue: new Date(row.nextDueAt.getTime() - state.periodMs),
        periodMs: state.periodMs,
        ...(unsureUntil !== undefined ? { unsureUntil: new Date(unsureUntil) } : {}),
      });
    }
  }
  result.failedUncommitted = attempts.filter((a) => a.action !== 'runNow' && a.outcome !== 'ok' && !matched.has(a)).length;
  return result;
}

/** `H:MM:SS` (as the service formats it, or `h:m:s`) in ms, or null. */
export function parsePeriod(value: unknown): number | null {
  const match = typeof value === 'string' ? /^(\d+):(\d{1,2}):(\d{1,2})$/.exec(value) : null;
  if (!match) return null;
  return ((Number(match[1]) * 60 + Number(match[2])) * 60 + Number(match[3])) * 1000;
}

/** The first point of the grid `anchor + k·period` strictly after `t` (k ≥ 1 when t < anchor: the anchor itself is no due time). */
function firstGridPointAfter(anchorMs: number, periodMs: number, t: number): number {
  if (t < anchorMs) return anchorMs + periodMs;
  return anchorMs + (Math.floor((t - anchorMs) / periodMs) + 1) * periodMs;
}

/** The first point of the grid through `pointMs` at or after `t`. */
export function nextGridPoint(pointMs: number, periodMs: number, t: number): number {
  return pointMs + Math.ceil((t - pointMs) / periodMs) * periodMs;
}
