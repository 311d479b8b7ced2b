/**
 * Writes the GraphQL schema, as the Pothos builder defines it, to schema.graphql.
 * `--check` fails instead when the committed file is not current.
 */
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { lexicographicSortSchema, printSchema } from 'graphql';
import { schema } from '../src/graphql/schema.ts';

export const SCHEMA_FILE = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../schema.graphql');
export const printedSchema = (): string => `${printSchema(lexicographicSortSchema(schema))}\n`;

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const current = fs.existsSync(SCHEMA_FILE) ? fs.readFileSync(SCHEMA_FILE, 'utf8') : '';
  if (process.argv.includes('--check')) {
    if (current !== printedSchema()) {
      console.error('schema.graphql is not current: run `npm run schema:emit` and commit it.');
      process.exit(1);
    }
    console.log('schema.graphql is current.');
  } else {
    fs.writeFileSync(SCHEMA_FILE, printedSchema());
    console.log(`Wrote ${SCHEMA_FILE}`);
  }
}
