// Every GraphQL operation the dashboard sends (web/src/documents.ts) is valid against the schema
// as the service builds it: a field renamed or removed in the API fails here, not in a browser.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { parse, validate } from 'graphql';
import { schema } from '../src/graphql/schema.ts';
import { DOCUMENTS } from '../web/src/documents.ts';

describe('the dashboard’s GraphQL documents', () => {
  for (const [name, document] of Object.entries(DOCUMENTS)) {
    it(`${name} should be valid against the schema`, () => {
      const errors = validate(schema, parse(document));
      assert.deepEqual(
        errors.map((error) => error.message),
        [],
      );
    });
  }

  it('should name every document it exports', async () => {
    const module = (await import('../web/src/documents.ts')) as Record<string, unknown>;
    const operations = Object.entries(module).filter(
      ([, value]) => typeof value === 'string' && /^(query|mutation|subscription)\b/.test(value),
    );
    assert.deepEqual(operations.map(([key]) => key).sort(), Object.keys(DOCUMENTS).sort());
  });
});
