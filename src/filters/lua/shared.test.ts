import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Worker } from 'node:worker_threads';
import { createSharedStore } from '../../core/shared-store.ts';
import { buildLuaForTest } from './testing.ts';

test('weir.shared: set/get keep the Lua type; add refuses an existing key; delete removes', async () => {
  const f = await buildLuaForTest({
    source: `
      function envoy_on_request(h)
        local d = weir.shared.unit_types
        local out = {}
        out[#out + 1] = tostring(d:set("s", "text"))
        out[#out + 1] = tostring(d:set("n", 42))
        out[#out + 1] = tostring(d:set("f", 1.5))
        out[#out + 1] = tostring(d:set("b", false))
        out[#out + 1] = d:get("s") .. "/" .. math.type(d:get("n")) .. "/" .. tostring(d:get("f")) .. "/" .. tostring(d:get("b"))
        local ok, err = d:add("s", "again")
        out[#out + 1] = tostring(ok) .. ":" .. tostring(err)
        out[#out + 1] = tostring(d:add("fresh", "1"))
        out[#out + 1] = tostring(d:delete("s")) .. ":" .. tostring(d:get("s"))
        out[#out + 1] = tostring(weir.shared:set("k", "default dict")) .. ":" .. weir.shared:get("k")
        out[#out + 1] = tostring(weir.shared.dict("unit_types"):get("fresh"))
        out[#out + 1] = tostring(select(2, d:set("t", {})))
        h:headers():add("x-out", table.concat(out, ","))
      end`,
  });
  const o = await f.exchange({});
  assert.equal(o.upstream!.headers.get('x-out'), 'true,true,true,true,text/integer/1.5/false,false:exists,true,true:nil,true:default dict,1,bad value type');
});

test('weir.shared: incr with an initial value, not found without one, not a number on strings', async () => {
  const f = await buildLuaForTest({
    source: `
      function envoy_on_request(h)
        local d = weir.shared.unit_incr
        local a = d:incr("c", 5, 10)
        local b = d:incr("c", -2)
        local missing, merr = d:incr("missing", 1)
        d:set("str", "5")
        local bad, berr = d:incr("str", 1)
        h:headers():add("x-out", table.concat({a, b, tostring(missing), merr, tostring(bad), berr}, ","))
      end`,
  });
  const o = await f.exchange({});
  assert.equal(o.upstream!.headers.get('x-out'), '15,13,nil,not found,nil,not a number');
});

test('weir.shared: a TTL (seconds) expires the key', async () => {
  const f = await buildLuaForTest({
    source: `
      function envoy_on_request(h)
        local d = weir.shared.unit_ttl
        if h:headers():get("x-set") then
          d:set("short", "v", 0.05)
          d:incr("counter", 1, 0, 0.05)
          d:set("long", "v", 60)
        end
        h:headers():add("x-out", tostring(d:get("short")) .. "," .. tostring(d:get("counter")) .. "," .. tostring(d:get("long")))
      end`,
  });
  assert.equal((await f.exchange({ headers: { 'x-set': '1' } })).upstream!.headers.get('x-out'), 'v,1,v');
  await new Promise((r) => setTimeout(r, 120));
  assert.equal((await f.exchange({})).upstream!.headers.get('x-out'), 'nil,nil,v');
});

test('weir.shared: counters incremented from two worker threads add up', async () => {
  const store = createSharedStore({ memoryBytes: 1 << 20 });
  const requests = 100;
  const run = () =>
    new Promise<void>((resolve, reject) => {
      const w = new Worker(new URL('./fixtures/shared-worker.ts', import.meta.url), { workerData: { buffer: store.buffer, requests } });
      w.once('message', () => resolve());
      w.once('error', reject);
      w.once('exit', (code) => (code === 0 ? resolve() : reject(new Error(`worker exited with ${code}`))));
    });
  await Promise.all([run(), run()]);
  const entry = store.get('lua:counters', 'n');
  assert.equal(new TextDecoder().decode(entry!.value), String(2 * requests * 10));
});
