import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startWeir, type Weir } from '../support/weir.ts';
import { startUpstream, type Upstream } from '../support/upstream.ts';

// A route's override of local_rate_limit or cors changes only the keys it names; the listener's other keys
// (status, headers, interval, methods, credentials) stay, rather than falling back to the defaults.
let weir: Weir;
let up: Upstream;

before(async () => {
  up = await startUpstream();
  weir = await startWeir(`
listeners:
  - name: edge
    address: 127.0.0.1:0
    filters:
      - name: limit
        type: local_rate_limit
        max_tokens: 1
        tokens_per_fill: 1
        fill_interval: 1h
        status: 503
        headers: false
      - name: cors
        type: cors
        allow_origins: [https://a.example]
        allow_methods: [GET]
        allow_credentials: true
    routes:
      - match: { prefix: /wider }
        cluster: up
        filter_overrides:
          limit: { max_tokens: 2 }
      - match: { prefix: /cors }
        cluster: up
        filter_overrides:
          limit: { disabled: true }
          cors: { allow_origins: [https://b.example] }
      - match: { prefix: / }
        cluster: up
clusters:
  - name: up
    endpoints: [${up.address}]
`);
});

after(async () => {
  await weir?.stop();
  await up?.close();
});

test('a local_rate_limit override keeps the listener\'s status, headers and interval', async () => {
  const statuses: number[] = [];
  let last: Response | undefined;
  for (let i = 0; i < 3; i++) {
    last = await fetch(`${weir.url('edge')}/wider`);
    await last.arrayBuffer();
    statuses.push(last.status);
  }
  assert.deepEqual(statuses, [200, 200, 503]);
  assert.equal(last!.headers.get('x-ratelimit-limit'), null);
  // fill_interval stays 1h: after a second the route is still limited (the default 1s would have refilled it).
  await new Promise((r) => setTimeout(r, 1100));
  const again = await fetch(`${weir.url('edge')}/wider`);
  await again.arrayBuffer();
  assert.equal(again.status, 503);
});

test('a cors override keeps the listener\'s methods and credentials', async () => {
  const pre = await fetch(`${weir.url('edge')}/cors`, {
    method: 'OPTIONS',
    headers: { origin: 'https://b.example', 'access-control-request-method': 'GET' },
  });
  await pre.arrayBuffer();
  assert.equal(pre.status, 204);
  assert.equal(pre.headers.get('access-control-allow-origin'), 'https://b.example');
  assert.equal(pre.headers.get('access-control-allow-methods'), 'GET');
  assert.equal(pre.headers.get('access-control-allow-credentials'), 'true');
});
