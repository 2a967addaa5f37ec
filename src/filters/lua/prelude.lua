-- The Lua side of weir's Envoy Lua API. Runs once per Lua state, before sandbox.lua and the user's script, with the
-- table of host functions as its argument. Handles, header maps and buffers are Lua tables whose methods call a handful of host
-- functions with small integers (interned header names, map and buffer selectors), so a call costs one crossing.
-- Everything here is local: the script sees only the globals this chunk leaves behind.
local H = ...
local type, error, setmetatable, tostring, tonumber, select, rawget, rawset, next = type, error, setmetatable, tostring, tonumber, select, rawget, rawset, next
local yield = coroutine.yield
local running = coroutine.running
local dsetmetatable = debug.setmetatable
local raw_gc = collectgarbage
local G = _G

-- The handle (stream id * 2 + direction) whose coroutine runs now; every object checks it so that a handle or an
-- object kept in a global and used by another request, or by the other direction's handler of its own request,
-- raises as on Envoy.
local CUR = 0
local DEAD = "object used outside of proper scope"

local function argerr(n, fname, v, level)
  error("bad argument #" .. n .. " to '" .. fname .. "' (string expected, got " .. type(v) .. ")", level or 3)
end

-- Numbers become strings as LuaJIT prints them, with C's "%.14g": 5, 0.3, 1e+15 (Lua 5.4 would write "5.0", and an
-- integer with all its digits). host.ts luajitNumber is the same rule for numbers the host reads from tables.
local function numstr(v)
  return string.format("%.14g", v)
end

local function str(v, n, fname)
  local t = type(v)
  if t == "string" then return v end
  if t == "number" then return numstr(v) end
  argerr(n, fname, v, 4)
end

local function optbool(v)
  return v == true or v == "true"
end

-- Header names are interned: the host gets a small integer for a lower-cased name it has seen before.
local INTERN = {}
local ninterned = 0
local h_intern = H.intern
local function nameid(k, fname)
  local t = type(k)
  if t ~= "string" then
    if t == "number" then k = tostring(k) else argerr(1, fname, k, 4) end
  end
  local n = h_intern(k)
  if n ~= 0 and ninterned < 4096 then
    INTERN[k] = n
    ninterned = ninterned + 1
  end
  return n
end

-- As Envoy's luaL_checkstring: a message is a string or a number; anything else raises at the caller's line.
local LOG_METHODS = { "logTrace", "logDebug", "logInfo", "logWarn", "logErr", "logCritical" }
local function addlog(mt)
  for level, fname in ipairs(LOG_METHODS) do
    mt[fname] = function(_, m) H.log(level - 1, str(m, 1, fname)) end
  end
  return mt
end

local function class()
  local mt = addlog({})
  mt.__index = mt
  return mt
end

---------------------------------------------------------------------------------------------------------------
-- Header maps. _w selects the map: 0 request headers, 1 response headers, 2 request trailers, 3 response trailers,
-- 4 the request headers seen read-only from the response path.
local h_get, h_at, h_num, h_mut, h_entry, h_reason = H.hget, H.hat, H.hnum, H.hmut, H.hentry, H.hreason

local RO = class()
local HM = class()

-- The host gets the map selector and the name id in one number: id * 8 + map.
local function hm_get(self, k)
  if self._id ~= CUR then error(DEAD, 2) end
  return h_get((INTERN[k] or nameid(k, "get")) * 8 + self._w)
end
RO.get, HM.get = hm_get, hm_get

local function hm_at(self, k, i)
  if self._id ~= CUR then error(DEAD, 2) end
  local n = INTERN[k] or nameid(k, "getAtIndex")
  if type(i) ~= "number" then error("bad argument #2 to 'getAtIndex' (number expected, got " .. type(i) .. ")", 2) end
  return h_at(self._w, n, i)
end
RO.getAtIndex, HM.getAtIndex = hm_at, hm_at

