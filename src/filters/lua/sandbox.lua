-- LuaJIT/5.1 compatibility, weir.shared and the sandbox. Runs once per Lua state after prelude.lua and before the
-- user's script, with the table of host functions as its argument; it removes what scripts must not reach, after
-- taking the few privileged functions its shims need.
local H = ...
local type, error, setmetatable, tostring, select, rawget, pairs = type, error, setmetatable, tostring, select, rawget, pairs
local floor = math.floor
local dgetupvalue, dupvaluejoin, dgetinfo, dtraceback = debug.getupvalue, debug.upvaluejoin, debug.getinfo, debug.traceback
local raw_load = load
local G = _G

local function str(v, n, fname)
  local t = type(v)
  if t == "string" then return v end
  if t == "number" then return tostring(v) end
  error("bad argument #" .. n .. " to '" .. fname .. "' (string expected, got " .. t .. ")", 3)
end

---------------------------------------------------------------------------------------------------------------
-- LuaJIT / Lua 5.1 compatibility.
unpack = table.unpack
table.getn = function(t) return #t end
table.setn = function() end
table.maxn = table.maxn or function(t)
  local m = 0
  for k in pairs(t) do if type(k) == "number" and k > m then m = k end end
  return m
end
math.pow = math.pow or function(a, b) return a ^ b end
math.ldexp = math.ldexp or function(m, e) return m * 2.0 ^ e end
math.mod = math.fmod
-- Lua 5.1 functions that 5.4 dropped (LuaJIT has them all).
math.log10 = math.log10 or function(x) return math.log(x, 10) end
math.atan2 = math.atan2 or function(y, x) return math.atan(y, x) end
math.cosh = math.cosh or function(x) return (math.exp(x) + math.exp(-x)) / 2 end
math.sinh = math.sinh or function(x) return (math.exp(x) - math.exp(-x)) / 2 end
math.tanh = math.tanh or function(x)
  if x > 20 then return 1.0 elseif x < -20 then return -1.0 end
  local a, b = math.exp(x), math.exp(-x)
  return (a - b) / (a + b)
end
math.frexp = math.frexp or function(x)
  if x == 0 or x ~= x or x == math.huge or x == -math.huge then return x, 0 end
  local e = floor(math.log(math.abs(x), 2)) + 1
  local m = x / 2.0 ^ e
  -- log() may be off by one at powers of two: bring |m| into [0.5, 1).
  if math.abs(m) >= 1 then m, e = m / 2, e + 1 elseif math.abs(m) < 0.5 then m, e = m * 2, e - 1 end
  return m, e
end
string.gfind = string.gmatch

-- In a gsub replacement string, Lua 5.1 (and LuaJIT) read "%x" for any x but a digit as x itself ("%." is "."); Lua
-- 5.4 raises "invalid use of '%' in replacement string". Such escapes are rewritten to the plain character first.
do
  local raw_gsub, find = string.gsub, string.find
  local function unescape(c)
    if c == "%" or find(c, "^%d$") then return "%" .. c end
    return c
  end
  string.gsub = function(s, pattern, repl, n)
    if type(repl) == "string" and find(repl, "%", 1, true) then repl = raw_gsub(repl, "%%(.)", unescape) end
    return raw_gsub(s, pattern, repl, n)
  end
end

-- table.insert(t, pos, v) with pos past the end sets t[pos] in Lua 5.1 and LuaJIT; Lua 5.4 raises "position out of
-- bounds".
do
  local raw_insert = table.insert
  table.insert = function(t, ...)
    if select("#", ...) == 2 then
      local pos, v = ...
      if type(t) == "table" and math.type(pos) == "integer" and pos > #t + 1 then
        t[pos] = v
        return
      end
    end
    return raw_insert(t, ...)
  end
end

-- LuaJIT formats a float with %d (and %x, %o, %c, %i) by truncating it; Lua 5.4 raises "number has no integer
-- representation". Scripts written for Envoy do string.format("%d", size / 2): truncate such arguments first.
do
  local raw_format, tointeger, mtype = string.format, math.tointeger, math.type
  local function truncate(v)
    if mtype(v) ~= "float" or v ~= v or v == math.huge or v == -math.huge then return v end
    return tointeger(v) or tointeger(v >= 0 and math.floor(v) or math.ceil(v)) or v
  end
  string.format = function(fmt, ...)
    if type(fmt) ~= "string" or not fmt:find("%%[-+ #0]*%d*%.?%d*[dioxXc]") then return raw_format(fmt, ...) end
    local args = table.pack(...)
    local i = 0
    for spec in fmt:gmatch("%%[-+ #0]*%d*%.?%d*([%a%%])") do
      if spec ~= "%" then
        i = i + 1
        if spec == "d" or spec == "i" or spec == "o" or spec == "x" or spec == "X" or spec == "c" then args[i] = truncate(args[i]) end
      end
    end
    return raw_format(fmt, table.unpack(args, 1, args.n))
  end
