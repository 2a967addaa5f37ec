import { test } from 'node:test';
import assert from 'node:assert/strict';
import { startWeir } from '../support/weir.ts';
import { startUpstream } from '../support/upstream.ts';

test('setUpstreamOverrideHost picks that endpoint; strict answers 503 when it is not in the cluster', async () => {
  const a = await startUpstream((_q, res) => res.end('a'));
  const b = await startUpstream((_q, res) => res.end('b'));
  const weir = await startWeir(`
listeners:
  - name: edge
    address: 127.0.0.1:0
    filters:
      - name: pin
        type: lua
        source: |
          function envoy_on_request(handle)
            local h = handle:headers()
            local target = h:get("x-target")
            if target ~= nil then handle:setUpstreamOverrideHost(target, h:get("x-strict") == "1") end
          end
    routes:
      - match: { prefix: / }
        cluster: both
clusters:
  - name: both
    endpoints: [${a.address}, ${b.address}]
`);
  try {
    for (let i = 0; i < 4; i++) {
      assert.equal(await (await fetch(weir.url('edge'), { headers: { 'x-target': b.address } })).text(), 'b');
      assert.equal(await (await fetch(weir.url('edge'), { headers: { 'x-target': a.address, 'x-strict': '1' } })).text(), 'a');
    }
    const loose = await fetch(weir.url('edge'), { headers: { 'x-target': '10.9.9.9' } });
    assert.equal(loose.status, 200, 'not strict: an unknown host falls back to the load balancer');
    const strict = await fetch(weir.url('edge'), { headers: { 'x-target': '10.9.9.9', 'x-strict': '1' } });
    assert.equal(strict.status, 503);
    const line = await weir.waitForLine((l) => l.msg === 'access' && l.status === 503);
    assert.equal(line.flags, 'UH');
  } finally {
    await weir.stop();
    await a.close();
    await b.close();
  }
});
