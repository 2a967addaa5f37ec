import { test } from 'node:test';
import assert from 'node:assert/strict';
import { buildLuaForTest } from './testing.ts';

const lua = (source: string) => buildLuaForTest({ source });

test('body() holds the headers, buffers the whole body and returns it: length(), getBytes()', async () => {
  const f = await lua(`
    function envoy_on_request(h)
      local b = h:body()
      h:headers():add("x-len", tostring(b:length()))
      h:headers():add("x-bytes", b:getBytes(2, 3))
    end`);
  const o = await f.exchange({ method: 'POST', body: ['abc', 'def', 'gh'] });
  assert.deepEqual(o.statuses, ['request-headers:stop', 'request-body:stop-and-buffer', 'request-body:stop-and-buffer', 'request-body:continue', 'response-headers:continue']);
  assert.equal(o.upstream!.headers.get('x-len'), '8');
  assert.equal(o.upstream!.headers.get('x-bytes'), 'cde');
  assert.equal(o.upstream!.body.toString(), 'abcdefgh');
});

test('body() returns nil without a body, and an empty buffer with always_wrap_body', async () => {
  const f = await lua(`
    function envoy_on_request(h)
      h:headers():add("x-nil", tostring(h:body() == nil))
      h:headers():add("x-wrapped", tostring(h:body(true):length()))
    end`);
  const o = await f.exchange({});
  assert.equal(o.upstream!.headers.get('x-nil'), 'true');
  assert.equal(o.upstream!.headers.get('x-wrapped'), '0');
});

test('getBytes() out of range raises', async () => {
  const f = await lua(`function envoy_on_request(h) h:body():getBytes(2, 10) end`);
  const o = await f.exchange({ method: 'POST', body: ['abc'] });
  assert.equal(o.reply?.status, 500);
  assert.match(o.logs.join('\n'), /index\/length must be <= buffer size/);
});

test('setBytes() replaces the body, updates content-length and returns the new length', async () => {
  const f = await lua(`
    function envoy_on_response(h)
      local n = h:body():setBytes("replaced!")
      h:headers():add("x-n", tostring(n))
    end`);
  const o = await f.exchange({ response: { headers: { 'content-length': '5' }, body: ['hello'] } });
  assert.equal(o.response!.body.toString(), 'replaced!');
  assert.equal(o.response!.headers.get('content-length'), '9');
  assert.equal(o.response!.headers.get('x-n'), '9');
});

test('a JSON body rewrite that redacts a field (real-world script)', async () => {
  const f = await lua(`
    function envoy_on_response(h)
      local body = h:body()
      if body == nil then return end
      local text = body:getBytes(0, body:length())
      local redacted = text:gsub('("password"%s*:%s*)"[^"]*"', '%1"***"')
      body:setBytes(redacted)
    end`);
  const o = await f.exchange({
    response: { headers: { 'content-type': 'application/json', 'content-length': '47' }, body: ['{"user":"ann",', '"password":"hunter2","age":3}'] },
  });
  assert.deepEqual(JSON.parse(o.response!.body.toString()), { user: 'ann', password: '***', age: 3 });
  assert.equal(o.response!.headers.get('content-length'), String(o.response!.body.length));
});

test('bodyChunks() iterates chunks as they arrive without holding the headers; chunks can be rewritten', async () => {
  const f = await lua(`
    function envoy_on_request(h)
      local n = 0
      for chunk in h:bodyChunks() do
        n = n + 1
        chunk:setBytes(chunk:getBytes(0, chunk:length()):upper())
      end
      h:logInfo("chunks " .. n)
    end`);
  const o = await f.exchange({ method: 'POST', body: ['ab', 'cd', 'ef'] });
  assert.deepEqual(o.statuses.slice(0, 4), ['request-headers:continue', 'request-body:continue', 'request-body:continue', 'request-body:continue']);
  assert.equal(o.upstream!.body.toString(), 'ABCDEF');
  assert.ok(o.logs.includes('info [lua-test] chunks 3'));
});

test('body() after bodyChunks() and bodyChunks() after body() raise', async () => {
  const a = await lua(`function envoy_on_request(h) h:bodyChunks() h:body() end`);
  const oa = await a.exchange({ method: 'POST', body: ['x'] });
  assert.match(oa.logs.join('\n'), /cannot call body\(\) after body streaming has started/);
  const b = await lua(`function envoy_on_request(h) h:body() h:bodyChunks() end`);
  const ob = await b.exchange({ method: 'POST', body: ['x'] });
  assert.match(ob.logs.join('\n'), /cannot call bodyChunks after body processing has begun/);
});

test('trailers() waits for the trailers and returns them as a header map, or nil without trailers', async () => {
  const f = await lua(`
    function envoy_on_request(h)
      local b = h:body()
      local t = h:trailers()
      if t == nil then h:logInfo("no trailers") return end
      h:logInfo("trailer " .. t:get("x-checksum") .. " body " .. b:length())
      t:add("x-added", "1")
    end`);
  const o = await f.exchange({ method: 'POST', body: ['abc'], trailers: { 'x-checksum': 'c0ffee' } });
  assert.ok(o.logs.includes('info [lua-test] trailer c0ffee body 3'), o.logs.join('\n'));
  assert.equal(o.upstream!.trailers!.get('x-added'), '1');
  const none = await f.exchange({ method: 'POST', body: ['abc'] });
  assert.ok(none.logs.includes('info [lua-test] no trailers'));
});

test('response body(): the response path buffers too', async () => {
  const f = await lua(`
    function envoy_on_response(h)
      local b = h:body()
      h:headers():add("x-body", b:getBytes(0, 4))
    end`);
  const o = await f.exchange({ response: { body: ['resp', 'onse'] } });
  assert.equal(o.response!.headers.get('x-body'), 'resp');
  assert.equal(o.response!.body.toString(), 'response');
});

test("a header map taken before body() is still the stream's after it returns (Envoy's first documented example)", async () => {
  // Lua evaluates h:headers() before the argument that yields, so the map object is held across body().
  const f = await lua(`
    function envoy_on_request(h)
      h:headers():add("request_body_size", h:body():length())
      local hd = h:headers()
      local b = h:body()
      hd:add("x-len", tostring(b:length()))
      hd:add("x-in", tostring(hd:get("x-in")))
    end`);
  const o = await f.exchange({ method: 'POST', headers: { 'x-in': 'kept' }, body: ['abc', 'de'] });
  assert.equal(o.reply, null, o.logs.join('\n'));
  assert.equal(o.upstream!.headers.get('request_body_size'), '5');
  assert.equal(o.upstream!.headers.get('x-len'), '5');
  assert.equal(o.upstream!.headers.get('x-in'), 'kept');
});

test('a header map kept in a global raises when another request uses it, across a yield too', async () => {
  const f = await lua(`
    function envoy_on_request(h)
      if kept then
        h:body()
        kept:add("x-stale", "1")
      end
      kept = h:headers()
    end`);
  assert.equal((await f.exchange({})).reply, null);
  const second = await f.exchange({ method: 'POST', body: ['abc'] });
  assert.equal(second.reply?.status, 500);
  assert.match(second.logs.join('\n'), /lua-test:5: object used outside of proper scope/);
});
