import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Endpoint } from '../endpoint.ts';
import { scriptedRandomForTest, seededRandomForTest } from '../testing.ts';
import { LeastRequestLoadBalancer } from './least-request.ts';

const any = { hashKey: undefined, tried: null };

test('leastRequest() picks the drawn endpoint with fewer active requests', () => {
  const eps = [new Endpoint('a:1'), new Endpoint('b:1')];
  // 0.1 draws a, 0.9 draws b.
  const lb = new LeastRequestLoadBalancer(eps, { random: scriptedRandomForTest([0.1, 0.9]) });
  eps[0].activeRequests = 5;
  assert.equal(lb.pick(any)?.address, 'b:1');
  eps[0].activeRequests = 0;
  eps[1].activeRequests = 5;
  assert.equal(lb.pick(any)?.address, 'a:1');
});

test('leastRequest() keeps the first drawn endpoint on a tie', () => {
  const eps = [new Endpoint('a:1'), new Endpoint('b:1')];
  const lb = new LeastRequestLoadBalancer(eps, { random: scriptedRandomForTest([0.9, 0.1]) });
  assert.equal(lb.pick(any)?.address, 'b:1');
});

test('leastRequest() sends a loaded endpoint only the draws where it is chosen twice', () => {
  const eps = ['a:1', 'b:1', 'c:1'].map((a) => new Endpoint(a));
  eps[0].activeRequests = 100;
  const lb = new LeastRequestLoadBalancer(eps, { random: seededRandomForTest(11) });
  let loaded = 0;
  const n = 9_000;
  for (let i = 0; i < n; i++) if (lb.pick(any)!.address === 'a:1') loaded++;
  // Two independent draws both land on a with probability 1/9.
  assert.ok(loaded / n > 0.08 && loaded / n < 0.145, `loaded endpoint got ${loaded / n}`);
});