local function hm_num(self, k)
  if self._id ~= CUR then error(DEAD, 2) end
  local n = INTERN[k] or nameid(k, "getNumValues")
  return h_num(self._w, n)
end
RO.getNumValues, HM.getNumValues = hm_num, hm_num

-- The host marks the map as being iterated from the first entry until the iterator returns nil.
local function hm_pairs(self)
  if self._id ~= CUR then error(DEAD, 2) end
  local w, i = self._w, 0
  return function()
    local k, v = h_entry(w, i)
    if k ~= nil then i = i + 1 end
    return k, v
  end, self, nil
end
RO.__pairs, HM.__pairs = hm_pairs, hm_pairs

-- Setters made by one factory (no extra call per mutation: op and fname are upvalues); the host refuses them while
-- the map is being iterated or after it was passed on, and answers true for a value that is not a string (converted
-- here, as LuaJIT prints numbers, or refused), which saves a call of type() per mutation.
local function setter(op, fname)
  return function(self, k, v)
    if self._id ~= CUR then error(DEAD, 2) end
    local n = (INTERN[k] or nameid(k, fname)) * 8 + self._w
    local e = h_mut(op, n, v)
    if e then
      if e == true then e = h_mut(op, n, str(v, 2, fname)) end
      if e then error(e, 2) end
    end
  end
end
HM.add = setter(0, "add")
HM.replace = setter(1, "replace")

function HM:remove(k)
  if self._id ~= CUR then error(DEAD, 2) end
  local e = h_mut(2, (INTERN[k] or nameid(k, "remove")) * 8 + self._w)
  if e then error(e, 2) end
end

function HM:setHttp1ReasonPhrase(p)
  if self._id ~= CUR then error(DEAD, 2) end
  local e = h_reason(self._w, str(p, 1, "setHttp1ReasonPhrase"))
  if e then error(e, 2) end
end

---------------------------------------------------------------------------------------------------------------
-- Buffers. _b: 0 request body, 1 response body, 2 request chunk, 3 response chunk.
local BUF = class()
local b_len, b_get, b_set = H.blen, H.bget, H.bset

function BUF:length()
  if self._id ~= CUR then error(DEAD, 2) end
  return b_len(self._b)
end

function BUF:getBytes(i, n)
  if self._id ~= CUR then error(DEAD, 2) end
  if type(i) ~= "number" or type(n) ~= "number" then error("index and length must be numbers", 2) end
  if i < 0 or n < 0 then error("index/length must be >= 0", 2) end
  if i + n > b_len(self._b) then error("index/length must be <= buffer size", 2) end
  return b_get(self._b, i, n)
end

function BUF:setBytes(s)
  if self._id ~= CUR then error(DEAD, 2) end
  return b_set(self._b, str(s, 1, "setBytes"))
end

---------------------------------------------------------------------------------------------------------------
-- Metadata (route), dynamic metadata, filter state, stream info, connection.
local MD = class()
function MD:get(k)
  if self._id ~= CUR then error(DEAD, 2) end
  return H.mdget(self._d, self._k, k)
end
MD.__pairs = function(self)
  if self._id ~= CUR then error(DEAD, 2) end
  local t = H.mdget(self._d, self._k, nil) or {}
  return next, t, nil
end

local DM = class()
function DM:get(ns)
  if self._id ~= CUR then error(DEAD, 2) end
  return H.dmget(self._d, self._c, str(ns, 1, "get"))
end
function DM:set(ns, k, v)
  if self._id ~= CUR then error(DEAD, 2) end
  if self._c then error("connection dynamic metadata is read-only", 2) end
  local e = H.dmset(self._d, str(ns, 1, "set"), str(k, 2, "set"), v)
  if e then error(e, 2) end
end
DM.__pairs = function(self)
  if self._id ~= CUR then error(DEAD, 2) end
  local t = H.dmget(self._d, self._c, nil) or {}
  return next, t, nil
end

