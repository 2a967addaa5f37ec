import { test } from 'node:test';
import assert from 'node:assert/strict';
import { generateKeyPairSync, sign } from 'node:crypto';
import { buildLuaForTest } from './testing.ts';

const lua = (source: string, extra: object = {}) => buildLuaForTest({ source, ...extra });

test('respond() serves a health page without reaching the upstream; no code after it runs (real-world script)', async () => {
  const f = await lua(`
    function envoy_on_request(h)
      if h:headers():get(":path") == "/healthz" then
        h:respond({[":status"] = "200", ["content-type"] = "text/plain"}, "healthy")
        error("not reached")
      end
    end`);
  const o = await f.exchange({ path: '/healthz' });
  assert.equal(o.upstream, null);
  assert.equal(o.reply?.status, 200);
  assert.equal(o.reply?.body.toString(), 'healthy');
  assert.deepEqual(o.reply?.options?.headers, { 'content-type': 'text/plain' });
  assert.equal(o.logs.length, 0);
  const other = await f.exchange({ path: '/api' });
  assert.equal(other.reply, null);
});

test('respond() two calls deep ends the handler: no code after any of the calls runs, and the next requests run clean', async () => {
  const f = await lua(`
    served = 0
    local function deny(h, why)
      h:respond({[":status"] = "403"}, why)
      error("not reached in deny")
    end
    local function check(h)
      local path = h:headers():get(":path")
      for i = 1, 3 do
        local captured = function() return i end
        if path == "/deny" and i == 2 then deny(h, "denied at " .. captured()) end
      end
      return path
    end
    function envoy_on_request(h)
      served = served + 1
      local path = check(h)
      if path == "/deny" then error("not reached in the handler") end
      h:headers():add("x-served", tostring(served))
    end`);
  for (let i = 1; i <= 4; i++) {
    const denied = await f.exchange({ path: '/deny' });
    assert.equal(denied.reply?.status, 403);
    assert.equal(denied.reply?.body.toString(), 'denied at 2');
    assert.equal(denied.logs.length, 0, denied.logs.join('\n'));
    const passed = await f.exchange({ path: '/ok' });
    assert.equal(passed.reply, null);
    assert.equal(passed.upstream?.headers.get('x-served'), String(2 * i));
  }
});

test('respond() stands when a <close> handler fails as the handler returns through it', async () => {
  const f = await lua(`
    function envoy_on_request(h)
      local guard <close> = setmetatable({}, { __close = function() error("close failed") end })
      h:respond({[":status"] = "403"}, "denied")
    end`);
  const o = await f.exchange({});
  assert.equal(o.reply?.status, 403);
  assert.equal(o.reply?.body.toString(), 'denied');
  assert.match(o.logs.join('\n'), /close failed/);
  assert.equal((await f.exchange({})).reply?.status, 403, 'the next request runs on a clean coroutine');
});

test('respond() inside pcall, a metamethod and a coroutine the script made still ends the handler there', async () => {
  const f = await lua(`
    function envoy_on_request(h)
      local path = h:headers():get(":path")
      if path == "/pcall" then
        pcall(function() h:respond({[":status"] = "401"}, "from pcall") end)
        error("not reached after pcall")
      elseif path == "/meta" then
        local t = setmetatable({}, { __index = function(_, k) h:respond({[":status"] = "402"}, "from " .. k) end })
        local _ = t.index
        error("not reached after the metamethod")
      elseif path == "/coroutine" then
        -- As on Envoy, the yield of respond() suspends the script's own coroutine; the reply stands.
        coroutine.wrap(function() h:respond({[":status"] = "403"}, "from a coroutine") end)()
        return
      end
      h:respond({[":status"] = "200"}, "plain")
    end`);
  assert.equal((await f.exchange({ path: '/pcall' })).reply?.body.toString(), 'from pcall');
  assert.equal((await f.exchange({ path: '/meta' })).reply?.body.toString(), 'from index');
  assert.equal((await f.exchange({ path: '/coroutine' })).reply?.body.toString(), 'from a coroutine');
  const plain = await f.exchange({ path: '/x' });
  assert.equal(plain.reply?.body.toString(), 'plain');
  assert.equal(plain.logs.length, 0);
});

