import { test } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { once } from 'node:events';
import { Buffer } from 'node:buffer';
import { Coalescer } from './coalescer.ts';

/** A connected pair on loopback: writes go through a Coalescer on `a`; `received()` gives what `b` read until `a` ended. */
async function pair(): Promise<{ out: Coalescer; a: net.Socket; received: () => Promise<Buffer>; close: () => void }> {
  const server = net.createServer();
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const port = (server.address() as net.AddressInfo).port;
  const accepted = once(server, 'connection');
  const a = net.connect(port, '127.0.0.1');
  await once(a, 'connect');
  const [b] = (await accepted) as [net.Socket];
  const chunks: Buffer[] = [];
  b.on('data', (d: Buffer) => chunks.push(d));
  const ended = once(b, 'end');
  return {
    out: new Coalescer(a),
    a,
    received: async () => {
      await ended;
      return Buffer.concat(chunks);
    },
    close: () => {
      b.destroy();
      server.close();
    },
  };
}

/** A buffer of `size` bytes whose first `used` are `text` and whose rest is garbage that must never be sent. */
function withRoom(text: string, size: number): Buffer {
  const b = Buffer.alloc(size, '#');
  b.write(text, 0, 'latin1');
  return b;
}

test('bytesWithRoom(): small writes that fit go into the room, in order, and only the filled bytes are sent', async () => {
  const p = await pair();
  const lentSource = Buffer.from('body!');
  p.out.bytesWithRoom(withRoom('HEAD|', 5 + 12), 5);
  p.out.lent(lentSource);
  lentSource.fill('x'); // lent bytes are valid only during the call: what was queued is a copy
  p.out.text('|t');
  p.out.bytes(Buffer.from('|b'));
  await new Promise((r) => setImmediate(r));
  p.a.end();
  assert.equal((await p.received()).toString('latin1'), 'HEAD|body!|t|b');
  p.close();
});

test('bytesWithRoom(): a write that does not fit goes after the filled part, and later writes after it', async () => {
  const p = await pair();
  p.out.bytesWithRoom(withRoom('HEAD|', 5 + 4), 5);
  p.out.lent(Buffer.from('longer than the room'));
  p.out.text('|after');
  await new Promise((r) => setImmediate(r));
  p.a.end();
  assert.equal((await p.received()).toString('latin1'), 'HEAD|longer than the room|after');
  p.close();
});

test('bytesWithRoom(): a second head with room after a first one keeps both in order; a flush ends the room', async () => {
  const p = await pair();
  p.out.bytesWithRoom(withRoom('one|', 4 + 8), 4);
  p.out.bytesWithRoom(withRoom('two|', 4 + 8), 4);
  p.out.lent(Buffer.from('2'));
  p.out.flush();
  p.out.lent(Buffer.from('|next'));
  // A large write flushes what is queued first.
  p.out.bytes(Buffer.alloc(20 * 1024, 'L'));
  await new Promise((r) => setImmediate(r));
  p.a.end();
  const got = (await p.received()).toString('latin1');
  assert.equal(got, 'one|two|2|next' + 'L'.repeat(20 * 1024));
  p.close();
});
