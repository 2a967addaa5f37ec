import { test } from 'node:test';
import assert from 'node:assert/strict';
import { buildLuaForTest } from './testing.ts';
import type { LuaScript } from './script.ts';

const scriptOf = (filter: unknown) => (filter as { script: LuaScript }).script;

const COUNTING = (tag: string) => `
  loads = (loads or 0) + 1
  local requests = 0
  function envoy_on_request(h)
    requests = requests + 1
    h:headers():add("x-count", "${tag}:" .. loads .. ":" .. requests)
  end
  function envoy_on_response(h)
    h:headers():add("x-version", "${tag}")
  end`;

test('top-level code runs once per state; globals persist across requests', async () => {
  const f = await buildLuaForTest({ source: COUNTING('once') }, { name: 'life-once' });
  assert.equal((await f.exchange({})).upstream!.headers.get('x-count'), 'once:1:1');
  assert.equal((await f.exchange({})).upstream!.headers.get('x-count'), 'once:1:2');
  assert.ok(f.metrics.get('weir_lua_states')!.labels().value >= 1, 'the weir_lua_states gauge counts the state');
  f.destroy();
});

test('a reload with an unchanged script reuses the compiled state; a changed script gets a new one', async () => {
  const a = await buildLuaForTest({ source: COUNTING('same') }, { name: 'life-reload' });
  const first = await a.exchange({});
  assert.equal(first.upstream!.headers.get('x-count'), 'same:1:1');
  const b = await buildLuaForTest({ source: COUNTING('same') }, { name: 'life-reload' });
  a.destroy();
  const second = await b.exchange({});
  assert.equal(second.upstream!.headers.get('x-count'), 'same:1:2', 'no recompilation: top-level code did not run again');
  assert.equal(scriptOf(first.filter), scriptOf(second.filter));
  assert.equal(scriptOf(first.filter).retired, false);
  const c = await buildLuaForTest({ source: COUNTING('changed') }, { name: 'life-reload' });
  b.destroy();
  const third = await c.exchange({});
  assert.equal(third.upstream!.headers.get('x-count'), 'changed:1:1');
  assert.notEqual(scriptOf(third.filter), scriptOf(first.filter));
  assert.equal(scriptOf(first.filter).vm.closed, true, 'the old state closed once no snapshot and no request used it');
  c.destroy();
});

test('a request in flight during a reload finishes on the old script; the old state closes after it', async () => {
  const old = await buildLuaForTest({ source: COUNTING('v1') }, { name: 'life-inflight' });
  let next: Awaited<ReturnType<typeof buildLuaForTest>> | undefined;
  const o = await old.exchange({
    response: async () => {
      next = await buildLuaForTest({ source: COUNTING('v2') }, { name: 'life-inflight' });
      old.destroy();
      return { status: 200 };
    },
  });
  const oldScript = scriptOf(o.filter);
  assert.equal(o.response!.headers.get('x-version'), 'v1');
  assert.equal(oldScript.retired, true);
  assert.equal(oldScript.vm.closed, true);
  const fresh = await next!.exchange({});
  assert.equal(fresh.response!.headers.get('x-version'), 'v2');
  next!.destroy();
});

test('per route: disabled skips the filter, name selects a source_codes entry, source_code brings its own script', async () => {
  const f = await buildLuaForTest(
    {
      default_source_code: { inline_string: `function envoy_on_request(h) h:headers():add("x-script", "default") end` },
      source_codes: {
        'hello.lua': { inline_string: `function envoy_on_request(h) h:headers():add("x-script", "hello") end` },
      },
    },
    { name: 'life-routes' },
  );
  const byDefault = await f.exchange({});
  assert.equal(byDefault.upstream!.headers.get('x-script'), 'default');
  const disabled = await f.exchange({ perRoute: { disabled: true } });
  assert.equal(disabled.upstream!.headers.get('x-script'), undefined);
  const named = await f.exchange({ perRoute: { name: 'hello.lua' } });
  assert.equal(named.upstream!.headers.get('x-script'), 'hello');
  const inline = await f.exchange({ perRoute: { source_code: { inline_string: `function envoy_on_request(h) h:headers():add("x-script", "inline") end` } } });
  assert.equal(inline.upstream!.headers.get('x-script'), 'inline');
  f.destroy();
});

