// Values for the fuzz test's GraphQL documents (see fuzz-documents.ts): of the right type (which the
// service may still refuse), and of a type an argument can never take (which GraphQL refuses
// before anything runs), as literals and as variables.
import fc from 'fast-check';
import {
  GraphQLEnumType,
  GraphQLInputObjectType,
  GraphQLList,
  GraphQLNonNull,
  type GraphQLInputType,
  type GraphQLScalarType,
} from 'graphql';

/** An enum value in a literal (printed bare) or a variable (its name as a string). */
export class EnumValue {
  constructor(readonly name: string) {}
}
export type Value = null | boolean | number | string | EnumValue | Value[] | { [key: string]: Value };

export const literal = (value: Value): string => {
  if (value === null) return 'null';
  if (value instanceof EnumValue) return value.name;
  if (Array.isArray(value)) return `[${value.map(literal).join(', ')}]`;
  if (typeof value === 'object')
    return `{ ${Object.entries(value)
      .map(([k, v]) => `${k}: ${literal(v)}`)
      .join(', ')} }`;
  return typeof value === 'string' ? JSON.stringify(value) : String(value);
};
export const json = (value: Value): unknown => {
  if (value instanceof EnumValue) return value.name;
  if (Array.isArray(value)) return value.map(json);
  if (value !== null && typeof value === 'object') return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, json(v)]));
  return value;
};

export const LONG = (n: number, unit = 'x') => unit.repeat(n);
/** Strings every text input should survive: empty, control characters, NUL, lone surrogates, injections, sizes around the limits. */
const NASTY = [
  '',
  ' ',
  '\t\n',
  '\u0000',
  'a\u0000b',
  '\ud800',
  'x\udfffy',
  '\u202e',
  '\ufeff',
  'é',
  'Ё'.repeat(129),
  "'; drop table jobs; --",
  '" or 1=1 --',
  '%s%n%x',
  '${7*7}',
  '{{7*7}}',
  '\\',
  '../../etc/passwd',
  '<script>alert(1)</script>',
  'null',
  'undefined',
  'NaN',
  LONG(128),
  LONG(129),
  LONG(200),
  LONG(201),
  LONG(1000),
  LONG(1001),
  LONG(4097),
  '0:0:5',
  '0:60:0',
  '1:2',
  '-1:0:0',
  '99999999999999999999:0:0',
  '0:0:0',
  'ServerOperationConnector:Noop',
  'ServerOperationConnector:',
  'Nope:x',
  ':x',
  'http://127.0.0.1:9',
  'ftp://x',
  'http://user:pw@host',
  'http://[::1',
  '2026-02-30T00:00:00Z',
  '-271821-04-20T00:00:00.000Z',
  '1',
  '-1',
  '0',
  '18446744073709551616',
  Buffer.from('-271821-04-20T00:00:00.000Z|1').toString('base64url'),
  Buffer.from('+275760-09-13T00:00:00.000Z|999999999999999999').toString('base64url'),
  Buffer.from('2026-01-01T00:00:00.000Z|99999999999999999999').toString('base64url'),
  Buffer.from('1|1').toString('base64url'),
  '|',
  Buffer.from('0000-01-01T00:00:00.000Z|1').toString('base64url'),
  Buffer.from('2026-02-30T00:00:00.000Z|1').toString('base64url'),
];

export const strings = (exclude: readonly string[]): fc.Arbitrary<string> =>
  fc
    .oneof(
      { weight: 16, arbitrary: fc.constantFrom(...NASTY) },
      { weight: 12, arbitrary: fc.string({ maxLength: 40 }) },
      { weight: 8, arbitrary: fc.string({ unit: 'grapheme', maxLength: 30 }) },
      { weight: 8, arbitrary: fc.string({ unit: 'binary', maxLength: 30 }) },
      // Oversized: rare, since one request holds many strings.
      {
        weight: 1,
        arbitrary: fc
          .tuple(fc.constantFrom('x', 'я', '😀', '\u0000', ' '), fc.constantFrom(1001, 4097, 10_000, 70_000))
          .map(([u, n]) => LONG(n, u)),
      },
    )
    .filter((s) => !exclude.some((id) => s.normalize('NFC').trim().toLowerCase() === id.toLowerCase()));

