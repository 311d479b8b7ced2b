// The dashboard's files as the service serves them (src/http/dashboard.ts): the page at `/` with
// its policy headers and no caching, hashed assets immutable, the right content types, gzip when
// asked, 304 for a known ETag, and a clear 503 while nothing is built. Then the real build
// (scripts/build-web.mjs): everything the page names is served, from the service itself.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import { createServer, get, type IncomingHttpHeaders, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { gunzipSync } from 'node:zlib';
import { Dashboard } from '../src/http/dashboard.ts';
import { repoRoot } from './helpers/process.ts';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'web-serving-'));
after(() => fs.rmSync(tmp, { recursive: true, force: true }));

/** A server answering only the dashboard's paths from `dir`, on a free port. */
async function serve(dir: string): Promise<{ url: string; close: () => Promise<void> }> {
  const dashboard = new Dashboard(dir);
  const server: Server = createServer((req, res) => {
    const urlPath = (req.url ?? '/').split('?')[0]!;
    if (Dashboard.owns(urlPath)) dashboard.serve(req, res, urlPath);
    else res.writeHead(418).end();
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return { url, close: () => new Promise((resolve) => server.close(() => resolve())) };
}

/** A GET as it goes on the wire: the path as given (fetch would resolve `..`), the body not decoded. */
function rawGet(
  url: string,
  urlPath: string,
  headers: Record<string, string> = {},
): Promise<{ status: number; headers: IncomingHttpHeaders; body: Buffer }> {
  return new Promise((resolve, reject) => {
    const { hostname, port } = new URL(url);
    get({ hostname, port, path: urlPath, headers }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (chunk: Buffer) => chunks.push(chunk));
      res.on('end', () => resolve({ status: res.statusCode!, headers: res.headers, body: Buffer.concat(chunks) }));
    }).on('error', reject);
  });
}

/** A build as scripts/build-web.mjs lays it out. */
function fakeBuild(dir: string, id = 'abc123'): void {
  const build = path.join(dir, id);
  fs.mkdirSync(path.join(build, 'assets'), { recursive: true });
  fs.writeFileSync(
    path.join(build, 'index.html'),
    `<!doctype html><title>${id}</title><script type="module" src="assets/main-ABCD1234.js"></script>`,
  );
  const script = 'console.log("the dashboard");\n'.repeat(100);
  fs.writeFileSync(path.join(build, 'assets', 'main-ABCD1234.js'), script);
  fs.writeFileSync(path.join(build, 'assets', 'main-ABCD1234.js.gz'), execFileSync('gzip', ['-c'], { input: script }));
  fs.writeFileSync(path.join(build, 'assets', 'main-ABCD1234.css'), 'body { margin: 0 }');
  fs.writeFileSync(path.join(build, 'assets', 'favicon.svg'), '<svg xmlns="http://www.w3.org/2000/svg"/>');
  fs.writeFileSync(path.join(dir, 'current.json'), JSON.stringify({ build: id }));
}