end

-- load/loadstring accept text chunks only; the environment defaults to the script's globals.
load = function(chunk, name, mode, env)
  return raw_load(chunk, name, "t", env or G)
end
loadstring = function(s, name) return raw_load(s, name, "t", G) end

local function fenv_fn(f, fname)
  if type(f) == "number" then
    local info = dgetinfo(f + 2, "f")
    if info == nil then error("bad argument #1 to '" .. fname .. "' (invalid level)", 3) end
    return info.func
  end
  if type(f) ~= "function" then error("bad argument #1 to '" .. fname .. "' (function expected)", 3) end
  return f
end

getfenv = function(f)
  if f == 0 then return G end
  f = fenv_fn(f or 1, "getfenv")
  local i = 1
  while true do
    local name, v = dgetupvalue(f, i)
    if name == "_ENV" then return v end
    if name == nil then return G end
    i = i + 1
  end
end

setfenv = function(f, env)
  f = fenv_fn(f, "setfenv")
  local i = 1
  while true do
    local name = dgetupvalue(f, i)
    if name == "_ENV" then
      dupvaluejoin(f, i, function() return env end, 1)
      return f
    end
    if name == nil then return f end
    i = i + 1
  end
end

-- A 32-bit `bit` library as in LuaJIT (results are signed 32-bit) and Lua 5.2's `bit32` (unsigned).
local function tobit(x)
  x = floor(x) & 0xffffffff
  if x >= 0x80000000 then return x - 0x100000000 end
  return x
end
local function u32(x) return floor(x) & 0xffffffff end
-- `empty` is what the operation of no arguments gives (Lua 5.2: band() is 0xffffffff, bor() and bxor() are 0).
local function fold(op, empty)
  return function(...)
    local n = select("#", ...)
    if n == 0 then return empty end
    local r = u32((...))
    for i = 2, n do r = op(r, u32((select(i, ...)))) end
    return r
  end
end
local band = fold(function(a, b) return a & b end, 0xffffffff)
local bor = fold(function(a, b) return a | b end, 0)
local bxor = fold(function(a, b) return a ~ b end, 0)
bit = {
  tobit = tobit,
  tohex = function(x, n)
    n = n or 8
    local up = n < 0
    if up then n = -n end
    local s = string.format(up and "%0" .. n .. "X" or "%0" .. n .. "x", u32(x))
    return s:sub(-n)
  end,
  bnot = function(x) return tobit(~u32(x)) end,
  band = function(...) return tobit(band(...)) end,
  bor = function(...) return tobit(bor(...)) end,
  bxor = function(...) return tobit(bxor(...)) end,
  lshift = function(x, n) return tobit(u32(x) << (n & 31)) end,
  rshift = function(x, n) return tobit(u32(x) >> (n & 31)) end,
  arshift = function(x, n) return tobit(tobit(x) >> (n & 31) | ((tobit(x) < 0 and (n & 31) > 0) and ~(0xffffffff >> (n & 31)) or 0)) end,
  rol = function(x, n) n = n & 31; x = u32(x); return tobit((x << n) | (x >> (32 - n))) end,
  ror = function(x, n) n = n & 31; x = u32(x); return tobit((x >> n) | (x << (32 - n))) end,
  bswap = function(x)
    x = u32(x)
    return tobit(((x & 0xff) << 24) | ((x & 0xff00) << 8) | ((x >> 8) & 0xff00) | (x >> 24))
  end,
}
bit32 = {
  band = band, bor = bor, bxor = bxor,
  bnot = function(x) return u32(~u32(x)) end,
  lshift = function(x, n) if n >= 32 then return 0 end return u32(u32(x) << n) end,
  rshift = function(x, n) if n >= 32 then return 0 end return u32(x) >> n end,
  arshift = function(x, n)
    x = u32(x)
    if n >= 32 then return (x >= 0x80000000) and 0xffffffff or 0 end
    if n <= -32 then return 0 end
    if n < 0 then return u32(x << -n) end
    local r = x >> n
    if x >= 0x80000000 and n > 0 then r = r | u32(~(0xffffffff >> n)) end
    return r
  end,
  lrotate = function(x, n) n = n % 32; x = u32(x); return u32((x << n) | (x >> (32 - n))) end,
  rrotate = function(x, n) n = n % 32; x = u32(x); return u32((x >> n) | (x << (32 - n))) end,
  btest = function(...) return band(...) ~= 0 end,
  extract = function(x, f, w) w = w or 1; return (u32(x) >> f) & ((1 << w) - 1) end,
  replace = function(x, v, f, w)
    w = w or 1
    local mask = ((1 << w) - 1) << f
    return u32((u32(x) & ~mask) | ((u32(v) << f) & mask))
  end,
}