test('respond() headers as Envoy builds them: names lower-cased, every entry added, a table adds one entry per element', async () => {
  const f = await lua(`
    function envoy_on_request(h)
      if h:headers():get(":path") == "/bad" then
        h:respond({[":status"] = "200", ["x-flag"] = true})
      end
      h:respond({[":STATUS"] = 201, ["X-Two"] = "a", ["x-two"] = "b", ["set-cookie"] = {"c=1", "d=2"}, ["x-n"] = 6 / 2}, "made")
    end`);
  const o = await f.exchange({});
  assert.equal(o.reply?.status, 201);
  const headers = o.reply!.options!.headers as Record<string, string | string[]>;
  assert.deepEqual([headers['x-two']].flat().sort(), ['a', 'b']);
  assert.deepEqual([headers['set-cookie']].flat().sort(), ['c=1', 'd=2']);
  assert.equal(headers['x-n'], '3');
  const bad = await f.exchange({ path: '/bad' });
  assert.equal(bad.reply?.status, 500);
  assert.match(bad.logs.join('\n'), /respond\(\) header "x-flag" must be a string, a number or a table of them, got boolean/);
});

test('respond() rejects a bad :status, respond after the headers continued, and the response path', async () => {
  const bad = await lua(`function envoy_on_request(h) h:respond({[":status"] = "99"}, "x") end`);
  assert.match((await bad.exchange({})).logs.join('\n'), /:status must be between 200 and 599/);
  const late = await lua(`function envoy_on_request(h) for c in h:bodyChunks() do end h:respond({[":status"] = "403"}) end`);
  assert.match((await late.exchange({ method: 'POST', body: ['x'] })).logs.join('\n'), /respond\(\) cannot be called if headers have been continued/);
  const resp = await lua(`function envoy_on_response(h) h:respond({[":status"] = "403"}) end`);
  assert.match((await resp.exchange({})).logs.join('\n'), /respond\(\) is not available on the response path/);
});

test('metadata() reads the route metadata under the filter name, falling back to envoy.filters.http.lua', async () => {
  const f = await lua(`
    function envoy_on_request(h)
      local md = h:metadata()
      h:headers():add("x-md", tostring(md:get("team")) .. "/" .. tostring(md:get("limits").rps) .. "/" .. tostring(md:get("none")))
      local n = 0
      for k, v in pairs(md) do n = n + 1 end
      h:headers():add("x-md-n", tostring(n))
      h:headers():add("x-route-md", tostring(h:route():metadata():get("team")))
    end`);
  const own = await f.exchange({ routeMetadata: { 'lua-test': { team: 'core', limits: { rps: 10 } } } });
  assert.equal(own.upstream!.headers.get('x-md'), 'core/10/nil');
  assert.equal(own.upstream!.headers.get('x-md-n'), '2');
  assert.equal(own.upstream!.headers.get('x-route-md'), 'core');
  const envoy = await f.exchange({ routeMetadata: { 'envoy.filters.http.lua': { team: 'edge', limits: { rps: 1 } } } });
  assert.equal(envoy.upstream!.headers.get('x-md'), 'edge/1/nil');
});

test('streamInfo(): protocol, addresses, requested server name, route name', async () => {
  const f = await lua(`
    function envoy_on_request(h)
      local si = h:streamInfo()
      h:headers():add("x-si", table.concat({si:protocol(), si:downstreamLocalAddress(), si:downstreamDirectRemoteAddress(),
        si:downstreamRemoteAddress(), si:requestedServerName(), si:routeName()}, "|"))
      h:headers():add("x-ssl", tostring(si:downstreamSslConnection()))
    end`);
  const o = await f.exchange({ routeName: 'r1' });
  assert.equal(o.upstream!.headers.get('x-si'), 'HTTP/1.1|127.0.0.1:10000|127.0.0.1:54321|10.1.2.3:0|sni.test|r1');
  assert.equal(o.upstream!.headers.get('x-ssl'), 'nil');
});

