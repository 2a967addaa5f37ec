// Regression: a Lua table nested deeply, or containing itself, crossing into JS (dynamic metadata; respond headers)
// overflowed the Lua stack inside the VM and could wedge the worker (audit of issue 3).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { startWeir } from '../support/weir.ts';

const script = `
function envoy_on_request(handle)
  local path = handle:headers():get(":path")
  if path == "/deep" then
    local t = { leaf = "v" }
    for i = 1, 40 do t = { child = t } end
    handle:streamInfo():dynamicMetadata():set("ns", "k", t)
  elseif path == "/cycle" then
    local t = {}
    t.a = t
    handle:streamInfo():dynamicMetadata():set("ns", "k", t)
  elseif path == "/nested-header" then
    local t = {}
    t.a = t
    handle:respond({ [":status"] = "200", x = t }, "x")
  elseif path == "/ok" then
    local t = { a = { b = { c = "d" } } }
    handle:streamInfo():dynamicMetadata():set("ns", "k", t)
    handle:respond({ [":status"] = "200" }, handle:streamInfo():dynamicMetadata():get("ns")["k"]["a"]["b"]["c"])
  end
end
`;

test('regression: deep and self-referring Lua tables fail only their request, with a clear error', async () => {
  const weir = await startWeir(`
listeners:
  - name: edge
    address: 127.0.0.1:0
    filters:
      - name: tables
        type: lua
        source: |
${script.split('\n').map((l) => '          ' + l).join('\n')}
    routes:
      - match: { prefix: / }
        direct_response: { status: 204 }
`);
  try {
    for (let i = 0; i < 3; i++) {
      const deep = await fetch(`${weir.url('edge')}/deep`, { signal: AbortSignal.timeout(5000) });
      assert.equal(deep.status, 500);
      const cycle = await fetch(`${weir.url('edge')}/cycle`, { signal: AbortSignal.timeout(5000) });
      assert.equal(cycle.status, 500);
      const nested = await fetch(`${weir.url('edge')}/nested-header`, { signal: AbortSignal.timeout(5000) });
      assert.equal(nested.status, 500);
      const ok = await fetch(`${weir.url('edge')}/ok`, { signal: AbortSignal.timeout(5000) });
      assert.equal(ok.status, 200);
      assert.equal(await ok.text(), 'd');
    }
    const deepLine = await weir.waitForLine((l) => l.filter === 'tables' && /nests deeper/.test(l.msg));
    assert.match(deepLine.msg, /table nests deeper than 16 levels/);
    await weir.waitForLine((l) => l.filter === 'tables' && /contains itself/.test(l.msg));
    // As Envoy's luaL_checkstring: a respond() header value that is a table holds strings; nothing is walked deeper.
    await weir.waitForLine((l) => l.filter === 'tables' && /respond\(\) header "x" must hold strings, got table/.test(l.msg));
    const metrics = await fetch(`${weir.admin}/metrics`, { signal: AbortSignal.timeout(5000) });
    assert.equal(metrics.status, 200, 'the worker still answers');
  } finally {
    await weir.stop();
  }
});
