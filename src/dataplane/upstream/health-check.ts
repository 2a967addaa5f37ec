/**
 * Active HTTP health checking: a GET to each endpoint every `interval`, and an endpoint's `healthy` flag
 * flips after enough checks in a row agree.
 */
import http from 'node:http';
import type { Endpoint } from './endpoint.ts';
import type { Metrics, Value } from '../../telemetry/metrics.ts';

/** A cluster's `health_check` settings, durations in milliseconds. */
export interface HealthCheckConfig {
  /** The request path, e.g. "/healthz". */
  path: string;
  /** Time between the end of one check of an endpoint and the start of the next. */
  interval: number;
  /** Time a check may take, from connecting to the response head; longer is a failure. */
  timeout: number;
  /** Successful checks in a row that make an unhealthy endpoint healthy. */
  healthy_threshold: number;
  /** Failed checks in a row that make a healthy endpoint unhealthy. */
  unhealthy_threshold: number;
  /** Statuses that count as success; [200] when absent. */
  expected_statuses?: readonly number[];
  /** The Host header to send; the endpoint's address when absent. */
  host?: string;
}

/** The outcome of one check. `reason` says why it failed: "status 503", "timeout", or the socket error code. */
export interface HealthCheckResult {
  ok: boolean;
  status?: number;
  reason?: string;
}

/** The label children a health checker updates; see `healthCheckMetrics()`. */
export interface HealthCheckMetrics {
  success: Value;
  failure: Value;
  /** Endpoints that turned healthy / unhealthy. */
  becameHealthy: Value;
  becameUnhealthy: Value;
}

/** Declares the health check metrics in `metrics` and returns the children for `cluster`. */
export function healthCheckMetrics(metrics: Metrics, cluster: string): HealthCheckMetrics {
  const checks = metrics.counter('weir_upstream_health_checks_total', 'Active health checks, by result', ['cluster', 'result']);
  const changes = metrics.counter('weir_upstream_health_changes_total', 'Endpoints that active health checks turned healthy or unhealthy', ['cluster', 'to']);
  return {
    success: checks.labels(cluster, 'success'),
    failure: checks.labels(cluster, 'failure'),
    becameHealthy: changes.labels(cluster, 'healthy'),
    becameUnhealthy: changes.labels(cluster, 'unhealthy'),
  };
}

/** Called when a check flips an endpoint's `healthy` flag, with the check that did it. */
export type HealthChangeListener = (endpoint: Endpoint, healthy: boolean, result: HealthCheckResult) => void;

interface Streak {
  successes: number;
  failures: number;
  timer: ReturnType<typeof setTimeout> | undefined;
}

/**
 * Health checker of one cluster's endpoints. Each check is one HTTP/1.1 GET on a fresh connection
 * (`connection: close`) with `user-agent: weir-health-check`; a response head with an expected status is a
 * success; any other status, a connection error or the timeout is a failure. `unhealthy_threshold` failures
 * in a row set `endpoint.healthy = false`, `healthy_threshold` successes in a row set it back to true;
 * endpoints start healthy. `start()` checks every endpoint at once, then each one `interval` after its
 * previous check ended; `checkAll()` runs one round on demand (tests, an admin "check now").
 */
export class HealthChecker {
  /** The effective settings. */
  readonly config: Readonly<HealthCheckConfig>;
  readonly #endpoints: readonly Endpoint[];
  readonly #streaks = new Map<Endpoint, Streak>();
  readonly #expected: ReadonlySet<number>;
  readonly #inflight = new Set<http.ClientRequest>();
  readonly #onChange: HealthChangeListener | undefined;
  readonly #metrics: HealthCheckMetrics | undefined;
  #running = false;
  #generation = 0;

  constructor(endpoints: readonly Endpoint[], config: HealthCheckConfig, opts: { onChange?: HealthChangeListener; metrics?: HealthCheckMetrics } = {}) {
    this.config = Object.freeze({ ...config });
    this.#endpoints = endpoints.slice();
    for (const ep of this.#endpoints) this.#streaks.set(ep, { successes: 0, failures: 0, timer: undefined });
    this.#expected = new Set(config.expected_statuses ?? [200]);
    this.#onChange = opts.onChange;
    this.#metrics = opts.metrics;
  }

  /** Starts checking every endpoint now and then every `interval` (unref'd timers); idempotent. */
  start(): void {
    if (this.#running) return;
    this.#running = true;
    const generation = ++this.#generation;
    for (const ep of this.#endpoints) void this.#loop(ep, generation);
  }

  /** Stops the checks: clears timers and aborts checks in flight, whose results are then ignored. */
  stop(): void {
    this.#running = false;
    this.#generation++;
    for (const st of this.#streaks.values()) clearTimeout(st.timer);
    for (const req of this.#inflight) req.destroy();
    this.#inflight.clear();
  }

  /** Checks every endpoint once, in parallel, and applies the results; resolves when all are applied. */
  async checkAll(): Promise<void> {
    const generation = this.#generation;
    await Promise.all(
      this.#endpoints.map(async (ep) => {
        const result = await this.check(ep);
        if (generation === this.#generation) this.#apply(ep, result);
      }),
    );
  }

  /** Runs one check against `endpoint` without applying it; never rejects. */
  check(endpoint: Endpoint): Promise<HealthCheckResult> {
    const { path, timeout } = this.config;
    return new Promise<HealthCheckResult>((resolve) => {
      let done = false;
      const finish = (result: HealthCheckResult): void => {
        if (done) return;
        done = true;
        clearTimeout(timer);
        this.#inflight.delete(req);
        req.destroy();
        resolve(result);
      };
      const req = http.request({
        host: endpoint.host,
        port: endpoint.port,
        path,
        method: 'GET',
        agent: false,
        headers: { host: this.config.host ?? endpoint.address, 'user-agent': 'weir-health-check', connection: 'close' },
      });
      this.#inflight.add(req);
      const timer = setTimeout(() => finish({ ok: false, reason: 'timeout' }), timeout);
      timer.unref();
      req.on('response', (res) => {
        res.resume();
        const status = res.statusCode ?? 0;
        finish(this.#expected.has(status) ? { ok: true, status } : { ok: false, status, reason: `status ${status}` });
      });
      req.on('error', (err: NodeJS.ErrnoException) => finish({ ok: false, reason: err.code ?? err.message }));
      req.on('close', () => finish({ ok: false, reason: 'closed' }));
      req.end();
    });
  }

  async #loop(ep: Endpoint, generation: number): Promise<void> {
    const result = await this.check(ep);
    if (generation !== this.#generation) return;
    this.#apply(ep, result);
    const st = this.#streaks.get(ep)!;
    st.timer = setTimeout(() => void this.#loop(ep, generation), this.config.interval);
    st.timer.unref();
  }

  #apply(ep: Endpoint, result: HealthCheckResult): void {
    const st = this.#streaks.get(ep)!;
    if (result.ok) {
      ep.stats.healthCheckSuccesses++;
      this.#metrics?.success.inc();
      st.successes++;
      st.failures = 0;
      if (!ep.healthy && st.successes >= this.config.healthy_threshold) {
        ep.healthy = true;
        this.#metrics?.becameHealthy.inc();
        this.#onChange?.(ep, true, result);
      }
    } else {
      ep.stats.healthCheckFailures++;
      this.#metrics?.failure.inc();
      st.failures++;
      st.successes = 0;
      if (ep.healthy && st.failures >= this.config.unhealthy_threshold) {
        ep.healthy = false;
        this.#metrics?.becameUnhealthy.inc();
        this.#onChange?.(ep, false, result);
      }
    }
  }
}
