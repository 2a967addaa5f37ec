import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Worker } from 'node:worker_threads';
import { once } from 'node:events';
import { createSharedStore, attachSharedStore, sharedStore } from './shared-store.ts';

const bytes = (s: string): Uint8Array => new TextEncoder().encode(s);
const text = (b: Uint8Array | undefined): string | undefined => (b === undefined ? undefined : new TextDecoder().decode(b));

test('set() then get() returns a copy of the bytes and a non-zero cas', () => {
  const store = createSharedStore({ memoryBytes: 4096 });
  assert.equal(store.get('a', 'k'), undefined);
  assert.equal(store.set('a', 'k', bytes('v1')), 'ok');
  const e = store.get('a', 'k')!;
  assert.equal(text(e.value), 'v1');
  assert.notEqual(e.cas, 0);
  e.value[0] = 0;
  assert.equal(text(store.get('a', 'k')!.value), 'v1');
});

test('namespaces keep equal keys apart', () => {
  const store = createSharedStore({ memoryBytes: 4096 });
  store.set('vm1', 'k', bytes('one'));
  store.set('vm2', 'k', bytes('two'));
  assert.equal(text(store.get('vm1', 'k')?.value), 'one');
  assert.equal(text(store.get('vm2', 'k')?.value), 'two');
  assert.deepEqual(store.keys('vm1'), ['k']);
  assert.equal(store.delete('vm1', 'k'), true);
  assert.equal(store.delete('vm1', 'k'), false);
  assert.equal(text(store.get('vm2', 'k')?.value), 'two');
});

test('set() with a stale cas answers cas-mismatch and keeps the value', () => {
  const store = createSharedStore({ memoryBytes: 4096 });
  store.set('a', 'k', bytes('v1'));
  const first = store.get('a', 'k')!.cas;
  assert.equal(store.set('a', 'k', bytes('v2'), { cas: first }), 'ok');
  const second = store.get('a', 'k')!.cas;
  assert.notEqual(second, first);
  assert.equal(store.set('a', 'k', bytes('v3'), { cas: first }), 'cas-mismatch');
  assert.equal(text(store.get('a', 'k')?.value), 'v2');
  assert.equal(store.set('a', 'absent', bytes('x'), { cas: 5 }), 'cas-mismatch');
});

test('add() writes only absent keys', () => {
  const store = createSharedStore({ memoryBytes: 4096 });
  assert.equal(store.add('a', 'k', bytes('1')), 'ok');
  assert.equal(store.add('a', 'k', bytes('2')), 'exists');
  assert.equal(text(store.get('a', 'k')?.value), '1');
});

test('incr() counts in decimal text, starts from init, refuses non-numbers', () => {
  const store = createSharedStore({ memoryBytes: 4096 });
  assert.equal(store.incr('a', 'n', 1), 'not-found');
  assert.equal(store.incr('a', 'n', 5, { init: 10 }), 15);
  assert.equal(store.incr('a', 'n', -3), 12);
  assert.equal(text(store.get('a', 'n')?.value), '12');
  store.set('a', 's', bytes('abc'));
  assert.equal(store.incr('a', 's', 1), 'not-a-number');
});

test('TTLs expire entries on the injected clock', () => {
  let now = 1_000_000;
  const store = createSharedStore({ memoryBytes: 4096, now: () => now });
  store.set('a', 'k', bytes('v'), { ttlMs: 100 });
  store.set('a', 'forever', bytes('v'));
  assert.equal(store.ttl('a', 'k'), 100);
  assert.equal(store.ttl('a', 'forever'), 0);
  now += 99;
  assert.equal(text(store.get('a', 'k')?.value), 'v');
  now += 1;
  assert.equal(store.get('a', 'k'), undefined);
  assert.equal(store.ttl('a', 'k'), undefined);
  assert.equal(store.add('a', 'k', bytes('again')), 'ok');
});

test('a full store answers no-memory, and frees space on delete', () => {
  const store = createSharedStore({ memoryBytes: 1024 });
  const big = new Uint8Array(400);
  assert.equal(store.set('a', 'one', big), 'ok');
  assert.equal(store.set('a', 'two', big), 'ok');
  assert.equal(store.set('a', 'three', big), 'no-memory');
  assert.equal(store.get('a', 'three'), undefined);
  store.delete('a', 'one');
  assert.equal(store.set('a', 'three', big), 'ok');
  assert.ok(store.stats().usedBytes <= 1024);
});

test('the entry limit answers no-memory and survives many deletes', () => {
  const store = createSharedStore({ memoryBytes: 1 << 16, maxEntries: 8 });
  let stored = 0;
  for (let i = 0; i < 20; i++) if (store.set('a', `k${i}`, bytes('x')) === 'ok') stored++;
  assert.ok(stored >= 8 && stored < 20, `stored ${stored}`);
  for (const key of store.keys('a')) store.delete('a', key);
  for (let round = 0; round < 200; round++) {
    store.delete('a', `r${round - 1}`);
    assert.equal(store.set('a', `r${round}`, bytes(String(round))), 'ok', `round ${round}`);
  }
  assert.equal(text(store.get('a', 'r199')?.value), '199');
});

test('values overwrite in place or move when their size changes', () => {
  const store = createSharedStore({ memoryBytes: 4096 });
  store.set('a', 'k', bytes('short'));
  store.set('a', 'k', bytes('x'.repeat(200)));
  assert.equal(text(store.get('a', 'k')?.value), 'x'.repeat(200));
  store.set('a', 'k', bytes(''));
  assert.equal(text(store.get('a', 'k')?.value), '');
  assert.equal(store.stats().entries, 1);
});

