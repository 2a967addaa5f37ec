import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Buffer } from 'node:buffer';
import { getProperty } from './properties.ts';
import { ContextState, type PluginInfo } from './context.ts';
import { CallbacksForTest } from './harness-for-test.ts';
import { HeaderMap } from '../../core/headers.ts';
import type { WasmVm } from './vm.ts';

const plugin: PluginInfo = { name: 'p', rootId: 'r', vmId: 'v', configuration: new Uint8Array(), path: 'listeners[0].filters[0]', log: () => {} };
const vm = { rootProperties: new Map() } as unknown as WasmVm;

test('properties from the wire are its bytes: a non-ASCII User-Agent, Referer, path and query come back as sent', () => {
  const cb = new CallbacksForTest();
  // Header values hold one character per byte (latin1): "café" sent as UTF-8 is c a f 0xc3 0xa9.
  cb.requestHeaders = HeaderMap.from({ ':method': 'GET', ':path': '/p\xc3\xa9?q=\xe9', ':authority': 'h\xe9', ':scheme': 'http', 'user-agent': 'caf\xc3\xa9', referer: 'r\xe9' });
  const ctx = new ContextState({ id: 2, rootId: 1, plugin, callbacks: cb });
  const bytes = (...path: string[]) => Buffer.from(getProperty(vm, ctx, path)!);
  assert.deepEqual(bytes('request', 'useragent'), Buffer.from([0x63, 0x61, 0x66, 0xc3, 0xa9]));
  assert.deepEqual(bytes('request', 'referer'), Buffer.from([0x72, 0xe9]));
  assert.deepEqual(bytes('request', 'path'), Buffer.from('/p\xc3\xa9?q=\xe9', 'latin1'));
  assert.deepEqual(bytes('request', 'query'), Buffer.from([0x71, 0x3d, 0xe9]));
  assert.deepEqual(bytes('request', 'host'), Buffer.from([0x68, 0xe9]));
  assert.deepEqual(bytes('plugin_name'), Buffer.from('p'));
});

test('in on_log, response.code is the status sent, also when a local reply replaced the upstream response the filter saw', () => {
  const cb = new CallbacksForTest({ info: { responseCode: 502 } });
  cb.responseHeaders = HeaderMap.from({ ':status': '502' });
  const ctx = new ContextState({ id: 2, rootId: 1, plugin, callbacks: cb });
  ctx.maps[2] = HeaderMap.from({ ':status': '200' });
  const code = () => Buffer.from(getProperty(vm, ctx, ['response', 'code'])!).readBigInt64LE();
  assert.equal(code(), 200n, 'during the response, the headers the filter holds');
  ctx.logPhase = true;
  assert.equal(code(), 502n);
});
