import { createCipheriv, createDecipheriv, createHmac, randomBytes } from 'node:crypto';

/**
 * Connector secrets at rest (SPEC §8): AES-256-GCM under `SECRETS_KEY`, a random 12-byte IV per
 * secret, stored in the `secret` column as text:
 *
 *     enc:v1:<key id>:<iv>:<tag>:<ciphertext>
 *
 * `key id` is 8 hex digits of HMAC-SHA256(key, KEY_ID_LABEL), which tells which key sealed a
 * value without revealing anything of the key; iv, tag and ciphertext are base64url without
 * padding. The connector's id is the additional authenticated data, so a value copied to another
 * row does not open. Any other stored text is a secret stored in plain text (before a key was
 * given). Pure: no I/O, no logging; no message here ever holds a secret, a key or a ciphertext.
 */

export const SEALED_PREFIX = 'enc:v1:';
const KEY_ID_LABEL = 'server-jobs connector secrets key id';
const AAD_LABEL = 'server-jobs connector secret v1:';
const IV_BYTES = 12;
const TAG_BYTES = 16;
const KEY_BYTES = 32;
const SEALED = /^enc:v1:([0-9a-f]{8}):([A-Za-z0-9_-]{16}):([A-Za-z0-9_-]{22}):([A-Za-z0-9_-]*)$/;

/** Why a stored secret cannot be read; its message says what to check and never quotes the value. */
export class SecretUnreadableError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'SecretUnreadableError';
  }
}

/** The 32-byte key in `text` (base64 or base64url, padded or not), or null when it is not one. */
export function parseSecretKey(text: string): Buffer | null {
  const trimmed = text.trim();
  if (!/^[A-Za-z0-9+/_-]{43}=?$/.test(trimmed)) return null;
  const key = Buffer.from(trimmed.replace(/-/g, '+').replace(/_/g, '/'), 'base64');
  return key.length === KEY_BYTES ? key : null;
}

/** A key's public name: 8 hex digits of an HMAC under it, which reveal nothing of the key. */
export function keyId(key: Buffer): string {
  return createHmac('sha256', key).update(KEY_ID_LABEL).digest('hex').slice(0, 8);
}

/** Whether a stored value is in the sealed format (whatever its key), as opposed to plain text. */
export const isSealed = (stored: string): boolean => stored.startsWith(SEALED_PREFIX);

export interface SecretKeys {
  /** `SECRETS_KEY`: seals every secret written; null stores them in plain text. */
  key: Buffer | null;
  /** `SECRETS_KEY_PREVIOUS`: still opens what it sealed, so that it can be sealed again under `key`. */
  previous?: Buffer | null;
}

export class SecretBox {
  readonly #key: { id: string; key: Buffer } | null;
  readonly #previous: { id: string; key: Buffer } | null;
  readonly #iv: () => Buffer;

  /** `iv` is for tests with literal values; by default every seal draws a random IV. */
  constructor(keys: SecretKeys, iv: () => Buffer = () => randomBytes(IV_BYTES)) {
    for (const key of [keys.key, keys.previous]) {
      if (key && key.length !== KEY_BYTES) throw new Error(`a secrets key is ${KEY_BYTES} bytes`);
    }
    if (!keys.key && keys.previous) throw new Error('a previous secrets key needs a current one');
    this.#key = keys.key ? { id: keyId(keys.key), key: Buffer.from(keys.key) } : null;
    this.#previous = keys.previous ? { id: keyId(keys.previous), key: Buffer.from(keys.previous) } : null;
    this.#iv = iv;
  }

  /** From the settings as configured (already validated by config.ts). */
  static fromSettings(settings: { SECRETS_KEY?: string | undefined; SECRETS_KEY_PREVIOUS?: string | undefined }): SecretBox {
    const read = (name: string, text: string | undefined) => {
      if (text === undefined || text === '') return null;
      const key = parseSecretKey(text);
      if (!key) throw new Error(`${name} is not 32 bytes in base64`);
      return key;
    };
    return new SecretBox({
      key: read('SECRETS_KEY', settings.SECRETS_KEY),
      previous: read('SECRETS_KEY_PREVIOUS', settings.SECRETS_KEY_PREVIOUS),
    });
  }

