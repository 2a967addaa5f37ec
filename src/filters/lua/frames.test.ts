import { test } from 'node:test';
import assert from 'node:assert/strict';
import { probeFrames } from './frames.ts';
import { buildLuaForTest } from './testing.ts';
import type { LuaScript } from './script.ts';

test('probeFrames() finds the frame layout of the Lua build weir ships, so respond() ends runs without a yield', async () => {
  assert.equal(await probeFrames(), null);
});

const SHAPES = `
hits, closed = 0, 0
local function deep(h, n)
  if n == 0 then
    h:respond({[":status"] = "200"}, "deep")
    hits = hits + 1
  end
  deep(h, n - 1)
  hits = hits + 1
end
local function va(h, ...)
  local t = {...}
  h:respond({[":status"] = "201"}, "va " .. #t)
  hits = hits + 1
end
local routes = {
  ["/deep/5"] = function(h) deep(h, 5) end,
  ["/deep/100"] = function(h) deep(h, 100) end,
  ["/vararg"] = function(h) va(h, 1, 2, 3) hits = hits + 1 end,
  ["/tail"] = function(h) return va(h, 1) end,
  ["/goto"] = function(h)
    local i = 0
    ::top::
    i = i + 1
    local f = function() return i end
    if i == 3 then h:respond({[":status"] = "202"}, "goto " .. f()) end
    if i < 5 then goto top end
    hits = hits + 1
  end,
  ["/pairs"] = function(h)
    for k, v in pairs({a = 1}) do
      local guard <close> = setmetatable({}, { __close = function() closed = closed + 1 end })
      h:respond({[":status"] = "203"}, k .. v)
      hits = hits + 1
    end
    hits = hits + 1
  end,
  ["/gsub"] = function(h)
    string.gsub("x", "x", function() h:respond({[":status"] = "204"}) end)
    hits = hits + 1
  end,
}
function envoy_on_request(h)
  local path = h:headers():get(":path")
  if path == "/count" then h:respond({[":status"] = "200"}, hits .. " " .. closed) end
  local route = routes[path]
  if route then route(h) hits = hits + 1 end
end`;

test('respond() returning through the frames behaves as the yield it replaces, for every shape of call chain', async () => {
  const early = await buildLuaForTest({ source: SHAPES }, { name: 'frames-early' });
  const yielding = await buildLuaForTest({ source: SHAPES }, { name: 'frames-yield' });
  const scriptOf = (o: { filter: unknown }) => (o.filter as { script: LuaScript }).script;
  const earlyScript = scriptOf(await early.exchange({ path: '/warm' }));
  const yieldScript = scriptOf(await yielding.exchange({ path: '/warm' }));
  yieldScript.earlyReturn = false;
  // Chains of plain Lua calls return through the frames (1); deeper than 64 frames, or a C function between, yield (0).
  const returns = new Map([['/deep/5', 1], ['/deep/100', 0], ['/vararg', 1], ['/tail', 1], ['/goto', 1], ['/pairs', 1], ['/gsub', 0]]);
  const seen = (o: Awaited<ReturnType<typeof early.exchange>>) =>
    [o.reply?.status, o.reply?.body.toString(), o.logs.map((l) => l.replace(/frames-(early|yield)/, 'S'))];
  for (let round = 0; round < 3; round++) {
    for (const [path, expected] of returns) {
      const before = earlyScript.earlyReturns;
      const a = await early.exchange({ path });
      assert.equal(earlyScript.earlyReturns - before, expected, `${path}: returned through the frames`);
      const b = await yielding.exchange({ path });
      assert.notEqual(a.reply, null, path);
      assert.deepEqual(seen(a), seen(b), path);
    }
  }
  assert.equal(yieldScript.earlyReturns, 0);
  assert.equal((await early.exchange({ path: '/count' })).reply?.body.toString(), '0 3', 'no code after respond() ran; each <close> ran once');
  assert.equal((await yielding.exchange({ path: '/count' })).reply?.body.toString(), '0 3');
  early.destroy();
  yielding.destroy();
});
