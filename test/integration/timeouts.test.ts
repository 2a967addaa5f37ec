import { test } from 'node:test';
import assert from 'node:assert/strict';
import { startWeir } from '../support/weir.ts';
import { startUpstream } from '../support/upstream.ts';
import { rawExchange } from '../support/raw.ts';

test('a client that stalls its upload gets 408 after idle_timeout, and the upstream is not blamed (issue 2, point 10)', async () => {
  const up = await startUpstream();
  const weir = await startWeir(`
listeners:
  - name: edge
    address: 127.0.0.1:0
    idle_timeout: 300ms
    routes:
      - match: { prefix: / }
        cluster: up
clusters:
  - name: up
    endpoints: [${up.address}]
    timeout: 200ms
    outlier_detection: { consecutive_5xx: 1, consecutive_gateway_failure: 1 }
`);
  try {
    const started = Date.now();
    const { text, closed } = await rawExchange(weir.url('edge'), 'POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 100\r\n\r\nhello', 3000);
    assert.match(text, /^HTTP\/1\.1 408 Request Timeout\r\n/);
    assert.equal(closed, true);
    assert.ok(Date.now() - started >= 250, 'not before the idle timeout');
    const line = await weir.waitForLine((l) => l.msg === 'access' && l.path === '/x');
    assert.equal(line.flags, 'DT');
    const clusters = await (await fetch(`${weir.admin}/clusters`)).json();
    const ep = clusters.workers[0].clusters[0].endpoints[0];
    assert.equal(ep.ejected, false, 'a slow client does not eject the endpoint');
    assert.equal(ep.stats.timeouts, 0);
    // A request whose body arrives in time is not cut by the 200ms route timeout, which starts at its end.
    const ok = await fetch(`${weir.url('edge')}/y`, { method: 'POST', body: 'fine' });
    assert.equal(ok.status, 200);
  } finally {
    await weir.stop();
    await up.close();
  }
});
