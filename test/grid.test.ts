import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { planClaim, firstGridPointAfter, initialSchedule } from '../src/scheduling/grid.ts';

describe('grid', () => {
  it('should put the first due time one period after creation when there is no startAt', () => {
    assert.deepEqual(initialSchedule(5000, 1_000_000), { anchorMs: 1_000_000, nextDueMs: 1_005_000 });
  });

  it('should start at a future startAt itself', () => {
    assert.deepEqual(initialSchedule(5000, 1_000_000, 2_000_000), { anchorMs: 2_000_000, nextDueMs: 2_000_000 });
  });

  it('should start at the first grid point after now when startAt is past', () => {
    assert.deepEqual(initialSchedule(5000, 1_012_000, 1_000_000), { anchorMs: 1_000_000, nextDueMs: 1_015_000 });
    // A grid point equal to now is not "after now".
    assert.deepEqual(initialSchedule(5000, 1_010_000, 1_000_000), { anchorMs: 1_000_000, nextDueMs: 1_015_000 });
  });

  it('should find the first grid point strictly after a time', () => {
    assert.equal(firstGridPointAfter(0, 10, 0), 10);
    assert.equal(firstGridPointAfter(0, 10, 9), 10);
    assert.equal(firstGridPointAfter(0, 10, 10), 20);
    assert.equal(firstGridPointAfter(100, 10, 50), 100);
  });

  it('should claim nothing before the due time', () => {
    assert.equal(planClaim(10_000, 1000, 9_999), null);
  });

  it('should claim a due time on time with nothing missed and keep the grid', () => {
    assert.deepEqual(planClaim(10_000, 1000, 10_000), { scheduledMs: 10_000, missed: 0, nextDueMs: 11_000 });
    // A late claim within one period is still that due time; the next stays on the grid.
    assert.deepEqual(planClaim(10_000, 1000, 10_999), { scheduledMs: 10_000, missed: 0, nextDueMs: 11_000 });
  });

  it('should coalesce every overdue due time into one run on the latest of them', () => {
    // Due at 10, 11, 12, 13 s; claimed at 13.5 s: one run for 13 s standing for three missed.
    assert.deepEqual(planClaim(10_000, 1000, 13_500), { scheduledMs: 13_000, missed: 3, nextDueMs: 14_000 });
  });
});