const ints = fc.oneof(
  fc.integer({ min: -(2 ** 31), max: 2 ** 31 - 1 }),
  fc.constantFrom(0, -1, 1, 500, 501, 86_400, 86_401, 2 ** 31 - 1, -(2 ** 31)),
);
const dateTimes = fc.oneof(
  fc
    .date({ min: new Date('0000-01-01T00:00:00Z'), max: new Date('9999-12-31T23:59:59.999Z'), noInvalidDate: true })
    .map((d) => d.toISOString()),
  fc.constantFrom(
    '0000-01-01T00:00:00Z',
    '0001-01-01T00:00:00+14:00',
    '9999-12-31T23:59:59.999+14:00',
    '9999-12-31T23:00:00-12:00',
    '2026-01-01T00:00:00-1200',
    '1970-01-01T00:00:00.123456789Z',
    '2026-02-29T00:00:00Z',
  ),
);

/** A value of the right GraphQL type (the domain may still refuse it). */
export function typed(type: GraphQLInputType, s: fc.Arbitrary<string>, depth = 0): fc.Arbitrary<Value> {
  if (type instanceof GraphQLNonNull) return nonNullTyped(type.ofType as GraphQLInputType, s, depth);
  const inner = nonNullTyped(type, s, depth);
  return fc.oneof({ weight: 8, arbitrary: inner }, { weight: 1, arbitrary: fc.constant(null) });
}
export function nonNullTyped(type: GraphQLInputType, s: fc.Arbitrary<string>, depth: number): fc.Arbitrary<Value> {
  if (type instanceof GraphQLNonNull) return nonNullTyped(type.ofType as GraphQLInputType, s, depth);
  if (type instanceof GraphQLList) {
    const item = typed(type.ofType as GraphQLInputType, s, depth + 1);
    const long = depth === 0 ? [{ weight: 1, arbitrary: fc.array(item, { minLength: 51, maxLength: 120 }) }] : [];
    return fc.oneof({ weight: 8, arbitrary: fc.array(item, { maxLength: depth > 1 ? 2 : 5 }) }, ...long, { weight: 3, arbitrary: item });
  }
  if (type instanceof GraphQLEnumType) return fc.constantFrom(...type.getValues().map((v) => new EnumValue(v.name)));
  if (type instanceof GraphQLInputObjectType) {
    if (depth > 3) return fc.constant({});
    const fields = Object.values(type.getFields());
    const shape = Object.fromEntries(fields.map((f) => [f.name, typed(f.type, s, depth + 1)]));
    return fc.record(shape, {
      requiredKeys: fields.filter((f) => f.type instanceof GraphQLNonNull).map((f) => f.name),
    }) as fc.Arbitrary<Value>;
  }
  switch ((type as GraphQLScalarType).name) {
    case 'Int':
      return ints;
    case 'Float':
      return fc.double({ noNaN: true, noDefaultInfinity: true });
    case 'Boolean':
      return fc.boolean();
    case 'DateTime':
      return fc.oneof({ weight: 4, arbitrary: dateTimes }, { weight: 1, arbitrary: s });
    case 'JSON':
      return fc.jsonValue({ maxDepth: 3 }) as fc.Arbitrary<Value>;
    default:
      return s; // String, ID and custom scalars taking text
  }
}

