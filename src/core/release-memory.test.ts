import { test } from 'node:test';
import assert from 'node:assert/strict';
import v8 from 'node:v8';
import { releaseMemory } from './release-memory.ts';

test('releaseMemory collects garbage and shrinks the heap at once', () => {
  let junk: object[] | null = [];
  for (let i = 0; i < 400_000; i++) junk.push({ i, s: 'x' + i });
  const grown = v8.getHeapStatistics().total_heap_size;
  junk = null;
  releaseMemory();
  const after = v8.getHeapStatistics();
  assert.ok(after.total_heap_size < grown / 2, `heap ${after.total_heap_size} after, ${grown} before`);
  assert.ok(after.used_heap_size < 20 * 1024 * 1024, `still ${after.used_heap_size} bytes used`);
  // A second call reuses the function it found the first time.
  releaseMemory();
});
