/**
 * Clusters through the real CLI against two real upstreams: load balancing, weighted clusters, retries,
 * per-try timeouts, circuit breakers, active health checks, outlier ejection and DNS endpoints.
 * Upstream "a" misbehaves on request (reset, 503, 409, 500, hang, failing health check); "b" always answers 200.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import type http from 'node:http';
import { startWeir, type Weir } from '../support/weir.ts';
import { startUpstream, type Upstream } from '../support/upstream.ts';
import { metric } from '../support/metrics.ts';

let a: Upstream;
let b: Upstream;
let weir: Weir;
/** Every request either upstream received, in arrival order (health checks left out). */
const hits: { name: string; url: string; method: string }[] = [];
const held: http.ServerResponse[] = [];
/** What "a" answers on its health check path (503 until a test heals it). */
let aHealthStatus = 503;

function behave(name: 'a' | 'b', req: http.IncomingMessage, res: http.ServerResponse, body: Buffer): void {
  const path = req.url!.split('?')[0];
  const action = path.slice(path.lastIndexOf('/') + 1);
  if (action !== 'health') hits.push({ name, url: req.url!, method: req.method! });
  const reply = (status: number) => {
    res.writeHead(status, { 'content-type': 'text/plain', 'x-upstream': name });
    res.end(name);
  };
  if (action === 'hold') return void held.push(res);
  if (action === 'both503') return reply(503);
  if (action === 'len' || (name === 'b' && action === 'resetlen')) {
    res.writeHead(200, { 'content-type': 'text/plain', 'x-upstream': name });
    return void res.end(`${name} ${body.length} ${body.subarray(0, 8).toString()}`);
  }
  if (name === 'b') return reply(200);
  switch (action) {
    case 'reset':
    case 'resetlen':
      return void req.socket.destroy();
    case 'hang':
      return void held.push(res);
    case '503':
    case '409':
    case '500':
      return reply(Number(action));
    case 'health':
      return reply(aHealthStatus);
    default:
      return reply(200);
  }
}

function releaseHeld(): void {
  for (const res of held.splice(0)) {
    if (!res.destroyed) {
      res.writeHead(200, { 'content-type': 'text/plain' });
      res.end('released');
    }
  }
}

