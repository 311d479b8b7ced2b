// The delivery check (SPEC §6): every segment of the subscribers (chaos/subscribers.ts) against
// the runs in the database. Each run started while a segment was receiving must have reached it
// whole — RUN_STARTED and its end event (RUN_SKIPPED for a SKIPPED run), once each, in order per
// job — unless the segment ended with EVENTS_INTERRUPTED (the instance said it could not vouch
// for delivery: the check starts again with the next segment, the gap not counted). A segment
// whose instance was killed ends when its socket closes; the events of its last moments are not
// required. Never a silent gap.
import type { Sql } from './audit.ts';
import type { Segment } from './subscribers.ts';

export interface RunFacts {
  id: string;
  jobId: string;
  status: string;
  /** The instance that claimed (or recorded) it. */
  instance: string | null;
  error: string | null;
  /** Epoch ms. */
  startedAt: number | null;
  finishedAt: number | null;
}

export interface DeliveryReport {
  /** Instance × transport. */
  subscribers: number;
  segments: number;
  events: number;
  /** Segments that ended with EVENTS_INTERRUPTED; each was followed by a new subscription (unless the window ended first). */
  interrupted: number;
  /** Interrupted segments with no later segment on their instance and transport although the window went on for 5 s. */
  notResubscribed: number;
  /** Segments ended because their instance's process was killed (the connection closed). */
  closedByKill: number;
  /** Segments ended otherwise while their instance was up: a close, a complete, or another error. */
  unexpectedEnds: number;
  /** Segments that received nothing before they ended: nothing was required of them. */
  unanchored: number;
  /** Events that had to arrive (per segment, run and kind). */
  required: number;
  /** … that did not, on segments never interrupted, other than those below: silent gaps. */
  missing: number;
  /**
   * … that did not, sent by an instance killed after them, and the last of that instance's events
   * before its kill as the segment saw them (a tail): committed, never sent, died with the process.
   * No subscription anywhere was told (SPEC §6 wants EVENTS_INTERRUPTED then too).
   */
  lostWithKill: number;
  duplicates: number;
  /** Run events of a job that arrived after those of a later run of the job, or a start after its own end. */
  outOfOrder: number;
  /** Run events whose kind or status disagrees with the run's row. */
  mismatched: number;
  examples: {
    missing: { segment: string; runId: string; jobId: string; kind: string; at: string; origin: string | null }[];
    lostWithKill: { segment: string; runId: string; jobId: string; kind: string; at: string; origin: string; killedAfterMs: number }[];
    duplicates: { segment: string; runId: string; kind: string }[];
    outOfOrder: {
      segment: string;
      jobId: string;
      runId: string;
      kind: string;
      after: string;
      status: string | null;
      error: string | null;
      instance: string | null;
    }[];
    mismatched: { segment: string; runId: string; kind: string; eventStatus: string | null; status: string | null }[];
    unexpectedEnds: { segment: string; end: string; at: string; error: string | null }[];
  };
}

const RUN_KINDS = new Set(['RUN_STARTED', 'RUN_SKIPPED', 'RUN_SUCCEEDED', 'RUN_FAILED']);
const phase = (kind: string) => (kind === 'RUN_STARTED' ? 'start' : kind === 'RUN_SKIPPED' ? 'skip' : 'end');
const name = (s: Segment) => `${s.instance} ${s.transport} #${s.index}`;
const isoOf = (ms: number | null) => (ms === null ? '-' : new Date(ms).toISOString());

/**
 * The instance that published a run's event, as far as the row tells: the run's instance for its
 * start, its SKIPPED record and the end it wrote itself; unknown (null) for an end another
 * instance wrote (a lease that expired, a job deleted).
 */
function originOf(run: RunFacts, p: string): string | null {
  if (p !== 'end') return run.instance;
  if ((run.error ?? '').startsWith('lease expired') || (run.status === 'CANCELLED' && run.error === 'job deleted')) return null;
  return run.instance;
}