EnvoyTimestampResolution = { MILLISECOND = 0, MICROSECOND = 1 }

print = function(...)
  local n = select("#", ...)
  local parts = {}
  for i = 1, n do parts[i] = tostring((select(i, ...))) end
  H.log(2, table.concat(parts, "\t"))
end

---------------------------------------------------------------------------------------------------------------
-- weir.shared: dictionaries seen by every worker. weir.shared:get(k) uses the "default" dictionary;
-- weir.shared.<name>:get(k) (or weir.shared.dict(name)) a named one.
local DICT = {}
DICT.__index = DICT
function DICT:get(k) return H.shared(0, self._ns, str(k, 1, "get")) end
function DICT:set(k, v, ttl) return H.shared(1, self._ns, str(k, 1, "set"), v, ttl) end
function DICT:add(k, v, ttl) return H.shared(2, self._ns, str(k, 1, "add"), v, ttl) end
function DICT:incr(k, delta, init, ttl) return H.shared(3, self._ns, str(k, 1, "incr"), delta or 1, init, ttl) end
function DICT:delete(k) return H.shared(4, self._ns, str(k, 1, "delete")) end
local dicts = {}
local function dict(name)
  name = str(name, 1, "dict")
  local d = dicts[name]
  if d == nil then
    d = setmetatable({ _ns = name }, DICT)
    dicts[name] = d
  end
  return d
end
local default = dict("default")
weir = {
  shared = setmetatable({ dict = dict, get = DICT.get, set = DICT.set, add = DICT.add, incr = DICT.incr,
    delete = DICT.delete, _ns = "default" }, { __index = function(_, name) return dict(name) end }),
}

---------------------------------------------------------------------------------------------------------------
-- The sandbox: no files, processes, environment, native modules, debug access or bytecode.
io = nil
-- os.getenv sees no environment: it answers nil, as for a variable that is not set (scripts written as
-- `os.getenv("X") or default` load and take the default).
os = { time = os.time, clock = os.clock, date = os.date, difftime = os.difftime, getenv = function(name)
  str(name, 1, "getenv")
  return nil
end }
debug = { traceback = dtraceback }
-- Called, these raise an error that says why (rather than "attempt to call a nil value").
local function refused(name, why)
  return function() error(name .. "() is not available in weir's Lua sandbox: " .. why, 2) end
end
dofile = refused("dofile", "scripts cannot read files; put the code in the script (or source_codes)")
loadfile = refused("loadfile", "scripts cannot read files; put the code in the script (or source_codes)")
require = refused("require", "scripts cannot load modules; put the module's code in the script")
package = nil
local gc = collectgarbage
collectgarbage = function(opt, ...)
  if opt == nil or opt == "collect" or opt == "count" or opt == "step" or opt == "isrunning" then return gc(opt, ...) end
  return 0
end
string.dump = nil
-- C loops that memory does not bound: string.rep of an empty string and table.move over a huge range would run for
-- hours inside one instruction, where the budget cannot stop them.
local raw_rep, raw_move = string.rep, table.move
string.rep = function(s, n, sep)
  if s == "" and (sep == nil or sep == "") and type(n) == "number" then return "" end
  return raw_rep(s, n, sep)
end
table.move = function(a1, f, e, t, a2)
  if type(f) == "number" and type(e) == "number" and e - f > 16777216 then
    error("bad argument #3 to 'move' (too many elements to move)", 2)
  end
  return raw_move(a1, f, e, t, a2)
end
-- Lua runs finalizers with hooks off, so a __gc that never ends could not be stopped: the sandbox has none. (A
-- metatable marks an object for finalization only if it has __gc when it is set, so checking here suffices.)
G.setmetatable = function(t, mt)
  if type(mt) == "table" and rawget(mt, "__gc") ~= nil then
    error("__gc metamethods are not allowed in the sandbox", 2)
  end
  return setmetatable(t, mt)
end