before(async () => {
  a = await startUpstream((req, res, body) => behave('a', req, res, body));
  b = await startUpstream((req, res, body) => behave('b', req, res, body));
  const gone = await startUpstream();
  const refused = gone.address;
  await gone.close();
  const both = `[${a.address}, ${b.address}]`;
  const route = (prefix: string, cluster: string, extra = '') =>
    `      - match: { prefix: /${prefix}/ }\n        cluster: ${cluster}\n${extra}`;
  weir = await startWeir(`
listeners:
  - name: edge
    address: 127.0.0.1:0
    routes:
${route('rr', 'rr')}${route('lr', 'lr')}${route('hash', 'hash')}${route('retry', 'retry')}${route('retry5xx', 'retry5xx')}${route('codes', 'codes')}${route('pertry', 'pertry')}${route('breaker', 'breaker')}${route('hc', 'hc')}${route('outlier', 'outlier')}${route('shortejection', 'shortejection')}${route('share', 'share')}${route('dns', 'dns')}${route('connfail', 'connfail')}${route('gw', 'gw')}${route('random', 'random')}${route('nobudget', 'nobudget')}${route('retrypost', 'retrypost')}${route('deadline', 'deadline', '        timeout: 500ms\n')}${route('cookie', 'cookie')}${route('srcip', 'srcip')}${route('pending', 'pending')}
      - match: { prefix: /split/ }
        weighted_clusters: [{ name: only-a, weight: 3 }, { name: only-b, weight: 1 }]
      - match: { prefix: /never-b/ }
        weighted_clusters: [{ name: only-a, weight: 1 }, { name: only-b, weight: 0 }]
clusters:
  - name: rr
    endpoints: ${both}
  - name: lr
    lb: least_request
    endpoints: ${both}
  - name: hash
    lb: ring_hash
    hash_on: { header: x-user }
    endpoints: ${both}
  - name: only-a
    endpoints: [${a.address}]
  - name: only-b
    endpoints: [${b.address}]
  - name: retry
    endpoints: ${both}
  - name: retry5xx
    endpoints: ${both}
    retry: { retry_on: [5xx] }
  - name: codes
    endpoints: ${both}
    retry: { retry_on: [retriable-status-codes], retriable_status_codes: [409] }
  - name: pertry
    endpoints: ${both}
    retry: { per_try_timeout: 300ms }
  - name: breaker
    endpoints: [${b.address}]
    circuit_breakers: { max_requests: 1 }
  - name: hc
    endpoints: ${both}
    health_check: { path: /hc/health, interval: 100ms, timeout: 1s, unhealthy_threshold: 1, healthy_threshold: 1 }
  - name: outlier
    endpoints: ${both}
    outlier_detection: { consecutive_5xx: 3, max_ejection_percent: 50, base_ejection_time: 60s }
  - name: share
    endpoints: ${both}
    outlier_detection: { consecutive_5xx: 2, max_ejection_percent: 50, base_ejection_time: 60s }
  - name: shortejection
    endpoints: ${both}
    outlier_detection: { consecutive_5xx: 2, max_ejection_percent: 50, base_ejection_time: 300ms, interval: 100ms }
  - name: dns
    endpoints: [localhost:${b.port}]
  - name: retrypost
    endpoints: ${both}
    retry: { retry_on: [reset], retry_non_idempotent: true }
  - name: nobudget
    endpoints: ${both}
    retry: { retry_on: [5xx], budget_percent: 0, min_retry_concurrency: 0 }
  - name: deadline
    endpoints: ${both}
    retry: { per_try_timeout: 300ms }
  - name: random
    lb: random
    endpoints: ${both}
  - name: cookie
    lb: ring_hash
    hash_on: { cookie: session }
    endpoints: ${both}
  - name: srcip
    lb: ring_hash
    hash_on: { source_ip: true }
    endpoints: ${both}
  - name: pending
    endpoints: [${b.address}]
    circuit_breakers: { max_connections: 1, max_pending_requests: 1 }
  - name: connfail
    endpoints: [${refused}, ${b.address}]
  - name: gw
    endpoints: [${refused}, ${b.address}]
    outlier_detection: { consecutive_gateway_failure: 2, consecutive_5xx: 0, max_ejection_percent: 50, base_ejection_time: 60s }
`);
});

after(async () => {
  await weir?.stop();
  releaseHeld();
  await a?.close();
  await b?.close();
});

async function send(path: string, init: RequestInit = {}): Promise<{ status: number; body: string; upstream: string | null }> {
  const res = await fetch(`${weir.url('edge')}${path}`, init);
  return { status: res.status, body: await res.text(), upstream: res.headers.get('x-upstream') };
}

function accessLine(path: string): Promise<Record<string, any>> {
  return weir.waitForLine((l) => l.msg === 'access' && l.path === path);
}

function hitsFor(url: string): string[] {
  return hits.filter((h) => h.url === url).map((h) => h.name);
}

