// Requests as a browser (or an attacker) would send them, with the headers fetch() will not let a
// test set (Host), and a snapshot of the service's tables to show that a refusal changed nothing.
import http from 'node:http';
import https from 'node:https';

export interface RawResponse {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: string;
  /** The body parsed as JSON, or undefined when it is not JSON. */
  json: unknown;
}

export interface RawRequest {
  port: number;
  method?: string;
  path?: string;
  headers?: Record<string, string>;
  body?: string | Buffer;
  /** HTTPS with this CA (the test's self-signed certificate). */
  ca?: string | Buffer;
  timeoutMs?: number;
}

/** One HTTP(S) request to 127.0.0.1 with exactly these headers (Host included); resolves with the whole answer. */
export function rawRequest({
  port,
  method = 'GET',
  path = '/graphql',
  headers = {},
  body,
  ca,
  timeoutMs = 30_000,
}: RawRequest): Promise<RawResponse> {
  return new Promise((resolve, reject) => {
    const options: https.RequestOptions = {
      host: '127.0.0.1',
      port,
      method,
      path,
      headers: {
        host: `localhost:${port}`,
        ...headers,
        ...(body !== undefined ? { 'content-length': String(Buffer.byteLength(body)) } : {}),
      },
      timeout: timeoutMs,
      agent: false,
      ...(ca ? { ca, servername: 'localhost' } : {}),
    };
    const req = (ca ? https : http).request(options, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (chunk: Buffer) => chunks.push(chunk));
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString('utf8');
        let json: unknown;
        try {
          json = JSON.parse(text);
        } catch {
          json = undefined;
        }
        resolve({ status: res.statusCode ?? 0, headers: res.headers, body: text, json });
      });
      res.on('error', reject);
    });
    req.on('timeout', () => req.destroy(new Error(`no answer within ${timeoutMs} ms`)));
    req.on('error', reject);
    req.end(body);
  });
}

/** The `access-control-*` headers of an answer. */
export const corsHeaders = (headers: http.IncomingHttpHeaders): Record<string, unknown> =>
  Object.fromEntries(Object.entries(headers).filter(([name]) => name.startsWith('access-control-')));

/** The first GraphQL error code of a JSON answer. */
export function errorCode(json: unknown): string | undefined {
  const errors = (json as { errors?: { extensions?: { code?: string } }[] } | undefined)?.errors;
  return errors?.[0]?.extensions?.code;
}
