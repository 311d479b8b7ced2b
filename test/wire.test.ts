import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { LogRow, RunRow } from '../src/db/rows.ts';
import { decode, decodeAll, encode, encodeLost, pack } from '../src/events/wire.ts';
import type { TopicEvent } from '../src/events/topics.ts';

describe('event wire format', () => {
  it('should turn the Date fields of a payload and of its row back into Dates', () => {
    const run: RunRow = {
      id: '7',
      jobId: 'j',
      trigger: 'SCHEDULE',
      scheduledAt: new Date('2026-01-31T08:00:00.000Z'),
      startedAt: new Date('2026-01-31T08:00:00.120Z'),
      finishedAt: null,
      status: 'RUNNING',
      error: null,
      instance: 'a',
      missed: 0,
      leaseToken: '00000000-0000-4000-8000-000000000000',
      leaseExpiresAt: new Date('2026-01-31T08:00:15.120Z'),
      cancelRequestedAt: null,
      attempt: 1,
      retryOf: null,
    };
    const event: TopicEvent = { topic: 'run:started', payload: { at: new Date('2026-01-31T08:00:00.125Z'), run } };
    assert.deepEqual(decode(encode('a', event, 1)), { origin: 'a', seq: 1, event });
  });

  it("should leave a log entry's details as the operation wrote them, date-like keys included", () => {
    const details = { at: 'soon', scheduledAt: '2026-01-31T08:00:00.000Z', nested: { startedAt: 'x' } };
    const entry: LogRow = {
      id: '1',
      at: new Date('2026-01-31T08:00:01.000Z'),
      level: 'WARNING',
      message: 'm',
      jobId: 'j',
      runId: null,
      details,
    };
    const decoded = decode(encode('a', { topic: 'log:added', payload: { entry } }));
    assert.deepEqual(decoded, { origin: 'a', event: { topic: 'log:added', payload: { entry } } });
  });

  it('should carry several notifications in one payload, in order, each decoded as a whole one', () => {
    const entry = (id: string): LogRow => ({
      id,
      at: new Date('2027-10-31T00:30:00.000Z'),
      level: 'ERROR',
      message: `Выгрузка ${id} не удалась`,
      jobId: 'выгрузка',
      runId: '9',
      details: { at: 'soon' },
    });
    const texts = [
      encode('a', { topic: 'log:added', payload: { entry: entry('1') } }, 1),
      encode('a', { topic: 'log:added', payload: { entry: entry('2') } }, 2),
      encodeLost('a', 3, 'gave up'),
    ];
    assert.deepEqual(decodeAll(pack(texts)), [
      { origin: 'a', seq: 1, event: { topic: 'log:added', payload: { entry: entry('1') } } },
      { origin: 'a', seq: 2, event: { topic: 'log:added', payload: { entry: entry('2') } } },
      { origin: 'a', seq: 3, lost: 'gave up' },
    ]);
    assert.equal(pack(texts.slice(0, 1)), texts[0], 'one notification travels as it is');
    assert.deepEqual(decodeAll(texts[0]!), [decode(texts[0]!)]);
  });
});
