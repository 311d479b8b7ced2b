/**
 * Fails when src/db/schema.ts has changes that no migration in drizzle/ carries. drizzle-kit's
 * own `check` does not see that, so this runs `drizzle-kit generate` on a scratch copy of the
 * migrations and requires that it produced nothing.
 */
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

const root = path.resolve(import.meta.dirname, '..');
const scratch = fs.mkdtempSync(path.join(os.tmpdir(), 'server-jobs-migrations-'));
try {
  fs.cpSync(path.join(root, 'drizzle'), scratch, { recursive: true });
  const before = fs.readdirSync(scratch, { recursive: true }).length;
  // drizzle-kit reads `out` relative to the working directory.
  const config = path.join(scratch, 'drizzle.config.json.ts');
  fs.writeFileSync(
    config,
    `export default ${JSON.stringify({ dialect: 'postgresql', schema: './src/db/schema.ts', out: path.relative(root, scratch) })};\n`,
  );
  const output = execFileSync(path.join(root, 'node_modules/.bin/drizzle-kit'), ['generate', `--config=${config}`], {
    cwd: root,
    encoding: 'utf8',
  });
  fs.rmSync(config);
  const after = fs.readdirSync(scratch, { recursive: true }).length;
  if (after !== before || !/No schema changes/i.test(output)) {
    console.error(`src/db/schema.ts has changes without a migration: run \`npm run db:generate\` and commit drizzle/.\n${output}`);
    process.exit(1);
  }
  console.log('Migrations are current.');
} finally {
  fs.rmSync(scratch, { recursive: true, force: true });
}