test('a response header taken from dynamic metadata set on the request path (real-world script)', async () => {
  const f = await lua(`
    function envoy_on_request(h)
      h:streamInfo():dynamicMetadata():set("envoy.filters.http.lua", "tenant", h:headers():get("x-tenant"))
      h:streamInfo():dynamicMetadata():set("other", "n", 42)
    end
    function envoy_on_response(h)
      local md = h:streamInfo():dynamicMetadata()
      h:headers():add("x-tenant", md:get("envoy.filters.http.lua")["tenant"])
      local names = {}
      for ns, t in pairs(md) do names[#names + 1] = ns end
      table.sort(names)
      h:headers():add("x-ns", table.concat(names, ","))
    end`);
  const o = await f.exchange({ headers: { 'x-tenant': 'acme' } });
  assert.equal(o.response!.headers.get('x-tenant'), 'acme');
  assert.equal(o.response!.headers.get('x-ns'), 'envoy.filters.http.lua,other');
  assert.deepEqual(o.info.dynamicMetadata.get('other'), { n: 42 });
});

test('filterState():get() reads a value another filter stored', async () => {
  const f = await lua(`
    function envoy_on_request(h)
      h:headers():add("x-fs", tostring(h:streamInfo():filterState():get("weir.test")))
      h:headers():add("x-fs-missing", tostring(h:streamInfo():filterState():get("none")))
    end`);
  const o = await f.exchange({ filterState: { 'weir.test': 'stored' } });
  assert.equal(o.upstream!.headers.get('x-fs-missing'), 'nil');
  assert.equal(o.upstream!.headers.get('x-fs'), 'stored');
});

test('connection():ssl() is nil on a plain connection; connectionStreamInfo() has read-only dynamic metadata', async () => {
  const f = await lua(`
    function envoy_on_request(h)
      h:headers():add("x-ssl", tostring(h:connection():ssl()))
      local n = 0
      for k in pairs(h:connectionStreamInfo():dynamicMetadata()) do n = n + 1 end
      h:headers():add("x-conn-md", tostring(n))
      h:headers():add("x-conn-get", tostring(h:connectionStreamInfo():dynamicMetadata():get("x")))
    end`);
  const h = (await f.exchange({})).upstream!.headers;
  assert.equal(h.get('x-ssl'), 'nil');
  assert.equal(h.get('x-conn-md'), '0');
  assert.equal(h.get('x-conn-get'), 'nil');
});

test('log methods exist on every object and write through the filter log', async () => {
  const f = await lua(`
    function envoy_on_request(h)
      h:logTrace("t") h:logDebug("d") h:logInfo("i") h:logWarn("w") h:logErr("e") h:logCritical("c")
      h:headers():logInfo("from headers")
      h:streamInfo():logWarn("from streamInfo")
      h:streamInfo():dynamicMetadata():logErr("from dynamicMetadata")
      h:metadata():logDebug("from metadata")
      h:body(true):logInfo("from buffer")
      print("from print", 1)
    end`);
  const o = await f.exchange({});
  assert.deepEqual(o.logs, [
    'trace [lua-test] t', 'debug [lua-test] d', 'info [lua-test] i', 'warn [lua-test] w', 'error [lua-test] e', 'critical [lua-test] c',
    'info [lua-test] from headers', 'warn [lua-test] from streamInfo', 'error [lua-test] from dynamicMetadata',
    'debug [lua-test] from metadata', 'info [lua-test] from buffer', 'info [lua-test] from print\t1',
  ]);
});

