import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { Cron } from 'croner';
import fc from 'fast-check';
import { DomainError } from '../src/errors.ts';
import {
  type CronDue,
  type CronSpec,
  cronCountBetween,
  cronDueBetween,
  cronLastBetween,
  cronNextAfter,
  formatLocalTime,
  validateCron,
  validateTimeZone,
} from '../src/scheduling/cron.ts';

const at = (iso: string) => Date.parse(iso);

/** One due time as a line: the instant, the same instant in the zone, and its adjustment. */
function line(due: CronDue, timeZone: string): string {
  return [new Date(due.atMs).toISOString(), formatLocalTime(due.atMs, timeZone), due.dst].filter(Boolean).join(' ');
}

function dueLines(cron: string, timeZone: string, from: string, to: string): string[] {
  return cronDueBetween({ cron, timeZone }, at(from), at(to), 1000).map((due) => line(due, timeZone));
}

/** The wall-clock time of a due time in its zone, without the offset ('2027-10-31T02:15'). */
const wallOf = (due: CronDue, timeZone: string) => formatLocalTime(due.atMs, timeZone).slice(0, 16);

/** Every quarter-hour of wall-clock time from `first` to `last`, both included. */
function quarterHours(first: string, last: string): string[] {
  const walls: string[] = [];
  for (let ms = at(`${first}Z`); ms <= at(`${last}Z`); ms += 15 * 60_000) walls.push(new Date(ms).toISOString().slice(0, 16));
  return walls;
}

function rejects(fn: () => unknown, field: string, message?: RegExp) {
  assert.throws(fn, (error: unknown) => {
    assert.ok(error instanceof DomainError, `expected a DomainError, got ${String(error)}`);
    assert.equal(error.extensions['code'], 'BAD_USER_INPUT');
    assert.equal(error.extensions['field'], field);
    if (message) assert.match(error.message, message);
    return true;
  });
}

