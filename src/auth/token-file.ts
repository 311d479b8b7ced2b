import { createHash } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import type { Logger } from 'pino';
import { parseTokenLines, tokenLinesOfFile, type TokenEntry, type TokenStore } from './tokens.ts';

/** How often the file is read again, whatever the watcher saw (a watch can miss a change). */
const POLL_MS = 1000;
/** A change is read this long after the watcher's last event. */
const SETTLE_MS = 100;
/** A content seen for the first time is read again this much later, and taken when it is the same. */
const CONFIRM_MS = 150;

/** Reads and checks an AUTH_TOKENS_FILE: its tokens, or the problems (which never quote a token). */
export function readTokenFile(file: string): { entries: TokenEntry[]; problems: string[]; digest: string | null } {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    const why =
      code === 'ENOENT' ? 'no such file' : code === 'EACCES' ? 'it cannot be read by this user' : `it cannot be read (${code ?? 'error'})`;
    return { entries: [], problems: [`AUTH_TOKENS_FILE: ${why}: ${file}`], digest: null };
  }
  const digest = createHash('sha256').update(text).digest('hex');
  const { entries, problems } = parseTokenLines('AUTH_TOKENS_FILE', tokenLinesOfFile(text));
  if (problems.length === 0 && entries.length === 0) problems.push(`AUTH_TOKENS_FILE: ${file} lists no token`);
  return { entries, problems, digest };
}

/**
 * Keeps `store` in step with the file: watched (its directory, so that a file replaced by a
 * rename, as editors and Kubernetes secrets do, is seen) and read again every second. A change
 * is taken once two reads a moment apart agree, so a file caught half-written is not. A file
 * that is missing or has a bad line leaves no token valid until it is fixed: the API is then
 * refused to everyone rather than left open or left to a token meant to be gone.
 * Returns the function that stops watching.
 */
export function watchTokenFile(file: string, store: TokenStore, log: Logger, initialDigest: string | null): () => void {
  /** The content in force (its digest; `missing` for no file), and one seen once, to be confirmed. */
  let applied = initialDigest ?? 'missing';
  let seen: string | null = null;
  let timer: NodeJS.Timeout | null = null;
  const soon = (ms: number) => {
    if (timer) clearTimeout(timer);
    timer = setTimeout(() => {
      timer = null;
      check();
    }, ms);
  };
  const check = () => {
    const read = readTokenFile(file);
    const key = read.digest ?? 'missing';
    if (key === applied) {
      seen = null;
      return;
    }
    if (key !== seen) {
      seen = key;
      soon(CONFIRM_MS);
      return;
    }
    seen = null;
    applied = key;
    if (read.problems.length > 0) {
      log.error({ problems: read.problems }, 'AUTH_TOKENS_FILE cannot be used: no token is accepted until it is fixed');
      if (store.size > 0) store.replace([]);
      return;
    }
    store.replace(read.entries);
    log.info({ tokens: read.entries.map((e) => `${e.principal.name} (${e.principal.role})`) }, 'AUTH_TOKENS_FILE read again');
  };
  let watcher: fs.FSWatcher | null = null;
  try {
    watcher = fs.watch(path.dirname(file), { persistent: false }, () => soon(SETTLE_MS));
    watcher.on('error', (error) => log.warn({ err: error }, 'watching AUTH_TOKENS_FILE failed; it is still read every second'));
  } catch (error) {
    log.warn({ err: error }, 'AUTH_TOKENS_FILE cannot be watched; it is read every second');
  }
  const poll = setInterval(check, POLL_MS);
  poll.unref();
  return () => {
    clearInterval(poll);
    if (timer) clearTimeout(timer);
    watcher?.close();
  };
}