test('a log message is a string or a number (written as LuaJIT prints it); nil, a table or a boolean raises at the line', async () => {
  const ok = await lua(`function envoy_on_request(h) h:logInfo(10 / 2) h:logWarn(1e15) end`);
  assert.deepEqual((await ok.exchange({})).logs, ['info [lua-test] 5', 'warn [lua-test] 1e+15']);
  for (const [arg, type] of [['nil', 'nil'], ['{}', 'table'], ['true', 'boolean']]) {
    const f = await lua(`function envoy_on_request(h)\n  h:streamInfo():logErr(${arg})\nend`);
    const o = await f.exchange({});
    assert.equal(o.reply?.status, 500, arg);
    assert.match(o.logs.join('\n'), new RegExp(`lua-test:2: bad argument #1 to 'logErr' \\(string expected, got ${type}\\)`), arg);
  }
});

test('base64Escape() encodes bytes; base64Decode() decodes and returns nil on bad input', async () => {
  const f = await lua(`
    function envoy_on_request(h)
      h:headers():add("x-b64", h:base64Escape("hello\\0\\255"))
      h:headers():add("x-dec", h:base64Decode("aGk="))
      h:headers():add("x-bad", tostring(h:base64Decode("!!")))
    end`);
  const h = (await f.exchange({})).upstream!.headers;
  assert.equal(h.get('x-b64'), Buffer.from('hello\u0000\u00ff', 'latin1').toString('base64'));
  assert.equal(h.get('x-dec'), 'hi');
  assert.equal(h.get('x-bad'), 'nil');
});

test('timestamp() and timestampString() give epoch milliseconds (and microseconds); a bad format raises', async () => {
  const f = await lua(`
    function envoy_on_request(h)
      h:headers():add("x-ms", tostring(h:timestamp()))
      h:headers():add("x-ms2", tostring(h:timestamp(EnvoyTimestampResolution.MILLISECOND)))
      h:headers():add("x-s", h:timestampString())
      h:headers():add("x-us", h:timestampString(EnvoyTimestampResolution.MICROSECOND))
      h:timestamp(7)
    end`);
  const before = Date.now();
  const o = await f.exchange({});
  assert.match(o.logs.join('\n'), /timestamp format must be MILLISECOND\./);
  assert.equal(o.reply?.status, 500);
  const g = await lua(`function envoy_on_request(h) h:headers():add("x-ms", tostring(h:timestamp())) h:headers():add("x-us", h:timestampString(1)) end`);
  const h = (await g.exchange({})).upstream!.headers;
  const ms = Number(h.get('x-ms'));
  assert.ok(ms >= before && ms <= Date.now(), `${ms}`);
  assert.match(h.get('x-ms')!, /^\d+$/);
  const us = Number(h.get('x-us'));
  assert.ok(us >= before * 1000 && us <= Date.now() * 1000 + 1000, `${us}`);
});