describe('cron validation', () => {
  it('should accept 5 and 6 fields and return the text trimmed', () => {
    assert.equal(validateCron('  30 2 * * *  '), '30 2 * * *');
    assert.equal(validateCron('*/10 * * * * *'), '*/10 * * * * *');
    assert.equal(validateCron('0 9-17/2 1,15 JAN-MAR MON-FRI'), '0 9-17/2 1,15 JAN-MAR MON-FRI');
    assert.equal(validateCron('0 0 L * *'), '0 0 L * *');
    assert.equal(validateCron('0 0 15W * *'), '0 0 15W * *');
    assert.equal(validateCron('0 0 * * FRI#2'), '0 0 * * FRI#2');
  });

  it('should put a 5-field pattern on whole minutes and a 6-field one on its seconds', () => {
    const utc = (cron: string) => cronDueBetween({ cron, timeZone: 'UTC' }, at('2027-01-01T00:00:00Z'), at('2027-01-01T00:01:00Z'), 10);
    assert.deepEqual(
      utc('* * * * *').map((due) => due.atMs),
      [at('2027-01-01T00:00:00Z'), at('2027-01-01T00:01:00Z')],
    );
    assert.deepEqual(
      utc('*/20 * * * * *').map((due) => due.atMs),
      [at('2027-01-01T00:00:00Z'), at('2027-01-01T00:00:20Z'), at('2027-01-01T00:00:40Z'), at('2027-01-01T00:01:00Z')],
    );
  });

  it('should accept the nicknames', () => {
    const next = (cron: string) =>
      new Date(cronNextAfter({ cron: validateCron(cron), timeZone: 'UTC' }, at('2027-05-12T10:30:00Z'))!.atMs).toISOString();
    assert.equal(next('@hourly'), '2027-05-12T11:00:00.000Z');
    assert.equal(next('@daily'), '2027-05-13T00:00:00.000Z');
    assert.equal(next('@midnight'), '2027-05-13T00:00:00.000Z');
    assert.equal(next('@weekly'), '2027-05-16T00:00:00.000Z'); // the next Sunday
    assert.equal(next('@monthly'), '2027-06-01T00:00:00.000Z');
    assert.equal(next('@yearly'), '2028-01-01T00:00:00.000Z');
    assert.equal(next('@annually'), '2028-01-01T00:00:00.000Z');
  });

  it('should read month and weekday names', () => {
    // Mondays of January 2027 at 09:00.
    const mondays = cronDueBetween({ cron: '0 9 * JAN MON', timeZone: 'UTC' }, at('2026-12-01T00:00Z'), at('2027-03-01T00:00Z'), 10);
    assert.deepEqual(
      mondays.map((due) => new Date(due.atMs).toISOString().slice(0, 10)),
      ['2027-01-04', '2027-01-11', '2027-01-18', '2027-01-25'],
    );
  });

  it('should read L, W and #', () => {
    const days = (cron: string, from: string, to: string) =>
      cronDueBetween({ cron, timeZone: 'UTC' }, at(from), at(to), 10).map((due) => new Date(due.atMs).toISOString().slice(0, 10));
    assert.deepEqual(days('0 0 L * *', '2027-01-15T00:00Z', '2027-04-15T00:00Z'), ['2027-01-31', '2027-02-28', '2027-03-31']);
    assert.deepEqual(days('0 0 L 2 *', '2027-01-01T00:00Z', '2028-12-31T00:00Z'), ['2027-02-28', '2028-02-29']);
    // 15 May 2027 is a Saturday (→ Friday 14th), 15 August a Sunday (→ Monday 16th).
    assert.deepEqual(days('0 0 15W * *', '2027-05-01T00:00Z', '2027-08-31T00:00Z'), [
      '2027-05-14',
      '2027-06-15',
      '2027-07-15',
      '2027-08-16',
    ]);
    assert.deepEqual(days('0 0 * * FRI#2', '2027-05-01T00:00Z', '2027-07-31T00:00Z'), ['2027-05-14', '2027-06-11', '2027-07-09']);
    assert.deepEqual(days('0 0 * * 5L', '2027-05-01T00:00Z', '2027-07-31T00:00Z'), ['2027-05-28', '2027-06-25', '2027-07-30']);
  });

  it('should match a day on either day field when both are restricted, as Vixie cron does', () => {
    const days = (cron: string) =>
      cronDueBetween({ cron, timeZone: 'UTC' }, at('2027-08-01T00:00Z'), at('2027-08-31T00:00Z'), 40).map((due) =>
        new Date(due.atMs).toISOString().slice(8, 10),
      );
    // August 2027: Fridays are the 6th, 13th, 20th and 27th; the 1st is a Sunday.
    assert.deepEqual(days('0 0 1,15 * FRI'), ['01', '06', '13', '15', '20', '27']);
    assert.deepEqual(days('0 0 * * FRI'), ['06', '13', '20', '27']);
    assert.deepEqual(days('0 0 1,15 * *'), ['01', '15']);
  });

  it('should refuse 7 fields, empty, garbage and never-matching patterns, naming the field', () => {
    rejects(() => validateCron('0 0 0 1 1 * 2027'), 'cron', /7 fields/);
    rejects(() => validateCron(''), 'cron', /empty/);
    rejects(() => validateCron('   '), 'cron', /empty/);
    rejects(() => validateCron('garbage'), 'cron', /garbage/);
    rejects(() => validateCron('1 2 3 4'), 'cron');
    rejects(() => validateCron('* * * * * * * *'), 'cron');
    rejects(() => validateCron('61 * * * *'), 'cron');
    rejects(() => validateCron('0 25 * * *'), 'cron');
    rejects(() => validateCron('0 0 * FOO *'), 'cron');
    rejects(() => validateCron('5/15 * * * *'), 'cron');
    rejects(() => validateCron('@reboot'), 'cron');
    rejects(() => validateCron('@fortnightly'), 'cron');
    rejects(() => validateCron('0 0 30 2 *'), 'cron', /never matches/);
    rejects(() => validateCron('0 0 31 4,6,9,11 *'), 'cron', /never matches/);
    // Croner's "+" would AND the day fields, against the Vixie OR of SPEC §3b.
    rejects(() => validateCron('0 0 1 * +MON'), 'cron', /\+/);
    rejects(() => validateCron(`0 0 1 * ${'1,'.repeat(200)}1`), 'cron', /at most/);
    rejects(() => validateCron('nope', 'jobs.2.cron'), 'jobs.2.cron');
  });

  it('should refuse an invalid cron given straight to the schedule functions', () => {
    rejects(() => cronNextAfter({ cron: '0 0 0 1 1 * 2027', timeZone: 'UTC' }, 0), 'cron');
    rejects(() => cronCountBetween({ cron: 'x', timeZone: 'UTC' }, 0, 1), 'cron');
  });

  it('should accept IANA zone names and refuse anything else on timeZone', () => {
    assert.equal(validateTimeZone('UTC'), 'UTC');
    assert.equal(validateTimeZone('utc'), 'UTC');
    assert.equal(validateTimeZone('Europe/Berlin'), 'Europe/Berlin');
    assert.equal(validateTimeZone('europe/berlin'), 'Europe/Berlin');
    assert.equal(validateTimeZone(' America/New_York '), 'America/New_York');
    assert.equal(validateTimeZone('Etc/GMT+5'), 'Etc/GMT+5');
    for (const bad of ['Mars/Olympus_Mons', 'Europe/Berlinn', '', ' ', '+02:00', 'GMT+2:00', '../etc/passwd']) {
      rejects(() => validateTimeZone(bad), 'timeZone', /time zone/);
    }
    rejects(() => validateTimeZone('Nowhere', 'jobs.0.timeZone'), 'jobs.0.timeZone');
  });
});

