/**
 * Retries, timeouts and circuit breakers through the real CLI against two real upstreams: what is retried and
 * where, body replay, budgets, per-try and route timeouts, connection, pending and request limits.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { metric } from '../support/metrics.ts';
import { useClustersFixture, a, b, weir, held, releaseHeld, send, accessLine, hitsFor, waitFor } from './clusters-fixture.ts';

useClustersFixture();

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

test('retry_on: [gateway-error] retries a 503 but passes a 500 through', async () => {
  let retried = 0;
  let passed = 0;
  for (let i = 0; i < 4; i++) {
    assert.equal((await send(`/gateway/503?${i}`)).status, 200);
    if (hitsFor(`/gateway/503?${i}`)[0] === 'a') retried++;
  }
  for (let i = 0; i < 4; i++) {
    const r = await send(`/gateway/500?${i}`);
    if (hitsFor(`/gateway/500?${i}`)[0] === 'a') {
      passed++;
      assert.equal(r.status, 500);
      assert.equal(hitsFor(`/gateway/500?${i}`).length, 1);
    }
  }
  assert.ok(retried > 0 && passed > 0);
});
