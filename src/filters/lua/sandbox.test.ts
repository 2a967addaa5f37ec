import { test } from 'node:test';
import assert from 'node:assert/strict';
import { buildLuaForTest } from './testing.ts';

const lua = (source: string, extra: object = {}) => buildLuaForTest({ source, ...extra });

test('the sandbox has no io, os.execute, environment, loadfile, dofile, require, package, debug access or string.dump', async () => {
  const f = await lua(`
    function envoy_on_request(h)
      local probes = {
        io = io, execute = os.execute, remove = os.remove, exit = os.exit,
        package = package,
        getinfo = debug.getinfo, sethook = debug.sethook, getregistry = debug.getregistry, dump = string.dump,
      }
      local present = {}
      for name, v in pairs(probes) do present[#present + 1] = name end
      h:headers():add("x-present", "[" .. table.concat(present, ",") .. "]")
      h:headers():add("x-kept", type(os.time()) .. "," .. type(os.clock()) .. "," .. type(os.date("%Y")) .. "," .. type(debug.traceback))
      h:headers():add("x-env", tostring(os.getenv("PATH")) .. "," .. tostring(os.getenv("HOME") or "default"))
    end`);
  const h = (await f.exchange({})).upstream!.headers;
  assert.equal(h.get('x-present'), '[]');
  assert.equal(h.get('x-kept'), 'number,number,string,function');
  // The process has PATH and HOME; the script sees no environment, as if neither were set.
  assert.ok(process.env.PATH !== undefined);
  assert.equal(h.get('x-env'), 'nil,default');
});

