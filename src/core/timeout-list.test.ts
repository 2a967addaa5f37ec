import { test } from 'node:test';
import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import { TimeoutList } from './timeout-list.ts';

test('TimeoutList expires items in order after their duration, and not cancelled ones', async () => {
  const list = new TimeoutList(30);
  const fired: string[] = [];
  const a = list.arm({ expire: () => fired.push('a') });
  list.arm({ expire: () => fired.push('b') });
  const c = list.arm({ expire: () => fired.push('c') });
  list.cancel(c);
  list.cancel(a);
  list.cancel(a);
  await sleep(10);
  assert.deepEqual(fired, []);
  await sleep(60);
  assert.deepEqual(fired, ['b']);
  assert.equal(list.size, 0);
});

test('TimeoutList keeps working across compaction with many cancelled entries', async () => {
  const list = new TimeoutList(20);
  let fired = 0;
  for (let i = 0; i < 5000; i++) list.cancel(list.arm({ expire: () => fired++ }));
  assert.ok(list.size <= 1, 'cancelled heads are dropped as new entries come');
  const late = list.arm({ expire: () => fired++ });
  const ticketAfter = list.arm({ expire: () => fired++ });
  list.cancel(ticketAfter);
  assert.ok(late >= 5000);
  await sleep(60);
  assert.equal(fired, 1);
});

test('TimeoutList ignores a cancel after expiry', async () => {
  const list = new TimeoutList(5);
  let fired = 0;
  const t = list.arm({ expire: () => fired++ });
  await sleep(30);
  list.cancel(t);
  const u = list.arm({ expire: () => fired++ });
  assert.notEqual(u, t);
  await sleep(30);
  assert.equal(fired, 2);
});
