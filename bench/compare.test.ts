import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseVariant } from './compare.ts';

test('parseVariant() reads label=scenario, a build after @, node flags after +, and a filters file after %', () => {
  assert.deepEqual(parseVariant('pt=passthrough'), { label: 'pt', scenario: 'passthrough', bin: undefined, nodeArgs: [] });
  assert.deepEqual(parseVariant('old=lua-headers@/tmp/old/bin/weir.js+--no-liftoff+--max-semi-space-size=2'), {
    label: 'old', scenario: 'lua-headers', bin: '/tmp/old/bin/weir.js', nodeArgs: ['--no-liftoff', '--max-semi-space-size=2'],
  });
  assert.equal(parseVariant('mine=%/tmp/f.json').scenario, '%/tmp/f.json');
});

test('parseVariant() refuses an unknown scenario and a variant without a label', () => {
  assert.throws(() => parseVariant('x=nope'), /Unknown scenario "nope"/);
  assert.throws(() => parseVariant('passthrough'), /Cannot parse variant "passthrough"/);
});
