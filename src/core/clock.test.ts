import { test } from 'node:test';
import assert from 'node:assert/strict';
import { performance } from 'node:perf_hooks';
import { advanceClock, enterEvent, leaveEvent, monoNow, wallNow } from './clock.ts';

function spin(ms: number): void {
  const end = performance.now() + ms;
  while (performance.now() < end);
}

test('outside an event every read is fresh', () => {
  const a = monoNow();
  const w = wallNow();
  spin(3);
  assert.ok(monoNow() - a >= 3);
  spin(3);
  assert.ok(wallNow() - w >= 3);
});

test('inside an event the reading is shared, nested events included, and fresh again after it', () => {
  enterEvent();
  try {
    const a = monoNow();
    const w = wallNow();
    spin(3);
    enterEvent();
    assert.equal(monoNow(), a);
    leaveEvent();
    assert.equal(monoNow(), a, 'the inner leave does not end the outer event');
    assert.equal(wallNow(), w);
  } finally {
    leaveEvent();
  }
  const before = performance.now();
  assert.ok(monoNow() >= before);
});

test('advanceClock moves the event forward, the wall clock with it', () => {
  enterEvent();
  try {
    const w = wallNow();
    spin(3);
    const t = performance.now();
    advanceClock(t);
    assert.equal(monoNow(), t);
    assert.ok(wallNow() - w >= 3);
  } finally {
    leaveEvent();
  }
  advanceClock(0);
  assert.ok(monoNow() > 0, 'outside an event it changes nothing');
});
