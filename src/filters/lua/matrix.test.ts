// Rows of the docs/lua.md matrix that had no test able to fail: the weir_lua_states count, verifySignature with
// every hash and an invalid key, the bit/bit32 shims beyond the basics, and httpCall's send_xff (end to end, since
// x-forwarded-for is added by the data plane's http call, not by the Lua filter). Real Lua VM, real HTTP servers.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { generateKeyPairSync, sign } from 'node:crypto';
import { buildLuaForTest } from './testing.ts';
import { Metrics } from '../../telemetry/metrics.ts';
import { startWeir, type Weir } from '../../../test/support/weir.ts';
import { startUpstream, type Upstream } from '../../../test/support/upstream.ts';

const lua = (source: string, extra: object = {}) => buildLuaForTest({ source, ...extra });

// First in this file: no other test of the file holds a Lua state yet, so the count is exact.
test('weir_lua_states counts exactly one state per distinct script of the worker, shared ones once, and drops them on destroy', async () => {
  const metrics = new Metrics();
  const states = () => metrics.get('weir_lua_states')!.labels().value;
  const one = (tag: string) => `function envoy_on_request(h) h:headers():add("x-script", "${tag}") end`;
  // A default script and two named ones: three states.
  const a = await buildLuaForTest({ source: one('default'), source_codes: { 'b.lua': { inline_string: one('b') }, 'c.lua': { inline_string: one('c') } } }, { name: 'states-a', metrics });
  assert.equal(states(), 3);
  assert.equal((await a.exchange({ perRoute: { name: 'c.lua' } })).upstream!.headers.get('x-script'), 'c');
  assert.equal(states(), 3, 'running a request builds no state');
  // Another filter with the same named scripts (same name, text and limits) shares their states; its default is new.
  const b = await buildLuaForTest({ source: one('other'), source_codes: { 'b.lua': { inline_string: one('b') }, 'c.lua': { inline_string: one('c') } } }, { name: 'states-b', metrics });
  assert.equal(states(), 4);
  // Different limits make a different state even for the same script.
  const c = await buildLuaForTest({ source_codes: { 'b.lua': { inline_string: one('b') } }, instruction_limit: 12345 }, { name: 'states-c', metrics });
  assert.equal(states(), 5);
  a.destroy();
  assert.equal(states(), 4, "a's default state goes; b.lua and c.lua stay, filter b still holds them");
  b.destroy();
  assert.equal(states(), 1);
  c.destroy();
  assert.equal(states(), 0);
});

test('verifySignature() checks SHA1, SHA224, SHA256, SHA384 and SHA512 signatures made by node:crypto', async () => {
  const { publicKey, privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  const der = publicKey.export({ format: 'der', type: 'spki' }).toString('hex');
  const f = await lua(`
    local function unhex(s) return (s:gsub("..", function(c) return string.char(tonumber(c, 16)) end)) end
    function envoy_on_request(h)
      local hd = h:headers()
      local der = unhex(hd:get("x-key"))
      local key = h:importPublicKey(der, #der):get()
      local sig = unhex(hd:get("x-sig"))
      local hash, other = hd:get("x-hash"), hd:get("x-other")
      local ok, err = h:verifySignature(hash, key, sig, #sig, "the data", 8)
      local wrong, werr = h:verifySignature(other, key, sig, #sig, "the data", 8)
      local short, serr = h:verifySignature(hash, key, sig, #sig, "the data", 7)
      hd:add("x-result", tostring(ok) .. "/" .. tostring(err) .. "|" .. tostring(wrong) .. "/" .. tostring(werr) .. "|" .. tostring(short) .. "/" .. tostring(serr))
    end`);
  const names: [string, string][] = [['sha1', 'sha256'], ['sha224', 'sha256'], ['sha256', 'sha1'], ['sha384', 'sha512'], ['sha512', 'sha384']];
  for (const [hash, other] of names) {
    const sig = sign(hash, Buffer.from('the data'), privateKey).toString('hex');
    for (const spelled of [hash, hash.toUpperCase()]) {
      const h = (await f.exchange({ headers: { 'x-key': der, 'x-sig': sig, 'x-hash': spelled, 'x-other': other } })).upstream!.headers;
      assert.equal(h.get('x-result'), 'true/nil|false/Failed to verify digest. Error code: 0|false/Failed to verify digest. Error code: 0',
        `${spelled}: verifies; the same signature under ${other} or over 7 of the 8 bytes does not`);
    }
  }
  f.destroy();
});

test('verifySignature() with a key that importPublicKey() did not give raises "invalid public key"', async () => {
  const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 1024 });
  const sig = sign('sha256', Buffer.from('data'), privateKey).toString('hex');
  const f = await lua(`
    function envoy_on_request(h)
      local hd = h:headers()
      local junk = h:importPublicKey("junk", 4):get()
      local ok1, e1 = pcall(h.verifySignature, h, "sha256", junk, "sig", 3, "data", 4)
      local ok2, e2 = pcall(h.verifySignature, h, "sha256", "pk:not-imported", "sig", 3, "data", 4)
      hd:add("x-junk", tostring(junk))
      hd:add("x-nil-key", tostring(ok1) .. "/" .. tostring(e1))
      hd:add("x-unknown-key", tostring(ok2) .. "/" .. tostring(e2))
      if hd:get("x-unprotected") then h:verifySignature("sha256", nil, "sig", 3, "data", 4) end
    end`);
  const o = await f.exchange({ headers: { 'x-sig': sig } });
  const h = o.upstream!.headers;
  assert.equal(h.get('x-junk'), 'nil', 'importPublicKey():get() is nil for bytes that are no DER public key');
  assert.equal(h.get('x-nil-key'), 'false/invalid public key', 'the error as Envoy raises it, without a position');
  assert.equal(h.get('x-unknown-key'), 'false/invalid public key');
  const raised = await f.exchange({ headers: { 'x-unprotected': '1' } });
  assert.equal(raised.reply?.status, 500);
  assert.match(raised.logs.join('\n'), /Lua script "lua-test" failed \(error\): .*invalid public key/);
  f.destroy();
});