local FS = class()
function FS:get(name, field)
  if self._id ~= CUR then error(DEAD, 2) end
  return H.fsget(self._d, str(name, 1, "get"), field)
end
function FS:set(name, factory, value)
  if self._id ~= CUR then error(DEAD, 2) end
  H.fsset(self._d, str(name, 1, "set"), tostring(value == nil and factory or value))
end

local SSL = class()
for _, m in ipairs({ "peerCertificatePresented", "peerCertificateValidated", "uriSanLocalCertificate",
  "uriSanPeerCertificate", "dnsSansLocalCertificate", "dnsSansPeerCertificate", "oidsPeerCertificate",
  "oidsLocalCertificate", "sha256PeerCertificateDigest", "serialNumberPeerCertificate", "issuerPeerCertificate",
  "subjectPeerCertificate", "subjectLocalCertificate", "urlEncodedPemEncodedPeerCertificate",
  "urlEncodedPemEncodedPeerCertificateChain", "validFromPeerCertificate", "expirationPeerCertificate", "sessionId",
  "ciphersuiteId", "ciphersuiteString", "tlsVersion" }) do
  SSL[m] = function(self)
    if self._id ~= CUR then error(DEAD, 2) end
    return H.ssl(self._d, m)
  end
end
function SSL:parsedSubjectPeerCertificate()
  if self._id ~= CUR then error(DEAD, 2) end
  local t = H.ssl(self._d, "parsedSubjectPeerCertificate")
  if t == nil then return nil end
  return addlog({ commonName = function() return t.commonName or "" end,
    organizationName = function() return t.organizationName or "" end })
end

local function new_ssl(self)
  if not H.ssl(self._d, "present") then return nil end
  return setmetatable({ _id = self._id, _d = self._d }, SSL)
end

local SI = class()
local function si_field(code)
  return function(self)
    if self._id ~= CUR then error(DEAD, 2) end
    return H.info(self._d, code)
  end
end
SI.protocol = si_field(0)
SI.downstreamLocalAddress = si_field(1)
SI.downstreamDirectLocalAddress = si_field(1)
SI.downstreamRemoteAddress = si_field(2)
SI.downstreamDirectRemoteAddress = si_field(3)
SI.requestedServerName = si_field(4)
SI.routeName = si_field(5)
SI.virtualClusterName = si_field(6)
SI.drainConnectionUponCompletion = si_field(7)
function SI:dynamicMetadata()
  if self._id ~= CUR then error(DEAD, 2) end
  return setmetatable({ _id = self._id, _d = self._d }, DM)
end
function SI:dynamicTypedMetadata(ns)
  if self._id ~= CUR then error(DEAD, 2) end
  return H.dmget(self._d, nil, str(ns, 1, "dynamicTypedMetadata"))
end
function SI:filterState()
  if self._id ~= CUR then error(DEAD, 2) end
  return setmetatable({ _id = self._id, _d = self._d }, FS)
end
SI.downstreamSslConnection = function(self)
  if self._id ~= CUR then error(DEAD, 2) end
  return new_ssl(self)
end

local CSI = class()
function CSI:dynamicMetadata()
  if self._id ~= CUR then error(DEAD, 2) end
  return setmetatable({ _id = self._id, _d = self._d, _c = true }, DM)
end
function CSI:dynamicTypedMetadata(ns)
  if self._id ~= CUR then error(DEAD, 2) end
  return H.dmget(self._d, true, str(ns, 1, "dynamicTypedMetadata"))
end

local CONN = class()
function CONN:ssl()
  if self._id ~= CUR then error(DEAD, 2) end
  return new_ssl(self)
end

local PK = class()
function PK:get() return self._k end

local SCOPE = class()
function SCOPE:metadata()
  if self._id ~= CUR then error(DEAD, 2) end
  return setmetatable({ _id = self._id, _d = self._d, _k = self._k }, MD)
end

