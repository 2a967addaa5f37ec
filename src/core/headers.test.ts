import { test } from 'node:test';
import assert from 'node:assert/strict';
import { HeaderMap, HOP_BY_HOP, isHopByHop } from './headers.ts';

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
});

test('HeaderMap refuses, at the change, what would break the message: bad names, CR/LF/NUL, a :path with spaces', () => {
  const h = HeaderMap.from({ ':method': 'GET', ':path': '/', a: '1' });
  assert.throws(() => h.add('x-a', 'one\r\nInjected: yes'), /invalid value for header "x-a": it contains CR, LF or NUL/);
  assert.throws(() => h.set('x-a', 'nul\0'), /invalid value for header "x-a"/);
  assert.throws(() => h.add('bad name', 'v'), /invalid header name "bad name"/);
  assert.throws(() => h.add('x:y', 'v'), /invalid header name "x:y"/);
  assert.throws(() => h.set(':path', '/a b'), /invalid value for :path: "\/a b"/);
  assert.throws(() => h.set(':path', '/a\r\nHost: evil'), /invalid value for :path/);
  assert.throws(() => h.set(':method', 'GET /x'), /invalid value for :method/);
  assert.throws(() => h.set(':authority', 'a\nb'), /invalid value for :authority/);
  assert.throws(() => HeaderMap.from({ 'x-b': ['ok', 'not\nok'] }), /invalid value for header "x-b"/);
  assert.throws(() => HeaderMap.fromPairs([['X-C', '\r']]), /invalid value for header "x-c"/);
  // Nothing was written by the refused changes; ordinary values (tabs, UTF-8 as latin1, empty) pass.
  assert.deepEqual(h.list, [':method', 'GET', ':path', '/', 'a', '1']);
  h.add('x-tab', 'a\tb');
  h.add('x-empty', '');
  h.set(':path', '/a?b=c%20d');
  assert.deepEqual(h.toObject(), { ':method': 'GET', ':path': '/a?b=c%20d', a: '1', 'x-tab': 'a\tb', 'x-empty': '' });
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

test('isHopByHop() answers as HOP_BY_HOP.has() for its names and for names of the same lengths', () => {
  for (const name of HOP_BY_HOP) assert.equal(isHopByHop(name), true, name);
  for (const name of ['ta', 'upgradx', 'trailers', 'content-length', 'user-agent', 'proxy-connectionx', 'transfer-encodinG', 'proxy-authorizatio', '']) {
    assert.equal(isHopByHop(name), HOP_BY_HOP.has(name), name);
  }
});
