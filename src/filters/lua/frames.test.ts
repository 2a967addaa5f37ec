import { test } from 'node:test';
import assert from 'node:assert/strict';
import { probeFrames } from './frames.ts';

test('probeFrames() finds the frame layout of the Lua build weir ships, so respond() ends runs without a yield', async () => {
  assert.equal(await probeFrames(), null);
});
