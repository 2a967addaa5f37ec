/**
 * Filters that change pseudo-headers. A response filter that changes `:status`: a value that is not a status code
 * is the script's error (500, the process unharmed), a 1xx is no final response, a 204 or 304 drops the body that
 * no longer fits, and the reason phrase follows the new status. A request filter that removes `:authority`: the
 * upstream gets an empty Host, as RFC 9112 has a client send for a target without an authority.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startWeir, type Weir } from '../support/weir.ts';
import { startUpstream, type Upstream } from '../support/upstream.ts';
import { RawConnection } from '../support/raw-connection.ts';

let up: Upstream;
let weir: Weir;

before(async () => {
  up = await startUpstream((req, res) => {
    const want = req.headers['x-want'];
    res.writeHead(200, 'OK', {
      'content-type': 'text/plain',
      'content-length': '2',
      'x-host': JSON.stringify(req.headers.host ?? null),
      ...(want === undefined ? {} : { 'x-status': want }),
    });
    res.end('ok');
  });
  weir = await startWeir(`
listeners:
  - name: edge
    address: 127.0.0.1:0
    filters:
      - name: status
        type: lua
        source: |
          function envoy_on_request(handle)
            if handle:headers():get("x-drop-authority") ~= nil then handle:headers():remove(":authority") end
          end
          function envoy_on_response(handle)
            local v = handle:headers():get("x-status")
            if v ~= nil then handle:headers():replace(":status", v) end
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

const get = (path: string, want: string) => `GET ${path} HTTP/1.1\r\nhost: test.local\r\nx-want: ${want}\r\n\r\n`;

for (const bad of ['abc', '99', '1000', '200 OK', '0']) {
  test(`:status set to ${JSON.stringify(bad)} is the script's error: 500, and weir serves on`, async () => {
    const res = await fetch(`${weir.url('edge')}/bad`, { headers: { 'x-want': bad } });
    assert.equal(res.status, 500);
    await res.arrayBuffer();
    const line = await weir.waitForLine((l) => typeof l.msg === 'string' && l.msg.includes(`invalid value for :status: ${JSON.stringify(bad)}`));
    assert.match(line.msg, /Lua script "status" failed \(error\): status:6:/);
    const next = await fetch(`${weir.url('edge')}/next`);
    assert.equal(next.status, 200);
    assert.equal(await next.text(), 'ok');
  });
}

test(':status set to a 1xx on the final response: 500, not an interim response the client would wait behind', async () => {
  const c = await RawConnection.open(weir.url('edge'));
  c.write(get('/interim', '103'));
  const r = await c.readResponse({ interim: true });
  assert.equal(r.status, 500);
  c.destroy();
  const line = await weir.waitForLine((l) => l.msg === 'access' && l.path === '/interim');
  assert.match(line.details, /A filter set :status 103 on the final response/);
});

for (const status of ['204', '304']) {
  test(`:status set to ${status} on a response with a body: no body goes out, and the connection stays in step`, async () => {
    const c = await RawConnection.open(weir.url('edge'));
    c.write(get('/nobody', status));
    const r = await c.readResponse();
    assert.equal(r.status, Number(status));
    assert.equal(r.body.length, 0);
    assert.equal(r.get('content-length'), undefined);
    c.write(get('/after', '200'));
    const after = await c.readResponse();
    assert.equal(after.status, 200);
    assert.equal(after.body.toString(), 'ok', 'the dropped body did not end up in front of the next response');
    c.destroy();
  });
}

test('the reason phrase follows a status the filter changed', async () => {
  const c = await RawConnection.open(weir.url('edge'));
  c.write(get('/reason', '404'));
  const r = await c.readResponse();
  assert.equal(r.status, 404);
  assert.equal(r.reason, 'Not Found');
  c.destroy();
});

test('a request filter that removes :authority: the upstream gets an empty Host', async () => {
  const res = await fetch(`${weir.url('edge')}/no-authority`, { headers: { 'x-drop-authority': '1' } });
  assert.equal(res.status, 200);
  assert.equal(res.headers.get('x-host'), '""');
  assert.equal(await res.text(), 'ok');
});
