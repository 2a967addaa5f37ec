/**
 * A Content-Length that filters changed without changing the body to match (or set to something that is not a
 * number) must never put a wrong message on a connection: weir frames by what it can stand behind, and fails the
 * exchange when the body and the length it already sent disagree, whichever direction.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import { startWeir, type Weir } from '../support/weir.ts';
import { startUpstream, type Upstream } from '../support/upstream.ts';

let up: Upstream;
let weir: Weir;

before(async () => {
  up = await startUpstream((req, res, body) => {
    const text = JSON.stringify({ url: req.url, body: body.toString(), cl: req.headers['content-length'] ?? null, te: req.headers['transfer-encoding'] ?? null });
    // x-response-length comes back as a response header, for the response filter to act on.
    const ask = req.headers['x-response-length'];
    res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text), ...(ask === undefined ? {} : { 'x-response-length': ask }) });
    res.end(text);
  });
  weir = await startWeir(`
listeners:
  - name: edge
    address: 127.0.0.1:0
    filters:
      - name: lengths
        type: lua
        source: |
          function envoy_on_request(handle)
            local v = handle:headers():get("x-request-length")
            if v ~= nil then handle:headers():replace("content-length", v) end
          end
          function envoy_on_response(handle)
            local v = handle:headers():get("x-response-length")
            if v ~= nil then handle:headers():replace("content-length", v) end
          end
    routes:
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

/** A POST of `body` with extra request headers; resolves with the status and body, or 'reset' when the connection broke. */
function post(path: string, body: string, headers: Record<string, string>): Promise<{ status: number; text: string } | 'reset'> {
  const { hostname, port } = new URL(weir.url('edge'));
  return new Promise((resolve) => {
    const req = http.request({ host: hostname, port, path, method: 'POST', agent: false, headers: { 'content-length': String(body.length), ...headers } }, (res) => {
      let text = '';
      res.setEncoding('latin1');
      res.on('data', (c: string) => (text += c));
      res.on('end', () => resolve({ status: res.statusCode!, text }));
      res.on('error', () => resolve('reset'));
      res.on('aborted', () => resolve('reset'));
    });
    req.on('error', () => resolve('reset'));
    req.end(body);
  });
}

test('a request Content-Length set to something that is not a number: the body goes chunked, whole', async () => {
  const r = await post('/not-a-number', 'hello', { 'x-request-length': 'abc' });
  assert.notEqual(r, 'reset');
  if (r === 'reset') return;
  assert.equal(r.status, 200);
  const seen = JSON.parse(r.text);
  assert.equal(seen.body, 'hello');
  assert.equal(seen.te, 'chunked');
  assert.equal(seen.cl, null);
});

for (const [length, what] of [['2', 'longer'], ['99', 'shorter']] as const) {
  test(`a request body ${what} than the Content-Length a filter set fails with 500, and the upstream never gets a wrong message`, async () => {
    const path = `/mismatch-${length}`;
    const r = await post(path, 'hello', { 'x-request-length': length });
    assert.notEqual(r, 'reset');
    if (r === 'reset') return;
    assert.equal(r.status, 500);
    const line = await weir.waitForLine((l) => l.msg === 'access' && l.path === path);
    assert.match(line.details, new RegExp(`request body is ${what} than the Content-Length sent upstream`));
    // The upstream saw no complete request for that path, and nothing of its body as a request of its own.
    const after = await fetch(`${weir.url('edge')}/after-${length}`, { method: 'POST', body: 'fine' });
    assert.equal(JSON.parse(await after.text()).body, 'fine');
    assert.deepEqual(
      up.requests.filter((q) => q.url.startsWith('/mismatch') || !q.url.startsWith('/')).map((q) => q.url),
      [],
    );
  });
}

test('a response Content-Length set to something that is not a number: the client gets the body chunked, whole', async () => {
  const { hostname, port } = new URL(weir.url('edge'));
  const r = await new Promise<{ te: string | undefined; text: string }>((resolve, reject) => {
    http
      .get({ host: hostname, port, path: '/resp-nan', headers: { 'x-response-length': 'abc' }, agent: false }, (res) => {
        let text = '';
        res.on('data', (c: Buffer) => (text += c.toString()));
        res.on('end', () => resolve({ te: res.headers['transfer-encoding'], text }));
      })
      .on('error', reject);
  });
  assert.equal(r.te, 'chunked');
  assert.equal(JSON.parse(r.text).url, '/resp-nan');
});

test('a response body longer than the Content-Length a filter set resets the client connection', async () => {
  const { hostname, port } = new URL(weir.url('edge'));
  const outcome = await new Promise<string>((resolve) => {
    http
      .get({ host: hostname, port, path: '/resp-short', headers: { 'x-response-length': '3' }, agent: false }, (res) => {
        let text = '';
        res.on('data', (c: Buffer) => (text += c.toString()));
        res.on('end', () => resolve(`complete: ${text}`));
        res.on('aborted', () => resolve('reset'));
        res.on('error', () => resolve('reset'));
      })
      .on('error', () => resolve('reset'));
  });
  assert.equal(outcome, 'reset');
  const line = await weir.waitForLine((l) => l.msg === 'access' && l.path === '/resp-short');
  assert.match(line.details, /response body is longer than the Content-Length sent to the client/);
});
