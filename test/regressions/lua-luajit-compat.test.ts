// Regression: string.format("%d", 261 / 2) raised in Lua 5.4 where LuaJIT (Envoy) prints 130 (audit of issue 3).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { startWeir } from '../support/weir.ts';

test('regression: string.format truncates floats for %d, %x and %c as LuaJIT does', async () => {
  const weir = await startWeir(`
listeners:
  - name: edge
    address: 127.0.0.1:0
    filters:
      - name: fmt
        type: lua
        source: |
          function envoy_on_request(handle)
            local s = string.format("%d|%5.2f|%x|%s|%%|%c|%d", 261 / 2, 261 / 2, 255.9, "x", 65.0, -7.5)
            handle:respond({[":status"] = "200"}, s)
          end
    routes:
      - match: { prefix: / }
        direct_response: { status: 204 }
`);
  try {
    const res = await fetch(weir.url('edge'));
    assert.equal(res.status, 200);
    assert.equal(await res.text(), '130|130.50|ff|x|%|A|-7');
  } finally {
    await weir.stop();
  }
});

test('regression: bit32 with no arguments and the Lua 5.2 functions arshift, lrotate, rrotate, replace', async () => {
  const weir = await startWeir(`
listeners:
  - name: edge
    address: 127.0.0.1:0
    filters:
      - name: bits
        type: lua
        source: |
          function envoy_on_request(handle)
            local r = table.concat({
              bit32.band(), bit32.bor(), bit32.bxor(),
              bit32.arshift(0x80000000, 4), bit32.arshift(0x10, 2), bit32.arshift(0x80000000, 40),
              bit32.lrotate(0x80000001, 1), bit32.rrotate(1, 1),
              bit32.replace(0, 0xff, 8, 8), bit32.replace(0xffffffff, 0, 0, 4),
            }, ",")
            handle:respond({[":status"] = "200"}, r)
          end
    routes:
      - match: { prefix: / }
        direct_response: { status: 204 }
`);
  try {
    assert.equal(
      await (await fetch(weir.url('edge'))).text(),
      ['4294967295', '0', '0', '4160749568', '4', '4294967295', '3', '2147483648', '65280', '4294967280'].join(','),
    );
  } finally {
    await weir.stop();
  }
});
