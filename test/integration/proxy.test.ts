import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startWeir, type Weir } from '../support/weir.ts';
import { startUpstream, type Upstream } from '../support/upstream.ts';

let api: Upstream;
let web: Upstream;
let weir: Weir;

before(async () => {
  api = await startUpstream();
  web = await startUpstream((req, res, body) => {
    res.writeHead(200, { 'content-type': 'text/plain', 'x-upstream': 'web' });
    res.end(`web ${req.method} ${req.url} ${body.length}`);
  });
  weir = await startWeir(`
listeners:
  - name: edge
    address: 127.0.0.1:0
    filters:
      - name: tag
        type: headers
        request_add: { x-edge: "1" }
        response_add: { x-served-by: weir }
    routes:
      - match: { prefix: /api/ }
        cluster: api
      - match: { path: /teapot }
        direct_response: { status: 418, body: "short and stout" }
      - match: { prefix: /old/ }
        redirect: { prefix_rewrite: /new/, status: 308 }
      - match: { prefix: /down }
        cluster: dead
      - match: { prefix: /web }
        cluster: web
clusters:
  - name: api
    endpoints: [${api.address}]
  - name: web
    endpoints: [${web.address}]
  - name: dead
    endpoints: [127.0.0.1:1]
`);
});

after(async () => {
  await weir?.stop();
  await api?.close();
  await web?.close();
});

test('proxies a GET to the matching cluster with the headers filter applied both ways', async () => {
  const res = await fetch(`${weir.url('edge')}/api/items?x=1`);
  assert.equal(res.status, 200);
  assert.equal(res.headers.get('x-served-by'), 'weir');
  const echo = await res.json();
  assert.equal(echo.url, '/api/items?x=1');
  assert.equal(echo.headers['x-edge'], '1');
  assert.equal(echo.headers['x-forwarded-for'], '127.0.0.1');
  assert.equal(echo.headers['x-forwarded-proto'], 'http');
  assert.match(echo.headers['x-request-id'], /^[0-9a-f-]{36}$/);
  assert.equal(echo.headers.host, new URL(weir.url('edge')).host, 'Host is preserved by default');
});

test('keeps a request id the client sent and appends to x-forwarded-for', async () => {
  const res = await fetch(`${weir.url('edge')}/api/id`, { headers: { 'x-request-id': 'abc-123', 'x-forwarded-for': '10.1.2.3' } });
  const echo = await res.json();
  assert.equal(echo.headers['x-request-id'], 'abc-123');
  assert.equal(echo.headers['x-forwarded-for'], '10.1.2.3, 127.0.0.1');
});

test('streams a POST body to the upstream', async () => {
  const body = 'x'.repeat(100_000);
  const res = await fetch(`${weir.url('edge')}/web/upload`, { method: 'POST', body });
  assert.equal(await res.text(), 'web POST /web/upload 100000');
});

test('answers 404 when no route matches', async () => {
  const res = await fetch(`${weir.url('edge')}/nothing`);
  assert.equal(res.status, 404);
  assert.equal(await res.text(), 'no route matched');
  assert.equal(res.headers.get('x-served-by'), 'weir', 'local replies pass through response filters');
});

test('serves a direct response and a redirect from config', async () => {
  const tea = await fetch(`${weir.url('edge')}/teapot`);
  assert.equal(tea.status, 418);
  assert.equal(await tea.text(), 'short and stout');
  const red = await fetch(`${weir.url('edge')}/old/page?q=1`, { redirect: 'manual' });
  assert.equal(red.status, 308);
  assert.equal(red.headers.get('location'), `${weir.url('edge')}/new/page?q=1`);
});

test('answers 503 with flag UF when the upstream refuses connections', async () => {
  const res = await fetch(`${weir.url('edge')}/down`);
  assert.equal(res.status, 503);
  assert.equal(await res.text(), 'upstream connect error');
  const line = await weir.waitForLine((l) => l.msg === 'access' && l.path === '/down');
  assert.equal(line.flags, 'UF');
  assert.equal(line.status, 503);
});

test('writes one access log line per request with the fields the docs list', async () => {
  await fetch(`${weir.url('edge')}/api/logged`, { headers: { 'user-agent': 'test-agent' } });
  const line = await weir.waitForLine((l) => l.msg === 'access' && l.path === '/api/logged');
  for (const key of ['request_id', 'method', 'status', 'bytes_in', 'bytes_out', 'duration_ms', 'upstream_ms', 'filter_ms', 'upstream', 'retries', 'flags']) {
    assert.ok(key in line, `access log has ${key}`);
  }
  assert.equal(line.upstream, api.address);
  assert.equal(line.user_agent, 'test-agent');
});