describe('the dashboard served from a build', () => {
  const dir = path.join(tmp, 'fake');
  let url: string;
  let close: () => Promise<void>;
  before(async () => {
    fakeBuild(dir);
    ({ url, close } = await serve(dir));
  });
  after(() => close());

  it('should answer / with the page, its content policy, and no caching without asking again', async () => {
    const response = await fetch(`${url}/`);
    assert.equal(response.status, 200);
    assert.equal(response.headers.get('content-type'), 'text/html; charset=utf-8');
    assert.equal(response.headers.get('cache-control'), 'no-cache');
    assert.match(response.headers.get('content-security-policy')!, /default-src 'self'.*connect-src 'self'.*frame-ancestors 'none'/);
    assert.equal(response.headers.get('x-content-type-options'), 'nosniff');
    assert.match(await response.text(), /assets\/main-ABCD1234\.js/);
  });

  it('should serve hashed assets as immutable, with their content types', async () => {
    const script = await fetch(`${url}/assets/main-ABCD1234.js`, { headers: { 'accept-encoding': 'identity' } });
    assert.equal(script.status, 200);
    assert.equal(script.headers.get('content-type'), 'text/javascript; charset=utf-8');
    assert.equal(script.headers.get('cache-control'), 'public, max-age=31536000, immutable');
    assert.equal(script.headers.get('content-encoding'), null);
    assert.match(await script.text(), /the dashboard/);
    const style = await fetch(`${url}/assets/main-ABCD1234.css`);
    assert.equal(style.headers.get('content-type'), 'text/css; charset=utf-8');
    const icon = await fetch(`${url}/assets/favicon.svg`);
    assert.equal(icon.headers.get('content-type'), 'image/svg+xml');
    assert.equal(icon.headers.get('cache-control'), 'public, max-age=86400', 'an unhashed name is not immutable');
  });

  it('should send the gzipped copy to a client that accepts gzip', async () => {
    const response = await rawGet(url, '/assets/main-ABCD1234.js', { 'accept-encoding': 'gzip, deflate' });
    assert.equal(response.headers['content-encoding'], 'gzip');
    assert.equal(response.headers['vary'], 'Accept-Encoding');
    assert.match(gunzipSync(response.body).toString(), /the dashboard/);
    const refused = await rawGet(url, '/assets/main-ABCD1234.js', { 'accept-encoding': 'gzip;q=0' });
    assert.equal(refused.headers['content-encoding'], undefined);
    assert.match(refused.body.toString(), /the dashboard/);
  });

  it('should answer 304 to a request with the current ETag, and HEAD with no body', async () => {
    const first = await fetch(`${url}/`);
    const etag = first.headers.get('etag')!;
    assert.ok(etag);
    const again = await fetch(`${url}/`, { headers: { 'if-none-match': etag } });
    assert.equal(again.status, 304);
    const head = await fetch(`${url}/assets/main-ABCD1234.css`, { method: 'HEAD' });
    assert.equal(head.status, 200);
    assert.equal(head.headers.get('content-length'), String('body { margin: 0 }'.length));
    assert.equal(await head.text(), '');
  });

  it('should answer 404 for an asset it does not have and 405 for a POST', async () => {
    assert.equal((await fetch(`${url}/assets/nope.js`)).status, 404);
    assert.equal((await rawGet(url, '/assets/../../current.json')).status, 404);
    const post = await fetch(`${url}/`, { method: 'POST', body: '{}' });
    assert.equal(post.status, 405);
    assert.equal(post.headers.get('allow'), 'GET, HEAD');
  });
});

describe('the dashboard before it is built', () => {
  it('should answer / with 503 and say how to build it, then serve a build made meanwhile, and the next one', async () => {
    const dir = path.join(tmp, 'none');
    const { url, close } = await serve(dir);
    try {
      const response = await fetch(`${url}/`);
      assert.equal(response.status, 503);
      assert.match(await response.text(), /npm run build/);
      fakeBuild(dir);
      assert.equal((await fetch(`${url}/`)).status, 200, 'no restart needed');
      // Built again (another start, npm run build:web): the next page request gets the new build.
      fakeBuild(dir, 'def456');
      assert.match(await (await fetch(`${url}/`)).text(), /<title>def456<\/title>/);
    } finally {
      await close();
    }
  });
});

describe('the real build (scripts/build-web.mjs)', () => {
  it('should build web/ and serve every file its page names, none from another origin', { timeout: 120_000 }, async () => {
    execFileSync(process.execPath, ['scripts/build-web.mjs', '--if-stale'], { cwd: repoRoot, stdio: 'pipe' });
    const { url, close } = await serve(path.join(repoRoot, 'web', 'dist'));
    try {
      const page = await (await fetch(`${url}/`)).text();
      const named = [...page.matchAll(/(?:src|href)="([^"]+)"/g)].map((match) => match[1]!);
      assert.ok(
        named.some((name) => /^assets\/main-[A-Z0-9]{8}\.js$/.test(name)),
        page,
      );
      assert.ok(
        named.some((name) => /^assets\/main-[A-Z0-9]{8}\.css$/.test(name)),
        page,
      );
      for (const name of named.filter((n) => n.startsWith('assets/'))) {
        const response = await fetch(`${url}/${name}`);
        assert.equal(response.status, 200, name);
      }
      assert.ok(!named.some((name) => /^(https?:)?\/\//.test(name)), 'nothing from a CDN');
      // Built again with nothing changed: --if-stale writes nothing.
      const current = fs.readFileSync(path.join(repoRoot, 'web/dist/current.json'), 'utf8');
      execFileSync(process.execPath, ['scripts/build-web.mjs', '--if-stale'], { cwd: repoRoot, stdio: 'pipe' });
      assert.equal(fs.readFileSync(path.join(repoRoot, 'web/dist/current.json'), 'utf8'), current);
    } finally {
      await close();
    }
  });
});
