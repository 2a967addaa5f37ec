/**
 * Errors a user understands: each upstream failure maps to its status, a short body, its flag in the access
 * log and a counter in /metrics; an upstream killed mid-response truncates that response only.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { startWeir, type Weir } from '../support/weir.ts';
import { startUpstream, type Upstream } from '../support/upstream.ts';
import { metric } from '../support/metrics.ts';

let weir: Weir;
let ok: Upstream;
let hang: Upstream;
let reset: Upstream;
let midway: Upstream;
let garbage: net.Server;
let smuggler: net.Server;
/** A raw upstream: /stall sends half a body then goes silent, /badchunk breaks its chunking, /bighead sends a huge head. */
let rogue: net.Server;
let drip: Upstream;
/** Set when the dripping upstream saw its response's connection close. */
let dripClosed = false;
let refusedPort = 0;
/**
 * A listening socket that never accepts (python3: Node's own servers always accept), with its one backlog
 * slot taken, so that connecting to it hangs until weir's connect timeout.
 */
const hasPython = spawnSync('python3', ['-c', 'pass']).status === 0;
let blackhole: ChildProcess | null = null;
let blackholePort = 1;
let backlogFiller: net.Socket | null = null;
const held: http.ServerResponse[] = [];

async function rawServer(onConnection: (socket: net.Socket) => void): Promise<net.Server> {
  const server = net.createServer(onConnection);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return server;
}

before(async () => {
  ok = await startUpstream((req, res) => {
    res.writeHead(200, { 'content-type': 'text/plain' });
    res.end(`ok ${req.url}`);
  });
  hang = await startUpstream((_req, res) => void held.push(res));
  reset = await startUpstream((req) => req.socket.destroy());
  midway = await startUpstream((req, res) => {
    const chunked = req.url!.includes('chunked');
    res.writeHead(200, chunked ? { 'content-type': 'text/plain' } : { 'content-type': 'text/plain', 'content-length': '100000' });
    res.write('x'.repeat(1000));
    setTimeout(() => req.socket.destroy(), 50);
  });
  garbage = await rawServer((socket) => {
    socket.on('error', () => {});
    socket.once('data', () => socket.end('HELLO this is not http\r\n\r\n'));
  });
  smuggler = await rawServer((socket) => {
    socket.on('error', () => {});
    socket.once('data', () =>
      socket.end('HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n'),
    );
  });
  rogue = await rawServer((socket) => {
    socket.on('error', () => {});
    socket.once('data', (d: Buffer) => {
      const path = d.toString('latin1').split(' ')[1];
      if (path === '/rogue/stall' || path === '/rogue/stall-no-idle') socket.write('HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nhalf');
      else if (path === '/rogue/badchunk') socket.write('HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4\r\ngood\r\nzz\r\nbad\r\n');
      else socket.write(`HTTP/1.1 200 OK\r\nX-Big: ${'h'.repeat(200 * 1024)}\r\nContent-Length: 2\r\n\r\nok`);
    });
  });
  drip = await startUpstream((_req, res) => {
    res.writeHead(200, { 'content-type': 'text/plain' });
    const timer = setInterval(() => res.write('drip\n'), 20);
    res.on('close', () => {
      clearInterval(timer);
      dripClosed = true;
    });
  });
  if (hasPython) {
    blackhole = spawn('python3', ['-c', 'import socket,sys\ns=socket.socket()\ns.bind(("127.0.0.1",0))\ns.listen(0)\nprint(s.getsockname()[1],flush=True)\nsys.stdin.read()'], {
      stdio: ['pipe', 'pipe', 'inherit'],
    });
    blackholePort = await new Promise<number>((resolve) => blackhole!.stdout!.once('data', (d: Buffer) => resolve(Number(d.toString().trim()))));
    backlogFiller = net.connect(blackholePort, '127.0.0.1');
    await new Promise((resolve) => backlogFiller!.once('connect', resolve));
  }
  const closed = await rawServer(() => {});
  refusedPort = (closed.address() as AddressInfo).port;
  await new Promise<void>((resolve) => closed.close(() => resolve()));
  weir = await startWeir(`
listeners:
  - name: edge
    address: 127.0.0.1:0
    routes:
      - match: { prefix: /refused }
        cluster: refused
      - match: { prefix: /blackhole }
        cluster: blackhole
      - match: { prefix: /onelane }
        cluster: onelane
      - match: { prefix: /timeout }
        cluster: hang
        timeout: 300ms
      - match: { prefix: /reset }
        cluster: reset
      - match: { prefix: /garbage }
        cluster: garbage
      - match: { prefix: /midway }
        cluster: midway
      - match: { prefix: /smuggler }
        cluster: smuggler
      - match: { prefix: /drip/timed }
        cluster: drip
        timeout: 400ms
      - match: { prefix: /drip }
        cluster: drip
      - match: { prefix: /rogue/stall-no-idle }
        cluster: rogue
        timeout: 300ms
      - match: { prefix: /rogue/stall }
        cluster: rogue
        idle_timeout: 300ms
      - match: { prefix: /rogue }
        cluster: rogue
      - match: { prefix: /ok }
        cluster: ok
clusters:
  - name: refused
    endpoints: [127.0.0.1:${refusedPort}]
  - name: onelane
    endpoints: [127.0.0.1:${refusedPort}]
    circuit_breakers: { max_connections: 1 }
    timeout: 10s
  - name: blackhole
    endpoints: [127.0.0.1:${blackholePort}]
    connect_timeout: 300ms
  - name: hang
    endpoints: [${hang.address}]
  - name: reset
    endpoints: [${reset.address}]
  - name: garbage
    endpoints: [127.0.0.1:${(garbage.address() as AddressInfo).port}]
  - name: midway
    endpoints: [${midway.address}]
  - name: smuggler
    endpoints: [127.0.0.1:${(smuggler.address() as AddressInfo).port}]
  - name: drip
    endpoints: [${drip.address}]
  - name: rogue
    endpoints: [127.0.0.1:${(rogue.address() as AddressInfo).port}]
  - name: ok
    endpoints: [${ok.address}]
`);
});

