import { test } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { once } from 'node:events';
import { Buffer } from 'node:buffer';
import { directReads, readIntoSharedBuffer } from './shared-reads.ts';
import { ServerConnection, type RequestSink } from './server-connection.ts';
import { HeaderMap } from '../../core/headers.ts';

/** A loopback server whose accepted sockets go to `onSocket`, and a client connected to it. */
async function pair(onSocket: (s: net.Socket) => void): Promise<{ client: net.Socket; close(): void }> {
  const server = net.createServer(onSocket);
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const client = net.connect((server.address() as net.AddressInfo).port, '127.0.0.1');
  await once(client, 'connect');
  return { client, close: () => { client.destroy(); server.close(); } };
}

test('accepted sockets hand their reads over in one buffer they share; pause stops them, EOF still ends the socket', async () => {
  const reads: { text: string; buf: Buffer }[] = [];
  const accepted: net.Socket[] = [];
  let notify = (): void => {};
  const first = await pair((s) => {
    accepted.push(s);
    assert.equal(readIntoSharedBuffer(s, (n, buf) => {
      reads.push({ text: buf.toString('latin1', 0, n), buf });
      notify();
      return true;
    }), true);
    // A socket set up once is not set up again.
    assert.equal(readIntoSharedBuffer(s, () => true), false);
    // The reads come straight from the handle, not through net's read handler (this Node's handles allow it).
    assert.equal((s as unknown as { _handle: { onread: { name: string } } })._handle.onread.name, 'onDirectRead');
  });
  const second = await pair((s) => {
    accepted.push(s);
    readIntoSharedBuffer(s, (n, buf) => {
      reads.push({ text: buf.toString('latin1', 0, n), buf });
      notify();
      return true;
    });
  });
  const until = (count: number): Promise<void> => new Promise((resolve) => {
    notify = () => { if (reads.length >= count) resolve(); };
    notify();
  });
  try {
    first.client.write('one');
    await until(1);
    second.client.write('two');
    await until(2);
    assert.deepEqual(reads.map((r) => r.text), ['one', 'two']);
    assert.equal(reads[0].buf, reads[1].buf, 'one buffer for both sockets');
    // Paused, the socket reads nothing; resumed, it reads what waited.
    accepted[0].pause();
    first.client.write('three');
    await new Promise((r) => setTimeout(r, 100));
    assert.equal(reads.length, 2);
    accepted[0].resume();
    await until(3);
    assert.equal(reads[2].text, 'three');
    const ended = once(accepted[0], 'end');
    first.client.end();
    await ended;
  } finally {
    first.close();
    second.close();
  }
});

test('a ServerConnection on a socket whose reads arrive as data events (they cannot be handed over) serves requests', async () => {
  let conn: ServerConnection | null = null;
  const { client, close } = await pair((s) => {
    // The reads are already handed elsewhere, which pushes them on as 'data': the connection must read those.
    readIntoSharedBuffer(s, (n, buf) => s.push(Buffer.from(buf.subarray(0, n))));
    conn = new ServerConnection(s, {
      maxHeaderSize: 16384, maxUriSize: 8192, normalizePath: false, mergeSlashes: false, headerTimeoutMs: 10000, idleTimeoutMs: 60000,
      onRequest(c, head): RequestSink {
        return {
          start() {},
          onBody() {},
          onTrailers() {},
          onEnd() {
            c.sendResponse(200, new HeaderMap(['x-method', head.method]), Buffer.from(head.headers.get(':path') ?? ''));
          },
          onAbort() {},
          onDrain() {},
        };
      },
    });
  });
  try {
    let text = '';
    client.on('data', (d) => (text += d.toString('latin1')));
    // A usual head, then a chunked one (llhttp's), in one write.
    client.write('GET /a HTTP/1.1\r\nHost: x\r\n\r\nPOST /b HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nz\r\n0\r\n\r\n');
    const deadline = Date.now() + 3000;
    while ((text.match(/HTTP\/1\.1 200/g) ?? []).length < 2 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
    assert.ok(conn !== null);
    assert.match(text, /^HTTP\/1\.1 200 OK\r\n(?:.*\r\n)*x-method: GET\r\n(?:.*\r\n)*\r\n\/aHTTP\/1\.1 200 OK\r\n(?:.*\r\n)*x-method: POST\r\n(?:.*\r\n)*\r\n\/b$/);
  } finally {
    close();
  }
});

test('directReads(): a connecting socket reads into the buffer next() gives; false stops reading; EOF ends the socket', async () => {
  const server = net.createServer();
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const accepted = once(server, 'connection');
  const buffers = [Buffer.alloc(8), Buffer.alloc(8)];
  let current = 0;
  const reads: string[] = [];
  let stopAfter = Infinity;
  let notify = (): void => {};
  const socket = net.connect({
    port: (server.address() as net.AddressInfo).port,
    host: '127.0.0.1',
    onread: { buffer: buffers[0], callback: () => assert.fail('net\'s handler was called for data') },
  });
  assert.equal(directReads(socket, (n) => {
    reads.push(buffers[current].toString('latin1', 0, n) + '@' + current);
    notify();
    return reads.length < stopAfter;
  }, () => {
    // Each read goes into the other buffer: the handle must be told.
    current = 1 - current;
    return buffers[current];
  }), true);
  const until = (count: number): Promise<void> => new Promise((resolve) => {
    notify = () => { if (reads.length >= count) resolve(); };
    notify();
  });
  const [peer] = (await accepted) as [net.Socket];
  try {
    peer.write('abc');
    await until(1);
    peer.write('def');
    await until(2);
    assert.deepEqual(reads, ['abc@0', 'def@1']);
    // The callback says stop: nothing more is read until resume().
    stopAfter = 3;
    peer.write('ghi');
    await until(3);
    peer.write('jkl');
    await new Promise((r) => setTimeout(r, 100));
    assert.equal(reads.length, 3);
    stopAfter = Infinity;
    socket.resume();
    await until(4);
    assert.deepEqual(reads.slice(2), ['ghi@0', 'jkl@1']);
    const ended = once(socket, 'end');
    peer.end();
    await ended;
  } finally {
    socket.destroy();
    peer.destroy();
    server.close();
  }
});