/**
 * Checks the segments against the runs. `windowEnd` (database time) ends what is required of
 * segments still open then (they were drained past it). A segment whose connection closed is
 * required, of each instance's events, those `closeMarginMs` (default 2 s) older than the newest
 * it received from that instance (of events of unknown origin, than its newest event), and
 * nothing after it closed: what a process had not sent when its connection died ends with it,
 * which the client sees. (The margin: an event's time is its instance's "now" when it happened,
 * not when it was sent: a claim stamped earlier may commit, and be sent, after an end stamped later.) An event missing from an instance killed afterwards, later than every
 * event the segment received from it before the kill, died unsent with that instance: counted as
 * `lostWithKill`, apart from the other silent gaps. `killedPids`: processes the harness killed
 * (their segments' closes are expected).
 */
export function checkDelivery(input: {
  segments: Segment[];
  runs: RunFacts[];
  windowEnd: number;
  killedPids: Set<number>;
  /** The kills (instance, database time), to tell the events that may have died with their instance. */
  kills?: { instance: string; at: number }[];
  closeMarginMs?: number;
  subscribers: number;
}): DeliveryReport {
  const { segments, runs, windowEnd, killedPids } = input;
  const kills = input.kills ?? [];
  const margin = input.closeMarginMs ?? 2_000;
  const byId = new Map(runs.map((r) => [r.id, r]));
  const report: DeliveryReport = {
    subscribers: input.subscribers,
    segments: segments.length,
    events: segments.reduce((n, s) => n + s.events.length, 0),
    interrupted: 0,
    notResubscribed: 0,
    closedByKill: 0,
    unexpectedEnds: 0,
    unanchored: 0,
    required: 0,
    missing: 0,
    lostWithKill: 0,
    duplicates: 0,
    outOfOrder: 0,
    mismatched: 0,
    examples: { missing: [], lostWithKill: [], duplicates: [], outOfOrder: [], mismatched: [], unexpectedEnds: [] },
  };
  const example = <K extends keyof DeliveryReport['examples']>(key: K, value: DeliveryReport['examples'][K][number]) => {
    const list = report.examples[key] as DeliveryReport['examples'][K][number][];
    if (list.length < 10) list.push(value);
  };

  for (const segment of segments) {
    const label = name(segment);
    // How it ended.
    if (segment.end === 'interrupted') {
      report.interrupted++;
      const next = segments.some((s) => s.instance === segment.instance && s.transport === segment.transport && s.index > segment.index);
      if (!next && (segment.endedAt ?? windowEnd) < windowEnd - 5_000) report.notResubscribed++;
    } else if (segment.end === 'closed' && segment.pid !== null && killedPids.has(segment.pid)) {
      report.closedByKill++;
    } else if (segment.end !== 'open') {
      report.unexpectedEnds++;
      example('unexpectedEnds', {
        segment: label,
        end: segment.end,
        at: isoOf(segment.endedAt),
        error: segment.error ? `${segment.error.code ?? ''} ${segment.error.message}`.trim() : null,
      });
    }

    // What it received: once each, in order per job, agreeing with the rows.
    const seen = new Map<string, Set<string>>();
    const lastOfJob = new Map<string, number>();
    /** The times of the events received, per instance that sent them. */
    const fromOrigin = new Map<string | null, number[]>();
    for (const event of segment.events) {
      if (!RUN_KINDS.has(event.kind) || event.runId === null) continue;
      const kinds = seen.get(event.runId) ?? new Set<string>();
      const p = phase(event.kind);
      const sentBy = byId.has(event.runId) ? originOf(byId.get(event.runId)!, p) : null;
      const times = fromOrigin.get(sentBy);
      if (times) times.push(event.at);
      else fromOrigin.set(sentBy, [event.at]);
      if (kinds.has(p)) {
        report.duplicates++;
        example('duplicates', { segment: label, runId: event.runId, kind: event.kind });
      }
      const id = Number(event.runId);
      if (p !== 'skip') {
        // A SKIPPED run is recorded while the job's run goes on: its event may come between that run's start and end.
        const last = lastOfJob.get(event.jobId) ?? -Infinity;
        if (id < last || (p === 'start' && kinds.has('end'))) {
          report.outOfOrder++;
          const row = byId.get(event.runId);
          example('outOfOrder', {
            segment: label,
            jobId: event.jobId,
            runId: event.runId,
            kind: event.kind,
            after: String(last),
            status: row?.status ?? null,
            error: row?.error ?? null,
            instance: row?.instance ?? null,
          });
        }
        lastOfJob.set(event.jobId, Math.max(last, id));
      }
      kinds.add(p);
      seen.set(event.runId, kinds);
      const row = byId.get(event.runId);
      const expected = row && (p === 'start' ? 'RUNNING' : row.status);
      const kindFits =
        !row ||
        (p === 'skip'
          ? row.status === 'SKIPPED'
          : p === 'start'
            ? row.status !== 'SKIPPED'
            : event.kind === (row.status === 'SUCCEEDED' ? 'RUN_SUCCEEDED' : 'RUN_FAILED'));
      if (!row || !kindFits || event.status !== expected) {
        report.mismatched++;
        example('mismatched', {
          segment: label,
          runId: event.runId,
          kind: event.kind,
          eventStatus: event.status,
          status: row?.status ?? null,
        });
      }
    }

    // What it had to receive.
    if (segment.after === null) {
      report.unanchored++;
      continue;
    }
    if (segment.end === 'interrupted') continue; // the instance said so: the gap is not counted
    const newest = segment.events.reduce((max, e) => Math.max(max, e.at), -Infinity);
    for (const times of fromOrigin.values()) times.sort((a, b) => a - b);
    const newestFrom = (origin: string | null) => fromOrigin.get(origin)?.at(-1) ?? -Infinity;
    /** Whether the segment got an event from `origin` stamped within [from, to]. */
    const gotFrom = (origin: string, from: number, to: number) => {
      const times = fromOrigin.get(origin) ?? [];
      let lo = 0;
      let hi = times.length;
      while (lo < hi) {
        const mid = (lo + hi) >> 1;
        if (times[mid]! < from) lo = mid + 1;
        else hi = mid;
      }
      return lo < times.length && times[lo]! <= to;
    };
    /** Whether the segment owes this event: all until the window's end while open; once closed, what came before the newest it got from the same sender. */
    const owed = (origin: string | null, at: number) => {
      if (segment.end === 'open') return at <= windowEnd;
      const newestSent = origin === null || !fromOrigin.has(origin) ? newest : newestFrom(origin);
      return at <= Math.min(segment.endedAt ?? windowEnd, newestSent) - margin;
    };
    const need = (run: RunFacts, kind: string, at: number | null) => {
      const origin = originOf(run, phase(kind));
      if (at === null || !owed(origin, at)) return;
      report.required++;
      if (seen.get(run.id)?.has(phase(kind))) return;
      // Sent by an instance killed afterwards, and later than all this segment got from it before the kill: died with it.
      const kill = origin === null ? undefined : kills.find((k) => k.instance === origin && k.at >= at && !gotFrom(origin, at, k.at));
      if (kill) {
        report.lostWithKill++;
        example('lostWithKill', {
          segment: label,
          runId: run.id,
          jobId: run.jobId,
          kind,
          at: isoOf(at),
          origin: origin!,
          killedAfterMs: kill.at - at,
        });
        return;
      }
      report.missing++;
      example('missing', { segment: label, runId: run.id, jobId: run.jobId, kind, at: isoOf(at), origin });
    };
    for (const run of runs) {
      if (Number(run.id) <= segment.after) continue;
      if (run.status === 'SKIPPED') need(run, 'RUN_SKIPPED', run.finishedAt);
      else {
        need(run, 'RUN_STARTED', run.startedAt);
        if (run.status !== 'RUNNING') need(run, run.status === 'SUCCEEDED' ? 'RUN_SUCCEEDED' : 'RUN_FAILED', run.finishedAt);
      }
    }
  }
  return report;
}

/** The runs of the audited jobs, for `checkDelivery`. */
export async function runFacts(sql: Sql, jobPrefix: string): Promise<RunFacts[]> {
  const like = `${jobPrefix.replace(/[\\%_]/g, (c) => `\\${c}`)}%`;
  const rows = await sql<
    {
      id: string;
      jobId: string;
      status: string;
      instance: string | null;
      error: string | null;
      startedAt: Date | null;
      finishedAt: Date | null;
    }[]
  >`
    select id::text, job_id, status, instance, error, started_at, finished_at from job_runs where job_id like ${like} order by job_runs.id`;
  return rows.map((r) => ({
    id: r.id,
    jobId: r.jobId,
    status: r.status,
    instance: r.instance,
    error: r.error,
    startedAt: r.startedAt?.getTime() ?? null,
    finishedAt: r.finishedAt?.getTime() ?? null,
  }));
}
