import { test } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import type { AddressInfo } from 'node:net';
import { startWeir } from '../support/weir.ts';

test('an upstream 101 without an Upgrade header to an upgrade request is a 502, and does not take the proxy down', async () => {
  const upstream = net.createServer((s) => {
    s.once('data', (d) => {
      if (d.toString('latin1').includes('upgrade')) s.end('HTTP/1.1 101 Switching Protocols\r\n\r\nRAW');
      else s.end('HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok');
    });
  });
  await new Promise<void>((r) => upstream.listen(0, '127.0.0.1', r));
  const weir = await startWeir(`
listeners:
  - name: edge
    address: 127.0.0.1:0
    routes:
      - match: { prefix: / }
        cluster: up
clusters:
  - name: up
    endpoints: [127.0.0.1:${(upstream.address() as AddressInfo).port}]
`);
  try {
    const { hostname, port } = new URL(weir.url('edge'));
    const answer = await new Promise<string>((resolve) => {
      let text = '';
      const c = net.connect(Number(port), hostname, () => {
        c.write('GET /chat HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n');
      });
      c.on('data', (d) => (text += d.toString('latin1')));
      c.on('close', () => resolve(text));
      c.on('error', () => resolve(text));
      setTimeout(() => c.destroy(), 1000);
    });
    // A switch without saying to what is an invalid response (RFC 9110 section 7.8): 502, and the bytes after it are not passed on.
    assert.match(answer, /^HTTP\/1\.1 502 Bad Gateway\r\n/);
    assert.doesNotMatch(answer, /RAW/);
    const line = await weir.waitForLine((l) => l.msg === 'access' && l.path === '/chat');
    assert.equal(line.flags, 'UPE');
    assert.match(line.details, /a 101 without an Upgrade header/);
    // weir closed its side too (the 502 closes the connection: weir reads on to the client's FIN, though the
    // request's upgrade paused its reads).
    assert.equal(await activeConnections(weir.admin, 0), 0);
    // The process is alive and serves the next request (it died with SIGSEGV before).
    const res = await fetch(`${weir.url('edge')}/after`);
    assert.equal(res.status, 200);
    assert.equal(await res.text(), 'ok');
  } finally {
    await weir.stop();
    upstream.close();
  }
});

/** The downstream connections open on "edge", polled until they are `want` (or 3 s passed). */
async function activeConnections(admin: string, want: number): Promise<number> {
  const deadline = Date.now() + 3000;
  for (;;) {
    const text = await (await fetch(`${admin}/metrics`)).text();
    const n = Number(/weir_downstream_connections_active\{listener="edge"\} (\d+)/.exec(text)?.[1]);
    if (n === want || Date.now() > deadline) return n;
    await new Promise((r) => setTimeout(r, 50));
  }
}
