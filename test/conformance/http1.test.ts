/**
 * HTTP/1.1 conformance of the downstream side through the real CLI, on raw sockets: keep-alive, chunked bodies,
 * HEAD, 204/304, 100-continue, trailers, hop-by-hop headers, HTTP/1.0 clients, pipelining, request targets.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { RawConnection } from '../support/raw-connection.ts';
import { useHttp1Fixture, weir, up, get, upstreamConnections, abandoned } from './http1-fixture.ts';

useHttp1Fixture();



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

test('forwards trailers on chunked responses and chunked requests', async () => {
  const c = await RawConnection.open(weir.url('edge'));
  c.write(get('/trailers', 'TE: trailers\r\n'));
  const r = await c.readResponse();
  assert.equal(r.framing, 'chunked');
  assert.equal(r.body.toString(), 'body');
  assert.deepEqual(r.trailers, [['x-checksum', 'abc123']]);
  assert.equal(r.get('trailer'), 'x-checksum', 'Trailer is end to end (RFC 9110 section 6.6.2)');

  c.write('POST /echo HTTP/1.1\r\nHost: test.local\r\nTransfer-Encoding: chunked\r\nTrailer: x-req-sum\r\n\r\n3\r\nabc\r\n0\r\nX-Req-Sum: 42\r\n\r\n');
  const echo = JSON.parse((await c.readResponse()).body.toString());
  assert.equal(echo.body, 'abc');
  assert.equal(echo.headers.trailer, 'x-req-sum');
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

for (const method of ['QUERY', 'PURGE', 'M-SEARCH', 'PROPFIND']) {
  test(`forwards the ${method} method by its name`, async () => {
    const c = await RawConnection.open(weir.url('edge'));
    c.write(`${method} /echo HTTP/1.1\r\nHost: test.local\r\nContent-Length: 2\r\n\r\nq=`);
    const echo = JSON.parse((await c.readResponse()).body.toString());
    assert.equal(echo.method, method);
    assert.equal(echo.body, 'q=');
    c.destroy();
  });
}

test('a Content-Length with leading zeros is its number, however long the zeros run', async () => {
  const c = await RawConnection.open(weir.url('edge'));
  c.write(`POST /echo HTTP/1.1\r\nHost: test.local\r\nContent-Length: ${'0'.repeat(30)}5\r\n\r\nhello`);
  const r = await c.readResponse();
  assert.equal(r.status, 200);
  assert.equal(JSON.parse(r.body.toString()).body, 'hello');
  c.destroy();
});

test('a usual upstream head goes on as it came, without its hop-by-hop lines, when no filter sees it', async () => {
  const c = await RawConnection.open(weir.url('bare'));
  c.write(get('/usual-hop'));
  const r = await c.readResponse();
  assert.equal(r.body.toString(), 'ok');
  // Its lines are copied as they were sent (names keep their case, as nginx passes them); weir writes the framing
  // and the connection's options itself.
  assert.equal(
    r.raw,
    'HTTP/1.1 200 OK\r\nServer: up/1.0\r\nDate: Wed, 02 Dec 2026 19:00:00 GMT\r\nX-Mixed-Case: Yes\r\nx-last: z\r\n' +
      'content-length: 2',
  );
  c.write('GET /usual-hop HTTP/1.1\r\nHost: test.local\r\nConnection: close\r\n\r\n');
  assert.match((await c.readResponse()).raw, /\r\nx-last: z\r\ncontent-length: 2\r\nconnection: close$/);
  c.destroy();
  const old = await RawConnection.open(weir.url('bare'));
  old.write('GET /usual-hop HTTP/1.0\r\nHost: test.local\r\nConnection: keep-alive\r\n\r\n');
  const kept = await old.readResponse();
  assert.equal(kept.version, 'HTTP/1.1');
  assert.match(kept.raw, /\r\nx-last: z\r\ncontent-length: 2\r\nconnection: keep-alive$/);
  old.destroy();
  // A filter that only adds (edge adds x-served-by) leaves the lines unread: they go on as they came, the added
  // line after them.
  const e = await RawConnection.open(weir.url('edge'));
  e.write(get('/usual-hop'));
  assert.equal(
    (await e.readResponse()).raw,
    'HTTP/1.1 200 OK\r\nServer: up/1.0\r\nDate: Wed, 02 Dec 2026 19:00:00 GMT\r\nX-Mixed-Case: Yes\r\nx-last: z\r\n' +
      'x-served-by: weir\r\ncontent-length: 2',
  );
  e.destroy();
  // Where a filter changes the lines (trim removes one), weir writes the map it passed: names in lower case.
  const t = await RawConnection.open(weir.url('trim'));
  t.write(get('/usual-hop'));
  assert.equal(
    (await t.readResponse()).raw,
    'HTTP/1.1 200 OK\r\nserver: up/1.0\r\ndate: Wed, 02 Dec 2026 19:00:00 GMT\r\nx-last: z\r\n' +
      'x-served-by: trim\r\ncontent-length: 2',
  );
  t.destroy();
  // A filter that holds the head past the read (until the body is in) and then adds reads the lines from the copy
  // kept of them: the map is written, its names in lower case.
  const h = await RawConnection.open(weir.url('held'));
  h.write(get('/usual-hop'));
  assert.equal(
    (await h.readResponse()).raw,
    'HTTP/1.1 200 OK\r\nserver: up/1.0\r\ndate: Wed, 02 Dec 2026 19:00:00 GMT\r\nx-mixed-case: Yes\r\nx-last: z\r\n' +
      'x-body-length: 2\r\ncontent-length: 2',
  );
  h.destroy();
});

test('a client nominating the headers weir adds does not remove them: nominated headers go on receipt', async () => {
  const c = await RawConnection.open(weir.url('edge'));
  c.write(get('/echo', 'Connection: X-Forwarded-For, x-forwarded-proto,x-request-id, X-Mine\r\nX-Forwarded-For: 203.0.113.9\r\nX-Mine: 1\r\n'));
  const echo = JSON.parse((await c.readResponse()).body.toString());
  assert.equal(echo.headers['x-forwarded-for'], '127.0.0.1', "the client's own value went, weir's is there");
  assert.equal(echo.headers['x-forwarded-proto'], 'http');
  assert.match(echo.headers['x-request-id'] ?? '', /^[0-9a-f-]{36}$/);
  assert.equal(echo.headers['x-mine'], undefined);
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

test('answers an HTTP/1.0 client without Host; the upstream gets its own address as Host, as NGINX sends', async () => {
  const c = await RawConnection.open(weir.url('edge'));
  c.write('GET /echo?v=10 HTTP/1.0\r\n\r\n');
  const r = await c.readResponse();
  assert.equal(r.status, 200);
  const echo = JSON.parse(r.body.toString());
  assert.equal(echo.url, '/echo?v=10');
  assert.equal(echo.headers.host, up.address);
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

test('parses requests that arrive one byte per read: chunked with extensions and trailers, then pipelined', async () => {
  const c = await RawConnection.open(weir.url('bare'));
  const bytes =
    'POST /echo?drip=1 HTTP/1.1\r\nHost: test.local\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2;ext=1\r\nde\r\n0\r\nX-T: 1\r\n\r\n' +
    get('/echo?drip=2') +
    'POST /echo?drip=3 HTTP/1.1\r\nHost: test.local\r\nContent-Length: 4\r\n\r\nwxyz';
  for (const ch of bytes) {
    c.write(ch);
    await new Promise((r) => setImmediate(r));
  }
  const first = JSON.parse((await c.readResponse()).body.toString());
  assert.equal(first.body, 'abcde');
  assert.deepEqual(first.trailers, { 'x-t': '1' });
  assert.equal(JSON.parse((await c.readResponse()).body.toString()).url, '/echo?drip=2');
  assert.equal(JSON.parse((await c.readResponse()).body.toString()).body, 'wxyz');
  c.destroy();
});

test('a request pipelined after one that said Connection: close is never forwarded', async () => {
  const c = await RawConnection.open(weir.url('edge'));
  c.write(get('/echo?closing=1', 'Connection: close\r\n') + get('/echo?after-close=1'));
  const r = await c.readResponse();
  assert.equal(JSON.parse(r.body.toString()).url, '/echo?closing=1');
  assert.equal(r.get('connection'), 'close');
  assert.equal(await c.waitClosed(), true);
  assert.equal(c.pending.length, 0, 'no second response');
  const probe = await fetch(`${weir.url('edge')}/echo?probe-after-close`);
  await probe.arrayBuffer();
  assert.ok(up.requests.some((q) => q.url === '/echo?probe-after-close'));
  assert.ok(!up.requests.some((q) => q.url === '/echo?after-close=1'), 'the upstream never saw the second request');
});

test('a keep-alive connection that idles (and gives up its parser) carries on with every kind of request', async () => {
  const idle = () => new Promise((r) => setTimeout(r, 1200)); // longer than the listener's parking delay (0.5-1 s)
  const c = await RawConnection.open(weir.url('edge'));
  // The first exchange, then idle: the connection parks at the end of its first exchange and again when idle.
  c.write(get('/echo?step=1'));
  assert.equal(JSON.parse((await c.readResponse()).body.toString()).url, '/echo?step=1');
  await idle();
  // A chunked upload whose head and chunks come in separate writes: the new parser reads the handle after the head.
  c.write('POST /echo?step=2 HTTP/1.1\r\nHost: test.local\r\nTransfer-Encoding: chunked\r\n\r\n');
  await new Promise((r) => setTimeout(r, 50));
  c.write('5\r\nhello\r\n');
  await new Promise((r) => setTimeout(r, 50));
  c.write('0\r\nX-T: 2\r\n\r\n');
  const second = JSON.parse((await c.readResponse()).body.toString());
  assert.deepEqual([second.url, second.body, second.trailers], ['/echo?step=2', 'hello', { 'x-t': '2' }]);
  await idle();
  // Pipelined requests in the one write that wakes the connection.
  c.write(get('/echo?step=3') + get('/echo?step=4') + 'POST /echo?step=5 HTTP/1.1\r\nHost: test.local\r\nContent-Length: 3\r\n\r\nabc');
  for (const step of [3, 4, 5]) assert.equal(JSON.parse((await c.readResponse()).body.toString()).url, `/echo?step=${step}`);
  await idle();
  // A head split across reads after idling.
  c.write('GET /echo?step=6 HTTP/1.1\r\nHo');
  await new Promise((r) => setTimeout(r, 50));
  c.write('st: test.local\r\n\r\n');
  assert.equal(JSON.parse((await c.readResponse()).body.toString()).url, '/echo?step=6');
  assert.equal(c.ended, false);
  c.destroy();
});

test('a head that stops half-way and waits past the parking delay is kept, on the first exchange and on later ones', async () => {
  const c = await RawConnection.open(weir.url('edge'));
  const url = async () => JSON.parse((await c.readResponse()).body.toString()).url;
  // First exchange (read through 'data' events), then a later one (the parser reads the handle): each head pauses
  // longer than the listener's parking delay, which must not give up a parser that holds part of a head.
  const held = async (first: string, rest: string): Promise<void> => {
    c.write(first);
    await new Promise((r) => setTimeout(r, 1200));
    c.write(rest);
  };
  await held('GET /echo?held=1 HTTP/1.1\r\nHo', 'st: test.local\r\n\r\n');
  assert.equal(await url(), '/echo?held=1');
  c.write(get('/echo?held=2'));
  assert.equal(await url(), '/echo?held=2');
  await held('GET /echo?held=3 HTTP/1.1\r\nHost: te', 'st.local\r\n\r\n');
  assert.equal(await url(), '/echo?held=3');
  assert.equal(c.ended, false);
  c.destroy();
});

test('a malformed request on a connection that idled gets its 400 and the connection closes', async () => {
  const c = await RawConnection.open(weir.url('edge'));
  c.write(get('/echo?before-bad=1'));
  assert.equal((await c.readResponse()).status, 200);
  await new Promise((r) => setTimeout(r, 1200));
  c.write('GET /echo HTTP/1.1\r\nHost: test.local\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n');
  assert.equal((await c.readResponse()).status, 400);
  assert.equal(await c.waitClosed(), true);
});
