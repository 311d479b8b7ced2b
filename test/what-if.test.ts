// The what-if of an outage (SPEC §3b, simulateDowntime) and the window helpers it asks
// schedule.ts for, as pure functions tested with literal instants.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { DomainError } from '../src/errors.ts';
import { type DueRule, firstDueIn, lastDueIn } from '../src/scheduling/schedule.ts';
import { downtimeImpact, validateWindow } from '../src/scheduling/what-if.ts';

const at = (iso: string) => Date.parse(iso);
const iso = (ms: number | null) => (ms === null ? null : new Date(ms).toISOString());

const every = (period: string, anchor: string, end: string | null = null): DueRule => {
  const [h, m, s] = period.split(':').map(Number) as [number, number, number];
  return {
    periodMs: ((h * 60 + m) * 60 + s) * 1000,
    cron: null,
    timeZone: null,
    anchorMs: at(anchor),
    endMs: end === null ? null : at(end),
  };
};
const cron = (pattern: string, timeZone: string, start: string, end: string | null = null): DueRule => ({
  periodMs: null,
  cron: pattern,
  timeZone,
  anchorMs: at(start),
  endMs: end === null ? null : at(end),
});

/**
 * An impact as text, for one assertion per case; the job's next due time is its rule's first
 * (the anchor on a grid, as with startAt) unless given.
 */
function impact(rule: DueRule, misfire: 'RUN_ONCE' | 'SKIP', from: string, to: string, nextDue?: string | null) {
  const nextDueMs = nextDue === undefined ? rule.anchorMs : nextDue === null ? null : at(nextDue);
  const result = downtimeImpact({ rule, misfire, nextDueMs }, at(from), at(to));
  return result && { ...result, firstDueMs: iso(result.firstDueMs), lastDueMs: iso(result.lastDueMs) };
}

describe('the first and last due time in a window', () => {
  it('should find them on a period grid, both ends inclusive, none before the anchor or after the end', () => {
    const rule = every('0:10:0', '2026-01-01T00:05:00Z');
    assert.equal(iso(firstDueIn(rule, at('2026-01-01T01:00:00Z'), at('2026-01-01T02:00:00Z'))), '2026-01-01T01:05:00.000Z');
    assert.equal(iso(lastDueIn(rule, at('2026-01-01T01:00:00Z'), at('2026-01-01T02:00:00Z'))), '2026-01-01T01:55:00.000Z');
    assert.equal(iso(firstDueIn(rule, at('2026-01-01T01:05:00Z'), at('2026-01-01T01:05:00Z'))), '2026-01-01T01:05:00.000Z');
    assert.equal(iso(lastDueIn(rule, at('2026-01-01T01:05:00Z'), at('2026-01-01T01:05:00Z'))), '2026-01-01T01:05:00.000Z');
    assert.equal(firstDueIn(rule, at('2026-01-01T01:06:00Z'), at('2026-01-01T01:14:59Z')), null);
    assert.equal(lastDueIn(rule, at('2026-01-01T01:06:00Z'), at('2026-01-01T01:14:59Z')), null);
    assert.equal(iso(firstDueIn(rule, at('2025-12-31T00:00:00Z'), at('2026-01-01T00:30:00Z'))), '2026-01-01T00:05:00.000Z');
    const ending = every('0:10:0', '2026-01-01T00:05:00Z', '2026-01-01T00:40:00Z');
    assert.equal(iso(lastDueIn(ending, at('2026-01-01T00:00:00Z'), at('2026-01-01T02:00:00Z'))), '2026-01-01T00:35:00.000Z');
    assert.equal(firstDueIn(ending, at('2026-01-01T00:36:00Z'), at('2026-01-01T02:00:00Z')), null);
  });

  it('should find them for a cron in its zone, the spring-forward gap time on the instant after the gap', () => {
    const rule = cron('30 2 * * *', 'Europe/Berlin', '2027-03-01T00:00:00Z');
    const [from, to] = [at('2027-03-27T00:00:00Z'), at('2027-03-29T00:00:00Z')];
    assert.equal(iso(firstDueIn(rule, from, to)), '2027-03-27T01:30:00.000Z');
    // 02:30 does not exist on the 28th: it runs at 03:00 CEST, 01:00Z.
    assert.equal(iso(lastDueIn(rule, from, at('2027-03-28T12:00:00Z'))), '2027-03-28T01:00:00.000Z');
    assert.equal(iso(lastDueIn(rule, from, to)), '2027-03-28T01:00:00.000Z');
    assert.equal(lastDueIn(rule, at('2027-03-28T01:00:01Z'), at('2027-03-29T00:29:59Z')), null);
    assert.equal(
      lastDueIn(
        cron('0 * * * *', 'UTC', '2027-01-01T00:00:00Z', '2027-01-01T05:00:00Z'),
        at('2027-01-01T05:00:01Z'),
        at('2027-01-02T00:00:00Z'),
      ),
      null,
    );
    assert.equal(firstDueIn(rule, at('2026-01-01T00:00:00Z'), at('2027-02-28T00:00:00Z')), null, 'none before its start');
  });
});

