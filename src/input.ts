import { badInput } from './errors.ts';
import { type ExternalCall, parseExternalCall } from './scheduling/external-call.ts';
import { parsePeriod } from './scheduling/period.ts';

/** Text input is normalised to NFC before it is checked (SPEC §5). */
export const nfc = (text: string): string => text.normalize('NFC');

const JOB_ID = /^[\p{L}\p{M}\p{N}_.-]+$/u;
const length = (text: string): number => [...text].length;

export function validateJobId(raw: string, field = 'id'): string {
  const id = nfc(raw);
  if (length(id) < 1 || length(id) > 128) throw badInput(field, 'A job id must be 1 to 128 characters long.');
  if (!JOB_ID.test(id)) throw badInput(field, `Job id "${id}" may contain only letters, digits, _ . and -.`);
  return id;
}

export function validateName(raw: string, field = 'name'): string {
  const name = nfc(raw);
  if (name.trim().length === 0) throw badInput(field, 'A job name must not be empty.');
  if (length(name) > 200) throw badInput(field, 'A job name must be at most 200 characters long.');
  return name;
}

export const validateExternalCall = (raw: string, field = 'externalCall'): ExternalCall => parseExternalCall(nfc(raw), field);

export const validatePeriod = (raw: string, field = 'period'): number => parsePeriod(nfc(raw), field);

export function validateTimeout(value: number, field = 'timeoutSeconds'): number {
  if (!Number.isInteger(value) || value < 1 || value > 86_400) {
    throw badInput(field, 'timeoutSeconds must be a whole number of seconds from 1 to 86400.');
  }
  return value;
}

export function validateNote(raw: string | null | undefined, field = 'note'): string | null {
  if (raw == null) return null;
  const note = nfc(raw);
  if (length(note) > 1000) throw badInput(field, 'A pause note must be at most 1000 characters long.');
  return note;
}

export function validateStartAt(value: Date, field = 'startAt'): Date {
  if (Number.isNaN(value.getTime())) throw badInput(field, 'startAt is not a valid date and time.');
  return value;
}

export function validateEndAt(value: Date, field = 'endAt'): Date {
  if (Number.isNaN(value.getTime())) throw badInput(field, 'endAt is not a valid date and time.');
  return value;
}

export function validateAutoPause(value: number, field = 'autoPauseAfterFailures'): number {
  if (!Number.isInteger(value) || value < 1 || value > 1000) {
    throw badInput(field, 'autoPauseAfterFailures must be a whole number from 1 to 1000 (null turns it off).');
  }
  return value;
}

/** A retry policy (SPEC §3b), every field given: whole seconds, a factor of at least 1. */
export function validateRetry<T extends { maxAttempts: number; backoffSeconds: number; backoffFactor: number; maxBackoffSeconds: number }>(
  policy: T,
  field = 'retry',
): T {
  const whole = (value: number, min: number, max: number) => Number.isInteger(value) && value >= min && value <= max;
  if (!whole(policy.maxAttempts, 1, 10)) throw badInput(`${field}.maxAttempts`, 'retry.maxAttempts must be a whole number from 1 to 10.');
  if (!whole(policy.backoffSeconds, 0, 86_400))
    throw badInput(`${field}.backoffSeconds`, 'retry.backoffSeconds must be a whole number of seconds from 0 to 86400.');
  if (!Number.isFinite(policy.backoffFactor) || policy.backoffFactor < 1 || policy.backoffFactor > 10)
    throw badInput(`${field}.backoffFactor`, 'retry.backoffFactor must be a number from 1 to 10.');
  if (!whole(policy.maxBackoffSeconds, 1, 86_400))
    throw badInput(`${field}.maxBackoffSeconds`, 'retry.maxBackoffSeconds must be a whole number of seconds from 1 to 86400.');
  return policy;
}