/** A literal the type can never accept (GraphQL validation refuses the document). */
export function wrongLiteral(type: GraphQLInputType): fc.Arbitrary<string> {
  if (type instanceof GraphQLNonNull) return fc.oneof(fc.constant('null'), wrongLiteral(type.ofType as GraphQLInputType));
  if (type instanceof GraphQLList)
    return fc.oneof(
      wrongLiteral(type.ofType as GraphQLInputType),
      wrongLiteral(type.ofType as GraphQLInputType).map((l) => `[${l}]`),
    );
  if (type instanceof GraphQLEnumType) return fc.constantFrom(`"${type.getValues()[0]!.name}"`, 'NOT_A_VALUE', '1', '{ a: 1 }');
  if (type instanceof GraphQLInputObjectType) {
    const required = Object.values(type.getFields()).filter((f) => f.type instanceof GraphQLNonNull);
    return fc.constantFrom('"text"', '1', 'true', '{ zzUnknown: 1 }', ...(required.length > 0 ? ['{}'] : []));
  }
  switch ((type as GraphQLScalarType).name) {
    case 'Int':
      return fc.constantFrom('"1"', '1.5', '2147483648', '-2147483649', 'true', 'ENUM_LIKE', '[1]', '{ a: 1 }');
    case 'Float':
      return fc.constantFrom('"1"', 'true', 'ENUM_LIKE', '{ a: 1 }');
    case 'Boolean':
      return fc.constantFrom('"true"', '1', '0', 'TRUE', '{ a: 1 }');
    case 'DateTime':
      return fc.constantFrom('"2026-02-30T00:00:00Z"', '"yesterday"', '""', '12', 'true', '"2026-01-01T24:00:00Z"', '"2026-01-01"');
    case 'ID':
      return fc.constantFrom('true', '1.5', '{ a: 1 }', 'ENUM_LIKE', '[1, 2]');
    case 'JSON':
      return fc.constant('$undeclaredVariable');
    default:
      return fc.constantFrom('true', '12', '1.5', '{ a: 1 }', 'ENUM_LIKE', '[1, 2]');
  }
}

/** A JSON variable value the type can never accept (the operation is refused before it runs). */
export function wrongJson(type: GraphQLInputType): fc.Arbitrary<unknown> {
  if (type instanceof GraphQLNonNull) return fc.oneof(fc.constant(null), wrongJson(type.ofType as GraphQLInputType));
  if (type instanceof GraphQLList) return wrongJson(type.ofType as GraphQLInputType).map((v) => [v]);
  if (type instanceof GraphQLEnumType) return fc.constantFrom('NOT_A_VALUE', 1, true, {});
  if (type instanceof GraphQLInputObjectType) return fc.constantFrom('text', 1, [], { zzUnknown: 1 });
  switch ((type as GraphQLScalarType).name) {
    case 'Int':
      return fc.constantFrom('1', 1.5, 2 ** 31, -(2 ** 53), true, {}, []);
    case 'Float':
      return fc.constantFrom('1', true, {}, []);
    case 'Boolean':
      return fc.constantFrom('true', 1, 0, {}, []);
    case 'DateTime':
      return fc.constantFrom('2026-02-30T00:00:00Z', 'yesterday', '', 12, true, {}, '+275760-09-13T00:00:00.000Z');
    case 'ID':
      return fc.constantFrom(true, 1.5, {}, []);
    case 'JSON':
      return fc.constant(undefined); // a JSON variable takes anything: declared, but left out while non-null
    default:
      return fc.constantFrom(true, 12, 1.5, {}, []);
  }
}

/** Sets `value` at a dotted path of an argument map (creating the input object when absent). */
export function setPath(args: Record<string, Value>, dotted: string, value: Value): void {
  const [head, ...rest] = dotted.split('.') as [string, ...string[]];
  if (rest.length === 0) {
    args[head] = value;
    return;
  }
  const child = args[head];
  const object = child !== null && typeof child === 'object' && !Array.isArray(child) && !(child instanceof EnumValue) ? child : {};
  args[head] = object;
  setPath(object, rest.join('.'), value);
}