describe('daylight saving in Europe/Berlin (2027: 28 March 02:00 → 03:00, 31 October 03:00 → 02:00)', () => {
  const zone = 'Europe/Berlin';

  it('should run a daily 02:30 once at 03:00 CEST on the spring-forward day', () => {
    assert.deepEqual(dueLines('30 2 * * *', zone, '2027-03-27T00:00Z', '2027-03-29T23:59Z'), [
      '2027-03-27T01:30:00.000Z 2027-03-27T02:30:00.000+01:00',
      '2027-03-28T01:00:00.000Z 2027-03-28T03:00:00.000+02:00 SHIFTED_FROM_GAP',
      '2027-03-29T00:30:00.000Z 2027-03-29T02:30:00.000+02:00',
    ]);
  });

  it('should run a daily 02:30 once, at its first occurrence, on the fall-back day', () => {
    assert.deepEqual(dueLines('30 2 * * *', zone, '2027-10-30T00:00Z', '2027-11-01T23:59Z'), [
      '2027-10-30T00:30:00.000Z 2027-10-30T02:30:00.000+02:00',
      '2027-10-31T00:30:00.000Z 2027-10-31T02:30:00.000+02:00 FIRST_OF_REPEATED',
      '2027-11-01T01:30:00.000Z 2027-11-01T02:30:00.000+01:00',
    ]);
    // The second 02:30 (01:30Z) is not a due time: from the first, the next is the next day's.
    assert.equal(cronNextAfter({ cron: '30 2 * * *', timeZone: zone }, at('2027-10-31T00:30Z'))?.atMs, at('2027-11-01T01:30Z'));
  });

  it('should run hourly through the gap without a shifted extra run: 02:00 lands on 03:00, which is a time of its own', () => {
    assert.deepEqual(dueLines('0 * * * *', zone, '2027-03-27T23:00Z', '2027-03-28T02:00Z'), [
      '2027-03-27T23:00:00.000Z 2027-03-28T00:00:00.000+01:00',
      '2027-03-28T00:00:00.000Z 2027-03-28T01:00:00.000+01:00',
      '2027-03-28T01:00:00.000Z 2027-03-28T03:00:00.000+02:00',
      '2027-03-28T02:00:00.000Z 2027-03-28T04:00:00.000+02:00',
    ]);
  });

  it('should run hourly through the repeated hour once per wall-clock hour', () => {
    assert.deepEqual(dueLines('0 * * * *', zone, '2027-10-30T23:00Z', '2027-10-31T03:00Z'), [
      '2027-10-30T23:00:00.000Z 2027-10-31T01:00:00.000+02:00',
      '2027-10-31T00:00:00.000Z 2027-10-31T02:00:00.000+02:00 FIRST_OF_REPEATED',
      '2027-10-31T02:00:00.000Z 2027-10-31T03:00:00.000+01:00',
      '2027-10-31T03:00:00.000Z 2027-10-31T04:00:00.000+01:00',
    ]);
  });

  it('should run */15 through the gap with 02:00–02:45 merged into one due time at 03:00, dst null', () => {
    assert.deepEqual(dueLines('*/15 * * * *', zone, '2027-03-28T00:30Z', '2027-03-28T01:30Z'), [
      '2027-03-28T00:30:00.000Z 2027-03-28T01:30:00.000+01:00',
      '2027-03-28T00:45:00.000Z 2027-03-28T01:45:00.000+01:00',
      '2027-03-28T01:00:00.000Z 2027-03-28T03:00:00.000+02:00',
      '2027-03-28T01:15:00.000Z 2027-03-28T03:15:00.000+02:00',
      '2027-03-28T01:30:00.000Z 2027-03-28T03:30:00.000+02:00',
    ]);
    assert.deepEqual(cronNextAfter({ cron: '*/15 * * * *', timeZone: zone }, at('2027-03-28T00:45Z')), {
      atMs: at('2027-03-28T01:00Z'),
      dst: null,
    });
    assert.equal(cronNextAfter({ cron: '*/15 * * * *', timeZone: zone }, at('2027-03-28T01:00Z'))?.atMs, at('2027-03-28T01:15Z'));
  });

  it('should run gap times once as SHIFTED_FROM_GAP when the end of the gap is not a time of the pattern', () => {
    assert.deepEqual(dueLines('*/20 2 * * *', zone, '2027-03-27T00:00Z', '2027-03-29T23:59Z'), [
      '2027-03-27T01:00:00.000Z 2027-03-27T02:00:00.000+01:00',
      '2027-03-27T01:20:00.000Z 2027-03-27T02:20:00.000+01:00',
      '2027-03-27T01:40:00.000Z 2027-03-27T02:40:00.000+01:00',
      '2027-03-28T01:00:00.000Z 2027-03-28T03:00:00.000+02:00 SHIFTED_FROM_GAP',
      '2027-03-29T00:00:00.000Z 2027-03-29T02:00:00.000+02:00',
      '2027-03-29T00:20:00.000Z 2027-03-29T02:20:00.000+02:00',
      '2027-03-29T00:40:00.000Z 2027-03-29T02:40:00.000+02:00',
    ]);
    assert.equal(cronCountBetween({ cron: '*/20 2 * * *', timeZone: zone }, at('2027-03-27T00:00Z'), at('2027-03-29T23:59Z')), 7);
  });

  it('should run */15 through the repeated hour at every wall-clock quarter-hour exactly once', () => {
    const dues = cronDueBetween({ cron: '*/15 * * * *', timeZone: zone }, at('2027-10-30T22:00Z'), at('2027-10-31T04:45Z'), 100);
    assert.deepEqual(
      dues.map((due) => wallOf(due, zone)),
      quarterHours('2027-10-31T00:00', '2027-10-31T05:45'),
    );
    // The repeated 02:xx run in their first pass (CEST) only; the second pass runs nothing.
    assert.deepEqual(
      dues.filter((due) => due.dst !== null).map((due) => line(due, zone)),
      [
        '2027-10-31T00:00:00.000Z 2027-10-31T02:00:00.000+02:00 FIRST_OF_REPEATED',
        '2027-10-31T00:15:00.000Z 2027-10-31T02:15:00.000+02:00 FIRST_OF_REPEATED',
        '2027-10-31T00:30:00.000Z 2027-10-31T02:30:00.000+02:00 FIRST_OF_REPEATED',
        '2027-10-31T00:45:00.000Z 2027-10-31T02:45:00.000+02:00 FIRST_OF_REPEATED',
      ],
    );
    assert.equal(
      dues.some((due) => due.atMs >= at('2027-10-31T01:00Z') && due.atMs < at('2027-10-31T02:00Z')),
      false,
    );
    // From anywhere in the second pass, the next due time is 03:00 CET.
    for (const after of ['2027-10-31T00:50Z', '2027-10-31T01:00Z', '2027-10-31T01:10Z', '2027-10-31T01:59:59.999Z']) {
      assert.deepEqual(
        cronNextAfter({ cron: '*/15 * * * *', timeZone: zone }, at(after)),
        { atMs: at('2027-10-31T02:00Z'), dst: null },
        after,
      );
    }
  });
});

