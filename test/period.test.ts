import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { DomainError } from '../src/errors.ts';
import { validateJobId, validateName, validateNote, validateTimeout } from '../src/input.ts';
import { parseExternalCall } from '../src/scheduling/external-call.ts';
import { formatPeriod, parsePeriod } from '../src/scheduling/period.ts';
import { defaultTimeoutMs } from '../src/scheduling/schedule.ts';

function rejects(fn: () => unknown, field: string) {
  assert.throws(fn, (error: unknown) => {
    assert.ok(error instanceof DomainError, `expected a DomainError, got ${String(error)}`);
    assert.equal(error.extensions['code'], 'BAD_USER_INPUT');
    assert.equal(error.extensions['field'], field);
    return true;
  });
}

describe('period', () => {
  it('should accept h:m:s with one or two digits for minutes and seconds', () => {
    assert.equal(parsePeriod('0:0:30'), 30);
    assert.equal(parsePeriod('1:00:00'), 3600);
    assert.equal(parsePeriod('24:0:0'), 86_400);
    assert.equal(parsePeriod('0:0:5'), 5);
    assert.equal(parsePeriod('8784:0:0'), 8784 * 3600);
  });

  it('should reject zero, out-of-range parts, wrong shapes and more than a leap year', () => {
    for (const bad of ['0:0:0', '1:60:00', '1:00:60', '-1:0:0', '1:2', 'abc', '1:2:3:4', '', '1:002:00', '8785:0:0', '1.5:0:0']) {
      rejects(() => parsePeriod(bad), 'period');
    }
  });

  it('should format periods as H:MM:SS', () => {
    assert.equal(formatPeriod(30), '0:00:30');
    assert.equal(formatPeriod(86_400), '24:00:00');
    assert.equal(formatPeriod(3661), '1:01:01');
  });

  it('should default the timeout to the smaller of the period and one hour', () => {
    assert.equal(defaultTimeoutMs({ periodMs: 30_000, cron: null, timeZone: null, anchorMs: 0, endMs: null }, 0), 30_000);
    assert.equal(defaultTimeoutMs({ periodMs: 86_400_000, cron: null, timeZone: null, anchorMs: 0, endMs: null }, 0), 3_600_000);
  });
});

describe('external call', () => {
  it('should split at the first colon and trim both sides', () => {
    assert.deepEqual(parseExternalCall('ServerOperationConnector:Кировка АвтоматическоеПолучениеТаблицыМарокПоТаймеру'), {
      connectorId: 'ServerOperationConnector',
      method: 'Кировка АвтоматическоеПолучениеТаблицыМарокПоТаймеру',
    });
    assert.deepEqual(parseExternalCall(' OneC_8_Connector : МояФункция '), { connectorId: 'OneC_8_Connector', method: 'МояФункция' });
    assert.deepEqual(parseExternalCall('Http.v2-a:ns:method with spaces'), { connectorId: 'Http.v2-a', method: 'ns:method with spaces' });
  });

  it('should reject a missing colon, a bad connector id, an empty or oversized method', () => {
    for (const bad of ['NoColon', ':Method', '1Conn:Method', 'Кон:Method', 'Conn:', 'Conn:   ', `Conn:${'x'.repeat(1001)}`]) {
      rejects(() => parseExternalCall(bad), 'externalCall');
    }
    assert.equal(parseExternalCall(`Conn:${'я'.repeat(1000)}`).method.length, 1000);
  });
});

describe('job input', () => {
  it('should accept ids of letters of any script, digits and _ . -', () => {
    assert.equal(validateJobId('марки.загрузка_1-a'), 'марки.загрузка_1-a');
    assert.equal(validateJobId('x'.repeat(128)), 'x'.repeat(128));
  });

  it('should normalise ids to NFC before checking them', () => {
    const decomposed = 'e\u0301te';
    assert.equal(validateJobId(decomposed), '\u00e9te');
  });

  it('should reject empty, long or punctuated ids', () => {
    for (const bad of ['', 'x'.repeat(129), 'a b', 'a/b', 'a:b', 'job!']) rejects(() => validateJobId(bad), 'id');
  });

  it('should require a name of 1 to 200 characters', () => {
    assert.equal(validateName('Загрузка КМ'), 'Загрузка КМ');
    rejects(() => validateName(''), 'name');
    rejects(() => validateName('   '), 'name');
    rejects(() => validateName('n'.repeat(201)), 'name');
  });

  it('should take timeouts from 1 to 86400 seconds and notes up to 1000 characters', () => {
    assert.equal(validateTimeout(1), 1);
    assert.equal(validateTimeout(86_400), 86_400);
    for (const bad of [0, -1, 86_401, 1.5]) rejects(() => validateTimeout(bad), 'timeoutSeconds');
    assert.equal(validateNote('n'.repeat(1000))?.length, 1000);
    rejects(() => validateNote('n'.repeat(1001)), 'note');
  });
});
