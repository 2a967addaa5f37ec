/**
 * The setup the HTTP/1.1 conformance files share: a node:http upstream that answers by path (framing cases,
 * upgrades), raw upstreams that misbehave on purpose, and one weir in front of them with four listeners:
 * `edge` (a headers filter), `bare` (no filters), `small` (16 KiB buffer limit) and `limited` (one connection).
 * A test file calls `useHttp1Fixture()` once; the exported bindings are live once its `before` hook ran.
 */
import { before, after } from 'node:test';
import type http from 'node:http';
import net from 'node:net';
import { startWeir, type Weir } from '../support/weir.ts';
import { startUpstream, type Upstream } from '../support/upstream.ts';

export let up: Upstream;
/** An upstream that closes idle keep-alive connections quickly. */
export let short: Upstream;
export let weir: Weir;
/** A raw upstream answering HTTP/1.1 with a close-delimited body. */
export let closer: import('node:net').Server;
/** A raw upstream that sends a stray partial response on its connection after the first answer. */
export let stray: import('node:net').Server;
export let strayConnections = 0;
export let upstreamConnections = 0;
/** Ids of /slow requests whose connection weir closed before the answer. */
export const abandoned = new Set<string>();
/** Remote ports of the upstream's connections that closed. */
export const closedPorts = new Set<number>();

function readBody(req: http.IncomingMessage): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => resolve(Buffer.concat(chunks)));
    req.on('error', reject);
  });
}

async function handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
  const url = new URL(req.url!, 'http://x');
  if (url.pathname === '/early' || url.pathname === '/early-close') {
    // Answers before reading the request body; /early keeps reading it, /early-close closes at once.
    res.writeHead(413, { 'content-type': 'text/plain', ...(url.pathname === '/early-close' ? { connection: 'close' } : {}) });
    res.end('too big');
    return;
  }
  const body = await readBody(req);
  switch (url.pathname) {
    case '/chunked':
      res.writeHead(200, { 'content-type': 'text/plain' });
      res.write('one');
      res.write('two');
      res.end('three');
      return;
    case '/head':
      res.writeHead(200, { 'content-type': 'text/plain', 'content-length': '1234' });
      res.end(req.method === 'HEAD' ? undefined : 'x'.repeat(1234));
      return;
    case '/204':
      res.writeHead(204, { 'x-status': 'none' });
      res.end();
      return;
    case '/304':
      res.writeHead(304, { etag: '"v1"' });
      res.end();
      return;
    case '/trailers':
      res.writeHead(200, { 'content-type': 'text/plain', trailer: 'x-checksum' });
      res.write('body');
      res.addTrailers({ 'x-checksum': 'abc123' });
      res.end();
      return;
    case '/hop':
      res.writeHead(200, {
        connection: 'keep-alive, x-bar',
        'x-bar': 'nominated',
        'keep-alive': 'timeout=5',
        'proxy-authenticate': 'Basic realm="up"',
        upgrade: 'h2c',
        'x-keep': 'yes',
        'content-length': '2',
      });
      res.end('ok');
      return;
    case '/usual-hop':
      // The usual head (a Content-Length body, nothing unusual), with hop-by-hop lines among the others.
      res.writeHead(200, ['Server', 'up/1.0', 'Date', 'Wed, 02 Dec 2026 19:00:00 GMT', 'Keep-Alive', 'timeout=5',
        'X-Mixed-Case', 'Yes', 'Proxy-Authenticate', 'Basic realm="up"', 'Content-Length', '2', 'x-last', 'z']);
      res.end('ok');
      return;
    case '/sum': {
      // Answers with the body's length and a checksum, and closes: the next request needs a new connection.
      let sum = 0;
      for (const byte of body) sum = (sum * 31 + byte) >>> 0;
      res.writeHead(200, { 'content-type': 'text/plain', connection: 'close' });
      res.end(`${body.length}:${sum}`);
      return;
    }
    case '/cookies':
      res.writeHead(200, [['Set-Cookie', 'a=1'], ['Set-Cookie', 'b=2'], ['Content-Length', '0']]);
      res.end();
      return;
    case '/slow':
      res.on('close', () => {
        if (!res.writableEnded) abandoned.add(url.searchParams.get('id')!);
      });
      await new Promise((r) => setTimeout(r, Number(url.searchParams.get('ms') ?? 0)));
      if (res.destroyed) return;
      res.writeHead(200, { 'content-type': 'text/plain' });
      res.end(`id=${url.searchParams.get('id')}`);
      return;
    default: {
      const text = JSON.stringify({
        method: req.method,
        url: req.url,
        headers: req.headers,
        body: body.toString(),
        trailers: req.trailers,
        port: req.socket.remotePort,
      });
      res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
      res.end(text);
    }
  }
}