describe('daylight saving in America/New_York (2027: 14 March 02:00 → 03:00, 7 November 02:00 → 01:00)', () => {
  const zone = 'America/New_York';

  it('should run a daily 02:30 at 03:00 EDT on the spring-forward day', () => {
    assert.deepEqual(dueLines('30 2 * * *', zone, '2027-03-13T00:00Z', '2027-03-15T23:59Z'), [
      '2027-03-13T07:30:00.000Z 2027-03-13T02:30:00.000-05:00',
      '2027-03-14T07:00:00.000Z 2027-03-14T03:00:00.000-04:00 SHIFTED_FROM_GAP',
      '2027-03-15T06:30:00.000Z 2027-03-15T02:30:00.000-04:00',
    ]);
  });

  it('should run a daily 02:30 normally on the fall-back day (02:30 exists once there) and 01:30 at its first occurrence', () => {
    assert.deepEqual(dueLines('30 2 * * *', zone, '2027-11-07T00:00Z', '2027-11-07T23:59Z'), [
      '2027-11-07T07:30:00.000Z 2027-11-07T02:30:00.000-05:00',
    ]);
    assert.deepEqual(dueLines('30 1 * * *', zone, '2027-11-06T00:00Z', '2027-11-08T23:59Z'), [
      '2027-11-06T05:30:00.000Z 2027-11-06T01:30:00.000-04:00',
      '2027-11-07T05:30:00.000Z 2027-11-07T01:30:00.000-04:00 FIRST_OF_REPEATED',
      '2027-11-08T06:30:00.000Z 2027-11-08T01:30:00.000-05:00',
    ]);
  });

  it('should run hourly through the gap and the repeated hour once per wall-clock hour', () => {
    assert.deepEqual(dueLines('0 * * * *', zone, '2027-03-14T05:00Z', '2027-03-14T08:00Z'), [
      '2027-03-14T05:00:00.000Z 2027-03-14T00:00:00.000-05:00',
      '2027-03-14T06:00:00.000Z 2027-03-14T01:00:00.000-05:00',
      '2027-03-14T07:00:00.000Z 2027-03-14T03:00:00.000-04:00',
      '2027-03-14T08:00:00.000Z 2027-03-14T04:00:00.000-04:00',
    ]);
    assert.deepEqual(dueLines('0 * * * *', zone, '2027-11-07T04:00Z', '2027-11-07T08:00Z'), [
      '2027-11-07T04:00:00.000Z 2027-11-07T00:00:00.000-04:00',
      '2027-11-07T05:00:00.000Z 2027-11-07T01:00:00.000-04:00 FIRST_OF_REPEATED',
      '2027-11-07T07:00:00.000Z 2027-11-07T02:00:00.000-05:00',
      '2027-11-07T08:00:00.000Z 2027-11-07T03:00:00.000-05:00',
    ]);
  });

  it('should run */15 at every wall-clock quarter-hour exactly once across both changes', () => {
    const spring = cronDueBetween({ cron: '*/15 * * * *', timeZone: zone }, at('2027-03-14T05:00Z'), at('2027-03-14T08:00Z'), 100);
    // 02:00–02:45 do not exist: they are the one due time at 03:00 EDT (07:00Z), which is a time of its own.
    assert.deepEqual(
      spring.map((due) => wallOf(due, zone)),
      quarterHours('2027-03-14T00:00', '2027-03-14T01:45').concat(quarterHours('2027-03-14T03:00', '2027-03-14T04:00')),
    );
    assert.ok(spring.every((due) => due.dst === null));
    assert.equal(spring.find((due) => wallOf(due, zone) === '2027-03-14T03:00')?.atMs, at('2027-03-14T07:00Z'));

    const autumn = cronDueBetween({ cron: '*/15 * * * *', timeZone: zone }, at('2027-11-07T04:00Z'), at('2027-11-07T08:00Z'), 100);
    assert.deepEqual(
      autumn.map((due) => wallOf(due, zone)),
      quarterHours('2027-11-07T00:00', '2027-11-07T03:00'),
    );
    assert.deepEqual(
      autumn.filter((due) => due.dst !== null).map((due) => line(due, zone)),
      [
        '2027-11-07T05:00:00.000Z 2027-11-07T01:00:00.000-04:00 FIRST_OF_REPEATED',
        '2027-11-07T05:15:00.000Z 2027-11-07T01:15:00.000-04:00 FIRST_OF_REPEATED',
        '2027-11-07T05:30:00.000Z 2027-11-07T01:30:00.000-04:00 FIRST_OF_REPEATED',
        '2027-11-07T05:45:00.000Z 2027-11-07T01:45:00.000-04:00 FIRST_OF_REPEATED',
      ],
    );
  });
});

