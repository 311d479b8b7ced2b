import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { isSealed, keyId, parseSecretKey, SecretBox, SecretUnreadableError } from '../src/connectors/secret-box.ts';

// Literal values, checked once against an independent AES-GCM implementation (Python's
// `cryptography`): key = 32 bytes of 7, IV = 12 bytes of 1, AAD = label + connector id.
const KEY = 'BwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwc=';
const KEY_ID = '97aaf0a3';
const OTHER_KEY = 'AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=';
const OTHER_KEY_ID = '1fcc1c39';
const IV = () => Buffer.alloc(12, 1);
const SEALED = 'enc:v1:97aaf0a3:AQEBAQEBAQEBAQEB:s1aXgaTdmTRhauUquf9mKg:BI7r2OSFPLEBZA2hoImginl3';
const PLAIN = 'robot:пароль';
const ID = 'OneC_8_Connector';

const key = (text: string) => parseSecretKey(text)!;

describe('secret box (AES-256-GCM, enc:v1)', () => {
  it('should seal to the literal value of the format and open it again', () => {
    const box = new SecretBox({ key: key(KEY) }, IV);
    assert.equal(keyId(key(KEY)), KEY_ID);
    assert.equal(keyId(key(OTHER_KEY)), OTHER_KEY_ID);
    assert.equal(box.seal(PLAIN, ID), SEALED);
    assert.equal(new SecretBox({ key: key(KEY) }).open(SEALED, ID), PLAIN);
    assert.equal(box.seal('', 'X'), 'enc:v1:97aaf0a3:AQEBAQEBAQEBAQEB:93DbxmaqMuAh2EhFgwUQCg:');
    assert.equal(box.open('enc:v1:97aaf0a3:AQEBAQEBAQEBAQEB:93DbxmaqMuAh2EhFgwUQCg:', 'X'), '');
  });

  it('should draw a new IV for every secret and never hold the secret in the stored form', () => {
    const box = new SecretBox({ key: key(KEY) });
    const a = box.seal(PLAIN, ID);
    const b = box.seal(PLAIN, ID);
    assert.notEqual(a, b);
    for (const sealed of [a, b]) {
      assert.ok(isSealed(sealed));
      assert.ok(!sealed.includes('robot') && !sealed.includes(Buffer.from(PLAIN).toString('base64')));
      assert.equal(box.open(sealed, ID), PLAIN);
    }
  });

  it('should store and read plain text without a key', () => {
    const box = new SecretBox({ key: null });
    assert.equal(box.encrypts, false);
    assert.equal(box.seal(PLAIN, ID), PLAIN);
    assert.equal(box.open(PLAIN, ID), PLAIN);
    assert.equal(box.reseal(PLAIN, ID), null);
  });

  it('should refuse what it cannot open with a message that names the setting and holds no secret', () => {
    const keyless = new SecretBox({ key: null });
    const other = new SecretBox({ key: key(OTHER_KEY) });
    const rotating = new SecretBox({ key: key(OTHER_KEY), previous: key(OTHER_KEY) });
    const box = new SecretBox({ key: key(KEY) });
    const tampered = SEALED.slice(0, -2) + (SEALED.endsWith('A3') ? 'B3' : 'A3');
    const cases: [SecretBox, string, string, RegExp][] = [
      [keyless, SEALED, ID, /stored encrypted \(key id 97aaf0a3\) and SECRETS_KEY is not set/],
      [other, SEALED, ID, /key id 97aaf0a3, which is neither SECRETS_KEY \(key id 1fcc1c39\); check SECRETS_KEY/],
      [rotating, SEALED, ID, /neither SECRETS_KEY \(key id 1fcc1c39\) nor SECRETS_KEY_PREVIOUS/],
      [box, SEALED, 'AnotherConnector', /does not authenticate under key id 97aaf0a3/],
      [box, tampered, ID, /does not authenticate/],
      [box, 'enc:v1:97aaf0a3:short', ID, /damaged \(not in the enc:v1 format\)/],
      // A 4-byte tag (which GCM would accept unless told its length) is not the format.
      [box, 'enc:v1:97aaf0a3:AQEBAQEBAQEBAQEB:s1aXgQ:BI7r2OSFPLEBZA2hoImginl3', ID, /damaged/],
    ];
    for (const [which, stored, id, message] of cases) {
      assert.throws(
        () => which.open(stored, id),
        (error: unknown) => {
          assert.ok(error instanceof SecretUnreadableError);
          assert.match(error.message, message);
          for (const leak of [PLAIN, 'robot', KEY, OTHER_KEY, 's1aXgaTdmTRhauUquf9mKg', 'BI7r2OSFPLEBZA2hoImginl3']) {
            assert.ok(!error.message.includes(leak), `${error.message} holds ${leak}`);
          }
          return true;
        },
      );
    }
  });

  it('should reseal plain text and what the previous key sealed, and leave the current key’s values', () => {
    const old = new SecretBox({ key: key(KEY) }, IV);
    const rotating = new SecretBox({ key: key(OTHER_KEY), previous: key(KEY) });
    assert.equal(rotating.open(SEALED, ID), PLAIN);
    const resealed = rotating.reseal(SEALED, ID)!;
    assert.match(resealed, /^enc:v1:1fcc1c39:/);
    assert.equal(new SecretBox({ key: key(OTHER_KEY) }).open(resealed, ID), PLAIN);
    assert.equal(rotating.reseal(resealed, ID), null);
    const fromPlain = old.reseal(PLAIN, ID)!;
    assert.equal(fromPlain, SEALED);
    assert.throws(() => new SecretBox({ key: key(OTHER_KEY) }).reseal(SEALED, ID), SecretUnreadableError);
  });

  it('should take a 32-byte key in base64 or base64url and nothing else', () => {
    assert.deepEqual(parseSecretKey(KEY), Buffer.alloc(32, 7));
    assert.deepEqual(parseSecretKey(KEY.replace('=', '')), Buffer.alloc(32, 7));
    const url = Buffer.alloc(32, 0xfb).toString('base64url');
    assert.deepEqual(parseSecretKey(url), Buffer.alloc(32, 0xfb));
    for (const bad of [
      '',
      'short',
      Buffer.alloc(31).toString('base64'),
      Buffer.alloc(33).toString('base64'),
      `${KEY.slice(0, -2)}*=`,
      'x'.repeat(44),
    ]) {
      assert.equal(parseSecretKey(bad), null, bad);
    }
    assert.throws(() => SecretBox.fromSettings({ SECRETS_KEY: 'nope' }), /SECRETS_KEY is not 32 bytes/);
    assert.equal(SecretBox.fromSettings({}).encrypts, false);
    assert.equal(SecretBox.fromSettings({ SECRETS_KEY: KEY }).keyId, KEY_ID);
  });
});