after(async () => {
  await weir?.stop();
  for (const res of held) res.destroy();
  await Promise.all([ok, hang, reset, midway, drip].map((u) => u?.close()));
  garbage?.close();
  backlogFiller?.destroy();
  blackhole?.kill();
  smuggler?.close();
  rogue?.close();
});

const cases: { name: string; path: string; status: number; body: string; flag: string; code: string; method?: string }[] = [
  { name: 'an upstream that refuses connections', path: '/refused', status: 503, body: 'upstream connect error', flag: 'UF', code: 'UPSTREAM_CONNECT_FAILURE' },
  { name: 'a route timeout', path: '/timeout', status: 504, body: 'upstream request timeout', flag: 'UT', code: 'UPSTREAM_TIMEOUT' },
  { name: 'an upstream reset before the response (GET, retried once)', path: '/reset/get', status: 502, body: 'upstream connection reset', flag: 'UR', code: 'UPSTREAM_RESET' },
  { name: 'an upstream reset before the response (POST)', path: '/reset/post', method: 'POST', status: 502, body: 'upstream connection reset', flag: 'UR', code: 'UPSTREAM_RESET' },
  { name: 'an invalid upstream response', path: '/garbage', status: 502, body: 'invalid upstream response', flag: 'UPE', code: 'UPSTREAM_PROTOCOL_ERROR' },
  { name: 'an upstream response with Content-Length and Transfer-Encoding', path: '/smuggler', status: 502, body: 'invalid upstream response', flag: 'UPE', code: 'UPSTREAM_PROTOCOL_ERROR' },
  { name: 'an upstream response head over the size limit', path: '/rogue/bighead', status: 502, body: 'invalid upstream response', flag: 'UPE', code: 'UPSTREAM_PROTOCOL_ERROR' },
  { name: 'no route', path: '/nowhere', status: 404, body: 'no route matched', flag: 'NR', code: 'NO_ROUTE' },
];

for (const c of cases) {
  test(`answers ${c.name} with ${c.status} "${c.body}", flag ${c.flag} and a counter`, async () => {
    const labels = { listener: 'edge', code: c.code };
    const before = await metric(weir.admin, 'weir_errors_total', labels);
    const res = await fetch(`${weir.url('edge')}${c.path}`, { method: c.method ?? 'GET', body: c.method === 'POST' ? 'data' : undefined });
    assert.equal(res.status, c.status);
    assert.equal(await res.text(), c.body);
    const line = await weir.waitForLine((l) => l.msg === 'access' && l.path === c.path);
    assert.equal(line.status, c.status);
    assert.equal(line.flags, c.flag);
    assert.equal(await metric(weir.admin, 'weir_errors_total', labels), before + 1);
    if (c.path.startsWith('/reset')) {
      assert.equal(reset.requests.filter((r) => r.url === c.path).length, 1, 'one endpoint: no other endpoint to retry on');
      assert.equal(line.retries, 0, 'a retry that found no endpoint is not counted');
    }
  });
}

