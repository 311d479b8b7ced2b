// The dashboard (SPEC §11): the page at `/` and its assets, as scripts/build-web.mjs built them
// into web/dist/. Served by the service itself, never from a CDN, so it works on a closed network.
// The files of the current build are read into memory (some 100 KB, gzipped once at build time):
// a rebuild by another start never pulls a file from under this server. Each request for the page
// looks whether web/dist/current.json names another build, and reads that one if it does.
import fs from 'node:fs';
import type { IncomingMessage, ServerResponse } from 'node:http';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

/** Where the builds are: web/dist/ of the repository, from src/http/ and from dist/http/ alike. */
export const WEB_DIST = fileURLToPath(new URL('../../web/dist/', import.meta.url));

const TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.svg': 'image/svg+xml',
  '.map': 'application/json; charset=utf-8',
  '.txt': 'text/plain; charset=utf-8',
};

/**
 * The page may load only its own files and talk only to its own origin (the API and graphql-ws:
 * 'self' covers ws: and wss: of the same host), and no other site may frame it.
 */
const PAGE_POLICY = [
  "default-src 'self'",
  "img-src 'self' data:",
  "connect-src 'self'",
  "object-src 'none'",
  "base-uri 'none'",
  "form-action 'none'",
  "frame-ancestors 'none'",
].join('; ');

interface Asset {
  body: Buffer;
  gzip: Buffer | null;
  type: string;
  etag: string;
  /** The hashed assets never change under their name; the page itself is asked again each time. */
  cacheControl: string;
}

const NOT_BUILT = `<!doctype html><meta charset="utf-8"><title>Server Jobs</title>
<p>The dashboard has not been built. Run <code>npm run build</code> (or <code>npm start</code>, which builds it) and reload.
GraphiQL is at <a href="graphql">/graphql</a>.</p>`;

export class Dashboard {
  /** URL path → file; null: there is no build; undefined: not read yet. */
  #assets: Map<string, Asset> | null | undefined;
  /** The build `#assets` holds. */
  #build: string | null = null;

  constructor(private readonly dir: string = WEB_DIST) {}

  /** Whether `path` is the dashboard's: `/` and `/assets/…`. */
  static owns(urlPath: string): boolean {
    return urlPath === '/' || urlPath.startsWith('/assets/');
  }

  /** Answers a request for `/` or `/assets/…` (see `owns`). */
  serve(req: IncomingMessage, res: ServerResponse, urlPath: string): void {
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(405, { allow: 'GET, HEAD', 'content-type': 'text/plain; charset=utf-8' }).end('Method not allowed\n');
      return;
    }
    const assets = this.#load(urlPath === '/');
    if (!assets) {
      const status = urlPath === '/' ? 503 : 404;
      res.writeHead(status, { 'content-type': 'text/html; charset=utf-8', 'cache-control': 'no-store' }).end(NOT_BUILT);
      return;
    }
    const asset = assets.get(urlPath === '/' ? '/index.html' : urlPath);
    if (!asset) {
      res.writeHead(404, { 'content-type': 'text/plain; charset=utf-8', 'x-content-type-options': 'nosniff' }).end('Not found\n');
      return;
    }
    const headers: Record<string, string> = {
      'content-type': asset.type,
      'cache-control': asset.cacheControl,
      etag: asset.etag,
      'x-content-type-options': 'nosniff',
    };
    if (urlPath === '/') Object.assign(headers, { 'content-security-policy': PAGE_POLICY, 'referrer-policy': 'no-referrer' });
    if (asset.gzip) headers['vary'] = 'Accept-Encoding';
    if (matches(req.headers['if-none-match'], asset.etag)) {
      res.writeHead(304, headers).end();
      return;
    }
    const gzip = asset.gzip && acceptsGzip(req.headers['accept-encoding']) ? asset.gzip : null;
    const body = gzip ?? asset.body;
    if (gzip) headers['content-encoding'] = 'gzip';
    headers['content-length'] = String(body.length);
    res.writeHead(200, headers);
    res.end(req.method === 'HEAD' ? undefined : body);
  }

  /** The current build's files; with `look`, after looking whether current.json names another. */
  #load(look: boolean): Map<string, Asset> | null {
    if (this.#assets && !(look && currentBuild(this.dir) !== this.#build)) return this.#assets;
    // A build removed between reading current.json and its files: current.json names a newer one.
    for (let attempt = 0; attempt < 3; attempt++) {
      try {
        const build = currentBuild(this.dir);
        if (build === null) break;
        this.#assets = readBuild(this.dir, build);
        this.#build = build;
        return this.#assets;
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
      }
    }
    // Not built: asked again at the next request, so a build made meanwhile is served without a restart.
    return this.#assets ?? null;
  }
}

/** The build web/dist/current.json names, or null when there is none. */
function currentBuild(dir: string): string | null {
  try {
    return path.basename((JSON.parse(fs.readFileSync(path.join(dir, 'current.json'), 'utf8')) as { build: string }).build);
  } catch {
    return null;
  }
}

/** The files of a build, by URL path. */
function readBuild(dir: string, build: string): Map<string, Asset> {
  const root = path.join(dir, build);
  const assets = new Map<string, Asset>();
  for (const file of fs.readdirSync(root, { recursive: true }).map(String)) {
    const full = path.join(root, file);
    if (file.endsWith('.gz') || !fs.statSync(full).isFile()) continue;
    const urlPath = `/${file.split(path.sep).join('/')}`;
    const gzipped = `${full}.gz`;
    assets.set(urlPath, {
      body: fs.readFileSync(full),
      gzip: fs.existsSync(gzipped) ? fs.readFileSync(gzipped) : null,
      type: TYPES[path.extname(file)] ?? 'application/octet-stream',
      etag: `"${build}-${urlPath === '/index.html' ? 'page' : path.basename(file)}"`,
      cacheControl:
        urlPath === '/index.html' ? 'no-cache' : HASHED.test(file) ? 'public, max-age=31536000, immutable' : 'public, max-age=86400',
    });
  }
  return assets;
}

/** esbuild's `[name]-[hash]`: a name that changes whenever the content does. */
const HASHED = /-[A-Z0-9]{8}\.(js|css|map)$/;

const matches = (header: string | undefined, etag: string): boolean =>
  header !== undefined && header.split(',').some((tag) => tag.trim().replace(/^W\//, '') === etag);

/** Accept-Encoding names gzip with a quality above 0. */
function acceptsGzip(header: string | undefined): boolean {
  if (!header) return false;
  return header.split(',').some((part) => {
    const [name, ...params] = part.trim().split(';');
    if (name?.trim().toLowerCase() !== 'gzip' && name?.trim() !== '*') return false;
    const q = params.map((p) => /^\s*q=([\d.]+)\s*$/.exec(p)?.[1]).find((v) => v !== undefined);
    return q === undefined || Number(q) > 0;
  });
}
