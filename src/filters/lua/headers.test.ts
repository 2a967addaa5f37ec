import { test } from 'node:test';
import assert from 'node:assert/strict';
import { buildLuaForTest } from './testing.ts';

const lua = (source: string, extra: object = {}) => buildLuaForTest({ source, ...extra });

test('headers():get() returns a value, joins repeated values with "," and returns nil when absent', async () => {
  const f = await lua(`
    function envoy_on_request(h)
      local hd = h:headers()
      hd:add("x-one", hd:get("X-Single"))
      hd:add("x-joined", hd:get("x-multi"))
      hd:add("x-absent", tostring(hd:get("x-nope")))
      hd:add("x-method", hd:get(":method") .. " " .. hd:get(":path"))
    end`);
  const o = await f.exchange({ path: '/p?q=1', headers: { 'x-single': 'a', 'x-multi': ['1', '2'] } });
  const h = o.upstream!.headers;
  assert.equal(h.get('x-one'), 'a');
  assert.equal(h.get('x-joined'), '1,2');
  assert.equal(h.get('x-absent'), 'nil');
  assert.equal(h.get('x-method'), 'GET /p?q=1');
});

test('headers():getAtIndex() is 0-based and getNumValues() counts values', async () => {
  const f = await lua(`
    function envoy_on_request(h)
      local hd = h:headers()
      hd:add("x-0", hd:getAtIndex("x-multi", 0))
      hd:add("x-1", hd:getAtIndex("x-multi", 1))
      hd:add("x-2", tostring(hd:getAtIndex("x-multi", 2)))
      hd:add("x-n", tostring(hd:getNumValues("x-multi")))
      hd:add("x-none", tostring(hd:getNumValues("x-none")))
    end`);
  const h = (await f.exchange({ headers: { 'x-multi': ['first', 'second'] } })).upstream!.headers;
  assert.deepEqual([h.get('x-0'), h.get('x-1'), h.get('x-2'), h.get('x-n'), h.get('x-none')], ['first', 'second', 'nil', '2', '0']);
});

test('headers():add(), replace() and remove() change the request as it goes upstream; names are lower-cased', async () => {
  const f = await lua(`
    function envoy_on_request(h)
      local hd = h:headers()
      hd:add("X-Added", "1")
      hd:add("x-added", 2)
      hd:add("x-float", 10 / 2)
      hd:replace("x-replace", "new")
      hd:replace("x-fresh", "made")
      hd:remove("x-gone")
    end`);
  const h = (await f.exchange({ headers: { 'x-replace': ['old', 'older'], 'x-gone': 'bye' } })).upstream!.headers;
  assert.deepEqual(h.getAll('x-added'), ['1', '2']);
  assert.equal(h.get('x-float'), '5', 'an integral float is written as LuaJIT prints it');
  assert.deepEqual(h.getAll('x-replace'), ['new']);
  assert.equal(h.get('x-fresh'), 'made');
  assert.equal(h.get('x-gone'), undefined);
});

test('pairs(headers()) yields every entry in order, repeated names once per value', async () => {
  const f = await lua(`
    function envoy_on_request(h)
      local seen = {}
      for k, v in pairs(h:headers()) do seen[#seen + 1] = k .. "=" .. v end
      h:headers():add("x-seen", table.concat(seen, ";"))
    end`);
  const h = (await f.exchange({ headers: { 'x-a': ['1', '2'], 'x-b': '3' } })).upstream!.headers;
  assert.equal(h.get('x-seen'), ':method=GET;:path=/;:authority=test.local;:scheme=http;x-a=1;x-a=2;x-b=3');
});

test('modifying a header map while iterating raises "header map cannot be modified while iterating"', async () => {
  const f = await lua(`
    function envoy_on_request(h)
      for k, v in pairs(h:headers()) do h:headers():add("x-loop", "1") end
    end`);
  const o = await f.exchange({});
  assert.equal(o.reply?.status, 500);
  assert.match(o.logs.join('\n'), /lua-test:3: header map cannot be modified while iterating/);
});