async function waitFor(what: string, cond: () => Promise<boolean> | boolean, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await cond())) {
    if (Date.now() > deadline) throw new Error(`Timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

async function endpointsOf(cluster: string): Promise<Record<string, any>[]> {
  const body = await (await fetch(`${weir.admin}/clusters`)).json();
  return body.workers[0].clusters.find((c: { name: string }) => c.name === cluster).endpoints;
}

test('round robin alternates between two real upstreams', async () => {
  const names: string[] = [];
  for (let i = 0; i < 10; i++) names.push((await send(`/rr/ok?${i}`)).upstream!);
  assert.equal(names.filter((n) => n === 'a').length, 5);
  assert.equal(names.filter((n) => n === 'b').length, 5);
  for (let i = 1; i < names.length; i++) assert.notEqual(names[i], names[i - 1], `request ${i} went to the other upstream`);
});

test('least_request steers away from the endpoint with a request in flight', async () => {
  const pending = send('/lr/hold');
  await waitFor('the held request to arrive', () => hitsFor('/lr/hold').length === 1);
  const busy = hitsFor('/lr/hold')[0];
  const names: string[] = [];
  for (let i = 0; i < 60; i++) names.push((await send(`/lr/ok?${i}`)).upstream!);
  const toBusy = names.filter((n) => n === busy).length;
  // Two random choices with replacement pick the busy endpoint only when both land on it (1 in 4);
  // round robin would send it exactly half.
  assert.ok(toBusy < 30, `${toBusy} of 60 requests went to the busy endpoint`);
  assert.ok(names.length - toBusy > 30);
  releaseHeld();
  assert.equal((await pending).status, 200);
});

test('ring_hash by header sends the same key to the same upstream', async () => {
  const byKey = new Map<string, Set<string>>();
  for (let round = 0; round < 3; round++) {
    for (let k = 0; k < 20; k++) {
      const r = await send('/hash/ok', { headers: { 'x-user': `user-${k}` } });
      assert.equal(r.status, 200);
      const set = byKey.get(`user-${k}`) ?? new Set();
      set.add(r.upstream!);
      byKey.set(`user-${k}`, set);
    }
  }
  for (const [key, set] of byKey) assert.equal(set.size, 1, `${key} always went to one upstream`);
  const used = new Set([...byKey.values()].flatMap((s) => [...s]));
  assert.equal(used.size, 2, 'the keys spread over both upstreams');
});

test('random spreads requests over both upstreams', async () => {
  const counts = { a: 0, b: 0 };
  for (let i = 0; i < 60; i++) counts[(await send(`/random/ok?${i}`)).upstream as 'a' | 'b']++;
  assert.ok(counts.a > 0 && counts.b > 0, `a ${counts.a}, b ${counts.b}`);
});

test('ring_hash by cookie sends the same session to the same upstream', async () => {
  const byKey = new Map<string, Set<string>>();
  for (let round = 0; round < 3; round++) {
    for (let k = 0; k < 20; k++) {
      const r = await send('/cookie/ok', { headers: { cookie: `theme=dark; session=s${k}` } });
      byKey.set(`s${k}`, (byKey.get(`s${k}`) ?? new Set()).add(r.upstream!));
    }
  }
  for (const [key, set] of byKey) assert.equal(set.size, 1, `${key} always went to one upstream`);
  assert.equal(new Set([...byKey.values()].flatMap((x) => [...x])).size, 2);
});

test('ring_hash by source IP sends one client to one upstream', async () => {
  const names = new Set<string>();
  for (let i = 0; i < 20; i++) names.add((await send(`/srcip/ok?${i}`)).upstream!);
  assert.equal(names.size, 1);
});

test('circuit breaker max_connections: 1 queues one request and answers the next 503 (max_pending_requests: 1)', async () => {
  const first = send('/pending/hold');
  await waitFor('the first request to reach the upstream', () => hitsFor('/pending/hold').length === 1);
  const second = send('/pending/ok?queued');
  await waitFor('the second request to wait for a connection', async () => {
    const body = await (await fetch(`${weir.admin}/clusters`)).json();
    return body.workers[0].clusters.find((c: { name: string }) => c.name === 'pending').circuit_breakers.active.pending_requests === 1;
  });
  // The queued request waits for the connection; a third finds the pending queue full.
  const third = await send('/pending/ok?third');
  assert.equal(third.status, 503);
  assert.equal(third.body, 'upstream overflow');
  assert.equal(hitsFor('/pending/ok?queued').length, 0, 'the queued request has not reached the upstream yet');
  releaseHeld();
  assert.equal((await first).status, 200);
  const queued = await second;
  assert.equal(queued.status, 200, 'the queued request went out on the freed connection');
  assert.equal(queued.upstream, 'b');
});

test('weighted_clusters splits traffic by weight, and weight 0 gets none', async () => {
  const counts = { a: 0, b: 0 };
  for (let i = 0; i < 200; i++) counts[(await send(`/split/ok?${i}`)).upstream as 'a' | 'b']++;
  assert.ok(counts.b > 0, 'the lighter cluster gets some');
  assert.ok(counts.a > counts.b * 1.5, `3:1 split, got ${counts.a}:${counts.b}`);
  for (let i = 0; i < 30; i++) assert.equal((await send(`/never-b/ok?${i}`)).upstream, 'a');
});

test('a POST is not retried after a reset', async () => {
  let resets = 0;
  for (let i = 0; i < 4; i++) {
    const url = `/retry/reset?post=${i}`;
    const r = await send(url, { method: 'POST', body: 'payload' });
    const line = await accessLine(url);
    assert.equal(line.retries, 0);
    assert.equal(hitsFor(url).length, 1, 'one attempt only');
    if (hitsFor(url)[0] === 'a') {
      resets++;
      assert.equal(r.status, 502);
      assert.equal(line.flags, 'UR');
    } else assert.equal(r.status, 200);
  }
  assert.ok(resets > 0, 'round robin sent at least one POST to the resetting upstream');
});

test('a GET is retried on the other endpoint after a reset', async () => {
  let retried = 0;
  for (let i = 0; i < 4; i++) {
    const url = `/retry/reset?get=${i}`;
    const r = await send(url);
    assert.equal(r.status, 200);
    assert.equal(r.upstream, 'b');
    const line = await accessLine(url);
    if (hitsFor(url)[0] === 'a') {
      retried++;
      assert.deepEqual(hitsFor(url), ['a', 'b']);
      assert.equal(line.retries, 1);
      assert.equal(line.upstream, b.address);
    } else assert.equal(line.retries, 0);
  }
  assert.ok(retried > 0);
});

test('retry_on: [5xx] retries a 503 onto the healthy endpoint', async () => {
  let retried = 0;
  for (let i = 0; i < 4; i++) {
    const url = `/retry5xx/503?${i}`;
    const r = await send(url);
    assert.equal(r.status, 200, 'the client never sees the 503');
    const line = await accessLine(url);
    if (hitsFor(url)[0] === 'a') {
      retried++;
      assert.equal(line.retries, 1);
    }
  }
  assert.ok(retried > 0);
});

test('when every attempt answers 5xx, the client gets the last upstream answer, as Envoy does', async () => {
  const r = await send('/retry5xx/both503');
  assert.equal(r.status, 503);
  assert.ok(r.body === 'a' || r.body === 'b', `the upstream's own body, got "${r.body}"`);
  assert.equal(hitsFor('/retry5xx/both503').length, 2);
  const line = await accessLine('/retry5xx/both503');
  assert.equal(line.retries, 1);
});