test('queues deliver items in order and answer empty and not-found', async () => {
  const store = createSharedStore({ memoryBytes: 4096 });
  const ready: number[] = [];
  let twoReady: () => void;
  const both = new Promise<void>((r) => (twoReady = r));
  const q = store.registerQueue('vm', 'jobs', (id) => {
    if (ready.push(id) === 2) twoReady();
  }) as number;
  assert.equal(store.resolveQueue('vm', 'jobs'), q);
  assert.equal(store.resolveQueue('vm', 'other'), undefined);
  assert.equal(store.enqueue(q, bytes('a')), 'ok');
  assert.equal(store.enqueue(q, bytes('b')), 'ok');
  assert.deepEqual(ready, [], 'delivery is asynchronous');
  await both;
  assert.deepEqual(ready, [q, q]);
  assert.equal(text(store.dequeue(q) as Uint8Array), 'a');
  assert.equal(text(store.dequeue(q) as Uint8Array), 'b');
  assert.equal(store.dequeue(q), 'empty');
  assert.equal(store.dequeue(999), 'not-found');
  assert.equal(store.enqueue(999, bytes('x')), 'not-found');
  store.close();
});

test('sharedStore() is the attached store of this thread', () => {
  const store = createSharedStore({ memoryBytes: 4096 });
  const attached = attachSharedStore(store.buffer);
  assert.equal(sharedStore(), attached);
  store.set('a', 'k', bytes('seen'));
  assert.equal(text(sharedStore().get('a', 'k')?.value), 'seen');
});

test('two worker threads see each other\'s writes and queue items', async () => {
  const store = createSharedStore({ memoryBytes: 1 << 16 });
  const url = new URL('./shared-store.ts', import.meta.url).href;
  // Worker A counts to 1000 with incr while worker B does the same; B also registers a queue that A feeds.
  const code = `
    const { workerData, parentPort } = require('node:worker_threads');
    import(${JSON.stringify(url)}).then(async ({ attachSharedStore }) => {
      const store = attachSharedStore(workerData.sab);
      const enc = new TextEncoder();
      if (workerData.role === 'reader') {
        const got = [];
        const keepAlive = setInterval(() => {}, 1000); // a pending queue wait does not keep a thread alive; weir's listeners do
        const q = store.registerQueue('vm', 'q', (id) => {
          got.push(new TextDecoder().decode(store.dequeue(id)));
          if (got.length === 3) { parentPort.postMessage({ got, counter: new TextDecoder().decode(store.get('vm', 'from-writer').value) }); store.close(); clearInterval(keepAlive); }
        });
        for (let i = 0; i < 1000; i++) store.incr('vm', 'n', 1, { init: 0 });
        parentPort.postMessage({ registered: q });
      } else {
        store.set('vm', 'from-writer', enc.encode('hello from writer'));
        for (let i = 0; i < 1000; i++) store.incr('vm', 'n', 1, { init: 0 });
        const q = store.resolveQueue('vm', 'q');
        for (const item of ['one', 'two', 'three']) store.enqueue(q, enc.encode(item));
        parentPort.postMessage({ done: true });
      }
    });`;
  const reader = new Worker(code, { eval: true, workerData: { sab: store.buffer, role: 'reader' } });
  reader.on('error', (e) => assert.fail(e));
  const [registered] = await once(reader, 'message');
  assert.ok(registered.registered >= 1);
  const resultMessage = once(reader, 'message');
  const writer = new Worker(code, { eval: true, workerData: { sab: store.buffer, role: 'writer' } });
  writer.on('error', (e) => assert.fail(e));
  const [done] = await once(writer, 'message');
  assert.deepEqual(done, { done: true });
  const [result] = await resultMessage;
  assert.deepEqual(result, { got: ['one', 'two', 'three'], counter: 'hello from writer' });
  assert.equal(new TextDecoder().decode(store.get('vm', 'n')!.value), '2000');
  await Promise.all([reader.terminate(), writer.terminate()]);
});

test('a value can grow into its own freed space in a full store, and a failed resize keeps the old value', () => {
  const store = createSharedStore({ memoryBytes: 1024 });
  assert.equal(store.set('a', 'k', new Uint8Array(900)), 'ok');
  assert.equal(store.set('a', 'k', new Uint8Array(950)), 'ok', 'the entry\'s own blocks are reused');
  assert.equal(store.set('a', 'k', new Uint8Array(2000)), 'no-memory');
  assert.equal(store.get('a', 'k')!.value.length, 950);
  assert.equal(store.set('a', 'other', new Uint8Array(100)), 'no-memory', 'the old blocks are still taken');
  assert.equal(store.set('a', 'small', new Uint8Array(10)), 'ok', 'the two free blocks are still free');
});

test('a lock left held by a dead thread is taken over after lockTimeoutMs', () => {
  const store = createSharedStore({ memoryBytes: 4096, lockTimeoutMs: 50 });
  new Int32Array(store.buffer)[0] = 999; // the lock word, as a thread that died inside an operation leaves it
  const started = performance.now();
  assert.equal(store.set('a', 'k', new Uint8Array([1])), 'ok');
  assert.ok(performance.now() - started >= 50);
  assert.equal(new Int32Array(store.buffer)[0], 0, 'released after the operation');
});
