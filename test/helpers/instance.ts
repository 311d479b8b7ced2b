// Whole service instances in the test's own process (startInstance, as main.ts calls it), for
// tests that need several on one database and reach into them (their scheduler, bus or relay).
// A test that needs the real process, its signals and its output, uses ./process.ts instead.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after } from 'node:test';
import { loadConfig } from '../../src/config.ts';
import { type Instance, startInstance } from '../../src/instance.ts';
import { silentLog } from './harness.ts';

/**
 * A server operations directory holding one module with this source (by default a `Noop`),
 * removed when the file's tests end.
 */
export function operationsDir(source = 'export default { Noop: async () => {} };\n'): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'instance-ops-'));
  fs.writeFileSync(path.join(dir, 'ops.mjs'), source);
  after(() => fs.rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/**
 * Starts an instance with these settings (any free port, a 5 s shutdown grace unless they say
 * otherwise), stopped when the file's tests end.
 */
export async function testInstance(settings: Record<string, string>): Promise<Instance> {
  const config = loadConfig({ PORT: '0', SHUTDOWN_GRACE_SECONDS: '5', ...settings });
  const service = await startInstance({ config, log: silentLog });
  after(() => service.stop());
  return service;
}