test('retriable-status-codes retries only the listed statuses', async () => {
  let retried = 0;
  let passed = 0;
  for (let i = 0; i < 4; i++) {
    const listed = await send(`/codes/409?${i}`);
    assert.equal(listed.status, 200, '409 is listed: retried');
    if (hitsFor(`/codes/409?${i}`)[0] === 'a') retried++;
  }
  for (let i = 0; i < 4; i++) {
    const other = await send(`/codes/500?${i}`);
    if (hitsFor(`/codes/500?${i}`)[0] === 'a') {
      passed++;
      assert.equal(other.status, 500, '500 is not listed: passed through');
      assert.equal(hitsFor(`/codes/500?${i}`).length, 1);
    }
  }
  assert.ok(retried > 0 && passed > 0);
});

test('a POST is retried with its body on the other endpoint after a connect failure', async () => {
  const body = Buffer.alloc(200 * 1024, 'p');
  body.write('payload!');
  for (let i = 0; i < 4; i++) {
    const url = `/connfail/len?${i}`;
    const r = await send(url, { method: 'POST', body });
    assert.equal(r.status, 200);
    assert.equal(r.body, `b ${body.length} payload!`, 'the whole body reached the other endpoint');
  }
  const lines = await Promise.all([0, 1, 2, 3].map((i) => accessLine(`/connfail/len?${i}`)));
  assert.ok(lines.some((l) => l.retries === 1), 'round robin tried the refusing endpoint at least once');
});