  /** Whether secrets are stored encrypted (a key is configured). */
  get encrypts(): boolean {
    return this.#key !== null;
  }

  /** The current key's id, or null without a key. */
  get keyId(): string | null {
    return this.#key?.id ?? null;
  }

  /** The stored form of `plain` for connector `context`: sealed under the key, or as is without one. */
  seal(plain: string, context: string): string {
    if (!this.#key) return plain;
    const iv = this.#iv();
    if (iv.length !== IV_BYTES) throw new Error(`an IV is ${IV_BYTES} bytes`);
    const cipher = createCipheriv('aes-256-gcm', this.#key.key, iv, { authTagLength: TAG_BYTES });
    cipher.setAAD(Buffer.from(AAD_LABEL + context, 'utf8'));
    const ciphertext = Buffer.concat([cipher.update(plain, 'utf8'), cipher.final()]);
    const tag = cipher.getAuthTag();
    return `${SEALED_PREFIX}${this.#key.id}:${iv.toString('base64url')}:${tag.toString('base64url')}:${ciphertext.toString('base64url')}`;
  }

  /** The secret a stored value holds, for connector `context`. Throws SecretUnreadableError. */
  open(stored: string, context: string): string {
    if (!isSealed(stored)) return stored;
    const parts = SEALED.exec(stored);
    if (!parts)
      throw new SecretUnreadableError(
        'the stored value is damaged (not in the enc:v1 format); give the connector its secret again with updateConnector',
      );
    const [, id, iv, tag, ciphertext] = parts as unknown as [string, string, string, string, string];
    if (!this.#key) {
      throw new SecretUnreadableError(
        `it is stored encrypted (key id ${id}) and SECRETS_KEY is not set; set SECRETS_KEY to the key it was encrypted with`,
      );
    }
    const key = [this.#key, this.#previous].find((k) => k?.id === id);
    if (!key) {
      const configured = this.#previous
        ? `SECRETS_KEY (key id ${this.#key.id}) nor SECRETS_KEY_PREVIOUS (key id ${this.#previous.id})`
        : `SECRETS_KEY (key id ${this.#key.id})`;
      throw new SecretUnreadableError(
        `it was encrypted with key id ${id}, which is neither ${configured}; check SECRETS_KEY (during a key rotation, SECRETS_KEY_PREVIOUS must be the old key), or give the connector its secret again with updateConnector`,
      );
    }
    try {
      const decipher = createDecipheriv('aes-256-gcm', key.key, Buffer.from(iv, 'base64url'), { authTagLength: TAG_BYTES });
      decipher.setAAD(Buffer.from(AAD_LABEL + context, 'utf8'));
      decipher.setAuthTag(Buffer.from(tag, 'base64url'));
      const plain = Buffer.concat([decipher.update(Buffer.from(ciphertext, 'base64url')), decipher.final()]);
      return new TextDecoder('utf-8', { fatal: true }).decode(plain);
    } catch {
      throw new SecretUnreadableError(
        `the stored value does not authenticate under key id ${id} (damaged, or stored for another connector); give the connector its secret again with updateConnector`,
      );
    }
  }

  /**
   * The value to store instead of `stored`, or null when it is right as it is: a plain secret is
   * sealed once there is a key, and one sealed under the previous key is sealed under the
   * current one. Throws SecretUnreadableError for a value no configured key opens.
   */
  reseal(stored: string, context: string): string | null {
    if (!this.#key) return null;
    if (isSealed(stored) && SEALED.exec(stored)?.[1] === this.#key.id) {
      this.open(stored, context); // a damaged value is reported, not kept as if it were fine
      return null;
    }
    return this.seal(this.open(stored, context), context);
  }
}
