/**
 * HTTP/1.1 conformance through the real CLI: keep-alive and pooling, chunked bodies, HEAD, 204/304,
 * 100-continue, upgrades, trailers, hop-by-hop headers, HTTP/1.0 clients and pipelining, checked on raw sockets.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import type http from 'node:http';
import net from 'node:net';
import { startWeir, type Weir } from '../support/weir.ts';
import { startUpstream, type Upstream } from '../support/upstream.ts';
import { RawConnection } from '../support/raw-connection.ts';

let up: Upstream;
/** An upstream that closes idle keep-alive connections quickly. */
let short: Upstream;
let weir: Weir;
/** A raw upstream answering HTTP/1.1 with a close-delimited body. */
let closer: import('node:net').Server;
/** A raw upstream that sends a stray partial response on its connection after the first answer. */
let stray: import('node:net').Server;
let strayConnections = 0;
let upstreamConnections = 0;
/** Ids of /slow requests whose connection weir closed before the answer. */
const abandoned = new Set<string>();
/** Remote ports of the upstream's connections that closed. */
const closedPorts = new Set<number>();

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

before(async () => {
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
      if (text.startsWith('GET /stray/bytes')) {
        // Echoes the raw bytes of X-Name back in X-Back.
        const raw = /\r\nx-name: ([^\r]*)\r\n/i.exec(text)?.[1] ?? '';
        socket.write(Buffer.concat([Buffer.from('HTTP/1.1 200 OK\r\nContent-Length: 0\r\nX-Back: '), Buffer.from(raw, 'latin1'), Buffer.from('\r\n\r\n')]));
      } else if (text.startsWith('GET /stray/http10')) {
        // An HTTP/1.0 answer without keep-alive; the socket is left open, but it must not be reused.
        socket.write('HTTP/1.0 200 OK\r\nContent-Length: 4\r\n\r\nv1.0');
      } else if (text.startsWith('GET /stray/interim ')) {
        socket.write('HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload\r\n\r\nHTTP/1.1 100 Continue\r\n\r\n');
        socket.write('HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nfinal');
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
  - name: closer
    endpoints: [127.0.0.1:${(closer.address() as import('node:net').AddressInfo).port}]
  - name: up
    endpoints: [${up.address}]
  - name: limited
    endpoints: [${up.address}]
    circuit_breakers: { max_connections: 1, max_requests: 1, max_pending_requests: 0 }
`);
});

after(async () => {
  await weir?.stop();
  await up?.close();
  await short?.close();
  closer?.close();
  stray?.close();
});

function get(path: string, extra = ''): string {
  return `GET ${path} HTTP/1.1\r\nHost: test.local\r\n${extra}\r\n`;
}

test('keeps one downstream connection alive for many requests over one reused upstream connection', async () => {
  const c = await RawConnection.open(weir.url('edge'));
  const ports = new Set<number>();
  const before = upstreamConnections;
  for (let i = 0; i < 5; i++) {
    c.write(get(`/echo?i=${i}`));
    const r = await c.readResponse();
    assert.equal(r.status, 200);
    assert.notEqual(r.get('connection'), 'close');
    const echo = JSON.parse(r.body.toString());
    assert.equal(echo.url, `/echo?i=${i}`);
    ports.add(echo.port);
  }
  assert.equal(c.ended, false, 'the downstream connection is still open');
  assert.equal(ports.size, 1, 'every request used the same upstream connection');
  assert.ok(upstreamConnections - before <= 1, 'at most one new upstream connection');
  c.destroy();
});

test('pools upstream connections across downstream connections', async () => {
  const ports = new Set<number>();
  for (let i = 0; i < 3; i++) {
    const c = await RawConnection.open(weir.url('edge'));
    c.write(get('/echo'));
    const r = await c.readResponse();
    ports.add(JSON.parse(r.body.toString()).port);
    c.destroy();
  }
  assert.equal(ports.size, 1, 'three client connections, one upstream connection');
});

test('streams a chunked request body upstream and a chunked response downstream', async () => {
  const c = await RawConnection.open(weir.url('edge'));
  c.write('POST /echo HTTP/1.1\r\nHost: test.local\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n');
  c.write('6\r\n world\r\n');
  c.write('0\r\n\r\n');
  const r = await c.readResponse();
  const echo = JSON.parse(r.body.toString());
  assert.equal(echo.body, 'hello world');
  assert.equal(echo.headers['transfer-encoding'], 'chunked');
  assert.equal(echo.headers['content-length'], undefined);

  c.write(get('/chunked'));
  const r2 = await c.readResponse();
  assert.equal(r2.framing, 'chunked');
  assert.equal(r2.body.toString(), 'onetwothree');
  assert.equal(r2.get('content-length'), undefined);
  c.destroy();
});

test('forwards a body larger than buffer_limit whole when it arrives while the upstream connection opens', async () => {
  const body = Buffer.alloc(1024 * 1024);
  for (let i = 0; i < body.length; i++) body[i] = (i * 7 + (i >> 12)) & 0xff;
  let sum = 0;
  for (const byte of body) sum = (sum * 31 + byte) >>> 0;
  for (const chunked of [false, true]) {
    const c = await RawConnection.open(weir.url('small'));
    const framing = chunked ? 'Transfer-Encoding: chunked' : `Content-Length: ${body.length}`;
    // Small chunks reach weir as many body events: several fit the buffer limit before it overflows.
    const parts: Buffer[] = [];
    for (let off = 0; chunked && off < body.length; off += 1024) parts.push(Buffer.from('400\r\n'), body.subarray(off, off + 1024), Buffer.from('\r\n'));
    const payload = chunked ? Buffer.concat([...parts, Buffer.from('0\r\n\r\n')]) : body;
    c.write(Buffer.concat([Buffer.from(`POST /sum HTTP/1.1\r\nHost: test.local\r\n${framing}\r\n\r\n`), payload]));
    const r = await c.readResponse();
    assert.equal(r.body.toString(), `${body.length}:${sum}`, chunked ? 'chunked' : 'content-length');
    c.destroy();
  }
});

test('answers HEAD with the upstream content-length and no body, and the connection stays usable', async () => {
  const c = await RawConnection.open(weir.url('edge'));
  c.write('HEAD /head HTTP/1.1\r\nHost: test.local\r\n\r\n');
  const r = await c.readResponse({ method: 'HEAD' });
  assert.equal(r.status, 200);
  assert.equal(r.get('content-length'), '1234');
  assert.equal(r.get('transfer-encoding'), undefined);
  c.write(get('/echo?after=head'));
  const next = await c.readResponse();
  assert.equal(JSON.parse(next.body.toString()).url, '/echo?after=head', 'no stray body bytes before the next response');
  c.destroy();
});

test('forwards 204 and 304 without a body or chunked framing', async () => {
  const c = await RawConnection.open(weir.url('edge'));
  c.write(get('/204'));
  const r204 = await c.readResponse();
  assert.equal(r204.status, 204);
  assert.equal(r204.get('x-status'), 'none');
  assert.equal(r204.get('transfer-encoding'), undefined);
  assert.equal(r204.get('content-length'), undefined);
  c.write(get('/304', 'If-None-Match: "v1"\r\n'));
  const r304 = await c.readResponse();
  assert.equal(r304.status, 304);
  assert.equal(r304.get('etag'), '"v1"');
  assert.equal(r304.get('transfer-encoding'), undefined);
  c.write(get('/echo?after=304'));
  const next = await c.readResponse();
  assert.equal(JSON.parse(next.body.toString()).url, '/echo?after=304');
  c.destroy();
});

for (const listener of ['edge', 'bare']) {
  test(`answers Expect: 100-continue itself and strips Expect upstream (${listener === 'bare' ? 'no filters' : 'with filters'})`, async () => {
    const c = await RawConnection.open(weir.url(listener));
    c.write('POST /echo HTTP/1.1\r\nHost: test.local\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n');
    const interim = await c.readResponse({ interim: true });
    assert.equal(interim.status, 100, 'the client gets 100 Continue before it sends the body');
    c.write('hello');
    const r = await c.readResponse();
    assert.equal(r.status, 200);
    const echo = JSON.parse(r.body.toString());
    assert.equal(echo.body, 'hello');
    assert.equal(echo.headers.expect, undefined);
    c.destroy();
  });
}

test('tunnels an upgraded (WebSocket-style) connection with bytes flowing both ways', async () => {
  const c = await RawConnection.open(weir.url('edge'));
  c.write(
    'GET /ws HTTP/1.1\r\nHost: test.local\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n' +
      'Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\nearly',
  );
  const r = await c.readResponse();
  assert.equal(r.status, 101);
  assert.equal(r.get('upgrade'), 'websocket');
  assert.match(r.get('connection') ?? '', /upgrade/i);
  assert.equal(r.get('x-seen-upgrade'), 'websocket', 'the upstream saw the Upgrade header');
  assert.match(r.get('x-seen-connection') ?? '', /upgrade/i);
  assert.equal((await c.readBytes(8)).toString(), 'hi:EARLY', 'bytes sent right after the head reach the upstream');
  c.write('ping');
  assert.equal((await c.readBytes(4)).toString(), 'PING');
  c.write('and more');
  assert.equal((await c.readBytes(8)).toString(), 'AND MORE');
  c.destroy();
});

test('a closed tunnel gives back its request and connection slots (max_requests: 1, max_connections: 1)', async () => {
  for (let i = 0; i < 2; i++) {
    const c = await RawConnection.open(weir.url('limited'));
    c.write('GET /ws HTTP/1.1\r\nHost: test.local\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n');
    assert.equal((await c.readResponse()).status, 101);
    c.write('x');
    assert.equal((await c.readBytes(4)).toString(), 'hi:X');
    c.destroy();
    // The slot comes back when weir sees the close; poll with plain requests until it does.
    let status = 0;
    for (let attempt = 0; attempt < 50 && status !== 200; attempt++) {
      const res = await fetch(`${weir.url('limited')}/echo`);
      status = res.status;
      await res.arrayBuffer();
      if (status !== 200) await new Promise((r) => setTimeout(r, 100));
    }
    assert.equal(status, 200, 'a plain request gets through once the tunnel closed');
  }
});

test('forwards trailers on chunked responses and chunked requests', async () => {
  const c = await RawConnection.open(weir.url('edge'));
  c.write(get('/trailers', 'TE: trailers\r\n'));
  const r = await c.readResponse();
  assert.equal(r.framing, 'chunked');
  assert.equal(r.body.toString(), 'body');
  assert.deepEqual(r.trailers, [['x-checksum', 'abc123']]);

  c.write('POST /echo HTTP/1.1\r\nHost: test.local\r\nTransfer-Encoding: chunked\r\nTrailer: x-req-sum\r\n\r\n3\r\nabc\r\n0\r\nX-Req-Sum: 42\r\n\r\n');
  const echo = JSON.parse((await c.readResponse()).body.toString());
  assert.equal(echo.body, 'abc');
  assert.deepEqual(echo.trailers, { 'x-req-sum': '42' });
  c.destroy();
});

test('removes hop-by-hop headers and the headers Connection nominates, both ways', async () => {
  const c = await RawConnection.open(weir.url('edge'));
  c.write(
    get(
      '/echo',
      'Connection: keep-alive, X-Nominated\r\nKeep-Alive: timeout=5\r\nTE: gzip\r\nUpgrade: h2c\r\n' +
        'Proxy-Authorization: Basic YTpi\r\nProxy-Connection: keep-alive\r\nX-Nominated: secret\r\nX-Keep: yes\r\n',
    ),
  );
  const echo = JSON.parse((await c.readResponse()).body.toString());
  for (const name of ['keep-alive', 'te', 'upgrade', 'proxy-authorization', 'proxy-connection', 'x-nominated']) {
    assert.equal(echo.headers[name], undefined, `${name} is not forwarded`);
  }
  assert.doesNotMatch(echo.headers.connection ?? '', /nominated/i);
  assert.equal(echo.headers['x-keep'], 'yes');

  c.write(get('/hop'));
  const r = await c.readResponse();
  assert.equal(r.body.toString(), 'ok');
  for (const name of ['keep-alive', 'proxy-authenticate', 'upgrade', 'x-bar']) {
    assert.equal(r.get(name), undefined, `${name} is not forwarded to the client`);
  }
  assert.doesNotMatch(r.get('connection') ?? '', /x-bar/i);
  assert.equal(r.get('x-keep'), 'yes');
  c.destroy();
});

test('answers an HTTP/1.0 client with a close-delimited body when the length is unknown', async () => {
  const c = await RawConnection.open(weir.url('edge'));
  c.write('GET /chunked HTTP/1.0\r\nHost: test.local\r\n\r\n');
  const r = await c.readResponse();
  assert.equal(r.version, 'HTTP/1.1');
  assert.equal(r.get('transfer-encoding'), undefined, 'no chunked encoding for an HTTP/1.0 client');
  assert.equal(r.framing, 'close');
  assert.equal(r.body.toString(), 'onetwothree');
  assert.equal(await c.waitClosed(), true);
});

test('answers an HTTP/1.0 client without Host', async () => {
  const c = await RawConnection.open(weir.url('edge'));
  c.write('GET /echo?v=10 HTTP/1.0\r\n\r\n');
  const r = await c.readResponse();
  assert.equal(r.status, 200);
  assert.equal(JSON.parse(r.body.toString()).url, '/echo?v=10');
  assert.equal(await c.waitClosed(), true, 'HTTP/1.0 without keep-alive closes');
});

test('keeps an HTTP/1.0 keep-alive connection open when the length is known', async () => {
  const c = await RawConnection.open(weir.url('edge'));
  c.write('GET /echo?n=1 HTTP/1.0\r\nHost: test.local\r\nConnection: keep-alive\r\n\r\n');
  const r = await c.readResponse();
  assert.equal(r.framing, 'length');
  assert.match(r.get('connection') ?? '', /keep-alive/i);
  c.write('GET /echo?n=2 HTTP/1.0\r\nHost: test.local\r\nConnection: keep-alive\r\n\r\n');
  const r2 = await c.readResponse();
  assert.equal(JSON.parse(r2.body.toString()).url, '/echo?n=2');
  c.destroy();
});

test('answers pipelined requests in order, even when the first is the slowest', async () => {
  const c = await RawConnection.open(weir.url('edge'));
  c.write(
    get('/slow?ms=200&id=1') +
      get('/slow?ms=0&id=2') +
      'POST /echo?id=3 HTTP/1.1\r\nHost: test.local\r\nContent-Length: 3\r\n\r\nabc' +
      get('/slow?ms=0&id=4'),
  );
  assert.equal((await c.readResponse()).body.toString(), 'id=1');
  assert.equal((await c.readResponse()).body.toString(), 'id=2');
  const third = JSON.parse((await c.readResponse()).body.toString());
  assert.equal(third.url, '/echo?id=3');
  assert.equal(third.body, 'abc');
  assert.equal((await c.readResponse()).body.toString(), 'id=4');
  assert.equal(c.pending.length, 0);
  c.destroy();
});

test('an HTTP/1.1 client that sends Connection: close gets it back and the connection closes', async () => {
  const c = await RawConnection.open(weir.url('edge'));
  c.write(get('/echo', 'Connection: close\r\n'));
  const r = await c.readResponse();
  assert.equal(r.status, 200);
  assert.equal(r.get('connection'), 'close');
  assert.equal(await c.waitClosed(), true);
});

test('an upgrade the upstream refuses is answered as a plain response and the connection closes', async () => {
  const c = await RawConnection.open(weir.url('edge'));
  c.write('GET /refuse-upgrade HTTP/1.1\r\nHost: test.local\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n');
  const r = await c.readResponse();
  assert.equal(r.status, 426);
  assert.equal(r.body.toString(), 'refused');
  assert.equal(await c.waitClosed(), true);
});

test('a pooled connection the upstream closed while idle is not reused: a later POST succeeds', async () => {
  const first = await fetch(`${weir.url('edge')}/short/one`);
  assert.equal(first.status, 200);
  await first.arrayBuffer();
  // The upstream closes its idle keep-alive connections after 100 ms; wait until it did.
  await new Promise((r) => setTimeout(r, 400));
  const second = await fetch(`${weir.url('edge')}/short/two`, { method: 'POST', body: 'payload' });
  assert.equal(second.status, 200, 'not a 502 from writing into a closed connection');
  assert.equal(JSON.parse(await second.text()).body, 'payload');
});

test('forwards a close-delimited upstream response complete, re-framed as chunked', async () => {
  const c = await RawConnection.open(weir.url('edge'));
  c.write(get('/closer'));
  const r = await c.readResponse();
  assert.equal(r.status, 200);
  assert.equal(r.framing, 'chunked', 'the end of the body is marked, so the client connection can stay open');
  assert.equal(r.body.toString(), 'until the end');
  c.write(get('/echo?after=closer'));
  assert.equal(JSON.parse((await c.readResponse()).body.toString()).url, '/echo?after=closer');
  c.destroy();
});

test('keeps repeated response headers such as Set-Cookie as separate lines', async () => {
  const c = await RawConnection.open(weir.url('edge'));
  c.write(get('/cookies'));
  const r = await c.readResponse();
  assert.deepEqual(r.headers.filter(([n]) => n === 'set-cookie').map(([, v]) => v), ['a=1', 'b=2']);
  c.destroy();
});

test('a client that half-closes while its request waits is treated as gone (DC), as Envoy and nginx do', async () => {
  const c = await RawConnection.open(weir.url('edge'));
  c.write(get('/slow?ms=1000&id=half'));
  c.socket.end();
  assert.equal(await c.waitClosed(), true);
  assert.equal(c.pending.length, 0, 'no response');
  const line = await weir.waitForLine((l) => l.msg === 'access' && l.path === '/slow?ms=1000&id=half');
  assert.equal(line.flags, 'DC');
  for (let i = 0; i < 100 && !abandoned.has('half'); i++) await new Promise((r) => setTimeout(r, 50));
  assert.ok(abandoned.has('half'), 'the upstream request was cancelled before it answered');
});

test('answers fifty pipelined requests in one write, in order', async () => {
  const c = await RawConnection.open(weir.url('edge'));
  let batch = '';
  for (let i = 0; i < 50; i++) batch += get(`/slow?ms=0&id=${i}`);
  c.write(batch);
  for (let i = 0; i < 50; i++) assert.equal((await c.readResponse()).body.toString(), `id=${i}`);
  c.destroy();
});

test('a local reply in a pipeline keeps the order and the connection', async () => {
  const c = await RawConnection.open(weir.url('bare'));
  c.write(get('/slow?ms=50&id=1') + 'GET /echo?id=2 HTTP/1.1\r\nHost: test.local\r\nX-A: 1\r\n\r\n' + get('/slow?ms=0&id=3'));
  assert.equal((await c.readResponse()).body.toString(), 'id=1');
  assert.equal(JSON.parse((await c.readResponse()).body.toString()).url, '/echo?id=2');
  assert.equal((await c.readResponse()).body.toString(), 'id=3');
  c.destroy();
});

for (const [path, todo] of [
  ['/early', undefined],
  [
    '/early-close',
    'an upstream that closes with the upload unread resets the connection; when weir\'s next body write fails before it read the response, the response is lost (502 UR)',
  ],
] as const) {
test(`an upstream that answers before reading the upload (${path}): the client gets the answer and the connection closes`, { todo }, async () => {
  const c = await RawConnection.open(weir.url('edge'));
  try {
    c.write(`POST ${path} HTTP/1.1\r\nHost: test.local\r\nContent-Length: ${64 * 1024 * 1024}\r\n\r\n`);
    c.write(Buffer.alloc(256 * 1024, 'u'));
    const r = await c.readResponse();
    assert.equal(r.status, 413);
    assert.equal(r.body.toString(), 'too big');
    assert.equal(await c.waitClosed(), true, 'the rest of the body cannot be skipped: the connection closes');
  } finally {
    c.destroy();
  }
  const after = await fetch(`${weir.url('edge')}/echo?after=early`);
  assert.equal(JSON.parse(await after.text()).url, '/echo?after=early');
});
}

test('an upstream connection that sends bytes while idle is not reused', async () => {
  const first = await fetch(`${weir.url('edge')}/stray/1`);
  assert.equal(await first.text(), 'first');
  await new Promise((r) => setTimeout(r, 300));
  const second = await fetch(`${weir.url('edge')}/stray/2`);
  assert.equal(second.status, 200);
  assert.equal(await second.text(), 'second', 'the stray bytes are not taken for the answer');
  assert.equal(strayConnections, 2, 'the confused connection was closed, a new one opened');
});

test('skips 1xx interim responses from the upstream and forwards the final one', async () => {
  const c = await RawConnection.open(weir.url('edge'));
  c.write(get('/stray/interim'));
  const r = await c.readResponse({ interim: true });
  assert.equal(r.status, 200);
  assert.equal(r.body.toString(), 'final');
  c.destroy();
});

test('answers HEAD on a local reply with its content-length and no body', async () => {
  const c = await RawConnection.open(weir.url('edge'));
  c.write('HEAD /direct HTTP/1.1\r\nHost: test.local\r\n\r\n');
  const r = await c.readResponse({ method: 'HEAD' });
  assert.equal(r.status, 200);
  assert.equal(r.get('content-length'), '11');
  c.write(get('/direct'));
  const full = await c.readResponse();
  assert.equal(full.body.toString(), 'direct body', 'no stray body bytes before the next response');
  c.destroy();
});

test('closes pooled upstream connections idle longer than the cluster idle_timeout', async () => {
  const res = await fetch(`${weir.url('edge')}/sweep/one`);
  const port = JSON.parse(await res.text()).port;
  const deadline = Date.now() + 5000;
  while (!closedPorts.has(port) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
  assert.ok(closedPorts.has(port), 'weir closed the idle connection (the upstream itself would wait 30 s)');
});

test('max_idle_connections: 0 keeps no connection for reuse', async () => {
  const ports = [];
  for (let i = 0; i < 3; i++) ports.push(JSON.parse(await (await fetch(`${weir.url('edge')}/noidle/${i}`)).text()).port);
  assert.equal(new Set(ports).size, 3);
});

test('a tunnel the upstream closes is closed downstream too, and logged as a 101', async () => {
  const c = await RawConnection.open(weir.url('edge'));
  c.write('GET /ws-bye HTTP/1.1\r\nHost: test.local\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\nhello');
  assert.equal((await c.readResponse()).status, 101);
  assert.equal((await c.readBytes(3)).toString(), 'bye');
  assert.equal(await c.waitClosed(), true);
  const line = await weir.waitForLine((l) => l.msg === 'access' && l.path === '/ws-bye');
  assert.equal(line.status, 101);
  assert.ok(line.bytes_out >= 3);
});

test('accepts an absolute-form request target: its authority replaces Host (RFC 9112 section 3.2.2)', async () => {
  const c = await RawConnection.open(weir.url('edge'));
  c.write('GET http://origin.example:8080/echo?abs=1 HTTP/1.1\r\nHost: ignored.example\r\n\r\n');
  const r = await c.readResponse();
  assert.equal(r.status, 200);
  const echo = JSON.parse(r.body.toString());
  assert.equal(echo.url, '/echo?abs=1', 'the upstream gets origin-form');
  assert.equal(echo.headers.host, 'origin.example:8080');
  c.destroy();
});

test('does not reuse an upstream connection whose HTTP/1.0 answer did not keep it alive', async () => {
  const before = strayConnections;
  for (let i = 0; i < 3; i++) {
    const res = await fetch(`${weir.url('edge')}/stray/http10?${i}`);
    assert.equal(await res.text(), 'v1.0');
  }
  // The first may ride a pooled connection from an earlier test; each later one needs a new connection.
  assert.ok(strayConnections - before >= 2, `${strayConnections - before} new connections`);
});

test('never sends 100 Continue to an HTTP/1.0 client (RFC 9110 section 10.1.1)', async () => {
  const c = await RawConnection.open(weir.url('edge'));
  c.write('POST /echo HTTP/1.0\r\nHost: test.local\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\nhello');
  const r = await c.readResponse({ interim: true });
  assert.equal(r.status, 200, 'the first thing the client reads is the final response');
  assert.equal(JSON.parse(r.body.toString()).body, 'hello');
  c.destroy();
});

test('passes header bytes outside ASCII (obs-text) through unchanged, both ways', async () => {
  const c = await RawConnection.open(weir.url('edge'));
  const value = Buffer.from('café ☕', 'utf8');
  c.write(Buffer.concat([Buffer.from('GET /stray/bytes HTTP/1.1\r\nHost: test.local\r\nX-Name: '), value, Buffer.from('\r\n\r\n')]));
  const r = await c.readResponse();
  assert.deepEqual(Buffer.from(r.get('x-back')!, 'latin1'), value);
  c.destroy();
});
