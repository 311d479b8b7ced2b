import path from 'node:path';
import { readTokenFile } from './token-file.ts';
import { parseTokenLines, tokenLinesOfSetting, type TokenEntry } from './tokens.ts';

/** The tokens configured at start: none means auth is off. */
export interface AuthTokens {
  readonly entries: readonly TokenEntry[];
  /** The content digest of AUTH_TOKENS_FILE as read at start, so its watcher sees later changes only. */
  readonly fileDigest: string | null;
}

/**
 * AUTH_TOKENS and AUTH_TOKENS_FILE (SPEC §8) checked at start: their tokens, or the problems
 * (naming entries and lines, never quoting a token). Both set stops the start: which one
 * should win is not for the service to guess.
 */
export function authTokens(
  setting: string | undefined,
  file: string | undefined,
): { tokens: AuthTokens; file: string | undefined; problems: string[] } {
  const none = { tokens: { entries: [], fileDigest: null }, file: undefined, problems: [] as string[] };
  if (setting !== undefined && file !== undefined) {
    return { ...none, problems: ['AUTH_TOKENS and AUTH_TOKENS_FILE: both are set; configure the tokens in one of them'] };
  }
  if (setting !== undefined) {
    const { entries, problems } = parseTokenLines('AUTH_TOKENS', tokenLinesOfSetting(setting));
    if (problems.length === 0 && entries.length === 0) problems.push('AUTH_TOKENS: lists no token (name:role:token, comma-separated)');
    return { ...none, tokens: { entries, fileDigest: null }, problems };
  }
  if (file !== undefined) {
    const absolute = path.resolve(file);
    const read = readTokenFile(absolute);
    return { tokens: { entries: read.entries, fileDigest: read.digest }, file: absolute, problems: read.problems };
  }
  return none;
}