/** Registers the `before` and `after` hooks that start and stop the upstreams and weir. */
export function useHttp1Fixture(): void {
  before(start);
  after(stop);
}

async function start(): Promise<void> {
  up = await startUpstream((req, res) => void handle(req, res), { stream: true });
  up.server.on('connection', (socket: import('node:net').Socket) => {
    upstreamConnections++;
    const port = socket.remotePort!;
    socket.on('close', () => closedPorts.add(port));
  });
  short = await startUpstream();
  closer = net.createServer((socket) => {
    socket.on('error', () => {});
    socket.once('data', () => socket.end('HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nConnection: close\r\n\r\nuntil the end'));
  });
  await new Promise<void>((resolve) => closer.listen(0, '127.0.0.1', resolve));
  stray = net.createServer((socket) => {
    strayConnections++;
    socket.on('error', () => {});
    socket.on('data', (d: Buffer) => {
      const text = d.toString('latin1');
      if (text.startsWith('GET /stray/unasked101')) {
        socket.write('HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\nraw bytes');
      } else if (text.startsWith('GET /stray/status0')) {
        // A status below 100 is no HTTP status; its body is framed as a response the client could take for its next.
        socket.write('HTTP/1.1 099 Odd\r\nContent-Length: 53\r\n\r\nHTTP/1.1 200 OK\r\nX-Injected: 1\r\nContent-Length: 0\r\n\r\n');
      } else if (text.startsWith('GET /stray/drip')) {
        // A chunked answer with a trailer, one byte per write.
        const answer = 'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: x-sum\r\n\r\n4\r\ndrip\r\n3;e=1\r\nped\r\n0\r\nX-Sum: 7\r\n\r\n';
        void (async () => {
          for (const ch of answer) {
            socket.write(ch);
            await new Promise((r) => setImmediate(r));
          }
        })();
      } else if (text.startsWith('GET /stray/bytes')) {
        // Echoes the raw bytes of X-Name back in X-Back.
        const raw = /\r\nx-name: ([^\r]*)\r\n/i.exec(text)?.[1] ?? '';
        socket.write(Buffer.concat([Buffer.from('HTTP/1.1 200 OK\r\nContent-Length: 0\r\nX-Back: '), Buffer.from(raw, 'latin1'), Buffer.from('\r\n\r\n')]));
      } else if (text.startsWith('GET /stray/http10')) {
        // An HTTP/1.0 answer without keep-alive; the socket is left open, but it must not be reused.
        socket.write('HTTP/1.0 200 OK\r\nContent-Length: 4\r\n\r\nv1.0');
      } else if (text.startsWith('GET /stray/interim ')) {
        socket.write('HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload\r\n\r\nHTTP/1.1 100 Continue\r\n\r\n');
        socket.write('HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nfinal');
      } else if (text.startsWith('GET /stray/glued ')) {
        // An answer with a second, unasked-for response right behind it in the same write, a little later.
        setTimeout(() => socket.write('HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nfirstHTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nstray'), 100);
      } else if (text.startsWith('GET /stray/glued-chunked')) {
        setTimeout(() => socket.write('HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nfirst\r\n0\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nstray'), 100);
      } else if (text.startsWith('GET /stray/1 ')) {
        socket.write('HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nfirst');
        setTimeout(() => socket.write('HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nstray'), 50);
      } else socket.write('HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nsecond');
    });
  });
  await new Promise<void>((resolve) => stray.listen(0, '127.0.0.1', resolve));
  short.server.keepAliveTimeout = 100;
  up.server.on('upgrade', (req: http.IncomingMessage, socket: import('node:net').Socket, head: Buffer) => {
    socket.on('error', () => {});
    // An upgraded socket is half-open: close it when weir closes its side, or server.close() waits forever.
    socket.on('end', () => socket.end());
    if (req.url === '/ws-bye') {
      socket.end('HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\nbye');
      socket.resume();
      return;
    }
    if (req.url === '/refuse-upgrade') {
      socket.end('HTTP/1.1 426 Upgrade Required\r\ncontent-type: text/plain\r\ncontent-length: 7\r\nconnection: close\r\n\r\nrefused');
      return;
    }
    socket.write(
      'HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n' +
        `X-Seen-Upgrade: ${req.headers.upgrade}\r\nX-Seen-Connection: ${req.headers.connection}\r\n\r\nhi:`,
    );
    if (head.length > 0) socket.write(head.toString('latin1').toUpperCase());
    socket.on('data', (d: Buffer) => socket.write(d.toString('latin1').toUpperCase()));
    socket.on('error', () => {});
  });
  weir = await startWeir(`
listeners:
  - name: edge
    address: 127.0.0.1:0
    filters:
      - name: tag
        type: headers
        response_add: { x-served-by: weir }
    routes:
      - match: { prefix: /short/ }
        cluster: short
      - match: { prefix: /closer }
        cluster: closer
      - match: { prefix: /stray }
        cluster: stray
      - match: { prefix: /sweep/ }
        cluster: sweep
      - match: { prefix: /noidle/ }
        cluster: noidle
      - match: { path: /direct }
        direct_response: { status: 200, body: "direct body" }
      - match: { prefix: / }
        cluster: up
  - name: trim
    address: 127.0.0.1:0
    filters:
      - name: trim
        type: headers
        response_add: { x-served-by: trim }
        response_remove: [x-mixed-case]
    routes:
      - match: { prefix: / }
        cluster: up
  - name: held
    address: 127.0.0.1:0
    filters:
      - name: held
        type: lua
        source: |
          function envoy_on_response(handle)
            local body = handle:body()
            handle:headers():add("x-body-length", tostring(body:length()))
          end
    routes:
      - match: { prefix: / }
        cluster: up
  - name: bare
    address: 127.0.0.1:0
    routes:
      - match: { prefix: / }
        cluster: up
  - name: small
    address: 127.0.0.1:0
    buffer_limit: 16KiB
    routes:
      - match: { prefix: / }
        cluster: up
  - name: limited
    address: 127.0.0.1:0
    routes:
      - match: { prefix: / }
        cluster: limited
  - name: single
    address: 127.0.0.1:0
    routes:
      - match: { prefix: / }
        cluster: stray-single
clusters:
  - name: short
    endpoints: [${short.address}]
  - name: sweep
    endpoints: [${up.address}]
    idle_timeout: 200ms
  - name: noidle
    endpoints: [${up.address}]
    max_idle_connections: 0
  - name: stray
    endpoints: [127.0.0.1:${(stray.address() as import('node:net').AddressInfo).port}]
  - name: stray-single
    endpoints: [127.0.0.1:${(stray.address() as import('node:net').AddressInfo).port}]
    circuit_breakers: { max_connections: 1 }
  - name: closer
    endpoints: [127.0.0.1:${(closer.address() as import('node:net').AddressInfo).port}]
  - name: up
    endpoints: [${up.address}]
  - name: limited
    endpoints: [${up.address}]
    circuit_breakers: { max_connections: 1, max_requests: 1, max_pending_requests: 0 }
`);
}

async function stop(): Promise<void> {
  await weir?.stop();
  await up?.close();
  await short?.close();
  closer?.close();
  stray?.close();
}

/** A GET request head for `path` with Host test.local and `extra` header lines. */
export function get(path: string, extra = ''): string {
  return `GET ${path} HTTP/1.1\r\nHost: test.local\r\n${extra}\r\n`;
}
