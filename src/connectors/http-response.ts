import type http from 'node:http';
import { bound, oneLine } from './http-redaction.ts';

/** What an HTTP connector makes of a response and of a failed exchange. */

/** The internal abort, told apart from every other failure. */
class AbortedError extends Error {}

/**
 * Reads at most `max` bytes of a body; past that the response (and its connection) is destroyed.
 * `truncated` says the body had more (or was cut short by the connection). A body read to its
 * end leaves the connection to be kept for the next request.
 */
export function readBounded(res: http.IncomingMessage, max: number, signal: AbortSignal): Promise<{ body: Buffer; truncated: boolean }> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    let done = false;
    let ended = false;
    const finish = () => {
      if (done) return;
      done = true;
      signal.removeEventListener('abort', finish);
      if (signal.aborted) {
        res.destroy();
        reject(new AbortedError('aborted'));
      } else {
        resolve({ body: Buffer.concat(chunks), truncated: !ended });
      }
    };
    res.on('data', (chunk: Buffer) => {
      if (done) return;
      if (size + chunk.length > max) {
        chunks.push(chunk.subarray(0, max - size));
        size = max;
        res.destroy();
        finish();
        return;
      }
      chunks.push(chunk);
      size += chunk.length;
    });
    res.on('end', () => {
      ended = true;
      finish();
    });
    // A body cut short (reset, closed) still yields what arrived.
    res.on('close', finish);
    res.on('error', finish);
    if (signal.aborted) finish();
    else signal.addEventListener('abort', finish, { once: true });
  });
}

type NetError = NodeJS.ErrnoException & { address?: string; port?: number; errors?: unknown[] };

/** A short, clear description of a connection failure. */
export function describeNetworkError(thrown: unknown, host: string): string {
  const error = thrown as NetError;
  // With several addresses, Node tries each and reports them together.
  if (Array.isArray(error.errors) && error.errors.length > 0) {
    const parts = [...new Set(error.errors.map((e) => describeNetworkError(e, host)))];
    return parts.join('; ');
  }
  const where =
    error.address !== undefined
      ? `${error.address.includes(':') ? `[${error.address}]` : error.address}${error.port !== undefined ? `:${error.port}` : ''}`
      : host;
  switch (error.code) {
    case 'ECONNREFUSED':
      return `connection refused by ${where}`;
    case 'ECONNRESET':
      return error.message === 'socket hang up' ? 'the server closed the connection without an answer' : `connection reset by ${where}`;
    case 'ENOTFOUND':
      return `host ${host} not found`;
    case 'EAI_AGAIN':
      return `host ${host} could not be resolved (temporary DNS failure)`;
    case 'ETIMEDOUT':
      return `connection to ${where} timed out`;
    case 'EHOSTUNREACH':
    case 'ENETUNREACH':
      return `${where} is unreachable`;
    default:
      return bound(oneLine(`${error.code ? `${error.code}: ` : ''}${error.message ?? String(thrown)}`), 300);
  }
}