describe('offset changes without daylight saving, and 30-minute shifts', () => {
  it('should run 01:30 Europe/Moscow once on 26 October 2014, when 02:00 (+04:00) went back to 01:00 (+03:00)', () => {
    assert.deepEqual(dueLines('30 1 * * *', 'Europe/Moscow', '2014-10-24T00:00Z', '2014-10-26T23:59Z'), [
      '2014-10-24T21:30:00.000Z 2014-10-25T01:30:00.000+04:00',
      '2014-10-25T21:30:00.000Z 2014-10-26T01:30:00.000+04:00 FIRST_OF_REPEATED',
      '2014-10-26T22:30:00.000Z 2014-10-27T01:30:00.000+03:00',
    ]);
    assert.equal(cronCountBetween({ cron: '30 1 * * *', timeZone: 'Europe/Moscow' }, at('2014-10-25T21:00Z'), at('2014-10-26T21:00Z')), 1);
  });

  it('should find the Lord Howe shifts of 2027 where Intl puts them', () => {
    // Checked with Intl first: 4 April 02:00 +11:00 → 01:30 +10:30; 3 October 02:00 +10:30 → 02:30 +11:00.
    const zone = 'Australia/Lord_Howe';
    assert.equal(formatLocalTime(at('2027-04-03T14:59:59Z'), zone), '2027-04-04T01:59:59.000+11:00');
    assert.equal(formatLocalTime(at('2027-04-03T15:00:00Z'), zone), '2027-04-04T01:30:00.000+10:30');
    assert.equal(formatLocalTime(at('2027-10-02T15:29:59Z'), zone), '2027-10-03T01:59:59.000+10:30');
    assert.equal(formatLocalTime(at('2027-10-02T15:30:00Z'), zone), '2027-10-03T02:30:00.000+11:00');
  });

  it('should run Australia/Lord_Howe quarter-hours once each through its 30-minute repeat and gap', () => {
    const zone = 'Australia/Lord_Howe';
    assert.deepEqual(dueLines('*/15 * * * *', zone, '2027-04-03T14:15Z', '2027-04-03T15:45Z'), [
      '2027-04-03T14:15:00.000Z 2027-04-04T01:15:00.000+11:00',
      '2027-04-03T14:30:00.000Z 2027-04-04T01:30:00.000+11:00 FIRST_OF_REPEATED',
      '2027-04-03T14:45:00.000Z 2027-04-04T01:45:00.000+11:00 FIRST_OF_REPEATED',
      '2027-04-03T15:30:00.000Z 2027-04-04T02:00:00.000+10:30',
      '2027-04-03T15:45:00.000Z 2027-04-04T02:15:00.000+10:30',
    ]);
    // 02:00 and 02:15 do not exist on 3 October: they run with 02:30 itself, at the change.
    assert.deepEqual(dueLines('*/15 * * * *', zone, '2027-10-02T15:00Z', '2027-10-02T16:00Z'), [
      '2027-10-02T15:00:00.000Z 2027-10-03T01:30:00.000+10:30',
      '2027-10-02T15:15:00.000Z 2027-10-03T01:45:00.000+10:30',
      '2027-10-02T15:30:00.000Z 2027-10-03T02:30:00.000+11:00',
      '2027-10-02T15:45:00.000Z 2027-10-03T02:45:00.000+11:00',
      '2027-10-02T16:00:00.000Z 2027-10-03T03:00:00.000+11:00',
    ]);
    assert.deepEqual(dueLines('15 2 * * *', zone, '2027-10-02T00:00Z', '2027-10-03T23:59Z'), [
      '2027-10-02T15:30:00.000Z 2027-10-03T02:30:00.000+11:00 SHIFTED_FROM_GAP',
      '2027-10-03T15:15:00.000Z 2027-10-04T02:15:00.000+11:00',
    ]);
    assert.deepEqual(dueLines('45 1 * * *', zone, '2027-04-03T00:00Z', '2027-04-03T23:59Z'), [
      '2027-04-03T14:45:00.000Z 2027-04-04T01:45:00.000+11:00 FIRST_OF_REPEATED',
    ]);
  });
});

