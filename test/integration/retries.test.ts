import { test } from 'node:test';
import assert from 'node:assert/strict';
import { startWeir } from '../support/weir.ts';
import { startUpstream } from '../support/upstream.ts';

test('when every retry answers 503, the last answer reaches the client flagged URX; one endpoint keeps its own 503', async () => {
  const a = await startUpstream((_q, res) => {
    res.writeHead(503, { 'x-from': 'a' });
    res.end('a is down');
  });
  const b = await startUpstream((_q, res) => {
    res.writeHead(503, { 'x-from': 'b' });
    res.end('b is down');
  });
  const weir = await startWeir(`
listeners:
  - name: edge
    address: 127.0.0.1:0
    routes:
      - match: { prefix: /two }
        cluster: two
      - match: { prefix: /one }
        cluster: one
clusters:
  - name: two
    endpoints: [${a.address}, ${b.address}]
    retry: { retry_on: [5xx], num_retries: 1 }
  - name: one
    endpoints: [${a.address}]
    retry: { retry_on: [5xx], num_retries: 1 }
`);
  try {
    const res = await fetch(`${weir.url('edge')}/two`);
    assert.equal(res.status, 503);
    assert.match(await res.text(), /^[ab] is down$/);
    const line = await weir.waitForLine((l) => l.msg === 'access' && l.path === '/two');
    assert.equal(line.retries, 1);
    assert.equal(line.flags, 'URX');
    const single = await fetch(`${weir.url('edge')}/one`);
    assert.equal(single.status, 503);
    assert.equal(await single.text(), 'a is down', 'no other endpoint: the upstream answer itself, not a local reply');
    const line1 = await weir.waitForLine((l) => l.msg === 'access' && l.path === '/one');
    assert.equal(line1.retries, 0);
    assert.equal(line1.flags, '-');
  } finally {
    await weir.stop();
    await a.close();
    await b.close();
  }
});
