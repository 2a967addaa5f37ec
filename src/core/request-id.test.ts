import { test } from 'node:test';
import assert from 'node:assert/strict';
import { requestId } from './request-id.ts';

test('requestId() returns distinct version 4 UUIDs', () => {
  const seen = new Set<string>();
  for (let i = 0; i < 5000; i++) {
    const id = requestId();
    assert.match(id, /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
    seen.add(id);
  }
  assert.equal(seen.size, 5000);
});