for (const framing of ['content-length', 'chunked']) {
  test(`an upstream killed mid-response (${framing}) truncates that response only and is flagged`, async () => {
    // A request in flight on another cluster while the upstream dies.
    const other = fetch(`${weir.url('edge')}/ok/during-${framing}`);
    const res = await fetch(`${weir.url('edge')}/midway/${framing}`);
    assert.equal(res.status, 200, 'the head went out before the upstream died');
    await assert.rejects(res.arrayBuffer(), 'the client sees a truncated response, not a complete one');
    const line = await weir.waitForLine((l) => l.msg === 'access' && l.path === `/midway/${framing}`);
    assert.equal(line.flags, 'UR');
    assert.ok(line.bytes_out >= 1000 && line.bytes_out < 100000, `bytes_out ${line.bytes_out} counts what was sent`);
    const otherRes = await other;
    assert.equal(await otherRes.text(), `ok /ok/during-${framing}`);
    const after = await fetch(`${weir.url('edge')}/ok/after-${framing}`);
    assert.equal(await after.text(), `ok /ok/after-${framing}`, 'weir keeps serving');
  });
}

test('a client that goes away mid-response is logged DC and the upstream connection is closed', async () => {
  const { hostname, port } = new URL(weir.url('edge'));
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('no response data')), 5000);
    const req = http.get({ host: hostname, port, path: '/drip' }, (res) => {
      res.once('data', () => {
        clearTimeout(timer);
        req.destroy();
        resolve();
      });
    });
    req.on('error', () => {});
  });
  const line = await weir.waitForLine((l) => l.msg === 'access' && l.path === '/drip');
  assert.equal(line.flags, 'DC');
  const deadline = Date.now() + 5000;
  while (!dripClosed && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
  assert.equal(dripClosed, true, 'weir closed the upstream connection instead of reading the rest');
  const after = await fetch(`${weir.url('edge')}/ok/after-dc`);
  assert.equal(await after.text(), 'ok /ok/after-dc');
});