test('bit.ror, bit.bswap and bit32.bor/bxor/lshift/btest/extract give LuaJIT and Lua 5.2 results', async () => {
  const f = await lua(`
    function envoy_on_request(h)
      local r = {
        bit.ror(0x80000001, 1), bit.ror(0x12345678, 4), bit.ror(0x12345678, 0), bit.ror(0x12345678, 36), bit.ror(1, 1),
        bit.bswap(0x12345678), bit.bswap(0xff), bit.bswap(-1), bit.bswap(0x80),
        bit32.bor(1, 2, 4), bit32.bor(0x80000000, 1), bit32.bor(0xffffffff),
        bit32.bxor(5, 1), bit32.bxor(0xffffffff, 0x0f0f0f0f), bit32.bxor(1, 3, 7),
        bit32.lshift(1, 31), bit32.lshift(0xffffffff, 4), bit32.lshift(1, 32), bit32.lshift(0x80, -4),
        bit32.btest(0xf0, 0x0f), bit32.btest(0xf0, 0x10), bit32.btest(0xff, 0xf0, 0x30),
        bit32.extract(0x12345678, 4, 8), bit32.extract(0xf0, 4), bit32.extract(0x80000000, 31), bit32.extract(0xffffffff, 0, 32),
      }
      for i = 1, #r do r[i] = tostring(r[i]) end
      h:headers():add("x-bits", table.concat(r, ","))
    end`);
  const h = (await f.exchange({})).upstream!.headers;
  assert.deepEqual(h.get('x-bits')!.split(','), [
    // bit.ror: signed 32-bit results, the count taken mod 32 (LuaJIT).
    '-1073741824', '-2128394905', '305419896', '-2128394905', '-2147483648',
    // bit.bswap
    '2018915346', '-16777216', '-1', '-2147483648',
    // bit32: unsigned results (Lua 5.2).
    '7', '2147483649', '4294967295',
    '4', '4042322160', '5',
    '2147483648', '4294967280', '0', '8',
    'false', 'true', 'true',
    '103', '1', '1', '4294967295',
  ]);
  f.destroy();
});

test('ffi and jit are absent (not supported): the globals are nil and no module loader can bring them in', async () => {
  const f = await lua(`
    function envoy_on_request(h)
      local ok, err = pcall(function() return require("ffi") end)
      h:headers():add("x-absent", type(ffi) .. "," .. type(jit) .. "," .. type(package) .. "," .. tostring(ok))
    end`);
  assert.equal((await f.exchange({})).upstream!.headers.get('x-absent'), 'nil,nil,nil,false');
  f.destroy();
});

let side: Upstream | undefined;
let backend: Upstream | undefined;
let weir: Weir | undefined;
after(async () => {
  await weir?.stop();
  await side?.close();
  await backend?.close();
});

test('httpCall() sends x-forwarded-for (the client address) unless the options say send_xff = false (end to end)', async () => {
  const s = (side = await startUpstream());
  const b = (backend = await startUpstream());
  const w = await startWeir(`
listeners:
  - name: edge
    address: 127.0.0.1:0
    filters:
      - name: xff
        type: lua
        source: |
          function envoy_on_request(h)
            local mode = h:headers():get("x-mode")
            local call = { [":method"] = "GET", [":path"] = "/" .. mode, [":authority"] = "side" }
            local headers
            if mode == "on" then headers = h:httpCall("side", call, nil, { timeout_ms = 2000, send_xff = true })
            elseif mode == "off" then headers = h:httpCall("side", call, nil, { timeout_ms = 2000, send_xff = false })
            elseif mode == "default-options" then headers = h:httpCall("side", call, nil, { timeout_ms = 2000 })
            elseif mode == "appended" then
              call["x-forwarded-for"] = "10.0.0.1"
              headers = h:httpCall("side", call, nil, 2000)
            else headers = h:httpCall("side", call, nil, 2000) end
            h:headers():add("x-side-status", headers[":status"])
          end
    routes:
      - match: { prefix: / }
        cluster: backend
clusters:
  - name: backend
    endpoints: [${b.address}]
  - name: side
    endpoints: [${s.address}]
`);
  weir = w;
  for (const mode of ['on', 'off', 'default-options', 'positional', 'appended']) {
    const res: Response = await fetch(`${w.url('edge')}/`, { headers: { 'x-mode': mode } });
    await res.arrayBuffer();
    assert.equal(res.status, 200, mode);
  }
  const seen = Object.fromEntries(s.requests.map((r) => [r.url.slice(1), r.headers['x-forwarded-for']]));
  assert.deepEqual(seen, { on: '127.0.0.1', off: undefined, 'default-options': '127.0.0.1', positional: '127.0.0.1', appended: '10.0.0.1, 127.0.0.1' });
  // A value the script gave is appended to on its one line, as on Envoy.
  const appended = s.requests.find((r) => r.url === '/appended')!.rawHeaders.filter((v, i) => i % 2 === 0 && v.toLowerCase() === 'x-forwarded-for');
  assert.equal(appended.length, 1);
  assert.deepEqual(b.requests.map((r) => r.headers['x-side-status']), ['200', '200', '200', '200', '200']);
});
