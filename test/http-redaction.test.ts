import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { bound, excerpt, oneLine, redact, redactTail, secretForms } from '../src/connectors/http-redaction.ts';

describe('secretForms', () => {
  it('should list a bearer token as is, in base64 and percent-encoded, longest first', () => {
    assert.deepEqual(secretForms('tok/en+1', 'BEARER'), ['dG9rL2VuKzE=', 'tok%2Fen%2B1', 'tok/en+1']);
  });

  it('should add the password of a BASIC secret alone, and encode Cyrillic as UTF-8', () => {
    assert.deepEqual(secretForms('Администратор:пароль', 'BASIC'), [
      '%D0%90%D0%B4%D0%BC%D0%B8%D0%BD%D0%B8%D1%81%D1%82%D1%80%D0%B0%D1%82%D0%BE%D1%80%3A%D0%BF%D0%B0%D1%80%D0%BE%D0%BB%D1%8C',
      '0JDQtNC80LjQvdC40YHRgtGA0LDRgtC+0YA60L/QsNGA0L7Qu9GM',
      '%D0%BF%D0%B0%D1%80%D0%BE%D0%BB%D1%8C',
      'Администратор:пароль',
      'пароль',
    ]);
  });

  it('should leave out forms too short to search for, and nothing for no secret', () => {
    assert.deepEqual(secretForms('u:pw', 'BASIC'), ['dTpwdw==', 'u%3Apw', 'u:pw']);
    assert.deepEqual(secretForms(null, null), []);
    assert.deepEqual(secretForms('', 'BEARER'), []);
  });

  it('should survive a secret that is not valid Unicode', () => {
    assert.deepEqual(secretForms('ab\ud800cd', 'BEARER'), ['YWLvv71jZA==', 'ab\ud800cd']);
  });
});

describe('redact', () => {
  it('should replace every occurrence of every form, the longest first', () => {
    const forms = ['robot:hunter2', 'hunter2'];
    assert.equal(redact('got robot:hunter2, then hunter2 and hunter2!', forms), 'got [redacted], then [redacted] and [redacted]!');
    assert.equal(redact('nothing here', forms), 'nothing here');
    assert.equal(redact('anything', []), 'anything');
  });
});

describe('redactTail', () => {
  it('should remove the start of a secret left at the end of a cut text', () => {
    assert.equal(redactTail('token is hunt', ['hunter2']), 'token is [redacted]');
    assert.equal(redactTail('token is hunter', ['hunter2']), 'token is [redacted]');
  });

  it('should leave a tail shorter than four characters, or none, alone', () => {
    assert.equal(redactTail('token is hun', ['hunter2']), 'token is hun');
    assert.equal(redactTail('token is hunter2', ['hunter2']), 'token is hunter2', 'whole secrets are redact’s job');
    assert.equal(redactTail('plain', ['hunter2']), 'plain');
  });
});

describe('excerpt', () => {
  const forms = ['hunter2'];

  it('should quote a short body on one line, the secret removed', () => {
    assert.equal(
      excerpt({ body: Buffer.from('Ошибка:\r\n\tпароль hunter2 неверен'), truncated: false }, forms),
      'Ошибка: пароль [redacted] неверен',
    );
  });

  it('should say when the body is empty or was cut short before any byte', () => {
    assert.equal(excerpt({ body: Buffer.alloc(0), truncated: false }, forms), '(empty body)');
    assert.equal(excerpt({ body: Buffer.alloc(0), truncated: true }, forms), '(body cut short)');
  });

  it('should cut at 500 characters with an ellipsis, a secret that straddles the cut removed before cutting', () => {
    assert.equal(excerpt({ body: Buffer.from(`${'x'.repeat(600)}`), truncated: false }, forms), `${'x'.repeat(500)}…`);
    assert.equal(excerpt({ body: Buffer.from(`${'x'.repeat(495)}hunter2 more`), truncated: false }, forms), `${'x'.repeat(495)}[reda…`);
  });

  it('should end a body that was read only in part with an ellipsis, removing a secret cut by the bound', () => {
    assert.equal(excerpt({ body: Buffer.from('abc hunte'), truncated: true }, forms), 'abc [redacted]…');
  });
});

describe('message text', () => {
  it('should bound a text with an ellipsis', () => {
    assert.equal(bound('abcdef', 3), 'abc…');
    assert.equal(bound('abc', 3), 'abc');
  });

  it('should make one line of a text with control characters', () => {
    assert.equal(oneLine('  a\r\nb\u0000c\t\td  '), 'a b c d');
  });
});
