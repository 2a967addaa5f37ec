import { test } from 'node:test';
import assert from 'node:assert/strict';
import { TokenBucket } from './token-bucket.ts';

test('TokenBucket refuses once empty and refills at whole intervals', () => {
  const b = new TokenBucket({ capacity: 2, tokensPerFill: 1, fillIntervalMs: 1000, now: 0 });
  assert.equal(b.take(0), true);
  assert.equal(b.take(10), true);
  assert.equal(b.take(20), false);
  assert.equal(b.take(999), false);
  assert.equal(b.resetIn(999), 1);
  assert.equal(b.take(1000), true);
  assert.equal(b.take(1001), false);
});

test('TokenBucket never holds more than its capacity', () => {
  const b = new TokenBucket({ capacity: 3, tokensPerFill: 2, fillIntervalMs: 100, now: 0 });
  assert.equal(b.remaining(10_000), 3);
});
