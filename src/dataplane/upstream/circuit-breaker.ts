/**
 * Per-cluster concurrency limits (Envoy's circuit breakers): counters that answer at once whether one more
 * connection, pending request, request or retry fits. A refusal becomes an immediate 503 with flag UO.
 */
import type { Metrics, Value } from '../../telemetry/metrics.ts';
import { retryBudgetLimit, type RetryBudget } from './retry-policy.ts';

/** A cluster's `circuit_breakers` settings. */
export interface CircuitBreakerConfig {
  /** Open upstream connections. */
  max_connections: number;
  /** Requests waiting for a connection from the pool. */
  max_pending_requests: number;
  /** Upstream requests in flight (each retry counts as one). */
  max_requests: number;
  /** Retries in flight, when the retry policy gives no budget. */
  max_retries: number;
}

/** Envoy's defaults, used for every key the config leaves out. */
export const CIRCUIT_BREAKER_DEFAULTS: Readonly<CircuitBreakerConfig> = Object.freeze({
  max_connections: 1024,
  max_pending_requests: 1024,
  max_requests: 1024,
  max_retries: 3,
});

/** The resources a circuit breaker limits; the `resource` label of its metrics. */
export type BreakerResource = 'connections' | 'pending_requests' | 'requests' | 'retries';

/** The label children a circuit breaker updates; see `circuitBreakerMetrics()`. */
export interface CircuitBreakerMetrics {
  /** Refusals per resource. */
  overflow: Record<BreakerResource, Value>;
}

/** Declares the circuit breaker metrics in `metrics` and returns the children for `cluster`. */
export function circuitBreakerMetrics(metrics: Metrics, cluster: string): CircuitBreakerMetrics {
  const f = metrics.counter('weir_upstream_circuit_breaker_overflow_total', 'Requests, connections or retries refused by a circuit breaker', ['cluster', 'resource']);
  return {
    overflow: {
      connections: f.labels(cluster, 'connections'),
      pending_requests: f.labels(cluster, 'pending_requests'),
      requests: f.labels(cluster, 'requests'),
      retries: f.labels(cluster, 'retries'),
    },
  };
}

/** The admin view of a circuit breaker: limits and what is in use. */
export interface CircuitBreakerSnapshot {
  limits: CircuitBreakerConfig;
  active: Record<BreakerResource, number>;
}

/**
 * The circuit breakers of one cluster, shared by all its requests in one worker. Every successful
 * `tryAcquire*()` must be followed by exactly one matching `release*()` when the connection closes, the
 * request leaves the queue, the upstream request ends or the retry attempt ends. A release without an
 * acquire is ignored (the count never goes below zero). Limits are per worker thread.
 */
export class CircuitBreaker {
  /** The effective limits (defaults filled in). */
  readonly config: Readonly<CircuitBreakerConfig>;
  #connections = 0;
  #pending = 0;
  #requests = 0;
  #retries = 0;
  readonly #metrics: CircuitBreakerMetrics | undefined;

  constructor(config: Partial<CircuitBreakerConfig> = {}, opts: { metrics?: CircuitBreakerMetrics } = {}) {
    this.config = Object.freeze({ ...CIRCUIT_BREAKER_DEFAULTS, ...config });
    this.#metrics = opts.metrics;
  }

  /** Open connections counted now. */
  get connections(): number {
    return this.#connections;
  }
  /** Pending requests counted now. */
  get pendingRequests(): number {
    return this.#pending;
  }
  /** Upstream requests counted now. */
  get requests(): number {
    return this.#requests;
  }
  /** Retries counted now. */
  get retries(): number {
    return this.#retries;
  }

  /** Counts one more connection and returns true, or returns false (and counts an overflow) at `max_connections`. */
  tryAcquireConnection(): boolean {
    if (this.#connections >= this.config.max_connections) return this.#overflow('connections');
    this.#connections++;
    return true;
  }
  /** Releases a connection counted by `tryAcquireConnection()`. */
  releaseConnection(): void {
    if (this.#connections > 0) this.#connections--;
  }

  /** Counts one more request waiting for a connection, or returns false at `max_pending_requests`. */
  tryAcquirePending(): boolean {
    if (this.#pending >= this.config.max_pending_requests) return this.#overflow('pending_requests');
    this.#pending++;
    return true;
  }
  /** Releases a pending request (it got a connection, failed or was cancelled). */
  releasePending(): void {
    if (this.#pending > 0) this.#pending--;
  }

  /** Counts one more upstream request in flight, or returns false at `max_requests`. */
  tryAcquireRequest(): boolean {
    if (this.#requests >= this.config.max_requests) return this.#overflow('requests');
    this.#requests++;
    return true;
  }
  /** Releases an upstream request counted by `tryAcquireRequest()`. */
  releaseRequest(): void {
    if (this.#requests > 0) this.#requests--;
  }

  /**
   * Counts one more retry in flight, or returns false at the limit: with a `budget` (the retry policy's),
   * `retryBudgetLimit(budget, requests, pendingRequests)` replaces `max_retries`, as in Envoy.
   */
  tryAcquireRetry(budget?: RetryBudget): boolean {
    const limit = budget === undefined ? this.config.max_retries : retryBudgetLimit(budget, this.#requests, this.#pending);
    if (this.#retries >= limit) return this.#overflow('retries');
    this.#retries++;
    return true;
  }
  /** Releases a retry counted by `tryAcquireRetry()` once that retry attempt has ended. */
  releaseRetry(): void {
    if (this.#retries > 0) this.#retries--;
  }

  /** A plain copy of the limits and counts for the admin API. */
  toJSON(): CircuitBreakerSnapshot {
    return {
      limits: { ...this.config },
      active: { connections: this.#connections, pending_requests: this.#pending, requests: this.#requests, retries: this.#retries },
    };
  }

  #overflow(resource: BreakerResource): false {
    this.#metrics?.overflow[resource].inc();
    return false;
  }
}
