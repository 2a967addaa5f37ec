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

test('a filter that holds a request and never resumes: 408 after stream_idle_timeout, others flow (Envoy stream_idle_timeout)', async () => {
  const up = await startUpstream();
  const hold = `
export default (callbacks) => ({
  onRequestHeaders(h) {
    const path = h.get(':path');
    if (path === '/hold') return 'stop';
    if (path === '/late') {
      // Resumes in two steps, each shorter than the timeout: a stream that moves is not idle.
      setTimeout(() => callbacks.resume(), 200);
      return 'stop';
    }
  },
  onResponseHeaders(h) {
    if (callbacks.info.originalPath === '/hold-response') return 'stop';
  },
});
`;
  const weir = await startWeir(
    `
listeners:
  - name: edge
    address: 127.0.0.1:0
    stream_idle_timeout: 300ms
    filters:
      - { name: hold, type: module, file: hold.mjs }
      - { name: late, type: module, file: late.mjs }
    routes:
      - match: { prefix: / }
        cluster: up
clusters:
  - name: up
    endpoints: [${up.address}]
`,
    {
      files: {
        'hold.mjs': hold,
        'late.mjs': `export default (callbacks) => ({ onRequestHeaders(h) { if (h.get(':path') === '/late') { setTimeout(() => callbacks.resume(), 200); return 'stop'; } } });`,
      },
    },
  );
  try {
    const started = Date.now();
    const held = fetch(`${weir.url('edge')}/hold`);
    const meanwhile = await fetch(`${weir.url('edge')}/other`);
    assert.equal(meanwhile.status, 200, 'other requests flow while one is held');
    await meanwhile.arrayBuffer();
    const res = await held;
    assert.equal(res.status, 408);
    assert.equal(await res.text(), 'stream timeout');
    assert.ok(Date.now() - started >= 250, 'not before the timeout');
    const line = await weir.waitForLine((l) => l.msg === 'access' && l.path === '/hold');
    assert.equal(line.flags, 'SI');
    assert.match(line.details, /filter "hold" held it/);
    assert.equal(up.requests.filter((r) => r.url === '/hold').length, 0, 'the held request never reached the upstream');

    const late = await fetch(`${weir.url('edge')}/late`);
    assert.equal(late.status, 200, 'two filters that each resume within the timeout: 400 ms in all, not a timeout');
    await late.arrayBuffer();

    const heldResponse = await fetch(`${weir.url('edge')}/hold-response`);
    assert.equal(heldResponse.status, 408, 'a response head a filter holds times out too');
    const resLine = await weir.waitForLine((l) => l.msg === 'access' && l.path === '/hold-response');
    assert.equal(resLine.flags, 'SI');
  } finally {
    await weir.stop();
    await up.close();
  }
});
