/**
 * Request smuggling and malformed requests: each is answered 400 (or 431, 414) with Connection: close,
 * the connection is closed, and the upstream never sees the request. Slow clients time out.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startWeir, type Weir } from '../support/weir.ts';
import { startUpstream, type Upstream } from '../support/upstream.ts';
import { RawConnection } from '../support/raw-connection.ts';

let up: Upstream;
let weir: Weir;
/** Request heads the upstream parsed, by path (counted on 'request', before any body). */
const seen: string[] = [];

before(async () => {
  up = await startUpstream((req, res, body) => {
    const text = `${req.url} ${body.length}`;
    const answer = () => {
      res.writeHead(200, { 'content-type': 'text/plain', 'content-length': Buffer.byteLength(text) });
      res.end(text);
    };
    if (req.url!.startsWith('/delay')) setTimeout(answer, 700);
    else answer();
  });
  up.server.prependListener('request', (req) => seen.push(req.url!));
  weir = await startWeir(`
listeners:
  - name: edge
    address: 127.0.0.1:0
    max_request_headers_size: 8KiB
    max_uri_size: 1KiB
    request_header_timeout: 300ms
    idle_timeout: 300ms
    routes:
      - match: { prefix: / }
        cluster: up
  - name: nohost
    address: 127.0.0.1:0
    routes:
      - match: { prefix: /only-this }
        cluster: up
clusters:
  - name: up
    endpoints: [${up.address}]
`);
});

after(async () => {
  await weir?.stop();
  await up?.close();
});

/**
 * Warms the upstream pool (so a forwarded head would reach the upstream at once), sends `bytes` on a new
 * connection and returns the response and whether weir closed the connection.
 */
async function reject(bytes: string): Promise<{ status: number; connection: string | undefined; body: string; closed: boolean }> {
  const warm = await fetch(`${weir.url('edge')}/warm`);
  await warm.arrayBuffer();
  const c = await RawConnection.open(weir.url('edge'));
  c.write(bytes);
  const r = await c.readResponse();
  const closed = await c.waitClosed();
  c.destroy();
  // Give a wrongly forwarded request time to arrive before the caller counts.
  const probe = await fetch(`${weir.url('edge')}/probe`);
  await probe.arrayBuffer();
  return { status: r.status, connection: r.get('connection'), body: r.body.toString(), closed };
}

