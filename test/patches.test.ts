// The patches in patches/ are applied to the installed packages (patch-package, at npm install's
// postinstall). An install that skipped them — say a Docker image whose `npm ci` ran before
// patches/ was copied in — would run the unpatched postgres.js, which crashes the process on a
// database restart (porsager/postgres#1154, #1208). This reads every line a patch adds and looks
// for it in the installed file.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const patchesDir = path.join(root, 'patches');
const patches = fs.readdirSync(patchesDir).filter((f) => f.endsWith('.patch'));

/** The lines each file of a patch gains, by the file's path from the repository root. */
function addedLines(patch: string): Map<string, string[]> {
  const files = new Map<string, string[]>();
  let current: string[] | undefined;
  for (const line of patch.split('\n')) {
    const target = /^\+\+\+ b\/(.+)$/.exec(line);
    if (target) files.set(target[1]!, (current = []));
    else if (line.startsWith('+') && current && line.slice(1).trim() !== '') current.push(line.slice(1));
  }
  return files;
}

describe('installed patches', () => {
  it('should have the postgres.js patch', () => {
    assert.ok(
      patches.some((f) => f.startsWith('postgres+')),
      `no postgres.js patch in ${patchesDir}`,
    );
  });

  for (const patch of patches) {
    it(`should find every line ${patch} adds in the installed package`, () => {
      // patch-package names a patch <package>+<version>.patch; it only applies to that version.
      const [, name, version] = /^(.+)\+([^+]+)\.patch$/.exec(patch)!;
      const installed = JSON.parse(fs.readFileSync(path.join(root, 'node_modules', name!, 'package.json'), 'utf8')) as { version: string };
      assert.equal(installed.version, version, `${patch} is for ${name}@${version}; ${installed.version} is installed`);
      const files = addedLines(fs.readFileSync(path.join(patchesDir, patch), 'utf8'));
      assert.ok(files.size > 0, `${patch} adds nothing`);
      for (const [file, lines] of files) {
        const text = fs.readFileSync(path.join(root, file), 'utf8');
        const missing = lines.filter((line) => !text.includes(line));
        assert.deepEqual(missing, [], `${file} lacks lines of ${patch}: is the patch applied (npm install runs patch-package)?`);
      }
    });
  }

  it('should patch the postgres.js files the service loads, ESM and CommonJS alike', () => {
    const patch = patches.find((f) => f.startsWith('postgres+'));
    assert.ok(patch, 'no postgres.js patch');
    const patched = [...addedLines(fs.readFileSync(path.join(patchesDir, patch), 'utf8')).keys()].map((f) => path.join(root, f));
    const esm = fileURLToPath(import.meta.resolve('postgres'));
    const cjs = createRequire(import.meta.url).resolve('postgres');
    for (const entry of [esm, cjs]) {
      const connection = path.join(path.dirname(entry), 'connection.js');
      assert.ok(patched.includes(connection), `${connection} (next to ${entry}) is not among the patched files ${patched.join(', ')}`);
      assert.match(fs.readFileSync(connection, 'utf8'), /server-jobs patch/);
    }
  });
});
