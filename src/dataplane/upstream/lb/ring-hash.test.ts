import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Endpoint } from '../endpoint.ts';
import { manualClockForTest, scriptedRandomForTest } from '../testing.ts';
import { hashKey32, RingHashLoadBalancer } from './ring-hash.ts';

const KEYS = Array.from({ length: 2_000 }, (_, i) => `user-${i}`);

function endpoints(n: number, clock = manualClockForTest()): Endpoint[] {
  return Array.from({ length: n }, (_, i) => new Endpoint(`10.0.0.${i + 1}:8080`, { clock }));
}

function assignment(lb: RingHashLoadBalancer): Map<string, string> {
  const out = new Map<string, string>();
  for (const k of KEYS) out.set(k, lb.pick({ hashKey: k, tried: null })!.address);
  return out;
}

test('hashKey32() is stable across versions (changing it would move every key)', () => {
  assert.deepEqual(
    ['', 'a', 'user-1', '10.0.0.1:8080_0'].map(hashKey32),
    [0xab3e7c0b, 0x1a80b1b3, 0x778f8aec, 0xc6b45405],
  );
});

test('ringHash() sends the same key to the same endpoint, in every instance and whatever the endpoint order', () => {
  const a = assignment(new RingHashLoadBalancer(endpoints(5)));
  const b = assignment(new RingHashLoadBalancer(endpoints(5).reverse()));
  assert.deepEqual(b, a);
  const lb = new RingHashLoadBalancer(endpoints(5));
  for (let i = 0; i < 3; i++) assert.deepEqual(assignment(lb), a);
});

test('ringHash() spreads keys over equal endpoints roughly evenly', () => {
  const counts = new Map<string, number>();
  for (const ep of assignment(new RingHashLoadBalancer(endpoints(4))).values()) counts.set(ep, (counts.get(ep) ?? 0) + 1);
  assert.equal(counts.size, 4);
  for (const [ep, c] of counts) assert.ok(c > 350 && c < 650, `${ep} got ${c} of 2000 keys`);
});

test('ringHash() moves only the keys of an endpoint removed from the cluster', () => {
  const eps = endpoints(5);
  const before = assignment(new RingHashLoadBalancer(eps));
  const gone = '10.0.0.3:8080';
  const after = assignment(new RingHashLoadBalancer(eps.filter((e) => e.address !== gone)));
  let moved = 0;
  for (const k of KEYS) {
    if (before.get(k) === gone) moved++;
    else assert.equal(after.get(k), before.get(k), `key ${k} moved although its endpoint stayed`);
  }
  assert.ok(moved > 0);
});

test('ringHash() moves keys only onto an endpoint added to the cluster', () => {
  const eps = endpoints(5);
  const before = assignment(new RingHashLoadBalancer(eps.slice(0, 4)));
  const after = assignment(new RingHashLoadBalancer(eps));
  for (const k of KEYS) if (after.get(k) !== before.get(k)) assert.equal(after.get(k), '10.0.0.5:8080');
});

test('ringHash() moves only the keys of an endpoint that becomes unavailable, and moves them back when it recovers', () => {
  const clock = manualClockForTest();
  const eps = endpoints(5, clock);
  const lb = new RingHashLoadBalancer(eps, { clock });
  const before = assignment(lb);
  eps[1].healthy = false;
  const during = assignment(lb);
  for (const k of KEYS) {
    if (before.get(k) === eps[1].address) assert.notEqual(during.get(k), eps[1].address);
    else assert.equal(during.get(k), before.get(k));
  }
  eps[1].healthy = true;
  assert.deepEqual(assignment(lb), before);
});

test('ringHash() gives a retry the next distinct endpoint on the ring, the one the key moves to if the first leaves', () => {
  const clock = manualClockForTest();
  const eps = endpoints(5, clock);
  const lb = new RingHashLoadBalancer(eps, { clock });
  for (const k of KEYS.slice(0, 200)) {
    const first = lb.pick({ hashKey: k, tried: null })!;
    const retry = lb.pick({ hashKey: k, tried: [first] })!;
    assert.notEqual(retry, first);
    first.healthy = false;
    assert.equal(lb.pick({ hashKey: k, tried: null }), retry);
    first.healthy = true;
  }
});

test('ringHash() places weight × points per unit of weight for each endpoint', () => {
  const eps = [new Endpoint('a:1', { weight: 3 }), new Endpoint('b:1')];
  assert.equal(new RingHashLoadBalancer(eps).ringSize, 1024);
  assert.equal(new RingHashLoadBalancer(eps, { ringPointsPerWeight: 10 }).ringSize, 40);
});

test('ringHash() starts from a random point when the request has no hash key', () => {
  const eps = endpoints(4);
  const lb = new RingHashLoadBalancer(eps, { random: scriptedRandomForTest([0.05, 0.3, 0.55, 0.8]) });
  const seen = new Set<string>();
  for (let i = 0; i < 4; i++) seen.add(lb.pick({ hashKey: undefined, tried: null })!.address);
  assert.ok(seen.size > 1);
});