const vectors: [string, string, number][] = [
  ['Content-Length with Transfer-Encoding', 'POST /smuggle-cl-te HTTP/1.1\r\nHost: a\r\nContent-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nG', 400],
  ['Transfer-Encoding with Content-Length', 'POST /smuggle-te-cl HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n0\r\n\r\n', 400],
  ['two Content-Lengths', 'POST /smuggle-cl-cl HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nContent-Length: 5\r\n\r\nabcde', 400],
  ['a Transfer-Encoding that is not chunked last', 'POST /smuggle-te-gzip HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, gzip\r\n\r\n0\r\n\r\n', 400],
  ['a bad chunk size', 'POST /smuggle-chunk HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n', 400],
  ['a chunk size with a sign', 'POST /smuggle-chunk-sign HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n-5\r\nhello\r\n0\r\n\r\n', 400],
  ['bare LF line endings', 'GET /smuggle-lf HTTP/1.1\nHost: a\n\n', 400],
  ['a bare LF inside the head', 'GET /smuggle-lf2 HTTP/1.1\r\nHost: a\nX-A: b\r\n\r\n', 400],
  ['obs-fold', 'GET /smuggle-fold HTTP/1.1\r\nHost: a\r\nX-Folded: one\r\n two\r\n\r\n', 400],
  ['a space before the colon', 'GET /smuggle-space HTTP/1.1\r\nHost: a\r\nTransfer-Encoding : chunked\r\n\r\n0\r\n\r\n', 400],
  ['an invalid header name', 'GET /smuggle-name HTTP/1.1\r\nHost: a\r\nX(Bad): 1\r\n\r\n', 400],
  ['a control character in a header value', 'GET /smuggle-ctl HTTP/1.1\r\nHost: a\r\nX-A: b\x01c\r\n\r\n', 400],
  ['a second Host header', 'GET /smuggle-host HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n', 400],
  ['HTTP/1.1 without Host', 'GET /smuggle-nohost HTTP/1.1\r\nX-A: b\r\n\r\n', 400],
  ['a malformed request line', 'GET /smuggle-line HTTP/1.1 extra\r\nHost: a\r\n\r\n', 400],
  ['an unknown HTTP version', 'GET /smuggle-version HTTP/2.7\r\nHost: a\r\n\r\n', 400],
  ['two Transfer-Encoding headers, chunked not last', 'POST /smuggle-te-te HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: identity\r\n\r\n0\r\n\r\n', 400],
  ['an unknown transfer coding', 'POST /smuggle-xchunked HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: xchunked\r\n\r\n0\r\n\r\n', 400],
  ['a Content-Length list', 'POST /smuggle-cl-list HTTP/1.1\r\nHost: a\r\nContent-Length: 1, 2\r\n\r\nab', 400],
  ['a signed Content-Length', 'POST /smuggle-cl-sign HTTP/1.1\r\nHost: a\r\nContent-Length: +2\r\n\r\nab', 400],
  ['a NUL in a header value', 'GET /smuggle-nul HTTP/1.1\r\nHost: a\r\nX-A: b\x00c\r\n\r\n', 400],
  ['a chunk extension with a bare LF', 'POST /smuggle-ext HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3;ext\nabc\r\n0\r\n\r\n', 400],
  ['chunk data not followed by CRLF', 'POST /smuggle-chunk-crlf HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabcX\r\n0\r\n\r\n', 400],
  ['an absolute-form target with userinfo', 'GET http://user@origin.example/smuggle-userinfo HTTP/1.1\r\nHost: a\r\n\r\n', 400],
  ['an absolute-form target of another scheme', 'GET ftp://origin.example/smuggle-ftp HTTP/1.1\r\nHost: a\r\n\r\n', 400],
  ['a Content-Length past 2^53 - 1 (it would be forwarded as another number)', 'POST /smuggle-cl-huge HTTP/1.1\r\nHost: a\r\nContent-Length: 9007199254740993\r\n\r\nab', 413],
  ['oversized headers', `GET /smuggle-big HTTP/1.1\r\nHost: a\r\nX-Big: ${'b'.repeat(16 * 1024)}\r\n\r\n`, 431],
  ['a Host with a space (two hosts in one field)', 'GET /smuggle-host-list HTTP/1.1\r\nHost: a.example, b.example\r\n\r\n', 400],
  ['a Host with a path in it', 'GET /smuggle-host-path HTTP/1.1\r\nHost: a.example/admin\r\n\r\n', 400],
  ['a Host with a query in it', 'GET /smuggle-host-query HTTP/1.1\r\nHost: a.example?x=1\r\n\r\n', 400],
  ['a URI over max_uri_size', `GET /smuggle-uri?${'u'.repeat(2048)} HTTP/1.1\r\nHost: a\r\n\r\n`, 414],
];

for (const [name, bytes, status] of vectors) {
  test(`rejects ${name} with ${status} and Connection: close, and never forwards it`, async () => {
    const path = /^[A-Z]+ (?:[a-z]+:\/\/[^/]+)?(\/[a-z0-9-]+)/.exec(bytes)![1];
    const r = await reject(bytes);
    assert.equal(r.status, status);
    assert.equal(r.connection, 'close');
    assert.ok(r.body.length > 0, 'a short body says why');
    assert.equal(r.closed, true, 'weir closed the connection');
    assert.deepEqual(seen.filter((u) => u.startsWith(path)), [], 'the upstream never saw the request');
    assert.ok(seen.includes('/probe'), 'the upstream is reachable, so the check above can fail');
  });
}

test('a request smuggled behind a valid one on the same connection is not forwarded', async () => {
  const c = await RawConnection.open(weir.url('edge'));
  c.write(
    'POST /front HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n' +
      '0\r\n\r\nGET /hidden HTTP/1.1\r\nHost: a\r\n\r\n',
  );
  const r = await c.readResponse();
  assert.equal(r.status, 400);
  assert.equal(await c.waitClosed(), true);
  assert.equal(seen.filter((u) => u === '/front' || u === '/hidden').length, 0);
});

test('a head that trickles in longer than request_header_timeout gets 408 and the connection closes', async () => {
  const c = await RawConnection.open(weir.url('edge'));
  c.write('GET /slow-head HTTP/1.1\r\nHost: a\r\n');
  const trickle = setInterval(() => {
    if (!c.ended) c.write('X-Drip: 1\r\n');
  }, 50);
  try {
    const r = await c.readResponse();
    assert.equal(r.status, 408);
    assert.equal(r.get('connection'), 'close');
    assert.equal(await c.waitClosed(), true);
  } finally {
    clearInterval(trickle);
    c.destroy();
  }
  assert.equal(seen.filter((u) => u === '/slow-head').length, 0);
});