local COUNTER, GAUGE, HIST = class(), class(), class()
function COUNTER:inc() H.stat(0, self._n, 0, 1) end
function COUNTER:add(v) H.stat(0, self._n, 0, v) end
function COUNTER:value() return H.stat(0, self._n, 9, 0) end
function GAUGE:inc() H.stat(1, self._n, 0, 1) end
function GAUGE:dec() H.stat(1, self._n, 0, -1) end
function GAUGE:add(v) H.stat(1, self._n, 0, v) end
function GAUGE:sub(v) H.stat(1, self._n, 0, -v) end
function GAUGE:set(v) H.stat(1, self._n, 1, v) end
function GAUGE:value() return H.stat(1, self._n, 9, 0) end
function HIST:recordValue(v) H.stat(2, self._n, 2, v) end
local STATS = class()
function STATS:counter(n) return setmetatable({ _n = str(n, 1, "counter") }, COUNTER) end
function STATS:gauge(n) return setmetatable({ _n = str(n, 1, "gauge") }, GAUGE) end
function STATS:histogram(n) return setmetatable({ _n = str(n, 1, "histogram") }, HIST) end

---------------------------------------------------------------------------------------------------------------
-- Stream handles are numbers: stream id * 2 + direction (0 request, 1 response). Numbers share one metatable whose
-- methods are the handle's, so a handle costs no allocation, and a handle kept past its handler (in a global, say)
-- never matches the running one again: using it raises, as on Envoy.
local HANDLE = addlog({})

