import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Endpoint } from '../endpoint.ts';
import { manualClockForTest, seededRandomForTest } from '../testing.ts';
import { RoundRobinLoadBalancer } from './round-robin.ts';

const zero = () => 0;

function names(lb: RoundRobinLoadBalancer, n: number): string {
  let out = '';
  for (let i = 0; i < n; i++) out += lb.pick({ hashKey: undefined, tried: null })!.address[0];
  return out;
}

test('roundRobin() cycles through equal endpoints in order', () => {
  const lb = new RoundRobinLoadBalancer(['a:1', 'b:1', 'c:1'].map((a) => new Endpoint(a)), { random: zero });
  assert.equal(names(lb, 9), 'abcabcabc');
});

test('roundRobin() interleaves weights smoothly (5:1:1 gives aabacaa)', () => {
  const eps = [new Endpoint('a:1', { weight: 5 }), new Endpoint('b:1'), new Endpoint('c:1')];
  const lb = new RoundRobinLoadBalancer(eps, { random: zero });
  assert.equal(names(lb, 14), 'aabacaaaabacaa');
});

test('roundRobin() gives each endpoint exactly its weight over a full cycle, from any starting offset', () => {
  const eps = [new Endpoint('a:1', { weight: 3 }), new Endpoint('b:1', { weight: 2 }), new Endpoint('c:1')];
  for (const start of [0, 0.3, 0.99]) {
    const lb = new RoundRobinLoadBalancer(eps, { random: () => start });
    names(lb, 13);
    const counts = { a: 0, b: 0, c: 0 } as Record<string, number>;
    for (const ch of names(lb, 600)) counts[ch]++;
    assert.deepEqual(counts, { a: 300, b: 200, c: 100 }, `start ${start}`);
  }
});

test('roundRobin() keeps rotating among the rest while an endpoint is unhealthy', () => {
  const clock = manualClockForTest();
  const eps = ['a:1', 'b:1', 'c:1'].map((a) => new Endpoint(a, { clock }));
  const lb = new RoundRobinLoadBalancer(eps, { random: zero, clock });
  eps[1].healthy = false;
  assert.equal(names(lb, 6), 'acacac');
});

test('roundRobin() starts at a random offset so workers do not all hit the first endpoint', () => {
  const eps = ['a:1', 'b:1', 'c:1'].map((a) => new Endpoint(a));
  const firsts = new Set([1, 2, 3, 4, 5, 6, 7, 8].map((seed) => names(new RoundRobinLoadBalancer(eps, { random: seededRandomForTest(seed) }), 1)));
  assert.ok(firsts.size > 1, `every seed started at ${[...firsts].join()}`);
});
