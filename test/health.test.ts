// GET /health and /health/live of the HTTP app (on a real process: process.test.ts).
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { appFor, type Json } from './helpers/api.ts';
import { testDatabase } from './helpers/db.ts';
import { harness } from './helpers/harness.ts';

const { sql } = await testDatabase();

describe('/health', () => {
  it('should answer 200 with status, instance and database when healthy, and 503 otherwise', async () => {
    const h = harness(sql);
    let state: 'ok' | 'down' | 'throws' = 'ok';
    const app = appFor(h, {
      health: async () => {
        if (state === 'throws') throw new Error('health check exploded');
        return state === 'ok'
          ? { ok: true, body: { instance: 'health-instance', database: 'up' } }
          : { ok: false, body: { instance: 'health-instance', database: 'down' } };
      },
    });
    const port = await app.listen(0, '127.0.0.1');
    try {
      const healthy = await fetch(`http://127.0.0.1:${port}/health`);
      assert.equal(healthy.status, 200);
      assert.match(healthy.headers.get('content-type') ?? '', /application\/json/);
      assert.deepEqual(await healthy.json(), { status: 'ok', instance: 'health-instance', database: 'up' });

      state = 'down';
      const down = await fetch(`http://127.0.0.1:${port}/health`);
      assert.equal(down.status, 503);
      const body = (await down.json()) as Json;
      assert.equal(body['database'], 'down');
      assert.notEqual(body['status'], 'ok');

      state = 'throws';
      const broken = await fetch(`http://127.0.0.1:${port}/health`);
      assert.equal(broken.status, 503);
      await broken.body?.cancel();

      const live = await fetch(`http://127.0.0.1:${port}/health/live`);
      assert.equal(live.status, 200, 'liveness does not depend on the database');
      await live.body?.cancel();
    } finally {
      await app.close();
    }
  });
});