test('outlier detection ejects an endpoint after consecutive connect failures', async () => {
  const refusedAddress = (await endpointsOf('gw')).find((e) => e.address !== b.address)!.address;
  for (let i = 0; i < 6; i++) assert.equal((await send(`/gw/ok?warm=${i}`)).status, 200, 'retried onto the healthy endpoint');
  const eps = await endpointsOf('gw');
  assert.equal(eps.find((e) => e.address === refusedAddress)?.ejected, true);
  for (let i = 0; i < 6; i++) {
    const url = `/gw/ok?after=${i}`;
    assert.equal((await send(url)).status, 200);
    assert.equal((await accessLine(url)).retries, 0, 'the ejected endpoint is no longer tried');
  }
});

test('retry_non_idempotent replays a POST body on the other endpoint, unless it outgrew the buffer limit', async () => {
  const small = Buffer.alloc(300 * 1024, 's');
  small.write('payload!');
  const big = Buffer.alloc(3 * 1024 * 1024, 'B');
  big.write('payload!');
  let replayed = 0;
  let notReplayed = 0;
  for (let i = 0; i < 4; i++) {
    const url = `/retrypost/resetlen?small=${i}`;
    const r = await send(url, { method: 'POST', body: small });
    assert.equal(r.status, 200);
    assert.equal(r.body, `b ${small.length} payload!`);
    if (hitsFor(url)[0] === 'a') replayed++;
  }
  for (let i = 0; i < 4; i++) {
    const url = `/retrypost/resetlen?big=${i}`;
    const r = await send(url, { method: 'POST', body: big });
    if (hitsFor(url)[0] === 'a') {
      notReplayed++;
      assert.equal(r.status, 502, 'more than buffer_limit was sent: nothing left to replay');
      assert.deepEqual(hitsFor(url), ['a']);
    } else assert.equal(r.body, `b ${big.length} payload!`);
  }
  assert.ok(replayed > 0 && notReplayed > 0);
});

test('a retry budget of zero turns retries off', async () => {
  let fromA = 0;
  for (let i = 0; i < 4; i++) {
    const url = `/nobudget/503?${i}`;
    const r = await send(url);
    if (hitsFor(url)[0] === 'a') {
      fromA++;
      assert.equal(r.status, 503, 'not retried: the upstream answer stands');
      assert.deepEqual(hitsFor(url), ['a']);
    } else assert.equal(r.status, 200);
  }
  assert.ok(fromA > 0);
});

test('the route timeout bounds all attempts together: 504 UT after a per-try timeout and a hanging retry', async () => {
  const r = await send('/deadline/hold');
  assert.equal(r.status, 504);
  assert.equal(r.body, 'upstream request timeout');
  assert.deepEqual(hitsFor('/deadline/hold').sort(), ['a', 'b'], 'the retry went to the other endpoint before the deadline');
  const line = await accessLine('/deadline/hold');
  assert.equal(line.flags, 'UT');
  assert.equal(line.retries, 1);
  releaseHeld();
});

test('a per-try timeout moves a hanging attempt to the other endpoint', async () => {
  let retried = 0;
  for (let i = 0; i < 4; i++) {
    const url = `/pertry/hang?${i}`;
    const r = await send(url);
    assert.equal(r.status, 200);
    assert.equal(r.upstream, 'b');
    if (hitsFor(url)[0] === 'a') {
      retried++;
      assert.equal((await accessLine(url)).retries, 1);
    }
  }
  assert.ok(retried > 0);
  releaseHeld();
});

