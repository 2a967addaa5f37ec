import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Ajv } from 'ajv';
import wasm from './index.ts';

const validate = new Ajv({ useDefaults: true, allErrors: true, strict: false }).compile(wasm.schema);

test('the schema accepts the issue example and fills the defaults', () => {
  const config: Record<string, unknown> = { file: './filters/ratelimit.wasm', sha256: 'a'.repeat(64), root_id: 'my_root_id', vm_id: 'shared', configuration: '{"limit": 10}', vm_configuration: '', failure_policy: 'fail_closed' };
  assert.equal(validate(config), true, JSON.stringify(validate.errors));
  assert.equal(config.memory_limit_mb, 64);
  assert.equal(config.cpu_budget, 50_000_000);
  assert.equal(config.allow_on_headers_stop_iteration, false);
  const yamlObject = { file: 'x.wasm', configuration: { limit: 10, names: ['a'] } };
  assert.equal(validate(yamlObject), true, 'YAML configuration objects are accepted (passed on as JSON)');
});

test('the schema refuses unknown keys, a url without sha256, a bad sha256 and an unknown failure policy', () => {
  assert.equal(validate({ file: 'x.wasm', colour: 'red' }), false);
  assert.equal(validate({ url: 'https://example.com/x.wasm' }), false);
  assert.ok(validate.errors!.some((e) => e.keyword === 'required' && (e.params as { missingProperty: string }).missingProperty === 'sha256'));
  assert.equal(validate({ file: 'x.wasm', sha256: 'abc' }), false);
  assert.equal(validate({ file: 'x.wasm', failure_policy: 'fail_somehow' }), false);
});

test('prepare() refuses both file and url, or neither', async () => {
  const ctx = { name: 'w', baseDir: process.cwd(), path: 'listeners[0].filters[0]', log: () => {} };
  await assert.rejects(async () => wasm.prepare!({ file: 'a.wasm', url: 'https://example.com/a.wasm', sha256: 'a'.repeat(64) }, ctx), /exactly one of "file" and "url"/);
  await assert.rejects(async () => wasm.prepare!({}, ctx), /exactly one of "file" and "url"/);
});
