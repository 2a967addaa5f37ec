import { test } from 'node:test';
import assert from 'node:assert/strict';
import { HeaderMap } from './headers.ts';

test('HeaderMap keeps order and repeated names, and lower-cases added names', () => {
  const h = new HeaderMap();
  h.add('X-A', '1');
  h.add('x-a', '2');
  h.add('Other', 'o');
  assert.equal(h.get('x-a'), '1');
  assert.equal(h.getJoined('x-a'), '1,2');
  assert.deepEqual(h.getAll('x-a'), ['1', '2']);
  assert.deepEqual([...h], [['x-a', '1'], ['x-a', '2'], ['other', 'o']]);
  assert.equal(h.size, 3);
});

test('HeaderMap.set replaces every value in the first position; remove drops all', () => {
  const h = HeaderMap.from({ a: ['1', '2'], b: '3' });
  h.set('A', 'x');
  assert.deepEqual(h.list, ['a', 'x', 'b', '3']);
  assert.equal(h.remove('a'), 1);
  assert.equal(h.remove('missing'), 0);
  assert.deepEqual(h.list, ['b', '3']);
  assert.equal(h.modified, true);
});

test('HeaderMap refuses changes once frozen, with Envoy\'s message', () => {
  const h = HeaderMap.from({ a: '1' });
  h.frozen = true;
  assert.throws(() => h.add('b', '2'), /header map can no longer be modified/);
  assert.throws(() => h.set('a', '2'), /header map can no longer be modified/);
  assert.throws(() => h.remove('a'), /header map can no longer be modified/);
  assert.equal(h.get('a'), '1');
});

test('HeaderMap.toObject turns repeated names into arrays', () => {
  assert.deepEqual(HeaderMap.from({ a: ['1', '2'], b: 3 }).toObject(), { a: ['1', '2'], b: '3' });
});