test('require, loadfile and dofile raise an error saying the sandbox has no files or modules', async () => {
  const f = await lua(`
    function envoy_on_request(h)
      local out = {}
      for _, name in ipairs({ "require", "loadfile", "dofile" }) do
        local ok, err = pcall(_G[name], "lib.mylibrary")
        out[#out + 1] = tostring(ok) .. ":" .. err
      end
      h:headers():add("x-out", table.concat(out, "|"))
    end`);
  const out = (await f.exchange({})).upstream!.headers.get('x-out')!.split('|');
  assert.match(out[0], /^false:require\(\) is not available in weir's Lua sandbox: scripts cannot load modules/);
  assert.match(out[1], /^false:loadfile\(\) is not available in weir's Lua sandbox: scripts cannot read files/);
  assert.match(out[2], /^false:dofile\(\) is not available in weir's Lua sandbox: scripts cannot read files/);
});

test('top-level code written as os.getenv(name) or default loads and takes the default', async () => {
  const f = await lua(`
    local tag = os.getenv("SERVICE_TAG") or "none"
    function envoy_on_request(h) h:headers():add("x-tag", tag) end`);
  assert.equal((await f.exchange({})).upstream!.headers.get('x-tag'), 'none');
});

test('LuaJIT/5.1 library functions Lua 5.4 dropped: math.log10, atan2, frexp, cosh/sinh/tanh; gsub "%." replacements; table.insert past the end', async () => {
  const f = await lua(`
    function envoy_on_request(h)
      local m, e = math.frexp(12)
      local m0, e0 = math.frexp(0)
      local t = {}
      table.insert(t, 5, "x")
      table.insert(t, "y")
      local u = {1, 2}
      table.insert(u, 1, 0)
      local out = {
        math.log10(1000), string.format("%.4f", math.atan2(1, 1)), m .. ":" .. e, m0 .. ":" .. e0,
        string.format("%.4f", math.cosh(1)), string.format("%.4f", math.sinh(1)), string.format("%.4f", math.tanh(0.5)),
        (("a.b"):gsub("%.", "%.")), (("a.b"):gsub("(a)", "%1%%")), (("x"):gsub("x", "%%.")),
        tostring(t[5]) .. tostring(t[1]), table.concat(u, ""),
      }
      h:headers():add("x-out", table.concat(out, "|"))
      h:headers():add("x-bad", tostring(pcall(string.gsub, "a", "a", "%2")))
    end`);
  const h = (await f.exchange({})).upstream!.headers;
  assert.equal(h.get('x-out'), '3.0|0.7854|0.75:4|0:0|1.5431|1.1752|0.4621|a.b|a%.b|%.|xy|012');
  assert.equal(h.get('x-bad'), 'false');
});

test('load() and loadstring() accept text chunks only', async () => {
  const f = await lua(`
    function envoy_on_request(h)
      local ok = load("return 1 + 1")()
      local fn, err = load("\\27Lua\\84\\0")
      local ls = loadstring("return ...")("arg")
      h:headers():add("x-load", tostring(ok) .. "|" .. tostring(fn) .. "|" .. tostring(err) .. "|" .. ls)
    end`);
  const h = (await f.exchange({})).upstream!.headers;
  assert.match(h.get('x-load')!, /^2\|nil\|.*attempt to load a binary chunk \(mode is 't'\)\|arg$/);
});

test('LuaJIT/5.1 shims: unpack, table.getn, setfenv/getfenv, math.pow, bit and bit32', async () => {
  const f = await lua(`
    function envoy_on_request(h)
      local a, b = unpack({1, 2})
      local env = {x = "from env"}
      local fn = setfenv(loadstring("return x"), env)
      local r = {
        a + b, table.getn({1, 2, 3}), fn(), tostring(getfenv(fn) == env and getfenv(0) == _G), math.pow(2, 10),
        bit.band(0xff, 0x0f), bit.bor(1, 2, 4), bit.bxor(5, 1), bit.lshift(1, 31), bit.rshift(-1, 28), bit.arshift(-16, 2),
        bit.bnot(0), bit.tohex(255), bit.tohex(-1, -4), bit.rol(0x80000001, 1), bit.tobit(0xffffffff),
        bit32.band(0xffffffff, 0xf0), bit32.bnot(0), bit32.rshift(0x80000000, 31),
      }
      for i = 1, #r do r[i] = tostring(r[i]) end
      h:headers():add("x-shims", table.concat(r, ","))
    end`);
  const h = (await f.exchange({})).upstream!.headers;
  assert.equal(h.get('x-shims'), '3,3,from env,true,1024.0,15,7,4,-2147483648,15,-4,-1,000000ff,FFFF,3,-1,240,4294967295,1');
});

test('a script error answers 500 and logs one line naming the filter, the script and the line; the counter counts it', async () => {
  const f = await lua(`
    function envoy_on_request(h)
      local t = nil
      return t.field
    end`);
  const o = await f.exchange({});
  assert.equal(o.reply?.status, 500);
  assert.equal(o.reply?.options?.details, 'lua_error');
  assert.deepEqual(o.logs, [`error [lua-test] Lua script "lua-test" failed (error): lua-test:4: attempt to index a nil value (local 't')`]);
  assert.equal(f.metrics.get('weir_lua_errors_total')!.labels('lua-test', 'error').value, 1);
  const again = await f.exchange({});
  assert.equal(again.reply?.status, 500, 'the state keeps serving after an error');
});

test('fail_open passes the request on after a script error; failure_status sets the local reply status', async () => {
  const open = await lua(`function envoy_on_request(h) error("boom") end`, { fail_open: true });
  const o = await open.exchange({});
  assert.equal(o.reply, null);
  assert.ok(o.upstream !== null);
  assert.match(o.logs[0], /lua-test:1: boom/);
  const closed = await lua(`function envoy_on_request(h) error("boom") end`, { failure_status: 503 });
  assert.equal((await closed.exchange({})).reply?.status, 503);
});

test('an endless loop is stopped by the instruction limit while other requests flow (500, log with the line, counter)', async () => {
  const f = await lua(`
    function envoy_on_request(h)
      if h:headers():get("x-loop") then
        local n = 0
        while true do
          n = n + 1
        end
      end
      h:headers():add("x-ok", "1")
    end`, { instruction_limit: 2_000_000 });
  const runs = [f.exchange({ headers: { 'x-loop': '1' } })];
  for (let i = 0; i < 20; i++) runs.push(f.exchange({}));
  const [looped, ...others] = await Promise.all(runs);
  assert.equal(looped.reply?.status, 500);
  assert.equal(looped.reply?.options?.details, 'lua_budget');
  assert.match(f.logs.join('\n'), /failed \(budget\): lua-test:[56]: instruction limit of 2000000 exceeded \(the filter's instruction_limit: raise it/);
  for (const o of others) assert.equal(o.upstream!.headers.get('x-ok'), '1');
  assert.equal(f.metrics.get('weir_lua_errors_total')!.labels('lua-test', 'budget').value, 1);
  const after = await f.exchange({});
  assert.equal(after.upstream!.headers.get('x-ok'), '1');
});

test('the instruction limit applies to each run between yields, so a long request with many small runs is fine', async () => {
  const f = await lua(`
    function envoy_on_request(h)
      local total = 0
      for chunk in h:bodyChunks() do
        for i = 1, 200000 do total = total + 1 end
      end
      h:logInfo("total " .. total)
    end`, { instruction_limit: 1_000_000 });
  const o = await f.exchange({ method: 'POST', body: ['a', 'b', 'c', 'd', 'e', 'f'] });
  assert.ok(o.logs.includes('info [lua-test] total 1200000'), o.logs.join('\n'));
});

test('unbounded allocation hits the memory cap of the state: 500 for that request, the next one works', async () => {
  const f = await lua(`
    function envoy_on_request(h)
      if h:headers():get("x-hog") then
        local t = {}
        local i = 0
        while true do
          i = i + 1
          t[i] = string.rep("x", 4096) .. i
        end
      end
      h:headers():add("x-ok", "1")
    end`, { memory_limit_mb: 8, instruction_limit: 1_000_000_000 });
  const hog = await f.exchange({ headers: { 'x-hog': '1' } });
  assert.equal(hog.reply?.status, 500);
  assert.equal(hog.reply?.options?.details, 'lua_memory');
  assert.match(f.logs.join('\n'), /failed \(memory\): not enough memory/);
  assert.equal(f.metrics.get('weir_lua_errors_total')!.labels('lua-test', 'memory').value, 1);
  const next = await f.exchange({});
  assert.equal(next.upstream!.headers.get('x-ok'), '1');
});

test('one huge allocation is refused without growing the state past its cap', async () => {
  const f = await lua(`
    function envoy_on_request(h)
      local s = string.rep("x", 1024 * 1024 * 1024)
    end`, { memory_limit_mb: 16 });
  const o = await f.exchange({});
  assert.equal(o.reply?.options?.details, 'lua_memory');
  const script = (o.filter as unknown as { script: { vm: { memoryBytes: number } } }).script;
  assert.ok(script.vm.memoryBytes <= 40 * 1024 * 1024, `memory grew to ${script.vm.memoryBytes}`);
});

test('a script that does not compile, or whose top-level code fails, rejects the filter with the line', async () => {
  await assert.rejects(lua(`function envoy_on_request(h)\n  if then end\nend`), /Cannot compile Lua script "lua-test": lua-test:2: unexpected symbol near 'then'/);
  await assert.rejects(lua(`local x = nil\nx.y = 1`), /Cannot run the top-level code of Lua script "lua-test": lua-test:2: attempt to index a nil value/);
  await assert.rejects(lua(`while true do end`, { instruction_limit: 100000 }), /instruction limit of 100000 exceeded/);
});

test('instruction_limit: 0 turns the budget off (trusted scripts): a long loop runs to the end', async () => {
  const f = await lua(`
    function envoy_on_request(h)
      local n = 0
      for i = 1, 3000000 do n = n + 1 end
      h:headers():add("x-n", tostring(n))
    end`, { instruction_limit: 0 });
  const o = await f.exchange({});
  assert.equal(o.upstream!.headers.get('x-n'), '3000000');
  const limited = await lua(`function envoy_on_request(h) for i = 1, 3000000 do end end`, { instruction_limit: 1_000_000 });
  assert.equal((await limited.exchange({})).reply?.status, 500);
});

test('__gc metamethods are refused (Lua runs finalizers with hooks off, so the budget could not stop them)', async () => {
  await assert.rejects(
    lua(`setmetatable({}, { __gc = function() while true do end end })`),
    /lua-test:1: __gc metamethods are not allowed in the sandbox/,
  );
  const f = await lua(`
    function envoy_on_request(h)
      local mt = {}
      setmetatable({}, mt)
      mt.__gc = function() while true do end end
      collectgarbage()
      h:headers():add("x-ok", "1")
    end`);
  assert.equal((await f.exchange({})).upstream!.headers.get('x-ok'), '1', 'a __gc added later does not mark the object');
});

test('a script cannot outlive the instruction limit by catching its error with pcall', async () => {
  const f = await lua(`
    function envoy_on_request(h)
      while true do
        pcall(function() while true do end end)
      end
    end`, { instruction_limit: 200_000 });
  const o = await f.exchange({});
  assert.equal(o.reply?.status, 500);
  assert.equal(o.reply?.options?.details, 'lua_budget');
  const g = await lua(`function envoy_on_request(h) h:headers():add("x-ok", "1") end`, { instruction_limit: 200_000 });
  assert.equal((await g.exchange({})).upstream!.headers.get('x-ok'), '1');
});

test('coroutines a script creates count against the same instruction limit', async () => {
  const f = await lua(`
    function envoy_on_request(h)
      while true do
        coroutine.wrap(function() for i = 1, 150000 do end end)()
      end
    end`, { instruction_limit: 200_000 });
  const o = await f.exchange({});
  assert.equal(o.reply?.options?.details, 'lua_budget');
});

test('C loops that memory does not bound are cut short: string.rep of "" and table.move over a huge range', async () => {
  const f = await lua(`
    function envoy_on_request(h)
      h:headers():add("x-rep", "[" .. string.rep("", 1e12) .. "]" .. string.rep("ab", 3, "-"))
      local moved = table.move({1, 2, 3}, 1, 3, 2)
      h:headers():add("x-move", table.concat(moved, ","))
      local ok, err = pcall(table.move, {}, 1, 1e15, 2)
      h:headers():add("x-big", tostring(ok) .. ":" .. tostring(err))
    end`);
  const h = (await f.exchange({})).upstream!.headers;
  assert.equal(h.get('x-rep'), '[]ab-ab-ab');
  assert.equal(h.get('x-move'), '1,1,2,3');
  assert.match(h.get('x-big')!, /^false:.*too many elements to move/);
});

// A pattern that backtracks combinatorially: string.find spends its time in C (lstrlib's match), where the count hook
// never ran; the fuel counts the loops of that C code too.
const PATHOLOGICAL = 'string.find(string.rep("a", 40), string.rep("a*", 30) .. "b")';

test('a pathological pattern match inside a C function is stopped by the fuel: 500, one log line, the state is recycled', async () => {
  const f = await lua(`
    local started = (started or 0) + 1
    function envoy_on_request(h)
      if h:headers():get("x-match") then
        ${PATHOLOGICAL}
      end
      h:headers():add("x-ok", "1")
    end`, { instruction_limit: 1_000_000 });
  const others = [];
  const t0 = performance.now();
  const stuck = f.exchange({ headers: { 'x-match': '1' } });
  for (let i = 0; i < 5; i++) others.push(f.exchange({}));
  const o = await stuck;
  assert.ok(performance.now() - t0 < 2000, 'stopped within the budget, not after the match');
  assert.equal(o.reply?.status, 500);
  assert.equal(o.reply?.options?.details, 'lua_budget');
  assert.equal(f.logs.filter((l) => l.includes('failed (budget)')).length, 1);
  assert.match(f.logs.join('\n'), /failed \(budget\): lua-test:5: instruction limit of 1000000 exceeded/);
  assert.equal(f.metrics.get('weir_lua_errors_total')!.labels('lua-test', 'budget').value, 1);
  for (const x of await Promise.all(others)) assert.ok(x.upstream !== null || x.reply?.status === 503, 'others pass, or wait for the new state');
  const broken = (o.filter as unknown as { script: { broken: boolean } }).script;
  assert.equal(broken.broken, true, 'a run stopped inside C code leaves its state unusable');
  let after = await f.exchange({});
  for (let i = 0; i < 100 && after.reply !== null; i++) {
    await new Promise((r) => setTimeout(r, 10));
    after = await f.exchange({});
  }
  assert.equal(after.upstream!.headers.get('x-ok'), '1', 'a fresh state serves the next requests');
  assert.notEqual((after.filter as unknown as { script: unknown }).script, broken);
});

test('fail_open passes a request whose run the fuel stopped inside C code', async () => {
  const f = await lua(`function envoy_on_request(h) ${PATHOLOGICAL} end`, { instruction_limit: 1_000_000, fail_open: true });
  const o = await f.exchange({});
  assert.equal(o.reply, null);
  assert.ok(o.upstream !== null);
  assert.match(f.logs.join('\n'), /failed \(budget\): .*instruction limit of 1000000 exceeded/);
});

test('top-level code stuck in a C function is stopped too: the filter is rejected', async () => {
  await assert.rejects(lua(PATHOLOGICAL, { instruction_limit: 100_000 }), /Cannot run the top-level code of Lua script "lua-test": .*instruction limit of 100000 exceeded/);
});

test('the fuel counts the work of C library functions, not only Lua instructions (table.sort, gsub, table.concat)', async () => {
  // Each of these is a handful of Lua instructions; the C loops they run are what exceeds the budget.
  for (const body of [
    'local t = {} for i = 1, 3000 do t[i] = (i * 7919) % 3001 end for r = 1, 50 do table.sort(t) end',
    'local s = string.rep("abc", 100000) for r = 1, 20 do s:gsub("b", "x") end',
    'local t = {} for i = 1, 100000 do t[i] = "x" end for r = 1, 50 do table.concat(t) end',
  ]) {
    const f = await lua(`function envoy_on_request(h) ${body} h:headers():add("x-ok", "1") end`, { instruction_limit: 1_000_000 });
    const o = await f.exchange({});
    assert.equal(o.reply?.options?.details, 'lua_budget', body);
  }
});

test('Lua code the host triggers outside a handler run (a global lookup through a looping __index) cannot run forever', async () => {
  const t0 = performance.now();
  await assert.rejects(
    lua(`setmetatable(_G, { __index = function() while true do end end }) function envoy_on_response(h) end`),
    /Lua code run outside a handler \(a metamethod\?\) used more than 100000000 units of fuel/,
  );
  assert.ok(performance.now() - t0 < 10_000);
});
