/** Upgrades (WebSocket-style tunnels) through the real CLI: bytes both ways, refusals, closes, slots given back. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { RawConnection } from '../support/raw-connection.ts';
import { useHttp1Fixture, weir, up } from './http1-fixture.ts';

useHttp1Fixture();

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

test('an upgrade the upstream refuses is answered as a plain response and the connection closes', async () => {
  const c = await RawConnection.open(weir.url('edge'));
  c.write('GET /refuse-upgrade HTTP/1.1\r\nHost: test.local\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n');
  const r = await c.readResponse();
  assert.equal(r.status, 426);
  assert.equal(r.body.toString(), 'refused');
  assert.equal(await c.waitClosed(), true);
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

test('bytes after a refused upgrade are not parsed as a request (no WebSocket smuggling)', async () => {
  const c = await RawConnection.open(weir.url('edge'));
  c.write(
    'GET /refuse-upgrade HTTP/1.1\r\nHost: test.local\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n' +
      'GET /echo?smuggled=1 HTTP/1.1\r\nHost: test.local\r\n\r\n',
  );
  const r = await c.readResponse();
  assert.equal(r.status, 426);
  assert.equal(await c.waitClosed(), true);
  assert.equal(c.pending.length, 0, 'one response only');
  const probe = await fetch(`${weir.url('edge')}/echo?probe-after-refusal`);
  await probe.arrayBuffer();
  assert.ok(up.requests.some((q) => q.url === '/echo?probe-after-refusal'));
  assert.ok(!up.requests.some((q) => q.url === '/echo?smuggled=1'), 'the upstream never saw the smuggled request');
});

test('an HTTP/1.0 request with Upgrade is not tunnelled: Upgrade is ignored in HTTP/1.0 (RFC 9110 section 7.8)', async () => {
  const c = await RawConnection.open(weir.url('edge'));
  c.write('GET /ws?v10=1 HTTP/1.0\r\nHost: test.local\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n');
  const r = await c.readResponse();
  assert.notEqual(r.status, 101);
  assert.ok(up.requests.some((q) => q.url === '/ws?v10=1' && q.headers.upgrade === undefined), 'the upstream got it without Upgrade');
  c.destroy();
});

test('an h2c upgrade is not tunnelled: the request goes upstream as plain HTTP/1.1 (h2c smuggling), as Envoy does', async () => {
  const c = await RawConnection.open(weir.url('edge'));
  c.write(
    'GET /echo?h2c=1 HTTP/1.1\r\nHost: test.local\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\n' +
      'HTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n\r\n',
  );
  const r = await c.readResponse();
  assert.equal(r.status, 200, 'not a 101');
  const echo = JSON.parse(r.body.toString());
  assert.equal(echo.url, '/echo?h2c=1');
  assert.equal(echo.headers.upgrade, undefined);
  assert.equal(echo.headers['http2-settings'], undefined);
  c.destroy();
});

/**
 * Upgrades `c` to the echo tunnel with bytes right behind the head, checks that they and then `word` come back
 * upper-cased through the tunnel, and closes it.
 */
async function upgradeAndTunnel(c: RawConnection, word: string): Promise<void> {
  c.write('GET /ws HTTP/1.1\r\nHost: test.local\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\nearly');
  assert.equal((await c.readResponse()).status, 101);
  assert.equal((await c.readBytes(8)).toString(), 'hi:EARLY');
  c.write(word);
  assert.equal((await c.readBytes(word.length)).toString(), word.toUpperCase());
  c.destroy();
}

test('an upgrade on a keep-alive connection, after plain requests and after it idled, tunnels the same way', async () => {
  const c = await RawConnection.open(weir.url('edge'));
  // The first exchange, then a second one (the parser then reads the socket handle), then idle (it parks).
  for (const i of [1, 2]) {
    c.write(`GET /echo?before-upgrade=${i} HTTP/1.1\r\nHost: test.local\r\n\r\n`);
    assert.equal((await c.readResponse()).status, 200);
  }
  await new Promise((r) => setTimeout(r, 1200));
  await upgradeAndTunnel(c, 'ping');
});

test('an upgrade as the third exchange of a busy keep-alive connection (its parser reading the socket) tunnels too', async () => {
  const c = await RawConnection.open(weir.url('edge'));
  for (const i of [1, 2]) {
    c.write(`GET /echo?busy=${i} HTTP/1.1\r\nHost: test.local\r\n\r\n`);
    assert.equal((await c.readResponse()).status, 200);
  }
  await upgradeAndTunnel(c, 'pong');
});
