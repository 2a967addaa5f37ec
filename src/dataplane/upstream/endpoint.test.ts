import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Endpoint, parseAddress } from './endpoint.ts';
import { manualClockForTest } from './testing.ts';

test('parseAddress() splits host:port, including a bracketed IPv6 host', () => {
  assert.deepEqual(parseAddress('10.0.0.3:8080'), { host: '10.0.0.3', port: 8080 });
  assert.deepEqual(parseAddress('api.internal:443'), { host: 'api.internal', port: 443 });
  assert.deepEqual(parseAddress('[::1]:9000'), { host: '::1', port: 9000 });
});

test('parseAddress() rejects a missing or out-of-range port, naming the address', () => {
  assert.throws(() => parseAddress('10.0.0.3'), /Invalid endpoint address "10.0.0.3"/);
  assert.throws(() => parseAddress('10.0.0.3:0'), /"10.0.0.3:0"/);
  assert.throws(() => parseAddress('10.0.0.3:65536'), /"10.0.0.3:65536"/);
  assert.throws(() => parseAddress('::1:80'), /"::1:80"/);
});

test('Endpoint starts healthy, not ejected, idle, with weight 1', () => {
  const ep = new Endpoint('127.0.0.1:9001');
  assert.equal(ep.address, '127.0.0.1:9001');
  assert.equal(ep.host, '127.0.0.1');
  assert.equal(ep.port, 9001);
  assert.equal(ep.weight, 1);
  assert.equal(ep.healthy, true);
  assert.equal(ep.ejectedUntil, 0);
  assert.equal(ep.activeRequests, 0);
  assert.equal(ep.available, true);
});

test('Endpoint rejects a weight that is not a positive integer', () => {
  assert.throws(() => new Endpoint('127.0.0.1:1', { weight: 0 }), /Invalid weight "0" of endpoint "127.0.0.1:1"/);
  assert.throws(() => new Endpoint('127.0.0.1:1', { weight: 1.5 }), /Invalid weight "1.5"/);
});

test('Endpoint.available is false while unhealthy or ejected at the injected clock, true again when the ejection ends', () => {
  const clock = manualClockForTest(1_000);
  const ep = new Endpoint('127.0.0.1:9001', { clock });
  ep.healthy = false;
  assert.equal(ep.available, false);
  ep.healthy = true;
  ep.ejectedUntil = 1_500;
  assert.equal(ep.available, false);
  assert.equal(ep.availableAt(1_499), false);
  clock.set(1_500);
  assert.equal(ep.available, true);
});

test('Endpoint.record() counts each attempt by outcome and toJSON() shows the state', () => {
  const clock = manualClockForTest(10);
  const ep = new Endpoint('127.0.0.1:9001', { weight: 2, clock });
  for (const r of ['success', 'success', '5xx', 'connect-failure', 'reset', 'timeout'] as const) ep.record(r);
  ep.ejectedUntil = 20;
  ep.activeRequests = 3;
  const json = ep.toJSON();
  assert.deepEqual(
    { ...json.stats },
    { requests: 6, successes: 2, errors5xx: 1, connectFailures: 1, resets: 1, timeouts: 1, ejections: 0, healthCheckSuccesses: 0, healthCheckFailures: 0 },
  );
  assert.equal(json.ejected, true);
  assert.equal(json.available, false);
  assert.equal(json.weight, 2);
  assert.equal(json.activeRequests, 3);
  json.stats.requests = 99;
  assert.equal(ep.stats.requests, 6);
});
