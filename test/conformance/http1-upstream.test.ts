/**
 * HTTP/1.1 conformance of the upstream side through the real CLI: pooling and its hygiene (idle timeouts, stale
 * and confused connections, HTTP/1.0 answers), close-delimited and interim responses, early answers, bodies
 * larger than the buffer limit.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { RawConnection } from '../support/raw-connection.ts';
import { useHttp1Fixture, weir, get, strayConnections, closedPorts } from './http1-fixture.ts';

useHttp1Fixture();

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

for (const [path, todo] of [
  ['/early', undefined],
  ['/early-close', undefined],
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

for (const kind of ['glued', 'glued-chunked']) {
  test(`an upstream answer followed in the same read by one nobody asked for (${kind}): the request waiting for the connection gets its own`, async () => {
    // One connection at most: the second request waits for the first one's, which must not be handed over with the
    // stray response in it (the waiting request would be answered "stray").
    const before = strayConnections;
    const first = fetch(`${weir.url('single')}/stray/${kind}`);
    await new Promise((r) => setTimeout(r, 30));
    const second = fetch(`${weir.url('single')}/stray/after-${kind}`);
    assert.equal(await (await first).text(), 'first');
    const res = await second;
    assert.equal(res.status, 200);
    assert.equal(await res.text(), 'second', 'the waiting request got the answer to its own request');
    assert.ok(strayConnections > before, 'the connection with the stray response was closed, a new one opened');
  });
}

test('skips 1xx interim responses from the upstream and forwards the final one', async () => {
  const c = await RawConnection.open(weir.url('edge'));
  c.write(get('/stray/interim'));
  const r = await c.readResponse({ interim: true });
  assert.equal(r.status, 200);
  assert.equal(r.body.toString(), 'final');
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

test('does not reuse an upstream connection whose HTTP/1.0 answer did not keep it alive', async () => {
  const before = strayConnections;
  for (let i = 0; i < 3; i++) {
    const res = await fetch(`${weir.url('edge')}/stray/http10?${i}`);
    assert.equal(await res.text(), 'v1.0');
  }
  // The first may ride a pooled connection from an earlier test; each later one needs a new connection.
  assert.ok(strayConnections - before >= 2, `${strayConnections - before} new connections`);
});

test('parses an upstream response that arrives one byte per read, with its chunk extensions and trailer', async () => {
  const c = await RawConnection.open(weir.url('edge'));
  c.write(get('/stray/drip'));
  const r = await c.readResponse();
  assert.equal(r.status, 200);
  assert.equal(r.body.toString(), 'dripped');
  assert.deepEqual(r.trailers, [['x-sum', '7']]);
  c.destroy();
});

test('a 101 the client did not ask for is an invalid upstream response: 502, never forwarded', async () => {
  const c = await RawConnection.open(weir.url('edge'));
  c.write(get('/stray/unasked101'));
  const r = await c.readResponse();
  assert.equal(r.status, 502);
  assert.equal(r.body.toString(), 'invalid upstream response');
  c.destroy();
});

test('an upstream status below 100 is an invalid upstream response: 502, and nothing of it reaches the client', async () => {
  const c = await RawConnection.open(weir.url('edge'));
  c.write(get('/stray/status0'));
  const r = await c.readResponse();
  assert.equal(r.status, 502);
  assert.equal(r.body.toString(), 'invalid upstream response');
  c.write(get('/echo?after=status0'));
  const next = await c.readResponse();
  assert.equal(JSON.parse(next.body.toString()).url, '/echo?after=status0', 'the next answer on the connection is its own');
  assert.equal(next.headers.some(([n]) => n === 'x-injected'), false);
  c.destroy();
});
