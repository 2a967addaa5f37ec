import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startWeir, type Weir } from '../support/weir.ts';
import { startUpstream, type Upstream } from '../support/upstream.ts';
import { rawExchange } from '../support/raw.ts';
import { metric, sample } from '../support/metrics.ts';

let backend: Upstream;
let auth: Upstream;
let weir: Weir;

const AUTH_SCRIPT = `
-- Token check against an auth service (real-world script).
function envoy_on_request(handle)
  local token = handle:headers():get("authorization")
  if token == nil then
    handle:respond({[":status"] = "401", ["www-authenticate"] = "Bearer"}, "missing token")
  end
  local headers, body = handle:httpCall("auth", {
    [":method"] = "GET", [":path"] = "/check", [":authority"] = "auth", ["authorization"] = token,
  }, nil, 2000)
  if headers[":status"] ~= "200" then
    handle:respond({[":status"] = "403"}, "forbidden")
  end
  handle:headers():add("x-user", headers["x-user"])
end
`;

const MAIN_SCRIPT = `
loads = (loads or 0) + 1
function envoy_on_request(handle)
  local h = handle:headers()
  local path = h:get(":path")
  if path == "/healthz" then
    handle:respond({[":status"] = "200", ["content-type"] = "text/plain"}, "healthy")
  elseif path == "/error" then
    local t = nil
    local x = t.field
  elseif path == "/loop" then
    while true do end
  elseif path == "/hog" then
    local t = {}
    while true do t[#t + 1] = string.rep("x", 4096) .. #t end
  elseif path == "/bodylen" then
    local b = handle:body()
    handle:headers():add("x-body-len", tostring(b:length()))
  elseif path == "/trailers" then
    local b = handle:body()
    local t = handle:trailers()
    handle:headers():add("x-trailer", (t and t:get("x-sum") or "none") .. "/" .. b:length())
  elseif path == "/meta" then
    local md = handle:metadata()
    h:add("x-meta", md:get("team") .. "/" .. md:get("limits").rps .. "/" .. handle:streamInfo():routeName())
  elseif path == "/chunks" then
    local total = 0
    for chunk in handle:bodyChunks() do total = total + chunk:length() end
    handle:logInfo("streamed " .. total .. " bytes")
    return
  elseif path == "/count" then
    local n = weir.shared.hits:incr("n", 1, 0)
    h:add("x-count", tostring(n))
  elseif path == "/inject" then
    h:add("x-bad", "a\\r\\nInjected: yes")
  elseif path == "/seen" then
    local names = {}
    for k, _ in pairs(h) do names[#names + 1] = k end
    handle:respond({[":status"] = "200"}, table.concat(names, ","))
  end
  h = handle:headers()
  handle:streamInfo():dynamicMetadata():set("envoy.filters.http.lua", "tenant", h:get("x-tenant") or "none")
  h:add("x-loads", tostring(loads))
end

function envoy_on_response(handle)
  if handle:downstreamRequestHeaders():get(":path") == "/upper" then
    for chunk in handle:bodyChunks() do
      chunk:setBytes(chunk:getBytes(0, chunk:length()):upper())
    end
    return
  end
  local md = handle:streamInfo():dynamicMetadata():get("envoy.filters.http.lua")
  handle:headers():add("x-tenant", md and md.tenant or "none")
  if handle:headers():get("content-type") == "application/json" then
    local body = handle:body()
    local text = body:getBytes(0, body:length())
    body:setBytes((text:gsub('("password"%s*:%s*)"[^"]*"', '%1"***"')))
  end
end
`;