test('headers cannot be modified once passed on (after bodyChunks() let them continue)', async () => {
  const f = await lua(`
    function envoy_on_request(h)
      for chunk in h:bodyChunks() do
        h:headers():add("x-late", "1")
      end
    end`);
  const o = await f.exchange({ method: 'POST', body: ['abc'] });
  assert.equal(o.statuses[0], 'request-headers:continue');
  assert.match(o.logs.join('\n'), /lua-test:4: header map can no longer be modified/);
});

test('response headers: setHttp1ReasonPhrase() records the phrase for the codec (filter state weir.http1_reason_phrase)', async () => {
  const f = await lua(`
    function envoy_on_response(h)
      h:headers():setHttp1ReasonPhrase("Very OK")
      h:headers():replace("x-resp", h:headers():get(":status"))
    end`);
  const o = await f.exchange({ response: { status: 201 } });
  assert.equal(o.info.filterState.get('weir.http1_reason_phrase'), 'Very OK');
  assert.equal(o.response!.headers.get('x-resp'), '201');
});

test('downstreamRequestHeaders() gives the response path a read-only view of the request headers', async () => {
  const f = await lua(`
    function envoy_on_response(h)
      local req = h:downstreamRequestHeaders()
      h:headers():add("x-echo", req:get("x-in") .. "/" .. req:getNumValues("x-in") .. "/" .. req:getAtIndex("x-in", 0))
      local n = 0
      for k, v in pairs(req) do n = n + 1 end
      h:headers():add("x-count", tostring(n))
      assert(req.add == nil, "read-only view must not have add()")
    end`);
  const o = await f.exchange({ headers: { 'x-in': 'v' } });
  assert.equal(o.response!.headers.get('x-echo'), 'v/1/v');
  assert.equal(o.response!.headers.get('x-count'), '5');
});

test('a bad argument raises a Lua error naming the method', async () => {
  const f = await lua(`function envoy_on_request(h) h:headers():get({}) end`);
  const o = await f.exchange({});
  assert.equal(o.reply?.status, 500);
  assert.match(o.logs.join('\n'), /bad argument #1 to 'get' \(string expected, got table\)/);
});

test('setHttp1ReasonPhrase() raises on CR, LF, NUL or another control character (no response splitting)', async () => {
  for (const bad of ['"OK\\r\\nx-injected: 1"', '"OK\\n"', '"OK\\0"', '"OK\\1"', '"OK\\127"']) {
    const f = await lua(`
      function envoy_on_response(h)
        h:headers():setHttp1ReasonPhrase(${bad})
      end`);
    const o = await f.exchange({});
    assert.equal(o.reply?.status, 500, bad);
    assert.match(o.logs.join('\n'), /lua-test:3: invalid reason phrase/, bad);
    assert.equal(o.info.filterState.get('weir.http1_reason_phrase'), undefined, bad);
  }
  const ok = await lua(`function envoy_on_response(h) h:headers():setHttp1ReasonPhrase("Fine\\tand \\128\\255") end`);
  const o = await ok.exchange({});
  assert.equal(o.info.filterState.get('weir.http1_reason_phrase'), 'Fine\tand \x80\xff');
});

test('setHttp1ReasonPhrase() once the response headers were passed on raises "header map can no longer be modified"', async () => {
  const f = await lua(`
    function envoy_on_response(h)
      for chunk in h:bodyChunks() do
        h:headers():setHttp1ReasonPhrase("Late")
      end
    end`);
  const o = await f.exchange({ response: { body: ['abc'] } });
  assert.match(o.logs.join('\n'), /lua-test:4: header map can no longer be modified/);
  assert.equal(o.info.filterState.get('weir.http1_reason_phrase'), undefined);
});
