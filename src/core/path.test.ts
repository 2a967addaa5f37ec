import { test } from 'node:test';
import assert from 'node:assert/strict';
import { normalizePath } from './path.ts';

test('normalizePath removes dot segments, decodes unreserved percent-encodings, keeps the query and what needs no work', () => {
  const cases: [string, string][] = [
    ['/', '/'],
    ['/index.html?a=../b', '/index.html?a=../b'],
    ['/public/../admin', '/admin'],
    ['/a/./b/', '/a/b/'],
    ['/a/b/..', '/a/'],
    ['/../../etc/passwd', '/etc/passwd'],
    ['/%2e%2e/admin', '/admin'],
    ['/%2E%2e/%61dmin?x=%2e', '/admin?x=%2e'],
    ['/a%2Fb/%20c', '/a%2Fb/%20c'],
    ['/a//b', '/a//b'],
    ['/a//../b', '/a/b'],
    ['/.hidden/..x', '/.hidden/..x'],
  ];
  for (const [input, want] of cases) assert.equal(normalizePath(input, true, false), want, input);
});

test('normalizePath with merge_slashes collapses runs of "/"', () => {
  assert.equal(normalizePath('//admin///x//', true, true), '/admin/x/');
  assert.equal(normalizePath('/a//./b?q=//', true, true), '/a/b?q=//');
});

test('normalizePath with merge_slashes alone leaves dot segments', () => {
  assert.equal(normalizePath('//a/../b?q=//', false, true), '/a/../b?q=//');
  assert.equal(normalizePath('/a/../b', false, false), '/a/../b');
});