const config = (main: string) => `
listeners:
  - name: edge
    address: 127.0.0.1:0
    filters:
      - name: main
        type: lua
        file: scripts/main.lua
        instruction_limit: 3000000
        memory_limit_mb: 16
      - name: auth
        type: lua
        source_codes:
          auth.lua: { filename: scripts/auth.lua }
    routes:
      - name: secure
        match: { prefix: /secure }
        cluster: backend
        filter_overrides:
          auth: { name: auth.lua }
      - name: inline
        match: { prefix: /inline }
        cluster: backend
        filter_overrides:
          main:
            source_code:
              inline_string: |
                function envoy_on_request(h) h:headers():add("x-inline", "yes") end
      - name: meta
        match: { prefix: /meta }
        cluster: backend
        metadata:
          main: { team: core, limits: { rps: 7 } }
      - name: secrets
        match: { prefix: /secrets }
        cluster: secrets
      - name: all
        match: { prefix: / }
        cluster: backend
clusters:
  - name: backend
    endpoints: [${backend.address}]
  - name: secrets
    endpoints: [${auth.address}]
  - name: auth
    endpoints: [${auth.address}]
# ${main.length}
`;

before(async () => {
  backend = await startUpstream();
  auth = await startUpstream((req, res) => {
    if (req.url === '/secrets') {
      res.writeHead(200, { 'content-type': 'application/json' });
      return void res.end('{"user":"ann","password":"hunter2"}');
    }
    const ok = req.headers.authorization === 'Bearer good';
    res.writeHead(ok ? 200 : 403, { 'x-user': ok ? 'alice' : 'nobody' });
    res.end(ok ? 'ok' : 'no');
  });
  weir = await startWeir(config(MAIN_SCRIPT), { workers: 2, files: { 'scripts/main.lua': MAIN_SCRIPT, 'scripts/auth.lua': AUTH_SCRIPT } });
});

after(async () => {
  await weir?.stop();
  await backend?.close();
  await auth?.close();
});

const get = (path: string, headers: Record<string, string> = {}) => fetch(`${weir.url('edge')}${path}`, { headers });

test('lua e2e: token check with httpCall answers 401 without a token, 403 for a bad one, passes a good one', async () => {
  const missing = await get('/secure/a');
  assert.equal(missing.status, 401);
  assert.equal(missing.headers.get('www-authenticate'), 'Bearer');
  assert.equal(await missing.text(), 'missing token');
  const bad = await get('/secure/a', { authorization: 'Bearer bad' });
  assert.equal(bad.status, 403);
  await bad.text();
  const good = await get('/secure/a', { authorization: 'Bearer good' });
  assert.equal(good.status, 200);
  const echoed = (await good.json()) as { headers: Record<string, string> };
  assert.equal(echoed.headers['x-user'], 'alice');
});

test('lua e2e: the request headers a script sees leave out the connection\'s own (Connection, Keep-Alive, Proxy-Connection, Transfer-Encoding), as on Envoy; an upgrade keeps Connection and Upgrade', async () => {
  const seen = async (head: string): Promise<string[]> => {
    const { text } = await rawExchange(weir.url('edge'), head, 2000);
    assert.match(text, /^HTTP\/1\.1 200 /, text);
    return text.slice(text.indexOf('\r\n\r\n') + 4).split(',');
  };
  const plain = await seen('GET /seen HTTP/1.1\r\nHost: x\r\nConnection: keep-alive, x-hop\r\nKeep-Alive: timeout=5\r\nProxy-Connection: keep-alive\r\nX-Hop: 1\r\nX-Custom: a\r\nConnection: close\r\n\r\n');
  assert.ok(plain.includes('x-custom') && plain.includes(':path'), plain.join());
  for (const name of ['connection', 'keep-alive', 'proxy-connection', 'x-hop']) assert.ok(!plain.includes(name), `${name} in ${plain.join()}`);
  // A chunked request: the codec framed the body, the script does not see how.
  const chunked = await seen('POST /seen HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n1\r\na\r\n0\r\n\r\n');
  assert.ok(!chunked.includes('transfer-encoding'), chunked.join());
  const upgrade = await seen('GET /seen HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nKeep-Alive: 1\r\n\r\n');
  assert.ok(upgrade.includes('connection') && upgrade.includes('upgrade') && !upgrade.includes('keep-alive'), upgrade.join());
});

