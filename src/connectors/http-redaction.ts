import type { AuthScheme } from '../db/rows.ts';

/**
 * Keeping an HTTP connector's secret out of the messages it produces (run errors, log entries):
 * pure functions over strings, no I/O.
 */

/** Secrets shorter than this are not searched for in messages: it would mangle them for nothing. */
export const MIN_REDACTED_LENGTH = 4;
export const REDACTED = '[redacted]';
/** How many characters of a response body a message quotes at most. */
export const EXCERPT_CHARS = 500;

/** `text` cut to `max` characters, with an ellipsis when it was longer. */
export const bound = (text: string, max: number): string => (text.length > max ? `${text.slice(0, max)}…` : text);

/** One line of printable text: control characters and runs of white space become one space. */
export const oneLine = (text: string): string =>
  text
    .replace(/\p{Cc}+/gu, ' ')
    .replace(/\s+/g, ' ')
    .trim();

/** `encodeURIComponent`, or the text itself when it cannot be encoded (a lone surrogate). */
export function encodeURIComponentSafe(text: string): string {
  try {
    return encodeURIComponent(text);
  } catch {
    return text;
  }
}

/**
 * Every form in which a secret could come back in a message (echoed headers, URLs, bodies):
 * as is, base64 of its UTF-8 bytes (a BASIC credential), percent-encoded, and for BASIC the
 * password alone. Longest first, so a form containing another is replaced whole; forms shorter
 * than MIN_REDACTED_LENGTH are left out.
 */
export function secretForms(secret: string | null, authScheme: AuthScheme | null): string[] {
  if (!secret) return [];
  const forms = [secret, Buffer.from(secret, 'utf8').toString('base64'), encodeURIComponentSafe(secret)];
  if (authScheme === 'BASIC' && secret.includes(':')) {
    const password = secret.slice(secret.indexOf(':') + 1);
    forms.push(password, encodeURIComponentSafe(password));
  }
  return [...new Set(forms)].filter((f) => f.length >= MIN_REDACTED_LENGTH).sort((a, b) => b.length - a.length);
}

/** `text` with every occurrence of every form replaced by REDACTED. */
export function redact(text: string, forms: readonly string[]): string {
  let out = text;
  for (const form of forms) out = out.split(form).join(REDACTED);
  return out;
}

/**
 * Removes the start of a secret left at the end of a cut text (at least MIN_REDACTED_LENGTH
 * characters of it), replacing it by REDACTED.
 */
export function redactTail(text: string, forms: readonly string[]): string {
  for (const form of forms) {
    for (let k = form.length - 1; k >= MIN_REDACTED_LENGTH; k--) {
      if (text.endsWith(form.slice(0, k))) return text.slice(0, text.length - k) + REDACTED;
    }
  }
  return text;
}

/**
 * A bounded, one-line excerpt of a response body (decoded as UTF-8), with the secret removed
 * before it is cut and any start of it left at the cut removed after. `truncated` says the body
 * was read only in part; the excerpt then ends with an ellipsis.
 */
export function excerpt({ body, truncated }: { body: Buffer; truncated: boolean }, forms: readonly string[]): string {
  if (body.length === 0) return truncated ? '(body cut short)' : '(empty body)';
  const text = oneLine(redact(body.toString('utf8'), forms));
  const cut = text.length > EXCERPT_CHARS;
  return `${redactTail(cut ? text.slice(0, EXCERPT_CHARS) : text, forms)}${cut || truncated ? '…' : ''}`;
}
