/**
 * Clusters through the real CLI against two real upstreams: load balancers, weighted clusters, active health
 * checks, outlier ejection and DNS endpoints. Upstream "a" misbehaves on request; "b" always answers 200.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { useClustersFixture, a, b, releaseHeld, send, accessLine, hitsFor, waitFor, endpointsOf, setHealthStatus } from './clusters-fixture.ts';

useClustersFixture();

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

test('weighted_clusters splits traffic by weight, and weight 0 gets none', async () => {
  const counts = { a: 0, b: 0 };
  for (let i = 0; i < 200; i++) counts[(await send(`/split/ok?${i}`)).upstream as 'a' | 'b']++;
  assert.ok(counts.b > 0, 'the lighter cluster gets some');
  assert.ok(counts.a > counts.b * 1.5, `3:1 split, got ${counts.a}:${counts.b}`);
  for (let i = 0; i < 30; i++) assert.equal((await send(`/never-b/ok?${i}`)).upstream, 'a');
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

test('an active health check marks the 503-answering endpoint unhealthy and traffic goes to the healthy one', async () => {
  await waitFor('admin /clusters to show a unhealthy', async () => {
    const eps = await endpointsOf('hc');
    return eps.find((e) => e.address === a.address)?.healthy === false;
  });
  const eps = await endpointsOf('hc');
  assert.equal(eps.find((e) => e.address === b.address)?.healthy, true);
  for (let i = 0; i < 10; i++) assert.equal((await send(`/hc/ok?${i}`)).upstream, 'b');
  setHealthStatus(200);
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
