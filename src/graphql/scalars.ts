import { GraphQLError, Kind } from 'graphql';
import { builder } from './builder.ts';

const ISO_8601 = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:?\d{2})$/;

function parseDateTime(value: unknown, extensions?: Record<string, unknown>): Date {
  const date = typeof value === 'string' && ISO_8601.test(value) && isCalendarDate(value) ? new Date(value) : null;
  if (!date || Number.isNaN(date.getTime()) || !storable(date)) {
    throw new GraphQLError(
      `DateTime must be an ISO 8601 date and time with a zone, e.g. 2026-01-31T08:00:00Z; got ${JSON.stringify(value)}.`,
      {
        extensions,
      },
    );
  }
  return date;
}

/** Date.parse rolls impossible dates over (2026-02-30 → 2026-03-02); they are bad input instead. */
function isCalendarDate(text: string): boolean {
  const [year, month, day] = text.slice(0, 10).split('-').map(Number) as [number, number, number];
  const hour = Number(text.slice(11, 13));
  const probe = new Date(Date.UTC(year, month - 1, day));
  return probe.getUTCMonth() === month - 1 && probe.getUTCDate() === day && hour <= 23;
}

/**
 * Whether PostgreSQL can take the instant as the driver sends it (toISOString): a UTC year from
 * 0001 to 9999. JavaScript reads 0000-01-01T00:00Z (PostgreSQL has no year 0) and
 * 9999-12-31T23:00-12:00 (year 10000 in UTC), which the database refuses.
 */
const storable = (date: Date): boolean => date.getUTCFullYear() >= 1 && date.getUTCFullYear() <= 9999;

builder.scalarType('DateTime', {
  description: 'An ISO 8601 date and time in UTC with milliseconds, e.g. 2026-01-31T08:00:00.000Z.',
  serialize: (value) => (value instanceof Date ? value : new Date(String(value))).toISOString(),
  // A variable's bad value is bad input a client can branch on (SPEC §5); a bad literal in the
  // document stays a validation failure (GRAPHQL_VALIDATION_FAILED).
  parseValue: (value) => parseDateTime(value, { code: 'BAD_USER_INPUT' }),
  parseLiteral: (ast) => parseDateTime(ast.kind === Kind.STRING ? ast.value : null),
});

builder.scalarType('JSON', {
  description: 'Any JSON value.',
  serialize: (value) => value,
  parseValue: (value) => value,
});
