import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Metrics } from '../../telemetry/metrics.ts';
import { backoffDelay, isIdempotent, RETRY_DEFAULTS, RetryPolicy, retryBudgetLimit, retryMetrics, retryOnCovers, type AttemptFailure } from './retry-policy.ts';
import { scriptedRandomForTest } from './testing.ts';

const LOCAL: AttemptFailure[] = ['connect-failure', 'reset', 'timeout'];

test('retryOnCovers() connect-failure covers only connect failures', () => {
  assert.deepEqual([...LOCAL, 503].map((f) => retryOnCovers(['connect-failure'], f)), [true, false, false, false]);
});

test('retryOnCovers() reset covers every local failure and no status', () => {
  assert.deepEqual([...LOCAL, 502].map((f) => retryOnCovers(['reset'], f)), [true, true, true, false]);
});

test('retryOnCovers() 5xx covers any 5xx status and local failures, not 4xx', () => {
  assert.deepEqual([...LOCAL, 500, 503, 599, 404, 429].map((f) => retryOnCovers(['5xx'], f)), [true, true, true, true, true, true, false, false]);
});

test('retryOnCovers() gateway-error covers 502, 503, 504 and local failures, not 500', () => {
  assert.deepEqual([...LOCAL, 502, 503, 504, 500].map((f) => retryOnCovers(['gateway-error'], f)), [true, true, true, true, true, true, false]);
});

test('retryOnCovers() retriable-status-codes covers the listed statuses only', () => {
  assert.equal(retryOnCovers(['retriable-status-codes'], 409, [409, 429]), true);
  assert.equal(retryOnCovers(['retriable-status-codes'], 500, [409, 429]), false);
  assert.equal(retryOnCovers(['retriable-status-codes'], 'reset', [409]), false);
});

test('isIdempotent() follows RFC 9110', () => {
  assert.deepEqual(['GET', 'HEAD', 'OPTIONS', 'TRACE', 'PUT', 'DELETE'].filter(isIdempotent).length, 6);
  assert.deepEqual(['POST', 'PATCH', 'CONNECT'].filter(isIdempotent), []);
});

test('backoffDelay() draws from [0, base × (2^n − 1)) capped at max', () => {
  const almostOne = () => 0.999999;
  assert.deepEqual([1, 2, 3, 4, 5].map((n) => backoffDelay(n, 25, 250, almostOne)), [24, 74, 174, 249, 249]);
  assert.equal(backoffDelay(3, 25, 250, () => 0), 0);
  assert.equal(backoffDelay(2, 100, 1000, () => 0.5), 150);
});

test('retryBudgetLimit() is budget_percent of active and pending requests, never under min_retry_concurrency', () => {
  const budget = { budget_percent: 20, min_retry_concurrency: 3 };
  assert.equal(retryBudgetLimit(budget, 0, 0), 3);
  assert.equal(retryBudgetLimit(budget, 10, 4), 3);
  assert.equal(retryBudgetLimit(budget, 80, 20), 20);
  assert.equal(retryBudgetLimit(budget, 99, 0), 19);
});

test('RetryPolicy fills the keys the config leaves out with the schema defaults', () => {
  const p = new RetryPolicy({ num_retries: 2 });
  assert.deepEqual(p.config, { ...RETRY_DEFAULTS, num_retries: 2 });
  assert.deepEqual(p.budget, { budget_percent: 20, min_retry_concurrency: 3 });
});

test('RetryPolicy retries a covered failure of an idempotent request with a jittered backoff', () => {
  const p = new RetryPolicy({ retry_on: ['5xx'], num_retries: 2, backoff_base: 100, backoff_max: 1000 }, { random: scriptedRandomForTest([0.5]) });
  assert.deepEqual(p.decide({ method: 'GET', retries: 0, failure: 503 }), { retry: true, backoffMs: 50 });
  assert.deepEqual(p.decide({ method: 'GET', retries: 1, failure: 'reset' }), { retry: true, backoffMs: 150 });
});

test('RetryPolicy stops after num_retries', () => {
  const p = new RetryPolicy({ retry_on: ['reset'], num_retries: 2 });
  assert.deepEqual(p.decide({ method: 'GET', retries: 2, failure: 'reset' }), { retry: false, reason: 'limit' });
  assert.deepEqual(new RetryPolicy({ num_retries: 0 }).decide({ method: 'GET', retries: 0, failure: 'reset' }), { retry: false, reason: 'limit' });
});

test('RetryPolicy does not retry a failure retry_on does not name', () => {
  const p = new RetryPolicy({ retry_on: ['connect-failure'] });
  assert.deepEqual(p.decide({ method: 'GET', retries: 0, failure: 503 }), { retry: false, reason: 'not-retriable' });
  assert.deepEqual(p.decide({ method: 'GET', retries: 0, failure: 'timeout' }), { retry: false, reason: 'not-retriable' });
});

test('RetryPolicy does not retry a non-idempotent request unless retry_non_idempotent', () => {
  const strict = new RetryPolicy({ retry_on: ['5xx'] });
  assert.deepEqual(strict.decide({ method: 'POST', retries: 0, failure: 503 }), { retry: false, reason: 'method' });
  assert.deepEqual(strict.decide({ method: 'PATCH', retries: 0, failure: 'reset' }), { retry: false, reason: 'method' });
  const lax = new RetryPolicy({ retry_on: ['5xx'], retry_non_idempotent: true }, { random: () => 0 });
  assert.deepEqual(lax.decide({ method: 'POST', retries: 0, failure: 503 }), { retry: true, backoffMs: 0 });
});

test('RetryPolicy retries a connect failure of any method: nothing reached the upstream', () => {
  const p = new RetryPolicy({ retry_on: ['connect-failure'] }, { random: () => 0 });
  assert.deepEqual(p.decide({ method: 'POST', retries: 0, failure: 'connect-failure' }), { retry: true, backoffMs: 0 });
});

test('retryMetrics() declares the retry limit counter per cluster', () => {
  const m = new Metrics();
  retryMetrics(m, 'api').limitExceeded.inc();
  assert.equal(m.get('weir_upstream_retry_limit_exceeded_total')?.labels('api').value, 1);
});