test('circuit breaker max_requests: 1 answers a second concurrent request 503 at once (UO)', async () => {
  const overflowBefore = await metric(weir.admin, 'weir_upstream_overflow_total', { cluster: 'breaker' });
  const first = send('/breaker/hold');
  await waitFor('the first request to reach the upstream', () => hitsFor('/breaker/hold').length === 1);
  const second = await send('/breaker/ok?second');
  assert.equal(second.status, 503);
  assert.equal(second.body, 'upstream overflow');
  assert.equal((await accessLine('/breaker/ok?second')).flags, 'UO');
  assert.equal(hitsFor('/breaker/ok?second').length, 0, 'the upstream never saw it');
  assert.equal(held.length, 1, 'the first request was still in flight');
  assert.equal(await metric(weir.admin, 'weir_upstream_overflow_total', { cluster: 'breaker' }), overflowBefore + 1);
  releaseHeld();
  assert.equal((await first).status, 200);
  assert.equal((await send('/breaker/ok?third')).status, 200, 'the slot is free again');
});

test('an active health check marks the 503-answering endpoint unhealthy and traffic goes to the healthy one', async () => {
  await waitFor('admin /clusters to show a unhealthy', async () => {
    const eps = await endpointsOf('hc');
    return eps.find((e) => e.address === a.address)?.healthy === false;
  });
  const eps = await endpointsOf('hc');
  assert.equal(eps.find((e) => e.address === b.address)?.healthy, true);
  for (let i = 0; i < 10; i++) assert.equal((await send(`/hc/ok?${i}`)).upstream, 'b');
  aHealthStatus = 200;
  await waitFor('admin /clusters to show a healthy again', async () => (await endpointsOf('hc')).find((e) => e.address === a.address)?.healthy === true);
  const names = new Set<string>();
  for (let i = 0; i < 10; i++) names.add((await send(`/hc/ok?healed=${i}`)).upstream!);
  assert.ok(names.has('a'), 'traffic returns to the healed endpoint');
});

test('outlier detection ejects an endpoint after consecutive 5xx', async () => {
  let fromA = 0;
  for (let i = 0; i < 20 && fromA < 3; i++) {
    const r = await send(`/outlier/500?warm=${i}`);
    if (r.upstream === 'a') {
      fromA++;
      assert.equal(r.status, 500);
    }
  }
  assert.equal(fromA, 3);
  const eps = await endpointsOf('outlier');
  assert.equal(eps.find((e) => e.address === a.address)?.ejected, true, 'admin /clusters shows the ejection');
  for (let i = 0; i < 10; i++) {
    const r = await send(`/outlier/500?after=${i}`);
    assert.equal(r.status, 200);
    assert.equal(r.upstream, 'b');
  }
});

test('outlier detection never ejects more than max_ejection_percent of a cluster', async () => {
  for (let i = 0; i < 10; i++) assert.equal((await send(`/share/both503?${i}`)).status, 503);
  const eps = await endpointsOf('share');
  assert.equal(eps.filter((e) => e.ejected).length, 1, 'both fail, but only half the cluster may be ejected');
  assert.ok(hitsFor('/share/both503?9').length === 1, 'requests still go to the endpoint left');
});

test('an ejected endpoint returns to service after its ejection time', async () => {
  let fromA = 0;
  for (let i = 0; i < 20 && fromA < 2; i++) if ((await send(`/shortejection/500?warm=${i}`)).upstream === 'a') fromA++;
  assert.equal(fromA, 2);
  assert.equal((await endpointsOf('shortejection')).find((e) => e.address === a.address)?.ejected, true);
  await waitFor('the ejection to end', async () => (await endpointsOf('shortejection')).find((e) => e.address === a.address)?.ejected === false);
  const names = new Set<string>();
  for (let i = 0; i < 10; i++) names.add((await send(`/shortejection/ok?back=${i}`)).upstream!);
  assert.ok(names.has('a'), 'traffic returns to the endpoint');
});

test('a DNS name endpoint (localhost:PORT) resolves and serves', async () => {
  const r = await send('/dns/ok');
  assert.equal(r.status, 200);
  assert.equal(r.upstream, 'b');
  const eps = await endpointsOf('dns');
  assert.ok(eps.some((e) => e.address === `127.0.0.1:${b.port}`), `resolved endpoints: ${eps.map((e) => e.address).join(', ')}`);
});