test('only named scripts: a route without an override runs nothing', async () => {
  const f = await buildLuaForTest(
    { source_codes: { 'a.lua': { inline_string: `function envoy_on_request(h) h:headers():add("x-a", "1") end` } } },
    { name: 'life-named-only' },
  );
  assert.equal((await f.exchange({})).upstream!.headers.get('x-a'), undefined);
  assert.equal((await f.exchange({ perRoute: { name: 'a.lua' } })).upstream!.headers.get('x-a'), '1');
  f.destroy();
});

test('a client that goes away while body() waits: the coroutine is freed and the state is not held', async () => {
  const f = await buildLuaForTest({ source: `function envoy_on_request(h) h:body() h:headers():add("x", "1") end` }, { name: 'life-abort' });
  const o = await f.exchange({ method: 'POST', body: ['x'], abortAfterHeaders: true });
  assert.equal(o.statuses[0], 'request-headers:stop');
  const script = scriptOf(o.filter);
  assert.equal(script.inFlight, 0);
  const stream = o.filter as unknown as { req: { co: unknown } };
  assert.equal(stream.req.co, null);
  f.destroy();
  assert.equal(script.vm.closed, true);
});

test('thousands of requests can be suspended at once in one state', async () => {
  const f = await buildLuaForTest({ source: `function envoy_on_request(h) local b = h:body() h:headers():add("x-len", tostring(b:length())) end` }, { name: 'life-many' });
  const runs = [];
  for (let i = 0; i < 2000; i++) runs.push(f.exchange({ method: 'POST', body: ['a'.repeat(i % 7), 'b'] }));
  const done = await Promise.all(runs);
  done.forEach((o, i) => assert.equal(o.upstream!.headers.get('x-len'), String((i % 7) + 1)));
  f.destroy();
});

test('a state marked broken (a Wasm trap) answers 503 while a fresh state is built, then serves again', async () => {
  const f = await buildLuaForTest({ source: COUNTING('trap') }, { name: 'life-broken' });
  const first = await f.exchange({});
  const broken = scriptOf(first.filter);
  broken.broken = true;
  const during = await f.exchange({});
  assert.equal(during.reply?.status, 503);
  let after = await f.exchange({});
  for (let i = 0; i < 100 && after.reply !== null; i++) {
    await new Promise((r) => setTimeout(r, 10));
    after = await f.exchange({});
  }
  assert.equal(after.upstream!.headers.get('x-count'), 'trap:1:1', 'a fresh state ran the top-level code again');
  assert.notEqual(scriptOf(after.filter), broken);
  f.destroy();
});

test('a coroutine that ended in respond() is reset and reused: its <close> variables close, later requests run clean', async () => {
  const f = await buildLuaForTest({
    source: `
      closed = 0
      function envoy_on_request(h)
        local path = h:headers():get(":path")
        if path == "/count" then
          h:respond({[":status"] = "200"}, tostring(closed))
        end
        local guard <close> = setmetatable({}, { __close = function() closed = closed + 1 end })
        h:respond({[":status"] = "403"}, "denied " .. path)
      end`,
  }, { name: 'life-respond-reuse' });
  for (let i = 0; i < 5; i++) {
    const out = await f.exchange({ path: `/p${i}` });
    assert.equal(out.reply?.status, 403);
    assert.equal(out.reply?.body.toString(), `denied /p${i}`);
  }
  // Each of the five suspended runs had its <close> handler run when its coroutine was reset for reuse.
  assert.equal((await f.exchange({ path: '/count' })).reply?.body.toString(), '5');
  f.destroy();
});