describe('formatLocalTime', () => {
  it('should write ISO 8601 with milliseconds and the numeric offset of the zone at that instant', () => {
    assert.equal(formatLocalTime(at('2027-03-28T01:00:00Z'), 'Europe/Berlin'), '2027-03-28T03:00:00.000+02:00');
    assert.equal(formatLocalTime(at('2027-03-28T00:59:59.999Z'), 'Europe/Berlin'), '2027-03-28T01:59:59.999+01:00');
    assert.equal(formatLocalTime(at('2027-06-01T12:34:56.789Z'), 'UTC'), '2027-06-01T12:34:56.789+00:00');
    assert.equal(formatLocalTime(at('2027-01-15T12:00:00Z'), 'Europe/London'), '2027-01-15T12:00:00.000+00:00');
    assert.equal(formatLocalTime(at('2027-07-01T12:00:00Z'), 'America/New_York'), '2027-07-01T08:00:00.000-04:00');
    assert.equal(formatLocalTime(at('2027-01-01T03:00:00Z'), 'America/New_York'), '2026-12-31T22:00:00.000-05:00');
    assert.equal(formatLocalTime(at('2027-01-01T12:00:00Z'), 'America/St_Johns'), '2027-01-01T08:30:00.000-03:30');
    assert.equal(formatLocalTime(at('2027-07-01T00:00:00Z'), 'Australia/Lord_Howe'), '2027-07-01T10:30:00.000+10:30');
    assert.equal(formatLocalTime(at('2027-01-01T00:00:00Z'), 'Asia/Kathmandu'), '2027-01-01T05:45:00.000+05:45');
    assert.equal(formatLocalTime(at('2027-01-01T00:00:00Z'), 'Pacific/Kiritimati'), '2027-01-01T14:00:00.000+14:00');
  });
});

