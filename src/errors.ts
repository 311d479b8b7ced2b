import { GraphQLError } from 'graphql';

/** The stable codes a client can branch on (SPEC §5). */
export type ErrorCode = 'BAD_USER_INPUT' | 'NOT_FOUND' | 'CONFLICT' | 'UNAUTHENTICATED' | 'FORBIDDEN';

/**
 * An expected, client-facing error. It is a GraphQLError so graphql-yoga passes it through
 * unmasked, with `extensions.code` (and `extensions.field` for bad input).
 */
export class DomainError extends GraphQLError {
  constructor(code: ErrorCode, message: string, extra: Record<string, unknown> = {}) {
    super(message, { extensions: { code, ...extra } });
    this.name = 'DomainError';
  }
  get code(): ErrorCode {
    return this.extensions['code'] as ErrorCode;
  }
}

export const badInput = (field: string, message: string): DomainError => new DomainError('BAD_USER_INPUT', message, { field });
export const notFound = (message: string): DomainError => new DomainError('NOT_FOUND', message);
export const conflict = (message: string): DomainError => new DomainError('CONFLICT', message);

/** Coerce anything thrown into an Error, so failures can always be recorded as data. */
export function toError(thrown: unknown): Error {
  if (thrown instanceof Error) return thrown;
  if (typeof thrown === 'string') return new Error(thrown);
  try {
    return new Error(`Non-error thrown: ${JSON.stringify(thrown)}`);
  } catch {
    return new Error(`Non-error thrown: ${String(thrown)}`);
  }
}