test('on a kept-alive connection, a malformed second request gets 400, not a silent close', async () => {
  const c = await RawConnection.open(weir.url('edge'));
  c.write('GET /first HTTP/1.1\r\nHost: a\r\n\r\n');
  assert.equal((await c.readResponse()).status, 200);
  c.write('GET /bad-second HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n');
  const r = await c.readResponse();
  assert.equal(r.status, 400);
  assert.equal(r.get('connection'), 'close');
  assert.equal(await c.waitClosed(), true);
  c.destroy();
});

test('on a kept-alive connection, a second head that trickles in gets 408, not a silent idle close', async () => {
  const c = await RawConnection.open(weir.url('edge'));
  c.write('GET /first HTTP/1.1\r\nHost: a\r\n\r\n');
  assert.equal((await c.readResponse()).status, 200);
  c.write('GET /slow-second HTTP/1.1\r\nHost: a\r\n');
  const trickle = setInterval(() => {
    if (!c.ended) c.write('X-Drip: 1\r\n');
  }, 50);
  try {
    const r = await c.readResponse();
    assert.equal(r.status, 408);
    assert.equal(await c.waitClosed(), true);
  } finally {
    clearInterval(trickle);
    c.destroy();
  }
  assert.equal(seen.filter((u) => u === '/slow-second').length, 0);
});

test('a connection that never sends a request closes after request_header_timeout', async () => {
  const c = await RawConnection.open(weir.url('edge'));
  assert.equal(await c.waitClosed(), true);
  c.destroy();
});

test('an idle keep-alive connection closes after idle_timeout', async () => {
  const c = await RawConnection.open(weir.url('edge'));
  c.write('GET /idle HTTP/1.1\r\nHost: a\r\n\r\n');
  const r = await c.readResponse();
  assert.equal(r.status, 200);
  assert.notEqual(r.get('connection'), 'close');
  assert.equal(await c.waitClosed(), true, 'weir closes the idle connection');
  assert.equal(c.pending.length, 0, 'without sending anything');
});

test('a keep-alive connection that keeps sending requests stays open past idle_timeout', async () => {
  const c = await RawConnection.open(weir.url('edge'));
  const start = Date.now();
  for (let i = 0; Date.now() - start < 900; i++) {
    c.write(`GET /busy?${i} HTTP/1.1\r\nHost: a\r\n\r\n`);
    assert.equal((await c.readResponse()).status, 200);
    await new Promise((r) => setTimeout(r, 20));
  }
  assert.equal(c.ended, false);
  c.destroy();
});

test('a slow upstream answer is not cut by the header or idle timeouts', async () => {
  const c = await RawConnection.open(weir.url('edge'));
  c.write('GET /delay HTTP/1.1\r\nHost: a\r\n\r\n');
  const r = await c.readResponse();
  assert.equal(r.status, 200);
  assert.equal(r.body.toString(), '/delay 0');
  c.destroy();
});

test('a request body that trickles in longer than request_header_timeout is not a 408', async () => {
  const c = await RawConnection.open(weir.url('edge'));
  c.write('POST /trickle-body HTTP/1.1\r\nHost: a\r\nContent-Length: 8\r\n\r\n');
  for (let i = 0; i < 8; i++) {
    await new Promise((r) => setTimeout(r, 100));
    c.write('b');
  }
  const r = await c.readResponse();
  assert.equal(r.status, 200);
  assert.equal(r.body.toString(), '/trickle-body 8');
  c.destroy();
});

test('Expect: 100-continue on a request with no route gets the 404 without a 100', async () => {
  const c = await RawConnection.open(weir.url('nohost'));
  c.write('POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n');
  const r = await c.readResponse({ interim: true });
  assert.equal(r.status, 404);
  c.destroy();
});

test('a malformed request pipelined behind a valid one: the valid one is answered, then 400 and close', async () => {
  const c = await RawConnection.open(weir.url('edge'));
  c.write('GET /delay?pipelined HTTP/1.1\r\nHost: a\r\n\r\nGET /bad HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n');
  const first = await c.readResponse();
  assert.equal(first.status, 200);
  assert.equal(first.body.toString(), '/delay?pipelined 0');
  const second = await c.readResponse();
  assert.equal(second.status, 400);
  assert.equal(second.get('connection'), 'close');
  assert.equal(await c.waitClosed(), true);
  assert.equal(seen.filter((u) => u === '/bad').length, 0);
});