describe('counting due times', () => {
  const cases: Array<[CronSpec, string, string]> = [
    [{ cron: '*/15 * * * *', timeZone: 'Europe/Berlin' }, '2027-03-27T00:00Z', '2027-03-29T00:00Z'],
    [{ cron: '*/15 * * * *', timeZone: 'Europe/Berlin' }, '2027-10-30T00:00Z', '2027-11-01T00:00Z'],
    // Bounds inside the repeated hour's second pass and inside the gap's instant.
    [{ cron: '*/15 * * * *', timeZone: 'Europe/Berlin' }, '2027-10-31T01:10Z', '2027-10-31T02:15Z'],
    [{ cron: '*/15 * * * *', timeZone: 'Europe/Berlin' }, '2027-03-28T01:00Z', '2027-03-28T01:00Z'],
    [{ cron: '*/20 2 * * *', timeZone: 'Europe/Berlin' }, '2027-01-01T00:00Z', '2027-12-31T00:00Z'],
    [{ cron: '0 * * * *', timeZone: 'America/New_York' }, '2027-03-01T00:00Z', '2027-03-31T00:00Z'],
    [{ cron: '30 1 * * *', timeZone: 'America/New_York' }, '2027-11-06T00:00Z', '2027-11-09T00:00Z'],
    [{ cron: '*/7 1-3 * * SUN', timeZone: 'Australia/Lord_Howe' }, '2027-03-30T00:00Z', '2027-10-10T00:00Z'],
    [{ cron: '*/10 * * * * *', timeZone: 'Europe/Moscow' }, '2014-10-25T20:00Z', '2014-10-26T00:00Z'],
    [{ cron: '0 0 1,15 * FRI', timeZone: 'UTC' }, '2027-01-01T00:00Z', '2028-12-31T00:00Z'],
    [{ cron: '@hourly', timeZone: 'Asia/Kolkata' }, '2027-01-01T00:00:00.001Z', '2027-01-02T00:29:59.999Z'],
  ];

  it('should count exactly the due times it lists, bounds included, across changes', () => {
    for (const [spec, from, to] of cases) {
      const listed = cronDueBetween(spec, at(from), at(to), 1_000_000).length;
      assert.equal(cronCountBetween(spec, at(from), at(to)), listed, `${spec.cron} ${spec.timeZone} ${from}..${to}`);
    }
    // Both bounds inclusive: a due time on either bound counts.
    assert.equal(cronCountBetween({ cron: '0 * * * *', timeZone: 'UTC' }, at('2027-01-01T00:00Z'), at('2027-01-01T02:00Z')), 3);
    assert.equal(
      cronCountBetween({ cron: '0 * * * *', timeZone: 'UTC' }, at('2027-01-01T00:00:00.001Z'), at('2027-01-01T01:59:59.999Z')),
      1,
    );
    assert.equal(cronCountBetween({ cron: '0 * * * *', timeZone: 'UTC' }, at('2027-01-01T02:00Z'), at('2027-01-01T01:00Z')), 0);
  });

  it('should count an every-second pattern over 30 days without listing it', () => {
    // 30 days of seconds, both ends included; in Berlin across the spring change too (each instant is one due time).
    const from = at('2027-03-10T00:00Z');
    const to = at('2027-04-09T00:00Z');
    assert.equal(cronCountBetween({ cron: '* * * * * *', timeZone: 'UTC' }, from, to), 30 * 86_400 + 1);
    assert.equal(cronCountBetween({ cron: '* * * * * *', timeZone: 'Europe/Berlin' }, from, to), 30 * 86_400 + 1);
    // In the autumn, the second pass of 02:xx (3600 s) runs nothing.
    assert.equal(
      cronCountBetween({ cron: '* * * * * *', timeZone: 'Europe/Berlin' }, at('2027-10-17T00:00Z'), at('2027-11-16T00:00Z')),
      30 * 86_400 + 1 - 3600,
    );
  });
});

