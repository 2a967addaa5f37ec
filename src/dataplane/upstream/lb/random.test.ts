import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Endpoint } from '../endpoint.ts';
import { scriptedRandomForTest, seededRandomForTest } from '../testing.ts';
import { RandomLoadBalancer } from './random.ts';

const any = { hashKey: undefined, tried: null };

test('random() maps the injected random number onto the weights', () => {
  const eps = [new Endpoint('a:1', { weight: 2 }), new Endpoint('b:1', { weight: 1 }), new Endpoint('c:1', { weight: 1 })];
  const lb = new RandomLoadBalancer(eps, { random: scriptedRandomForTest([0, 0.49, 0.5, 0.74, 0.75, 0.999]) });
  const picks = Array.from({ length: 6 }, () => lb.pick(any)!.address);
  assert.deepEqual(picks, ['a:1', 'a:1', 'b:1', 'b:1', 'c:1', 'c:1']);
});

test('random() spreads equal endpoints evenly', () => {
  const eps = ['a:1', 'b:1', 'c:1', 'd:1'].map((a) => new Endpoint(a));
  const lb = new RandomLoadBalancer(eps, { random: seededRandomForTest(5) });
  const counts = new Map<string, number>();
  for (let i = 0; i < 8_000; i++) {
    const a = lb.pick(any)!.address;
    counts.set(a, (counts.get(a) ?? 0) + 1);
  }
  for (const [a, c] of counts) assert.ok(c > 1_800 && c < 2_200, `${a} got ${c} of 8000`);
});