test('a response that streams past the route timeout is cut off there, though it never idles: logged UT, upstream closed', async () => {
  dripClosed = false;
  const { hostname, port } = new URL(weir.url('edge'));
  const started = Date.now();
  const seen = await new Promise<{ bytes: number; ended: string }>((resolve) => {
    let bytes = 0;
    const req = http.get({ host: hostname, port, path: '/drip/timed' }, (res) => {
      res.on('data', (d: Buffer) => (bytes += d.length));
      res.on('end', () => resolve({ bytes, ended: 'complete' }));
      res.on('error', () => resolve({ bytes, ended: 'reset' }));
      res.on('aborted', () => resolve({ bytes, ended: 'reset' }));
    });
    req.on('error', () => resolve({ bytes, ended: 'reset' }));
    setTimeout(() => {
      resolve({ bytes, ended: 'still streaming after 5 s' });
      req.destroy();
    }, 5000);
  });
  const took = Date.now() - started;
  assert.equal(seen.ended, 'reset');
  assert.ok(seen.bytes >= 'drip\n'.length * 3, `the response streamed before the cut (${seen.bytes} bytes)`);
  assert.ok(took >= 350 && took < 3000, `cut off after ${took} ms, the route timeout being 400 ms`);
  const line = await weir.waitForLine((l) => l.msg === 'access' && l.path === '/drip/timed');
  assert.equal(line.flags, 'UT');
  assert.equal(line.status, 200, 'the status the client was sent');
  const deadline = Date.now() + 5000;
  while (!dripClosed && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
  assert.equal(dripClosed, true, 'weir closed the upstream connection');
});

for (const [path, flag] of [
  ['/rogue/stall', 'UT'],
  ['/rogue/badchunk', 'UPE'],
] as const) {
  test(`an upstream response that ${path.endsWith('stall') ? 'stalls past the route idle_timeout' : 'breaks its chunked framing'} mid-body is cut off and flagged ${flag}`, async () => {
    const outcome = await fetch(`${weir.url('edge')}${path}`)
      .then((res) => res.arrayBuffer())
      .then(
        () => 'complete',
        () => 'failed',
      );
    assert.equal(outcome, 'failed', 'the client never sees a complete response');
    const line = await weir.waitForLine((l) => l.msg === 'access' && l.path === path);
    assert.equal(line.flags, flag);
    assert.equal(line.status, 200, 'the upstream status, as Envoy logs it');
  });
}

test('answers 503 UF when the upstream does not accept within connect_timeout', { skip: hasPython ? false : 'needs python3 for a socket that never accepts' }, async () => {
  const res = await fetch(`${weir.url('edge')}/blackhole`);
  assert.equal(res.status, 503);
  assert.equal(await res.text(), 'upstream connect error');
  const line = await weir.waitForLine((l) => l.msg === 'access' && l.path === '/blackhole');
  assert.equal(line.flags, 'UF');
  assert.match(line.details, /timed out after 300ms/);
});

test('requests waiting for a connection slot fail with 503 UF when the connection attempts fail, not at the route timeout', async () => {
  const results = await Promise.all([0, 1, 2, 3].map((i) => fetch(`${weir.url('edge')}/onelane/${i}`).then(async (r) => [r.status, await r.text()])));
  for (const [status, body] of results) {
    assert.equal(status, 503);
    assert.equal(body, 'upstream connect error');
  }
});

test(
  'an upstream that stalls mid-body is cut off by the route timeout alone, as in Envoy (which times the whole response)',
  async () => {
    const { hostname, port } = new URL(weir.url('edge'));
    let timer: NodeJS.Timeout | undefined;
    const outcome = await new Promise<string>((resolve) => {
      const req = http.get({ host: hostname, port, path: '/rogue/stall-no-idle' }, (res) => {
        res.resume();
        res.on('end', () => resolve('complete'));
        res.on('error', () => resolve('failed'));
        res.on('aborted', () => resolve('failed'));
      });
      req.on('error', () => resolve('failed'));
      timer = setTimeout(() => {
        resolve('still waiting after 3 s');
        req.destroy();
      }, 3000);
    });
    clearTimeout(timer);
    assert.equal(outcome, 'failed');
  },
);

test('a request the codec refuses (bad head, framing, too large, too late) gets an access log line and is counted', async () => {
  const w = await startWeir(`
listeners:
  - name: edge
    address: 127.0.0.1:0
    request_header_timeout: 300ms
    routes:
      - match: { prefix: / }
        direct_response: { status: 200 }
`);
  const { rawExchange } = await import('../support/raw.ts');
  try {
    const cases: [string, string, number, string][] = [
      ['two-hosts', 'GET /two-hosts HTTP/1.1\r\nhost: a\r\nhost: b\r\n\r\n', 400, 'DOWNSTREAM_PROTOCOL_ERROR'],
      ['cl-te', 'POST /cl-te HTTP/1.1\r\nhost: a\r\ncontent-length: 3\r\ntransfer-encoding: chunked\r\n\r\n', 400, 'DOWNSTREAM_PROTOCOL_ERROR'],
      ['long-uri', `GET /long-uri${'x'.repeat(9000)} HTTP/1.1\r\nhost: a\r\n\r\n`, 414, 'URI_TOO_LONG'],
      ['codings', 'POST /codings HTTP/1.1\r\nhost: a\r\ntransfer-encoding: gzip, chunked\r\n\r\n', 501, 'NOT_IMPLEMENTED'],
      ['late', 'GET /late HTTP/1.1\r\nhost: a\r\n', 408, 'REQUEST_TIMEOUT'],
    ];
    for (const [name, bytes, status] of cases) {
      const { text } = await rawExchange(w.url('edge'), bytes, 2000);
      assert.match(text, new RegExp(`^HTTP/1\\.1 ${status} `), name);
    }
    // Refused once its head was read: the line has the request line.
    for (const [name, , status] of [cases[0], cases[2], cases[3]]) {
      const line = await w.waitForLine((l) => l.msg === 'access' && typeof l.path === 'string' && l.path.startsWith(`/${name}`));
      assert.equal(line.status, status, name);
      assert.equal(line.flags, 'DPE', name);
      assert.equal(line.listener, 'edge', name);
      assert.match(String(line.downstream), /^127\.0\.0\.1:\d+$/, name);
    }
    // Refused by the parser inside the head, or a head that never ended: no request line, the status and the reason.
    const smuggle = await w.waitForLine((l) => l.msg === 'access' && /HPE_INVALID_TRANSFER_ENCODING/.test(String(l.details)));
    assert.deepEqual([smuggle.status, smuggle.flags, smuggle.path], [400, 'DPE', null]);
    const late = await w.waitForLine((l) => l.msg === 'access' && l.status === 408);
    assert.deepEqual([late.flags, late.path, late.details], ['DT', null, 'Client sent no complete request head in time']);
    const text = await (await fetch(`${w.admin}/metrics`)).text();
    const { sample } = await import('../support/metrics.ts');
    for (const [name, , , code] of cases) assert.ok(sample(text, 'weir_errors_total', { listener: 'edge', code }) >= 1, name);
    assert.equal(sample(text, 'weir_downstream_requests_total', { listener: 'edge', status_class: '4xx' }), 4);
    assert.equal(sample(text, 'weir_downstream_requests_total', { listener: 'edge', status_class: '5xx' }), 1);
  } finally {
    await w.stop();
  }
});
