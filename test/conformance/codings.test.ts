import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import type { AddressInfo } from 'node:net';
import { startWeir, type Weir } from '../support/weir.ts';
import { startUpstream, type Upstream } from '../support/upstream.ts';
import { rawExchange } from '../support/raw.ts';

let up: Upstream;
let gzipChunked: net.Server;
let weir: Weir;

before(async () => {
  up = await startUpstream();
  gzipChunked = net.createServer((s) => s.on('data', () => s.write('HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n')));
  await new Promise<void>((r) => gzipChunked.listen(0, '127.0.0.1', r));
  weir = await startWeir(`
listeners:
  - name: edge
    address: 127.0.0.1:0
    routes:
      - match: { prefix: /coded }
        cluster: coded
      - match: { prefix: / }
        cluster: up
clusters:
  - name: up
    endpoints: [${up.address}]
  - name: coded
    endpoints: [127.0.0.1:${(gzipChunked.address() as AddressInfo).port}]
`);
});

after(async () => {
  await weir?.stop();
  await up?.close();
  gzipChunked?.close();
});

test('a request with a transfer coding other than chunked gets 501 and never reaches the upstream', async () => {
  const before = up.requests.length;
  const { text, closed } = await rawExchange(weir.url('edge'), 'POST /te HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n');
  assert.match(text, /^HTTP\/1\.1 501 Not Implemented\r\n/);
  assert.equal(closed, true);
  assert.equal(up.requests.length, before);
});

test('a transfer coding in a Transfer-Encoding field of its own, before chunked in another, gets 501 too', async () => {
  const before = up.requests.length;
  const { text, closed } = await rawExchange(weir.url('edge'), 'POST /te-two HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n');
  assert.match(text, /^HTTP\/1\.1 501 Not Implemented\r\n/);
  assert.equal(closed, true);
  assert.equal(up.requests.length, before);
});

test('an HTTP/1.0 request with Transfer-Encoding is served, then the connection closes (its framing is faulty)', async () => {
  const { text, closed } = await rawExchange(
    weir.url('edge'),
    'POST /te-10 HTTP/1.0\r\nHost: x\r\nConnection: keep-alive\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nhi\r\n0\r\n\r\nGET /te-10-next HTTP/1.0\r\nHost: x\r\n\r\n',
  );
  assert.match(text, /^HTTP\/1\.1 200 /);
  assert.match(text, /"body":"hi"/);
  assert.doesNotMatch(text, /te-10-next/, 'nothing after it on the connection is read');
  assert.equal(closed, true);
});

test('an HTTP/2.0 request line on an HTTP/1.1 listener gets 505', async () => {
  const { text } = await rawExchange(weir.url('edge'), 'GET / HTTP/2.0\r\nHost: x\r\n\r\n');
  assert.match(text, /^HTTP\/1\.1 505 HTTP Version Not Supported\r\n/);
});

test('an upstream response with a transfer coding other than chunked is refused with 502, not passed on decoded', async () => {
  const res = await fetch(`${weir.url('edge')}/coded`);
  assert.equal(res.status, 502);
  const line = await weir.waitForLine((l) => l.msg === 'access' && l.path === '/coded');
  assert.equal(line.flags, 'UPE');
  assert.match(line.details, /Transfer-Encoding "gzip, chunked" cannot be passed on/);
});

test('"Transfer-Encoding: Chunked" (any case) is chunked', async () => {
  const { text } = await rawExchange(weir.url('edge'), 'POST /ok HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: Chunked\r\nConnection: close\r\n\r\n2\r\nhi\r\n0\r\n\r\n');
  assert.match(text, /^HTTP\/1\.1 200 /);
  assert.match(text, /"body":"hi"/);
});