test('importPublicKey() and verifySignature() check an RSA signature with node:crypto', async () => {
  const { publicKey, privateKey } = generateKeyPairSync('rsa', { modulusLength: 1024 });
  const der = publicKey.export({ format: 'der', type: 'spki' }).toString('hex');
  const sig = sign('sha256', Buffer.from('message'), privateKey).toString('hex');
  const f = await lua(`
    local function unhex(s) return (s:gsub("..", function(c) return string.char(tonumber(c, 16)) end)) end
    function envoy_on_request(h)
      local der = unhex(h:headers():get("x-key"))
      local key = h:importPublicKey(der, #der):get()
      local sig = unhex(h:headers():get("x-sig"))
      local ok, err = h:verifySignature("sha256", key, sig, #sig, "message", 7)
      local bad, berr = h:verifySignature("sha256", key, sig, #sig, "tampered", 8)
      local weird, werr = h:verifySignature("md5", key, sig, #sig, "message", 7)
      h:headers():add("x-ok", tostring(ok) .. "/" .. tostring(err))
      h:headers():add("x-bad", tostring(bad) .. "/" .. tostring(berr))
      h:headers():add("x-weird", tostring(weird) .. "/" .. tostring(werr))
      h:headers():add("x-nokey", tostring(h:importPublicKey("junk", 4):get()))
    end`);
  const h = (await f.exchange({ headers: { 'x-key': der, 'x-sig': sig } })).upstream!.headers;
  assert.equal(h.get('x-ok'), 'true/nil');
  assert.match(h.get('x-bad')!, /^false\//);
  assert.equal(h.get('x-weird'), 'false/md5 is not supported.');
  assert.equal(h.get('x-nokey'), 'nil');
});

test('clearRouteCache() and setUpstreamOverrideHost() reach the callbacks; a bad host raises', async () => {
  const f = await lua(`
    function envoy_on_request(h)
      h:clearRouteCache()
      h:setUpstreamOverrideHost("10.0.0.7:8080", true)
    end`, { clear_route_cache: false });
  const o = await f.exchange({});
  const cb = (o.filter as unknown as { cb: { routeCleared: number; override: unknown } }).cb;
  assert.equal(cb.routeCleared, 1);
  assert.deepEqual(cb.override, ['10.0.0.7:8080', true]);
  const bad = await lua(`function envoy_on_request(h) h:setUpstreamOverrideHost("not-an-ip") end`);
  assert.match((await bad.exchange({})).logs.join('\n'), /"not-an-ip" is not a valid IP address/);
});

test('changing request headers clears the route cache once (clear_route_cache, default true)', async () => {
  const f = await lua(`function envoy_on_request(h) h:headers():add("x-a", "1") h:headers():add("x-b", "1") end`);
  const o = await f.exchange({});
  assert.equal((o.filter as unknown as { cb: { routeCleared: number } }).cb.routeCleared, 1);
  const read = await lua(`function envoy_on_request(h) h:headers():get("x-a") end`);
  const r = await read.exchange({});
  assert.equal((r.filter as unknown as { cb: { routeCleared: number } }).cb.routeCleared, 0);
});

test('filterContext() returns the route filter_context, else the filter-level one', async () => {
  const f = await lua(`function envoy_on_request(h) h:headers():add("x-ctx", tostring(h:filterContext().who)) end`, { filter_context: { who: 'filter' } });
  const own = await f.exchange({});
  assert.equal(own.upstream!.headers.get('x-ctx'), 'filter');
  const route = await f.exchange({ perRoute: { name: 'missing', filter_context: { who: 'route' } } });
  assert.equal(route.upstream!.headers.get('x-ctx'), undefined, 'a route naming an unknown script runs no script');
  const inline = await f.exchange({
    perRoute: { source_code: { inline_string: `function envoy_on_request(h) h:headers():add("x-ctx", h:filterContext().who) end` }, filter_context: { who: 'route' } },
  });
  assert.equal(inline.upstream!.headers.get('x-ctx'), 'route');
});

test('stats(): counters, gauges and histograms land in the metrics registry', async () => {
  const f = await lua(`
    function envoy_on_request(h)
      local s = h:stats()
      s:counter("hits"):inc()
      s:counter("hits"):add(2)
      s:gauge("level"):set(5)
      s:gauge("level"):dec()
      s:histogram("size"):recordValue(12)
      h:headers():add("x-hits", tostring(s:counter("hits"):value()))
    end`);
  const o = await f.exchange({});
  assert.equal(o.upstream!.headers.get('x-hits'), '3');
  assert.equal(f.metrics.get('weir_lua_script_gauge')!.labels('lua-test', 'level').value, 4);
  assert.equal(f.metrics.get('weir_lua_script_histogram')!.labels('lua-test', 'size').count, 1);
});

test('a handle kept in a global raises when another request uses it', async () => {
  const f = await lua(`
    function envoy_on_request(h)
      if saved then saved:headers():get("x") end
      saved = h
    end`);
  assert.equal((await f.exchange({})).reply, null);
  const second = await f.exchange({});
  assert.equal(second.reply?.status, 500);
  assert.match(second.logs.join('\n'), /object used outside of proper scope/);
});

test('the request handle and the objects it gave out raise in envoy_on_response of the same request, as on Envoy', async () => {
  for (const use of ['req:headers():get("x")', 'reqHeaders:get(":path")', 'reqInfo:protocol()', 'req:streamInfo()']) {
    const f = await lua(`
      function envoy_on_request(h)
        req, reqHeaders, reqInfo = h, h:headers(), h:streamInfo()
      end
      function envoy_on_response(h)
        h:headers():add("x-before", "1")
        ${use}
      end`);
    const o = await f.exchange({});
    assert.match(o.logs.join('\n'), /lua-test:7: object used outside of proper scope/, use);
    assert.equal(o.reply?.status, 500, use);
  }
});

test('a script may not yield on its own', async () => {
  const f = await lua(`function envoy_on_request(h) coroutine.yield() end`);
  const o = await f.exchange({});
  assert.equal(o.reply?.status, 500);
  assert.match(o.logs.join('\n'), /script performed an unexpected yield/);
});

test('a script without envoy_on_request leaves the request alone and still runs envoy_on_response', async () => {
  const f = await lua(`function envoy_on_response(h) h:headers():add("x-only-response", "1") end`);
  const o = await f.exchange({});
  assert.equal(o.statuses[0], 'request-headers:continue');
  assert.equal(o.response!.headers.get('x-only-response'), '1');
  assert.equal(f.metrics.get('weir_lua_executions_total')!.labels('lua-test').value, 1);
  assert.deepEqual(f.factoryLogs, ['info [lua-test] Lua script "lua-test" has no envoy_on_request: the request path is not hooked']);
});

test('connection():ssl() and downstreamSslConnection() read the TLS details the data plane provides as info.tls', async () => {
  const f = await lua(`
    function envoy_on_request(h)
      local ssl = h:connection():ssl()
      local parsed = ssl:parsedSubjectPeerCertificate()
      h:headers():add("x-tls", table.concat({tostring(ssl:peerCertificatePresented()), ssl:tlsVersion(),
        ssl:sha256PeerCertificateDigest(), table.concat(ssl:dnsSansPeerCertificate(), "+"), parsed:commonName(),
        tostring(h:streamInfo():downstreamSslConnection():expirationPeerCertificate())}, "|"))
    end`);
  const o = await f.exchange({
    tls: {
      peerCertificatePresented: true, tlsVersion: 'TLSv1.3', sha256PeerCertificateDigest: 'ab12',
      dnsSansPeerCertificate: ['a.test', 'b.test'], parsedSubjectPeerCertificate: { commonName: 'client', organizationName: 'org' },
      expirationPeerCertificate: 1700000000,
    },
  });
  assert.equal(o.upstream!.headers.get('x-tls'), 'true|TLSv1.3|ab12|a.test+b.test|client|1700000000');
});

test('the partly supported stream-info items behave as documented', async () => {
  const f = await lua(`
    function envoy_on_request(h)
      local si = h:streamInfo()
      si:dynamicMetadata():set("ns", "k", "v")
      si:filterState():set("weir.lua.note", "factory", "hello")
      si:drainConnectionUponCompletion()
      h:headers():add("x-partial", table.concat({
        tostring(si:dynamicTypedMetadata("ns").k),
        tostring(h:connectionStreamInfo():dynamicTypedMetadata("ns")),
        "[" .. si:virtualClusterName() .. "]",
        tostring(h:virtualHost():metadata():get("x")),
        si:filterState():get("weir.lua.note"),
      }, "|"))
    end`);
  const o = await f.exchange({});
  assert.equal(o.upstream!.headers.get('x-partial'), 'v|nil|[]|nil|hello');
  assert.equal(o.info.filterState.get('weir.drain_connection'), 'true');
});
