import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { buildLuaForTest } from './testing.ts';

let server: Server;
let base = '';
const seen: { method?: string; url?: string; headers: IncomingMessage['headers']; body: string }[] = [];

before(async () => {
  server = createServer((req, res) => {
    const parts: Buffer[] = [];
    req.on('data', (c: Buffer) => parts.push(c));
    req.on('end', () => {
      const body = Buffer.concat(parts).toString();
      seen.push({ method: req.method, url: req.url, headers: req.headers, body });
      if (req.url === '/slow') return void setTimeout(() => res.end('late'), 2000);
      if (req.url === '/wait') return void setTimeout(() => res.end('waited'), 50);
      if (req.url?.startsWith('/check')) {
        const token = req.headers.authorization;
        res.writeHead(token === 'Bearer good' ? 200 : 403, { 'x-user': token === 'Bearer good' ? 'alice' : 'nobody' });
        return void res.end(token === 'Bearer good' ? 'ok' : 'denied');
      }
      res.setHeader('set-cookie', ['a=1', 'b=2']);
      res.end(`echo ${req.method} ${req.url} ${body}`);
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});

after(() => server.close());

const build = (source: string) => buildLuaForTest({ source }, { clusters: { auth: base } });

test('token check: httpCall() to an auth service answers 401 without a token and 403 for a bad one (real-world script)', async () => {
  const f = await build(`
    function envoy_on_request(h)
      local token = h:headers():get("authorization")
      if token == nil then
        h:respond({[":status"] = "401", ["www-authenticate"] = "Bearer"}, "missing token")
      end
      local headers, body = h:httpCall("auth", {
        [":method"] = "GET", [":path"] = "/check", [":authority"] = "auth", ["authorization"] = token,
      }, nil, 1000)
      if headers[":status"] ~= "200" then
        h:respond({[":status"] = "403"}, "forbidden: " .. body)
      end
      h:headers():add("x-user", headers["x-user"])
    end`);
  const missing = await f.exchange({});
  assert.equal(missing.reply?.status, 401);
  assert.equal(missing.reply?.body.toString(), 'missing token');
  assert.deepEqual(missing.reply?.options?.headers, { 'www-authenticate': 'Bearer' });
  const bad = await f.exchange({ headers: { authorization: 'Bearer bad' } });
  assert.equal(bad.reply?.status, 403);
  assert.equal(bad.reply?.body.toString(), 'forbidden: denied');
  const good = await f.exchange({ headers: { authorization: 'Bearer good' } });
  assert.equal(good.reply, null);
  assert.equal(good.statuses[0], 'request-headers:stop');
  assert.equal(good.upstream!.headers.get('x-user'), 'alice');
});

test('httpCall() sends method, path, headers and body, and returns headers and body', async () => {
  const f = await build(`
    function envoy_on_request(h)
      local headers, body = h:httpCall("auth", {
        [":method"] = "POST", [":path"] = "/echo", [":authority"] = "svc", ["x-list"] = {"1", "2"},
      }, "payload", 0)
      h:headers():add("x-status", headers[":status"])
      h:headers():add("x-body", body)
      h:headers():add("x-cookie", headers["set-cookie"])
    end`);
  const o = await f.exchange({});
  const h = o.upstream!.headers;
  assert.equal(h.get('x-status'), '200');
  assert.equal(h.get('x-body'), 'echo POST /echo payload');
  assert.equal(h.get('x-cookie'), 'b=2', 'the last value wins without return_duplicate_headers');
  const req = seen.find((s) => s.url === '/echo')!;
  assert.equal(req.headers['x-list'], '1, 2');
  assert.equal(req.headers['content-length'], '7');
});

test('httpCall() with an options table: return_duplicate_headers gives arrays', async () => {
  const f = await build(`
    function envoy_on_request(h)
      local headers = h:httpCall("auth", {[":method"] = "GET", [":path"] = "/dup", [":authority"] = "svc"}, nil,
        {timeout_ms = 1000, return_duplicate_headers = true})
      h:headers():add("x-cookies", table.concat(headers["set-cookie"], "|"))
    end`);
  const o = await f.exchange({});
  assert.equal(o.upstream!.headers.get('x-cookies'), 'a=1|b=2');
});

test('asynchronous httpCall() returns at once and the request goes on', async () => {
  const f = await build(`
    function envoy_on_request(h)
      local r = h:httpCall("auth", {[":method"] = "POST", [":path"] = "/async-5", [":authority"] = "svc"}, "fire", 1000, true)
      h:headers():add("x-returned", tostring(r))
      h:httpCall("auth", {[":method"] = "POST", [":path"] = "/async-opts", [":authority"] = "svc"}, "x", {asynchronous = true})
    end`);
  const o = await f.exchange({});
  assert.equal(o.statuses[0], 'request-headers:continue');
  assert.equal(o.upstream!.headers.get('x-returned'), 'nil');
  for (let i = 0; i < 50 && !seen.some((s) => s.url === '/async-opts'); i++) await new Promise((r) => setTimeout(r, 10));
  assert.ok(seen.some((s) => s.url === '/async-5' && s.body === 'fire'));
  assert.ok(seen.some((s) => s.url === '/async-opts'));
});

test('httpCall() timeout: the script sees a 503 and "upstream failure"', async () => {
  const f = await build(`
    function envoy_on_request(h)
      local headers, body = h:httpCall("auth", {[":method"] = "GET", [":path"] = "/slow", [":authority"] = "svc"}, nil, 50)
      h:headers():add("x-result", headers[":status"] .. " " .. body)
    end`);
  const o = await f.exchange({});
  assert.equal(o.upstream!.headers.get('x-result'), '503 upstream failure');
});

test('httpCall() argument errors: unknown cluster, missing pseudo-headers, negative timeout, bad async flag', async () => {
  const cases: [string, RegExp][] = [
    [`h:httpCall("nope", {[":method"]="GET", [":path"]="/", [":authority"]="a"}, nil, 0)`, /http call cluster invalid. Must be configured/],
    [`h:httpCall("auth", {[":method"]="GET", [":path"]="/"}, nil, 0)`, /http call headers must include ':path', ':method', and ':authority'/],
    [`h:httpCall("auth", {[":method"]="GET", [":path"]="/", [":authority"]="a"}, nil, -1)`, /http call timeout must be >= 0/],
    [`h:httpCall("auth", {[":method"]="GET", [":path"]="/", [":authority"]="a"}, nil, 0, "maybe")`, /asynchronous flag must be 'true', 'false', or empty/],
  ];
  for (const [call, message] of cases) {
    const f = await build(`function envoy_on_request(h) ${call} end`);
    const o = await f.exchange({});
    assert.equal(o.reply?.status, 500);
    assert.match(o.logs.join('\n'), message);
  }
});

test('httpCall() header values must be strings, numbers or tables of them, as respond() (a boolean, function or nested table raises)', async () => {
  const base = `[":method"]="GET", [":path"]="/typed", [":authority"]="a"`;
  const cases: [string, RegExp][] = [
    [`{${base}, ["x-flag"]=true}`, /httpCall\(\) header "x-flag" must be a string, a number or a table of them, got boolean/],
    [`{${base}, ["x-fn"]=print}`, /httpCall\(\) header "x-fn" must be a string, a number or a table of them, got function/],
    [`{${base}, ["x-t"]={"a", {"b"}}}`, /httpCall\(\) header "x-t" must hold strings, got table/],
    [`{${base}, [true]="v"}`, /httpCall\(\) header names must be strings, got boolean/],
  ];
  const before = seen.filter((r) => r.url === '/typed').length;
  for (const [table, message] of cases) {
    const f = await build(`function envoy_on_request(h) h:httpCall("auth", ${table}, nil, 1000) end`);
    const o = await f.exchange({});
    assert.equal(o.reply?.status, 500, table);
    assert.match(o.logs.join('\n'), message, table);
  }
  assert.equal(seen.filter((r) => r.url === '/typed').length, before, 'no call went out');
  // Numbers are written as LuaJIT prints them; a table adds one entry per element; names are lower-cased.
  const f = await build(`
    function envoy_on_request(h)
      local headers, body = h:httpCall("auth", {${base}, ["X-N"]=10/2, ["x-big"]=1e15, ["x-list"]={"a", 7}}, nil, 1000)
      h:headers():add("x-result", headers[":status"])
    end`);
  const o = await f.exchange({});
  assert.equal(o.upstream!.headers.get('x-result'), '200');
  const sent = seen.filter((r) => r.url === '/typed').at(-1)!;
  assert.equal(sent.headers['x-n'], '5');
  assert.equal(sent.headers['x-big'], '1e+15');
  assert.equal(sent.headers['x-list'], 'a, 7');
});

test('httpCall() on the response path', async () => {
  const f = await build(`
    function envoy_on_response(h)
      local headers, body = h:httpCall("auth", {[":method"] = "GET", [":path"] = "/from-response", [":authority"] = "svc"}, nil, 1000)
      h:headers():add("x-side", body)
    end`);
  const o = await f.exchange({});
  assert.equal(o.statuses.find((s) => s.startsWith('response-headers')), 'response-headers:stop');
  assert.equal(o.response!.headers.get('x-side'), 'echo GET /from-response ');
});

test('a client that goes away while httpCall() is pending: the coroutine is dropped and never resumed', async () => {
  const f = await build(`
    resumed = 0
    function envoy_on_request(h)
      h:httpCall("auth", {[":method"] = "GET", [":path"] = "/check", [":authority"] = "svc"}, nil, 1000)
      resumed = resumed + 1
      h:headers():add("x-after", "1")
    end`);
  const o = await f.exchange({ abortAfterHeaders: true });
  assert.equal(o.statuses[0], 'request-headers:stop');
  await new Promise((r) => setTimeout(r, 100));
  const probe = await buildLuaForTest({ source: `function envoy_on_request(h) end` });
  probe.destroy();
  const check = await f.exchange({ abortAfterHeaders: false, headers: { authorization: 'Bearer good' } });
  assert.equal(check.upstream!.headers.get('x-after'), '1');
  const stream = o.filter as unknown as { script: { inFlight: number } };
  assert.equal(stream.script.inFlight, 0);
});

test('a request suspended on a synchronous httpCall fails at once when its Lua state is recycled after another run was stopped', async () => {
  const f = await buildLuaForTest({
    source: `
      function envoy_on_request(h)
        if h:headers():get("x-slow") then
          h:httpCall("auth", {[":method"] = "GET", [":path"] = "/slow", [":authority"] = "auth"}, nil, 5000)
          h:headers():add("x-after", "1")
        elseif h:headers():get("x-match") then
          string.find(string.rep("a", 40), string.rep("a*", 30) .. "b")
        end
      end`,
    instruction_limit: 1_000_000,
  }, { clusters: { auth: base } });
  const t0 = performance.now();
  const slow = f.exchange({ headers: { 'x-slow': '1' } });
  for (let i = 0; i < 100 && !seen.some((s) => s.url === '/slow'); i++) await new Promise((r) => setTimeout(r, 10));
  const stopped = await f.exchange({ headers: { 'x-match': '1' } });
  assert.equal(stopped.reply?.options?.details, 'lua_budget');
  const s = await slow;
  assert.ok(performance.now() - t0 < 1500, 'failed before the call answered (2 s), not left hanging');
  assert.equal(s.reply?.status, 500);
  assert.equal(s.reply?.options?.details, 'lua_error');
  assert.equal(s.upstream, null);
  assert.match(f.logs.join('\n'), /failed \(error\): the Lua state this request was suspended on was recycled/);
});

test('header maps held across a synchronous httpCall() stay with their own stream while other streams run in between', async () => {
  const f = await build(`
    function envoy_on_request(h)
      local hd = h:headers()
      local me = hd:get("x-me")
      local rh = h:httpCall("auth", {[":method"] = "GET", [":path"] = "/wait", [":authority"] = "auth"}, nil, 2000)
      hd:add("x-after", me .. ":" .. rh[":status"] .. ":" .. hd:get("x-me"))
    end`);
  const [a, b] = await Promise.all([f.exchange({ headers: { 'x-me': 'a' } }), f.exchange({ headers: { 'x-me': 'b' } })]);
  assert.equal(a.reply, null, a.logs.join('\n'));
  assert.equal(a.upstream!.headers.get('x-after'), 'a:200:a');
  assert.equal(b.upstream!.headers.get('x-after'), 'b:200:b');
});