test('lua e2e: respond() serves a health page', async () => {
  const res = await get('/healthz');
  assert.equal(res.status, 200);
  assert.equal(res.headers.get('content-type'), 'text/plain');
  assert.equal(await res.text(), 'healthy');
});

test('lua e2e: a response header from dynamic metadata set on the request path', async () => {
  const res = await get('/anything', { 'x-tenant': 'acme' });
  assert.equal(res.status, 200);
  assert.equal(res.headers.get('x-tenant'), 'acme');
  const echoed = (await res.json()) as { headers: Record<string, string> };
  assert.match(echoed.headers['x-loads'], /^1$/);
});

test('lua e2e: a JSON response body rewrite redacts a field', async () => {
  const res = await get('/secrets');
  assert.equal(res.status, 200);
  assert.deepEqual(await res.json(), { user: 'ann', password: '***' });
});

test('lua e2e: a script error answers 500, logs the filter, script and line, and counts it', async () => {
  const res = await get('/error');
  assert.equal(res.status, 500);
  await res.text();
  const line = await weir.waitForLine((l) => /Lua script "scripts\/main.lua" failed \(error\)/.test(String(l.msg)));
  assert.match(line.msg, /scripts\/main.lua:10: attempt to index a nil value/);
  assert.equal(line.filter, 'main');
  const metrics = await (await fetch(`${weir.admin}/metrics`)).text();
  assert.match(metrics, /weir_lua_errors_total\{filter="main",reason="error"\} 1/);
});

test('lua e2e: a header value with CR LF is refused at the add(): 500, logged with the script line, nothing injected', async () => {
  const res = await get('/inject');
  assert.equal(res.status, 500);
  assert.equal(res.headers.get('injected'), null);
  await res.text();
  const line = await weir.waitForLine((l) => /Lua script "scripts\/main.lua" failed/.test(String(l.msg)) && /x-bad/.test(String(l.msg)));
  assert.match(line.msg, /scripts\/main.lua:35: invalid value for header "x-bad": it contains CR, LF or NUL/);
});

test('lua e2e: an endless loop costs only its own request while others flow', async () => {
  const failuresBefore = await metric(weir.admin, 'weir_filter_errors_total', { filter: 'main' });
  const loop = get('/loop');
  const others = [];
  for (let i = 0; i < 20; i++) others.push(get(`/ok${i}`).then(async (r) => [r.status, await r.text()] as const));
  const [looped, ...rest] = await Promise.all([loop.then(async (r) => [r.status, await r.text()] as const), ...others]);
  assert.equal(looped[0], 500);
  for (const [status] of rest) assert.equal(status, 200);
  const metrics = await (await fetch(`${weir.admin}/metrics`)).text();
  assert.match(metrics, /weir_lua_errors_total\{filter="main",reason="budget"\} 1/);
  assert.equal(sample(metrics, 'weir_filter_errors_total', { filter: 'main' }) - failuresBefore, 1, 'counted as a filter failure too');
});

test('lua e2e: unbounded allocation hits the memory cap: 500, and the next request works', async () => {
  const res = await get('/hog');
  assert.equal(res.status, 500);
  await res.text();
  const next = await get('/after-hog');
  assert.equal(next.status, 200);
  await next.text();
});

test('lua e2e: a route override brings its own inline script', async () => {
  const res = await get('/inline/x');
  const echoed = (await res.json()) as { headers: Record<string, string> };
  assert.equal(echoed.headers['x-inline'], 'yes');
  assert.equal(echoed.headers['x-loads'], undefined);
});

test('lua e2e: weir.shared counters from two workers add up', async () => {
  const n = 30;
  const seen: number[] = [];
  for (let i = 0; i < n; i++) {
    const res = await fetch(`${weir.url('edge')}/count`, { headers: { connection: 'close' } });
    const echoed = (await res.json()) as { headers: Record<string, string> };
    seen.push(Number(echoed.headers['x-count']));
  }
  seen.sort((a, b) => a - b);
  assert.deepEqual(seen, Array.from({ length: n }, (_, i) => i + 1));
});

