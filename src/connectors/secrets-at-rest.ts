import type { Logger } from 'pino';
import type { Sql } from '../db/client.ts';
import { lockConnectorSecrets, saveConnectorSecret } from '../db/connectors.ts';
import { isSealed, type SecretBox } from './secret-box.ts';

export interface SealReport {
  /** Connectors whose secret was plain text and is now encrypted. */
  encrypted: string[];
  /** Connectors whose secret was under SECRETS_KEY_PREVIOUS and is now under SECRETS_KEY. */
  rotated: string[];
  /** Connectors whose secret no configured key opens: their runs fail until it is fixed. */
  unreadable: string[];
}

/**
 * At start (SPEC §8): with a key, encrypts the secrets still stored in plain text and
 * re-encrypts those under the previous key, all in one transaction (rows locked, so instances
 * starting together do it once); without one, warns that secrets are stored in plain text. A
 * secret no key opens is named in a WARNING and left as it is: never a failed start. The log
 * names connectors and key ids, never a secret, a key or a ciphertext.
 */
export async function sealStoredSecrets(sql: Sql, box: SecretBox, log: Logger): Promise<SealReport> {
  const report: SealReport = { encrypted: [], rotated: [], unreadable: [] };
  await sql.begin(async (tx) => {
    report.encrypted = [];
    report.rotated = [];
    report.unreadable = [];
    for (const { id, secret } of await lockConnectorSecrets(tx)) {
      if (!box.encrypts) {
        if (isSealed(secret)) report.unreadable.push(id);
        continue;
      }
      let next: string | null;
      try {
        next = box.reseal(secret, id);
      } catch {
        report.unreadable.push(id);
        continue;
      }
      if (next === null) continue;
      await saveConnectorSecret(tx, id, next);
      (isSealed(secret) ? report.rotated : report.encrypted).push(id);
    }
  });
  if (!box.encrypts) {
    log.warn('connector secrets are stored in plain text: set SECRETS_KEY (32 random bytes in base64) to store them encrypted');
  } else if (report.encrypted.length > 0 || report.rotated.length > 0) {
    log.info(
      { keyId: box.keyId, encrypted: report.encrypted.length, reEncrypted: report.rotated.length },
      `connector secrets: ${report.encrypted.length} encrypted, ${report.rotated.length} re-encrypted with SECRETS_KEY`,
    );
  }
  if (report.unreadable.length > 0) {
    const check = box.encrypts
      ? 'check SECRETS_KEY (and SECRETS_KEY_PREVIOUS during a key rotation)'
      : 'they are encrypted and SECRETS_KEY is not set';
    log.warn(
      { connectors: report.unreadable },
      `the secrets of connectors ${report.unreadable.join(', ')} cannot be decrypted: ${check}; their runs fail until then, or until each is given its secret again with updateConnector`,
    );
  }
  return report;
}