describe('the last due time', () => {
  it('should find the last due time in a window, bounds included, with its adjustment', () => {
    const spec = { cron: '30 2 * * *', timeZone: 'Europe/Berlin' };
    assert.deepEqual(cronLastBetween(spec, at('2027-03-01T00:00Z'), at('2027-03-28T12:00Z')), {
      atMs: at('2027-03-28T01:00Z'),
      dst: 'SHIFTED_FROM_GAP',
    });
    assert.deepEqual(cronLastBetween(spec, at('2027-10-01T00:00Z'), at('2027-10-31T12:00Z')), {
      atMs: at('2027-10-31T00:30Z'),
      dst: 'FIRST_OF_REPEATED',
    });
    assert.deepEqual(cronLastBetween(spec, at('2027-10-31T00:30Z'), at('2027-10-31T00:30Z')), {
      atMs: at('2027-10-31T00:30Z'),
      dst: 'FIRST_OF_REPEATED',
    });
    assert.equal(cronLastBetween(spec, at('2027-10-31T00:30:00.001Z'), at('2027-11-01T01:29Z')), null);
    const quarter = { cron: '*/15 * * * *', timeZone: 'Europe/Berlin' };
    assert.deepEqual(cronLastBetween(quarter, 0, at('2027-10-31T01:59Z')), { atMs: at('2027-10-31T00:45Z'), dst: 'FIRST_OF_REPEATED' });
    assert.deepEqual(cronLastBetween(quarter, 0, at('2027-03-28T01:05Z')), { atMs: at('2027-03-28T01:00Z'), dst: null });
  });
});

describe('properties over zones and patterns', () => {
  const zones = ['UTC', 'Europe/Berlin', 'America/New_York', 'Australia/Lord_Howe', 'Europe/Moscow', 'America/St_Johns', 'Asia/Kolkata'];
  const patterns = [
    '*/15 * * * *',
    '30 2 * * *',
    '0 * * * *',
    '*/20 2 * * *',
    '*/7 1-3 * * *',
    '45 1,2 * * SUN',
    '*/30 * * * * *',
    '0 0 L * *',
  ];
  // Around the changes of the zones above, and anywhere else.
  const anchors = [
    '2027-03-14T06:00Z',
    '2027-03-28T00:30Z',
    '2027-10-31T00:00Z',
    '2027-11-07T05:00Z',
    '2027-04-03T14:00Z',
    '2027-10-02T15:00Z',
    '2014-10-25T21:00Z',
  ];

  it('should list strictly ascending due times, each a time of the pattern or a shift to the end of a gap, as counted and as chained', () => {
    fc.assert(
      fc.property(
        fc.constantFrom(...zones),
        fc.constantFrom(...patterns),
        fc.constantFrom(...anchors),
        fc.integer({ min: -6 * 3_600_000, max: 6 * 3_600_000 }),
        fc.integer({ min: 0, max: 30 * 3_600_000 }),
        (timeZone, cron, anchor, shift, span) => {
          const spec = { cron, timeZone };
          const from = at(anchor) + shift;
          const to = from + span;
          const dues = cronDueBetween(spec, from, to, 100_000);
          const matches = new Cron(cron, { utcOffset: 0, mode: '5-or-6-parts' });
          for (const [i, due] of dues.entries()) {
            assert.ok(due.atMs >= from && due.atMs <= to);
            if (i > 0) assert.ok(due.atMs > dues[i - 1]!.atMs, 'strictly ascending');
            const wall = at(`${formatLocalTime(due.atMs, timeZone).slice(0, 23)}Z`);
            if (due.dst === 'SHIFTED_FROM_GAP') {
              // The first instant after a gap: a second earlier the clock read an hour (or 30 min) less.
              assert.ok(at(`${formatLocalTime(due.atMs - 1000, timeZone).slice(0, 23)}Z`) < wall - 1000);
            } else {
              assert.ok(matches.match(new Date(wall)), `${line(due, timeZone)} matches ${cron}`);
            }
            // Each due time is the next one after the one before (checked on the first few: it is the costly part).
            if (i >= 20) continue;
            const previous = i === 0 ? cronLastBetween(spec, from - 400 * 86_400_000, from - 1) : dues[i - 1]!;
            if (previous !== null) assert.deepEqual(cronNextAfter(spec, previous.atMs), due);
          }
          assert.equal(cronCountBetween(spec, from, to), dues.length);
          assert.deepEqual(cronLastBetween(spec, from, to), dues.at(-1) ?? null);
        },
      ),
      { numRuns: 300 },
    );
  });
});
