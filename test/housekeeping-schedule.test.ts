import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { latestDue, nextDay, parseTimeOfDay, retryDelayMs } from '../src/housekeeping/schedule.ts';

const at = (iso: string) => Date.parse(iso);

describe('when the daily housekeeping is due', () => {
  it('should read HH:MM (or H:MM) from 00:00 to 23:59 and nothing else', () => {
    assert.deepEqual(parseTimeOfDay('02:30'), { hour: 2, minute: 30 });
    assert.deepEqual(parseTimeOfDay('2:30'), { hour: 2, minute: 30 });
    assert.deepEqual(parseTimeOfDay('23:59'), { hour: 23, minute: 59 });
    assert.deepEqual(parseTimeOfDay('00:00'), { hour: 0, minute: 0 });
    for (const bad of ['24:00', '12:60', '2.30', '0230', '02:3', '02:30:00', '', 'noon', '-1:00'])
      assert.equal(parseTimeOfDay(bad), null, bad);
  });

  it("should find today's housekeeping due once its time has passed, and yesterday's before", () => {
    const twoThirty = { hour: 2, minute: 30 };
    assert.deepEqual(latestDue(at('2026-03-10T02:30:00.000Z'), twoThirty), { day: '2026-03-10', dueMs: at('2026-03-10T02:30:00.000Z') });
    assert.deepEqual(latestDue(at('2026-03-10T23:59:59.999Z'), twoThirty), { day: '2026-03-10', dueMs: at('2026-03-10T02:30:00.000Z') });
    assert.deepEqual(latestDue(at('2026-03-10T02:29:59.999Z'), twoThirty), { day: '2026-03-09', dueMs: at('2026-03-09T02:30:00.000Z') });
    assert.deepEqual(latestDue(at('2026-01-01T00:00:00.000Z'), twoThirty), { day: '2025-12-31', dueMs: at('2025-12-31T02:30:00.000Z') });
    assert.deepEqual(latestDue(at('2026-01-01T00:00:00.000Z'), { hour: 0, minute: 0 }), {
      day: '2026-01-01',
      dueMs: at('2026-01-01T00:00:00.000Z'),
    });
  });

  it('should be due again at the same time the next day', () => {
    assert.equal(nextDay(latestDue(at('2026-02-28T12:00:00.000Z'), { hour: 2, minute: 30 })), at('2026-03-01T02:30:00.000Z'));
  });

  it('should try again after 1, 2, 4 … minutes, at most 30', () => {
    assert.deepEqual(
      [1, 2, 3, 4, 5, 6, 20].map((failures) => retryDelayMs(failures) / 60_000),
      [1, 2, 4, 8, 16, 30, 30],
    );
  });
});