test('lua e2e: a reload keeps an unchanged script (no recompilation) and swaps a changed one', async () => {
  const before = (await (await get('/r1')).json()) as { headers: Record<string, string> };
  assert.equal(before.headers['x-loads'], '1');
  const same = await weir.reload(config(MAIN_SCRIPT));
  assert.equal(same.status, 200, await same.text());
  const kept = (await (await get('/r2')).json()) as { headers: Record<string, string> };
  assert.equal(kept.headers['x-loads'], '1', 'top-level code did not run again');
  const changed = MAIN_SCRIPT.replace('loads = (loads or 0) + 1', 'loads = (loads or 0) + 100');
  weir.writeConfig(config(changed));
  const { writeFileSync } = await import('node:fs');
  writeFileSync(`${weir.dir}/scripts/main.lua`, changed);
  const swapped = await weir.reload();
  assert.equal(swapped.status, 200, await swapped.text());
  const fresh = (await (await get('/r3')).json()) as { headers: Record<string, string> };
  assert.equal(fresh.headers['x-loads'], '100');
});

test('lua e2e: body() holds the request until the whole body arrived; the upstream gets headers and body', async () => {
  const res = await fetch(`${weir.url('edge')}/bodylen`, { method: 'POST', body: 'x'.repeat(100000) });
  const echoed = (await res.json()) as { headers: Record<string, string>; body: string };
  assert.equal(echoed.headers['x-body-len'], '100000');
  assert.equal(echoed.body.length, 100000);
});

test('lua e2e: a request body that arrives while httpCall() is pending reaches the upstream once the call returns', async () => {
  const res = await fetch(`${weir.url('edge')}/secure/post`, { method: 'POST', body: 'payload', headers: { authorization: 'Bearer good' } });
  assert.equal(res.status, 200);
  const echoed = (await res.json()) as { headers: Record<string, string>; body: string };
  assert.equal(echoed.body, 'payload');
  assert.equal(echoed.headers['x-user'], 'alice');
});

test('lua e2e: body() then trailers() on a chunked request with trailers', async () => {
  const { text } = await rawExchange(
    weir.url('edge'),
    'POST /trailers HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\ntrailer: x-sum\r\nconnection: close\r\n\r\n3\r\nabc\r\n0\r\nx-sum: 42\r\n\r\n',
    3000,
  );
  assert.match(text, /^HTTP\/1.1 200/);
  assert.match(text, /"x-trailer":"42\/3"/);
});

test('lua e2e: metadata() reads the route metadata under the filter name; routeName() names the route', async () => {
  const res = await get('/meta');
  const echoed = (await res.json()) as { headers: Record<string, string> };
  assert.equal(echoed.headers['x-meta'], 'core/7/meta');
});

test('lua e2e: bodyChunks() rewrites a streamed response chunk by chunk; downstreamRequestHeaders() on the response path', async () => {
  const res = await get('/upper');
  assert.equal(res.status, 200);
  const text = await res.text();
  assert.match(text, /"METHOD":"GET","URL":"\/UPPER"/);
});

test('lua e2e: body() over the listener buffer limit answers 413 with connection: close, as Envoy does', async () => {
  const res = await fetch(`${weir.url('edge')}/bodylen`, { method: 'POST', body: 'x'.repeat(2 * 1024 * 1024) }).catch((e: Error) => e);
  if (res instanceof Error) assert.fail(`the request failed instead of a 413: ${res.message}`);
  assert.equal(res.status, 413, weir.logs.slice(-4).join('\n'));
  // The rest of the body is never read, so the connection closes after the 413, and the 413 says so.
  assert.equal(res.headers.get('connection'), 'close');
  await res.text();
});