describe('simulateDowntime: one job', () => {
  it('should coalesce the due times of an outage into one run under RUN_ONCE, and skip them all under SKIP', () => {
    const rule = every('0:10:0', '2026-01-01T00:00:00Z');
    assert.deepEqual(impact(rule, 'RUN_ONCE', '2026-01-01T01:00:00Z', '2026-01-01T02:00:00Z'), {
      dueTimes: 6,
      wouldRun: 1,
      wouldSkip: 0,
      firstDueMs: '2026-01-01T01:00:00.000Z',
      lastDueMs: '2026-01-01T01:50:00.000Z',
    });
    assert.deepEqual(impact(rule, 'SKIP', '2026-01-01T01:00:00Z', '2026-01-01T02:00:00Z'), {
      dueTimes: 6,
      wouldRun: 0,
      wouldSkip: 6,
      firstDueMs: '2026-01-01T01:00:00.000Z',
      lastDueMs: '2026-01-01T01:50:00.000Z',
    });
  });

  it('should count the window half-open: a due time at `from` is in it, one at `to` is not', () => {
    const rule = every('1:0:0', '2026-01-01T00:00:00Z');
    assert.equal(impact(rule, 'RUN_ONCE', '2026-01-01T03:00:00Z', '2026-01-01T05:00:00Z')?.dueTimes, 2);
    assert.equal(impact(rule, 'RUN_ONCE', '2026-01-01T03:00:00.001Z', '2026-01-01T04:00:00Z'), null);
    assert.equal(impact(rule, 'RUN_ONCE', '2026-01-01T03:00:00Z', '2026-01-01T03:00:00.001Z')?.dueTimes, 1);
  });

  it('should run a lone due time under SKIP too: claimed at `to` it is late by less than a period, no misfire', () => {
    // The nightly 02:30 job and a maintenance window 01:00–03:00 UTC: back at 03:00, one due time is overdue.
    const nightly = cron('30 2 * * *', 'UTC', '2026-01-01T00:00:00Z');
    assert.deepEqual(impact(nightly, 'SKIP', '2026-06-01T01:00:00Z', '2026-06-01T03:00:00Z'), {
      dueTimes: 1,
      wouldRun: 1,
      wouldSkip: 0,
      firstDueMs: '2026-06-01T02:30:00.000Z',
      lastDueMs: '2026-06-01T02:30:00.000Z',
    });
    // With a due time exactly at `to` as well, two are overdue at the claim: a misfire, both skipped.
    const hourly = every('1:0:0', '2026-01-01T00:00:00Z');
    assert.deepEqual(impact(hourly, 'SKIP', '2026-01-01T10:00:00Z', '2026-01-01T11:00:00Z'), {
      dueTimes: 1,
      wouldRun: 0,
      wouldSkip: 1,
      firstDueMs: '2026-01-01T10:00:00.000Z',
      lastDueMs: '2026-01-01T10:00:00.000Z',
    });
    assert.deepEqual(impact(hourly, 'SKIP', '2026-01-01T10:00:00Z', '2026-01-01T10:59:59.999Z')?.wouldRun, 1);
  });

  it('should count a cron job over a daylight-saving change in its zone, each wall time once', () => {
    // Every 30 minutes in Berlin on 2027-10-31: 02:00 and 02:30 happen twice, and run once each.
    const rule = cron('*/30 * * * *', 'Europe/Berlin', '2027-01-01T00:00:00Z');
    const result = impact(rule, 'RUN_ONCE', '2027-10-30T22:00:00Z', '2027-10-31T23:00:00Z');
    assert.deepEqual(result, {
      dueTimes: 48,
      wouldRun: 1,
      wouldSkip: 0,
      firstDueMs: '2027-10-30T22:00:00.000Z',
      lastDueMs: '2027-10-31T22:30:00.000Z',
    });
  });

  it('should leave out what lies before a job’s start or after its end', () => {
    const ended = every('0:10:0', '2026-01-01T00:00:00Z', '2026-01-01T00:30:00Z');
    assert.equal(impact(ended, 'RUN_ONCE', '2026-01-01T01:00:00Z', '2026-01-01T02:00:00Z'), null);
    assert.deepEqual(impact(ended, 'SKIP', '2026-01-01T00:15:00Z', '2026-01-01T02:00:00Z'), {
      dueTimes: 2,
      wouldRun: 0,
      wouldSkip: 2,
      firstDueMs: '2026-01-01T00:20:00.000Z',
      lastDueMs: '2026-01-01T00:30:00.000Z',
    });
    assert.equal(impact(ended, 'RUN_ONCE', '2026-01-01T00:15:00Z', '2026-01-01T02:00:00Z', null), null, 'an ended job has none left');
    const later = cron('0 * * * *', 'UTC', '2026-03-01T00:00:00Z');
    assert.equal(impact(later, 'RUN_ONCE', '2026-02-01T00:00:00Z', '2026-02-28T00:00:00Z'), null);
    assert.equal(impact(later, 'RUN_ONCE', '2026-02-28T22:30:00Z', '2026-03-01T02:30:00Z')?.dueTimes, 3);
  });

  it('should count nothing behind the job’s next due time: a grid started without startAt has none at its anchor', () => {
    // Created at 00:00 with a period of 10 minutes: due at 00:10, 00:20, ...
    const created = every('0:10:0', '2026-01-01T00:00:00Z');
    assert.deepEqual(impact(created, 'RUN_ONCE', '2025-12-31T23:00:00Z', '2026-01-01T01:00:00Z', '2026-01-01T00:10:00Z'), {
      dueTimes: 5,
      wouldRun: 1,
      wouldSkip: 0,
      firstDueMs: '2026-01-01T00:10:00.000Z',
      lastDueMs: '2026-01-01T00:50:00.000Z',
    });
    assert.equal(impact(created, 'SKIP', '2026-01-01T00:00:00Z', '2026-01-01T00:10:00Z', '2026-01-01T00:10:00Z'), null);
    // Runs up to 00:40 are behind the job: the window's earlier part lies before its next due time.
    assert.equal(impact(created, 'SKIP', '2026-01-01T00:00:00Z', '2026-01-01T01:00:00Z', '2026-01-01T00:50:00Z')?.dueTimes, 1);
  });

  it('should take a whole leap year of a every-minute cron without listing it', () => {
    const rule = cron('* * * * *', 'Europe/Moscow', '2027-01-01T00:00:00Z');
    const result = impact(rule, 'RUN_ONCE', '2028-01-01T00:00:00Z', '2028-12-31T00:00:00Z');
    assert.equal(result?.dueTimes, 365 * 24 * 60);
  });
});

describe('simulateDowntime: the window', () => {
  const refused = (from: string, to: string) =>
    assert.throws(
      () => validateWindow(at(from), at(to)),
      (error: unknown) => error instanceof DomainError && error.code === 'BAD_USER_INPUT' && error.extensions['field'] === 'to',
    );

  it('should take a window of up to 366 days, `from` before `to`', () => {
    validateWindow(at('2028-01-01T00:00:00Z'), at('2029-01-01T00:00:00Z'));
    validateWindow(at('2026-01-01T00:00:00Z'), at('2026-01-01T00:00:00.001Z'));
  });

  it('should refuse a longer window, an empty one and one that ends before it starts, on field `to`', () => {
    refused('2028-01-01T00:00:00Z', '2029-01-01T00:00:00.001Z');
    refused('2026-01-01T00:00:00Z', '2026-01-01T00:00:00Z');
    refused('2026-01-02T00:00:00Z', '2026-01-01T00:00:00Z');
    refused('0001-01-01T00:00:00Z', '9999-12-31T23:59:59Z');
  });
});
