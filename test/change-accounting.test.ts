import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { accountChange, changeSkippedMessage, clashLogEntry, nextDueAfter, type Schedule } from '../src/scheduling/changes.ts';

/** A period job's schedule: the grid anchor + k·period, its oldest unclaimed due time. */
const grid = (anchorMs: number, periodMs: number, nextDueMs: number, enabled = true): Schedule => ({
  enabled,
  rule: { periodMs, cron: null, timeZone: null, anchorMs, endMs: null },
  nextDueMs,
});

// A job on the grid 10 000 + k·1000 whose oldest unclaimed due time is 13 000.
const enabled: Schedule = grid(10_000, 1000, 13_000, true);
const paused = (s: Schedule): Schedule => ({ ...s, enabled: false });

describe('what a change leaves behind (SPEC §3: a change never loses a due time)', () => {
  it('records nothing when the database clock has not reached the next due time', () => {
    assert.deepEqual(accountChange(enabled, paused(enabled), 12_999), { skipped: null, nextDueMs: 13_000 });
  });

  it('records a due time the change commits a few milliseconds after, and moves a pause past it', () => {
    assert.deepEqual(accountChange(enabled, paused(enabled), 13_003), { skipped: { scheduledMs: 13_000, missed: 0 }, nextDueMs: 14_000 });
    // Exactly at the due time: it is due.
    assert.deepEqual(accountChange(enabled, paused(enabled), 13_000).skipped, { scheduledMs: 13_000, missed: 0 });
  });

  it('records a backlog as one SKIPPED run on the latest due time, missed counting the others', () => {
    // 13 000, 14 000, 15 000 and 16 000 are due at 16 400 (say after a database outage).
    assert.deepEqual(accountChange(enabled, paused(enabled), 16_400), { skipped: { scheduledMs: 16_000, missed: 3 }, nextDueMs: 17_000 });
  });

  it('records the backlog on the old grid when the period changes, and keeps the new grid', () => {
    // Re-anchored at 13 500 (the instance's clock) with a 4 s period: first due 17 500.
    const faster: Schedule = grid(13_500, 4000, 17_500, true);
    assert.deepEqual(accountChange(enabled, faster, 14_002), { skipped: { scheduledMs: 14_000, missed: 1 }, nextDueMs: 17_500 });
  });

  it('records the backlog when the start moves, also onto the same grid', () => {
    const later: Schedule = grid(60_000, 1000, 60_000, true);
    assert.deepEqual(accountChange(enabled, later, 13_010), { skipped: { scheduledMs: 13_000, missed: 0 }, nextDueMs: 60_000 });
    // startAt set to the current anchor: same grid, but the next due time jumps past now (15 000 by
    // an instance clock behind the database's), so 13 000..15 000 are accounted.
    const restarted: Schedule = { ...enabled, nextDueMs: 15_000 };
    assert.deepEqual(accountChange(enabled, restarted, 15_001), { skipped: { scheduledMs: 15_000, missed: 2 }, nextDueMs: 16_000 });
  });

  it('records the backlog of a deleted job', () => {
    assert.deepEqual(accountChange(enabled, null, 14_500), { skipped: { scheduledMs: 14_000, missed: 1 }, nextDueMs: null });
    assert.deepEqual(accountChange(paused(enabled), null, 14_500), { skipped: null, nextDueMs: null });
  });

  it('records nothing for a change that keeps the schedule (a name, a call, a timeout)', () => {
    assert.deepEqual(accountChange(enabled, { ...enabled }, 16_400), { skipped: null, nextDueMs: 13_000 });
  });

  it('records nothing for a paused job: its due times are not due, also when it resumes', () => {
    const resumed: Schedule = { ...enabled, nextDueMs: 17_000 };
    assert.deepEqual(accountChange(paused(enabled), resumed, 16_400), { skipped: null, nextDueMs: 17_000 });
    const rescheduled: Schedule = grid(16_000, 5000, 21_000, false);
    assert.deepEqual(accountChange(paused(enabled), rescheduled, 16_400), { skipped: null, nextDueMs: 21_000 });
  });

  it('never leaves the next due time at or before a due time already recorded', () => {
    // Paused at 13 003: 13 000 recorded. Resumed at once by an instance whose clock (12 990) is
    // behind the database's: the first grid point after its now, 13 000, has its SKIPPED run already.
    const resumedEarly: Schedule = { ...enabled, nextDueMs: 13_000 };
    assert.deepEqual(accountChange(paused(enabled), resumedEarly, 13_010, 13_000), { skipped: null, nextDueMs: 14_000 });
    // A new start exactly on the due time this change records.
    const onIt: Schedule = grid(13_000, 2000, 13_000, true);
    assert.deepEqual(accountChange(enabled, onIt, 13_000), { skipped: { scheduledMs: 13_000, missed: 0 }, nextDueMs: 15_000 });
    // A re-created id whose old runs go up to 20 000.
    assert.equal(nextDueAfter(grid(10_000, 3000, 13_000), 20_000), 22_000);
    assert.equal(nextDueAfter(grid(10_000, 3000, 13_000), null), 13_000);
  });

  it('names the change and counts the due times in its WARNING', () => {
    assert.equal(changeSkippedMessage('x', { missed: 0 }, 'the job was paused'), '1 due time of job "x" was not run: the job was paused');
    assert.equal(
      changeSkippedMessage('x', { missed: 1 }, 'the job was deleted'),
      '2 due times of job "x" were not run: the job was deleted',
    );
  });

  it('says which due time of which job a clash in the claim left without a run', () => {
    const entry = clashLogEntry({ jobId: 'x', scheduledAt: new Date(13_000), missed: 2 }, 13_050);
    assert.equal(entry.level, 'WARNING');
    assert.equal(entry.jobId, 'x');
    assert.equal(
      entry.message,
      'Job "x" already has a run for its due time 1970-01-01T00:00:13.000Z; that due time (with 2 earlier due times coalesced into it) was not run again',
    );
  });
});