test('lua e2e: a POST with a bad token gets the 403 from respond() after httpCall(), with its body still arriving', async () => {
  const res = await fetch(`${weir.url('edge')}/secure/post`, { method: 'POST', body: 'y'.repeat(300000), headers: { authorization: 'Bearer bad' } });
  assert.equal(res.status, 403);
  assert.equal(await res.text(), 'forbidden');
  const ok = await get('/after-403');
  assert.equal(ok.status, 200);
  await ok.text();
});

test('lua e2e: bodyChunks() on the request streams the body to the upstream as it arrives', async () => {
  const res = await fetch(`${weir.url('edge')}/chunks`, { method: 'POST', body: 'z'.repeat(200000) });
  const echoed = (await res.json()) as { body: string };
  assert.equal(echoed.body.length, 200000);
  const line = await weir.waitForLine((l) => /streamed \d+ bytes/.test(String(l.msg)));
  assert.equal(line.msg, 'streamed 200000 bytes');
});

/**
 * Starts an upstream answering with `handler` and a weir whose listener runs one Lua filter `name` with `source`
 * before routing everything to that upstream; runs `body` against them, then stops both.
 */
async function withLuaFilter(
  name: string,
  source: string,
  handler: Parameters<typeof startUpstream>[0],
  body: (w: Weir) => Promise<void>,
): Promise<void> {
  const up = await startUpstream(handler);
  const script = source.trim().split('\n').map((line) => `          ${line}`).join('\n');
  const w = await startWeir(`
listeners:
  - name: edge
    address: 127.0.0.1:0
    filters:
      - name: ${name}
        type: lua
        source: |
${script}
    routes:
      - match: { prefix: / }
        cluster: up
clusters:
  - name: up
    endpoints: [${up.address}]
`);
  try {
    await body(w);
  } finally {
    await w.stop();
    await up.close();
  }
}

test('lua e2e: envoy_on_response body() on an upstream response with trailers sends the response and the trailers', async () => {
  await withLuaFilter(
    'resp-body',
    `
function envoy_on_response(handle)
  local b = handle:body()
  handle:headers():add("x-len", tostring(b:length()))
end
`,
    (_q, res) => {
      res.writeHead(200, { 'transfer-encoding': 'chunked', trailer: 'x-sum' });
      res.write('abc');
      res.addTrailers({ 'x-sum': '42' });
      res.end('def');
    },
    async (w) => {
      const { text } = await rawExchange(w.url('edge'), 'GET / HTTP/1.1\r\nhost: x\r\nte: trailers\r\nconnection: close\r\n\r\n', 3000);
      assert.match(text, /^HTTP\/1\.1 200 OK\r\n/);
      assert.match(text, /\r\nx-len: 6\r\n/);
      assert.match(text, /abcdef/);
      assert.match(text, /\r\n0\r\nx-sum: 42\r\n\r\n$/);
    },
  );
});

test('lua e2e: setBytes() on a chunked response sets content-length (transfer-encoding goes); with trailers the body stays chunked', async () => {
  await withLuaFilter(
    'rewrite',
    `
function envoy_on_response(handle)
  local n = handle:body():setBytes("rewritten")
  local h = handle:headers()
  h:add("x-seen", tostring(n) .. "/" .. tostring(h:get("content-length")) .. "/" .. tostring(h:get("transfer-encoding")))
end
`,
    (q, res) => {
      res.writeHead(200, q.url === '/trailers' ? { 'transfer-encoding': 'chunked', trailer: 'x-sum' } : { 'transfer-encoding': 'chunked' });
      res.write('abc');
      if (q.url === '/trailers') res.addTrailers({ 'x-sum': '42' });
      res.end('def');
    },
    async (w) => {
      const plain = (await rawExchange(w.url('edge'), 'GET / HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n', 3000)).text;
      assert.match(plain, /\r\nx-seen: 9\/9\/nil\r\n/);
      assert.match(plain, /\r\ncontent-length: 9\r\n/);
      assert.doesNotMatch(plain, /transfer-encoding/);
      assert.match(plain, /\r\n\r\nrewritten$/);
      const withTrailers = (await rawExchange(w.url('edge'), 'GET /trailers HTTP/1.1\r\nhost: x\r\nte: trailers\r\nconnection: close\r\n\r\n', 3000)).text;
      assert.match(withTrailers, /\r\nx-seen: 9\/nil\/chunked\r\n/);
      assert.match(withTrailers, /\r\n\r\n9\r\nrewritten\r\n0\r\nx-sum: 42\r\n\r\n$/);
    },
  );
});

