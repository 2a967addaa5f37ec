/** A real HTTP upstream (node:http) on 127.0.0.1 and an ephemeral port, for integration tests. */
import http from 'node:http';
import type { AddressInfo } from 'node:net';

/** A running upstream server. */
export interface Upstream {
  readonly url: string;
  readonly port: number;
  /** "127.0.0.1:PORT", as a cluster endpoint. */
  readonly address: string;
  readonly server: http.Server;
  /** Requests received so far. */
  readonly requests: { method: string; url: string; headers: http.IncomingHttpHeaders; rawHeaders: string[]; body: Buffer }[];
  close(): Promise<void>;
}

/** The default handler: 200 with a JSON echo of method, url and headers. */
function echo(req: http.IncomingMessage, res: http.ServerResponse, body: Buffer): void {
  const text = JSON.stringify({ method: req.method, url: req.url, headers: req.headers, body: body.toString() });
  res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
  res.end(text);
}

/**
 * Starts an upstream. The handler gets the request with its body already read (unless `stream` is set,
 * in which case it gets the unread request and `body` is empty).
 */
export async function startUpstream(
  handler: (req: http.IncomingMessage, res: http.ServerResponse, body: Buffer) => void = echo,
  opts: { stream?: boolean } = {},
): Promise<Upstream> {
  const requests: Upstream['requests'] = [];
  const server = http.createServer((req, res) => {
    if (opts.stream) {
      requests.push({ method: req.method!, url: req.url!, headers: req.headers, rawHeaders: req.rawHeaders, body: Buffer.alloc(0) });
      handler(req, res, Buffer.alloc(0));
      return;
    }
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const body = Buffer.concat(chunks);
      requests.push({ method: req.method!, url: req.url!, headers: req.headers, rawHeaders: req.rawHeaders, body });
      handler(req, res, body);
    });
  });
  server.keepAliveTimeout = 30_000;
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as AddressInfo).port;
  return {
    url: `http://127.0.0.1:${port}`,
    port,
    address: `127.0.0.1:${port}`,
    server,
    requests,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
