import fs from 'node:fs';
import type { Logger } from 'pino';
import type { Config } from '../config.ts';
import { watchTokenFile } from './token-file.ts';
import { TokenStore } from './tokens.ts';

/**
 * The token store of an instance: off with no tokens, else the tokens of AUTH_TOKENS, or those of
 * AUTH_TOKENS_FILE kept in step with the file (its watcher stops with the instance: `cleanup`).
 */
export function apiTokens(config: Config, log: Logger, cleanup: (() => void)[]): TokenStore {
  const { entries, fileDigest } = config.AUTH_TOKENS;
  if (entries.length === 0) return TokenStore.off();
  const store = new TokenStore(true, entries);
  if (config.AUTH_TOKENS_FILE) cleanup.push(watchTokenFile(config.AUTH_TOKENS_FILE, store, log.child({ component: 'auth' }), fileDigest));
  return store;
}

/** The start says whether auth is on, with which token names and roles (never a token). */
export function logAuth(config: Config, log: Logger): void {
  const { entries } = config.AUTH_TOKENS;
  if (entries.length === 0) {
    log.warn(
      { auth: 'off', host: config.HOST },
      `authentication is off (no AUTH_TOKENS or AUTH_TOKENS_FILE): every request acts as "local", an admin; listening on ${config.HOST} only`,
    );
    return;
  }
  const source = config.AUTH_TOKENS_FILE ? `AUTH_TOKENS_FILE ${config.AUTH_TOKENS_FILE} (watched)` : 'AUTH_TOKENS';
  log.info(
    { auth: 'on', source, tokens: entries.map((e) => `${e.principal.name} (${e.principal.role})`) },
    `authentication is on: ${entries.length} token${entries.length === 1 ? '' : 's'} from ${source}`,
  );
  // Plain tokens in a file other users of the machine can read are theirs too.
  const file = config.AUTH_TOKENS_FILE;
  const mode = file ? fs.statSync(file, { throwIfNoEntry: false })?.mode : undefined;
  if (file && mode !== undefined && (mode & 0o077) !== 0 && entries.some((e) => !e.hashed)) {
    log.warn(
      { file, mode: `0${(mode & 0o777).toString(8)}` },
      'AUTH_TOKENS_FILE holds plain tokens and other users may read it: chmod 600 it, or give sha256:<hex> lines instead of tokens',
    );
  }
}