test('lua e2e: a script error after the response head was sent resets the stream; the access log says FF and names the filter', async () => {
  await withLuaFilter(
    'chunky',
    `
function envoy_on_response(handle)
  for chunk in handle:bodyChunks() do
    if chunk:getBytes(0, chunk:length()):find("boom") then error("bad chunk") end
  end
end
`,
    (_q, res) => {
      res.writeHead(200, { 'content-type': 'text/plain' });
      res.write('fine ');
      setTimeout(() => res.end('boom'), 50);
    },
    async (w) => {
      const { text, closed } = await rawExchange(w.url('edge'), 'GET /late-error HTTP/1.1\r\nhost: x\r\n\r\n', 3000);
      assert.match(text, /^HTTP\/1\.1 200 OK\r\n/);
      assert.equal(closed, true);
      assert.doesNotMatch(text, /boom/);
      const line = await w.waitForLine((l) => l.msg === 'access' && l.path === '/late-error');
      assert.equal(line.flags, 'FF');
      assert.equal(line.details, 'lua_error');
      const error = await w.waitForLine((l) => l.filter === 'chunky' && /bad chunk/.test(String(l.msg)));
      assert.match(String(error.msg), /:3: bad chunk/);
    },
  );
});

test('lua e2e: setHttp1ReasonPhrase sets the status line, drainConnectionUponCompletion closes the connection', async () => {
  await withLuaFilter(
    'phrase',
    `
function envoy_on_response(handle)
  handle:headers():setHttp1ReasonPhrase("Very Fine")
  handle:streamInfo():drainConnectionUponCompletion()
end
`,
    (_q, res) => res.end('ok'),
    async (w) => {
      const { text, closed } = await rawExchange(w.url('edge'), 'GET / HTTP/1.1\r\nhost: x\r\n\r\n', 2000);
      assert.match(text, /^HTTP\/1\.1 200 Very Fine\r\n/);
      assert.match(text, /\r\nconnection: close\r\n/);
      assert.equal(closed, true);
    },
  );
});

test('lua e2e: downstreamRemoteAddress is the peer "ip:port", or the trusted x-forwarded-for client', async () => {
  const up = await startUpstream((_q, res) => res.end('ok'));
  const script = `
          function envoy_on_request(handle)
            handle:respond({[":status"] = "200"}, handle:streamInfo():downstreamRemoteAddress() .. " " .. handle:streamInfo():downstreamLocalAddress())
          end`;
  const config = (hops: number) => `
listeners:
  - name: edge
    address: 127.0.0.1:0
    xff_trusted_hops: ${hops}
    filters:
      - name: addr
        type: lua
        source: |${script}
    routes:
      - match: { prefix: / }
        cluster: up
clusters:
  - name: up
    endpoints: [${up.address}]
`;
  const direct = await startWeir(config(0));
  const trusted = await startWeir(config(1));
  try {
    const a = await (await fetch(direct.url('edge'), { headers: { 'x-forwarded-for': '10.9.9.9' } })).text();
    assert.match(a, /^127\.0\.0\.1:\d+ 127\.0\.0\.1:\d+$/, 'untrusted x-forwarded-for is ignored');
    assert.notEqual(a.split(' ')[0], '127.0.0.1:0');
    const b = await (await fetch(trusted.url('edge'), { headers: { 'x-forwarded-for': '10.9.9.9' } })).text();
    assert.match(b, /^10\.9\.9\.9:0 127\.0\.0\.1:\d+$/, 'one trusted hop: the client x-forwarded-for names');
  } finally {
    await direct.stop();
    await trusted.stop();
    await up.close();
  }
});
