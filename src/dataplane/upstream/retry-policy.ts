/**
 * Whether a failed upstream attempt may be retried, after how long, and how many retries a cluster may
 * have in flight (the retry budget). Pure: no I/O, no timers; randomness is injected.
 */
import type { Metrics, Value } from '../../telemetry/metrics.ts';

/** The conditions a `retry_on` list can name. */
export type RetryOn = 'connect-failure' | 'reset' | '5xx' | 'gateway-error' | 'retriable-status-codes';

/** A route's or cluster's `retry` settings, durations in milliseconds. */
export interface RetryConfig {
  retry_on: readonly RetryOn[];
  /** Retries after the first attempt; 0 disables retries. */
  num_retries: number;
  /** The statuses `retriable-status-codes` retries. */
  retriable_status_codes: readonly number[];
  /** Retry POST, PATCH and other non-idempotent methods too (a connect failure is retried for any method). */
  retry_non_idempotent: boolean;
  /** Upper bound of the first retry's backoff; see `backoffDelay()`. */
  backoff_base: number;
  /** Cap on any backoff. */
  backoff_max: number;
  /** Retries in flight may reach this percentage of the cluster's active and pending requests... */
  budget_percent: number;
  /** ...or this many, whichever is larger. */
  min_retry_concurrency: number;
}

/** The defaults for every key the config leaves out (the same as the config schema's). */
export const RETRY_DEFAULTS: Readonly<RetryConfig> = Object.freeze({
  retry_on: Object.freeze(['connect-failure', 'reset'] as RetryOn[]),
  num_retries: 1,
  retriable_status_codes: Object.freeze([] as number[]),
  retry_non_idempotent: false,
  backoff_base: 25,
  backoff_max: 250,
  budget_percent: 20,
  min_retry_concurrency: 3,
});

/** How an attempt failed: a local failure (no complete response) or the status the upstream answered. */
export type AttemptFailure = 'connect-failure' | 'reset' | 'timeout' | number;

/** What `RetryPolicy.decide()` answers: retry after `backoffMs`, or why not. */
export type RetryDecision =
  | { retry: true; backoffMs: number }
  | { retry: false; reason: 'not-retriable' | 'method' | 'limit' };

/** The retry budget of a cluster, as `CircuitBreaker.tryAcquireRetry()` takes it. */
export interface RetryBudget {
  budget_percent: number;
  min_retry_concurrency: number;
}

/**
 * The label children for retry decisions; the request path increments them (a policy may serve several
 * clusters). Retries made are counted per endpoint by the request path (`weir_upstream_retries_total`).
 */
export interface RetryMetrics {
  /** Failures that were retriable but had used up `num_retries` (Envoy's retry limit exceeded, flag URX). */
  limitExceeded: Value;
}

/** Declares the retry metrics in `metrics` and returns the children for `cluster`. */
export function retryMetrics(metrics: Metrics, cluster: string): RetryMetrics {
  return {
    limitExceeded: metrics
      .counter('weir_upstream_retry_limit_exceeded_total', 'Retriable upstream failures not retried because num_retries was used up', ['cluster'])
      .labels(cluster),
  };
}

const IDEMPOTENT = new Set(['GET', 'HEAD', 'OPTIONS', 'TRACE', 'PUT', 'DELETE']);

/** True for the methods RFC 9110 calls idempotent (GET, HEAD, OPTIONS, TRACE, PUT, DELETE); `method` is upper case. */
export function isIdempotent(method: string): boolean {
  return IDEMPOTENT.has(method);
}

/**
 * True when a `retry_on` list covers `failure`:
 * `connect-failure`: a connection could not be made; `reset`: any local failure (connect failure, reset,
 * per-try timeout); `5xx`: a 5xx status or any local failure; `gateway-error`: 502, 503, 504 or any local
 * failure; `retriable-status-codes`: a status in `statuses`.
 */
export function retryOnCovers(retryOn: readonly RetryOn[], failure: AttemptFailure, statuses: readonly number[] = []): boolean {
  const local = typeof failure !== 'number';
  for (const on of retryOn) {
    switch (on) {
      case 'connect-failure':
        if (failure === 'connect-failure') return true;
        break;
      case 'reset':
        if (local) return true;
        break;
      case '5xx':
        if (local || (failure >= 500 && failure <= 599)) return true;
        break;
      case 'gateway-error':
        if (local || failure === 502 || failure === 503 || failure === 504) return true;
        break;
      case 'retriable-status-codes':
        if (!local && statuses.includes(failure)) return true;
        break;
    }
  }
  return false;
}

/**
 * The backoff before retry number `retry` (1 for the first retry): fully jittered exponential, a random
 * time in [0, min(base × (2^retry − 1), max)) as Envoy does, so the first retry waits under `base`,
 * the second under 3 × base, and so on. `random` returns a number in [0, 1).
 */
export function backoffDelay(retry: number, base: number, max: number, random: () => number): number {
  const ceiling = Math.min(base * (2 ** Math.max(1, retry) - 1), max);
  return Math.floor(random() * ceiling);
}

/**
 * How many retries a cluster may have in flight under a retry budget: `budget_percent` of its active plus
 * pending requests, rounded down, but never fewer than `min_retry_concurrency` (Envoy's retry budget).
 */
export function retryBudgetLimit(budget: RetryBudget, activeRequests: number, pendingRequests: number): number {
  return Math.max(Math.floor((budget.budget_percent / 100) * (activeRequests + pendingRequests)), budget.min_retry_concurrency);
}

/**
 * One retry policy (a route's or a cluster's `retry`). After each failed attempt the request path calls
 * `decide()`; on `{ retry: true }` it asks the cluster's circuit breaker for a retry slot
 * (`tryAcquireRetry(policy.budget)`), waits `backoffMs` and tries the next endpoint the load balancer yields.
 * The overall request timeout is never retried: the request path stops at it, whatever this answers.
 */
export class RetryPolicy {
  /** The effective settings (defaults filled in). */
  readonly config: Readonly<RetryConfig>;
  /** The budget to pass to `CircuitBreaker.tryAcquireRetry()`. */
  readonly budget: RetryBudget;
  readonly #random: () => number;

  constructor(config: Partial<RetryConfig> = {}, opts: { random?: () => number } = {}) {
    this.config = Object.freeze({ ...RETRY_DEFAULTS, ...config });
    this.budget = Object.freeze({ budget_percent: this.config.budget_percent, min_retry_concurrency: this.config.min_retry_concurrency });
    this.#random = opts.random ?? Math.random;
  }

  /**
   * Decides on a failed attempt of a request with `method` (upper case) after `retries` retries already made.
   * Not retried: a failure `retry_on` does not cover ('not-retriable'); a non-idempotent method unless
   * `retry_non_idempotent` or the failure is a connect failure, where nothing reached the upstream ('method');
   * `num_retries` used up ('limit').
   */
  decide(attempt: { method: string; retries: number; failure: AttemptFailure }): RetryDecision {
    const c = this.config;
    if (!retryOnCovers(c.retry_on, attempt.failure, c.retriable_status_codes)) return { retry: false, reason: 'not-retriable' };
    if (!c.retry_non_idempotent && attempt.failure !== 'connect-failure' && !isIdempotent(attempt.method)) {
      return { retry: false, reason: 'method' };
    }
    if (attempt.retries >= c.num_retries) return { retry: false, reason: 'limit' };
    return { retry: true, backoffMs: backoffDelay(attempt.retries + 1, c.backoff_base, c.backoff_max, this.#random) };
  }
}