-- The request and response header maps are one object each, bound to the running stream by headers(). Envoy keeps
-- one headers wrapper per stream for the whole handler, so a map taken before body(), bodyChunks(), trailers() or
-- httpCall() still works after it returns (Envoy's first documented example relies on it): `suspend` notes which
-- maps the stream had bound before it yields and binds them to it again when it resumes. A map kept in a global
-- and used by another request's run stays unbound there and raises.
local REQH = setmetatable({ _id = 0, _w = 0 }, HM)
local RESPH = setmetatable({ _id = 0, _w = 1 }, HM)
local function suspend(id)
  local rq, rs = REQH._id == id, RESPH._id == id
  local a, b = yield()
  CUR = id
  REQH._id = rq and id or 0
  RESPH._id = rs and id or 0
  return a, b
end

function HANDLE:headers()
  if self ~= CUR then error(DEAD, 2) end
  if self % 2 == 0 then
    REQH._id = CUR
    return REQH
  end
  RESPH._id = CUR
  return RESPH
end

local h_body, h_chunks, h_next, h_trailers = H.body, H.chunks, H.nextchunk, H.trailers

function HANDLE:body(always)
  local id, d = self, self % 2
  if id ~= CUR then error(DEAD, 2) end
  local r = h_body(d)
  if r == 2 then
    suspend(id)
    r = h_body(d)
  end
  if type(r) == "string" then error(r, 2) end
  if r == 1 and not always then return nil end
  return setmetatable({ _id = id, _b = d }, BUF)
end

function HANDLE:bodyChunks()
  local id, d = self, self % 2
  if id ~= CUR then error(DEAD, 2) end
  local e = h_chunks(d)
  if e then error(e, 2) end
  local buf = setmetatable({ _id = id, _b = d + 2 }, BUF)
  return function()
    if id ~= CUR then error(DEAD, 2) end
    local r = h_next(d)
    if r == 2 then
      suspend(id)
      r = h_next(d)
    end
    if r == 1 then return nil end
    return buf
  end
end

function HANDLE:trailers()
  local id, d = self, self % 2
  if id ~= CUR then error(DEAD, 2) end
  local r = h_trailers(d)
  if r == 2 then
    suspend(id)
    r = h_trailers(d)
  end
  if r == 1 then return nil end
  return setmetatable({ _id = id, _w = d + 2 }, HM)
end

local function scoped(mt, k)
  return function(self)
    local id = self
    if id ~= CUR then error(DEAD, 2) end
    return setmetatable({ _id = id, _d = self % 2, _k = k }, mt)
  end
end
HANDLE.metadata = scoped(MD, 0)
HANDLE.route = scoped(SCOPE, 0)
HANDLE.virtualHost = scoped(SCOPE, 1)
HANDLE.streamInfo = scoped(SI)
HANDLE.requestInfo = HANDLE.streamInfo
HANDLE.connection = scoped(CONN)
HANDLE.connectionStreamInfo = scoped(CSI)

function HANDLE:respond(headers, body)
  if self ~= CUR then error(DEAD, 2) end
  if self % 2 == 1 then error("respond() is not available on the response path", 2) end
  if type(headers) ~= "table" then error("bad argument #1 to 'respond' (table expected, got " .. type(headers) .. ")", 2) end
  if body ~= nil then body = str(body, 2, "respond") end
  local e = H.respond(0, headers, body)
  -- true: the host set every frame above to return at once, so no code after respond() runs (frames.ts).
  if e == true then return end
  if e then error(e, 2) end
  -- The stream ended with the local reply: this coroutine is never resumed.
  while true do yield() end
end

function HANDLE:httpCall(cluster, headers, body, a4, a5)
  local id = self
  if id ~= CUR then error(DEAD, 2) end
  local r = H.httpcall(self % 2, cluster, headers, body, a4, a5)
  if type(r) == "string" then error(r, 2) end
  if r == 0 then return end
  return suspend(id)
end

function HANDLE:importPublicKey(der, len)
  local k = H.importkey(str(der, 1, "importPublicKey"), len)
  return setmetatable({ _k = k }, PK)
end

function HANDLE:verifySignature(hash, key, sig, siglen, data, datalen)
  if type(key) == "table" then key = key._k end
  return H.verify(str(hash, 1, "verifySignature"), key, str(sig, 3, "verifySignature"), siglen, str(data, 5, "verifySignature"), datalen)
end

function HANDLE:base64Escape(s) return H.b64(str(s, 1, "base64Escape")) end
function HANDLE:base64Decode(s) return H.b64d(str(s, 1, "base64Decode")) end

function HANDLE:timestamp(fmt)
  if fmt ~= nil and fmt ~= 0 then error("timestamp format must be MILLISECOND.", 2) end
  return H.ts(0)
end

function HANDLE:timestampString(res)
  if res == nil or res == 0 then return H.ts(1) end
  if res == 1 then return H.ts(2) end
  error("timestamp format must be MILLISECOND or MICROSECOND.", 2)
end

function HANDLE:clearRouteCache()
  if self ~= CUR then error(DEAD, 2) end
  H.clearroute(self % 2)
end

function HANDLE:setUpstreamOverrideHost(host, strict)
  if self ~= CUR then error(DEAD, 2) end
  local e = H.override(self % 2, str(host, 1, "setUpstreamOverrideHost"), strict == true)
  if e then error(e, 2) end
end

function HANDLE:filterContext()
  if self ~= CUR then error(DEAD, 2) end
  return H.filterctx(self % 2) or {}
end

function HANDLE:stats()
  return setmetatable({}, STATS)
end

function HANDLE:downstreamRequestHeaders()
  local id = self
  if id ~= CUR then error(DEAD, 2) end
  if self % 2 == 0 then error("downstreamRequestHeaders() is only available on the response path", 2) end
  return setmetatable({ _id = id, _w = 4 }, RO)
end

dsetmetatable(0, { __index = HANDLE })

-- What the host calls: run(id, dir) starts a handler in a fresh coroutine; gc(full) reports memory.
local function run(id, d)
  -- The host pushes floats; handles are integers so that `% 2` stays an integer operation (on floats it
  -- calls fmod).
  local h = (id | 0) * 2 + (d | 0)
  CUR = h
  if d == 0 then return G.envoy_on_request(h) end
  return G.envoy_on_response(h)
end

local function collect()
  raw_gc("collect")
  return raw_gc("count")
end

return run, collect
