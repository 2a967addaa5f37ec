import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Metrics } from '../../telemetry/metrics.ts';
import { CIRCUIT_BREAKER_DEFAULTS, CircuitBreaker, circuitBreakerMetrics } from './circuit-breaker.ts';

test('CircuitBreaker fills the keys the config leaves out with Envoy defaults', () => {
  assert.deepEqual(new CircuitBreaker({ max_retries: 1 }).config, { ...CIRCUIT_BREAKER_DEFAULTS, max_retries: 1 });
});

const RESOURCES = [
  ['connections', 'max_connections', 'tryAcquireConnection', 'releaseConnection', 'connections'],
  ['pending_requests', 'max_pending_requests', 'tryAcquirePending', 'releasePending', 'pendingRequests'],
  ['requests', 'max_requests', 'tryAcquireRequest', 'releaseRequest', 'requests'],
  ['retries', 'max_retries', 'tryAcquireRetry', 'releaseRetry', 'retries'],
] as const;

for (const [resource, key, acquire, release, count] of RESOURCES) {
  test(`CircuitBreaker refuses a ${resource} slot at ${key}, counts the overflow, and frees a slot on release`, () => {
    const metrics = circuitBreakerMetrics(new Metrics(), 'api');
    const cb = new CircuitBreaker({ [key]: 2 }, { metrics });
    assert.equal(cb[acquire](), true);
    assert.equal(cb[acquire](), true);
    assert.equal(cb[count], 2);
    assert.equal(cb[acquire](), false);
    assert.equal(cb[count], 2);
    assert.equal(metrics.overflow[resource].value, 1);
    cb[release]();
    assert.equal(cb[acquire](), true);
    assert.equal(metrics.overflow[resource].value, 1);
  });

  test(`CircuitBreaker never counts ${resource} below zero on an extra release`, () => {
    const cb = new CircuitBreaker({ [key]: 1 });
    cb[release]();
    assert.equal(cb[count], 0);
    assert.equal(cb[acquire](), true);
    assert.equal(cb[acquire](), false);
  });
}

test('CircuitBreaker limits are independent of each other', () => {
  const cb = new CircuitBreaker({ max_requests: 1, max_connections: 1 });
  assert.equal(cb.tryAcquireRequest(), true);
  assert.equal(cb.tryAcquireConnection(), true);
  assert.equal(cb.tryAcquirePending(), true);
  assert.equal(cb.tryAcquireRequest(), false);
});

test('CircuitBreaker with a retry budget allows budget_percent of active and pending requests instead of max_retries', () => {
  const cb = new CircuitBreaker({ max_retries: 1 });
  const budget = { budget_percent: 50, min_retry_concurrency: 2 };
  assert.equal(cb.tryAcquireRetry(budget), true);
  assert.equal(cb.tryAcquireRetry(budget), true, 'min_retry_concurrency 2 replaces max_retries 1');
  assert.equal(cb.tryAcquireRetry(budget), false);
  for (let i = 0; i < 6; i++) cb.tryAcquireRequest();
  assert.equal(cb.tryAcquireRetry(budget), true, '50% of 6 active requests is 3');
  assert.equal(cb.tryAcquireRetry(budget), false);
  for (let i = 0; i < 2; i++) cb.tryAcquirePending();
  assert.equal(cb.tryAcquireRetry(budget), true, 'pending requests count too: 50% of 8 is 4');
  assert.equal(cb.tryAcquireRetry(), false, 'without a budget max_retries applies');
});

test('CircuitBreaker toJSON() shows limits and counts', () => {
  const cb = new CircuitBreaker({ max_connections: 10 });
  cb.tryAcquireConnection();
  cb.tryAcquireRequest();
  assert.deepEqual(cb.toJSON(), {
    limits: { ...CIRCUIT_BREAKER_DEFAULTS, max_connections: 10 },
    active: { connections: 1, pending_requests: 0, requests: 1, retries: 0 },
  });
});
