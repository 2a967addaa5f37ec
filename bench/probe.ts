import { request } from 'node:http';
import { createServer } from 'node:net';

/** A response read whole by the probe. */
export interface ProbeResponse {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: string;
}

/** Sends one GET (its own connection, a 2 s timeout) and resolves with the whole response; rejects on any failure. */
export function httpGet(url: string): Promise<ProbeResponse> {
  return new Promise((resolve, reject) => {
    const req = request(url, { agent: false, timeout: 2000, headers: { 'user-agent': 'weir-bench-probe' } }, (res) => {
      let body = '';
      res.setEncoding('latin1');
      res.on('data', (chunk: string) => { body += chunk; });
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body }));
      res.on('error', reject);
    });
    req.on('timeout', () => req.destroy(new Error(`GET "${url}" timed out`)));
    req.on('error', reject);
    req.end();
  });
}

/** Polls `url` until it answers at all, `isAlive()` turns false, or `timeoutMs` passes; resolves with the last error, or null when it answered. */
export async function waitForHttp(url: string, timeoutMs: number, isAlive: () => boolean): Promise<string | null> {
  const deadline = Date.now() + timeoutMs;
  let lastError = 'no answer';
  while (Date.now() < deadline) {
    if (!isAlive()) return 'the process exited';
    try {
      await httpGet(url);
      return null;
    } catch (error) {
      lastError = (error as Error).message;
    }
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  return `no answer within ${timeoutMs} ms (${lastError})`;
}

/** Resolves true when something on this machine already listens on host:port. */
export function portInUse(host: string, port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const server = createServer();
    server.once('error', () => resolve(true));
    server.listen({ host, port, exclusive: true }, () => server.close(() => resolve(false)));
  });
}
