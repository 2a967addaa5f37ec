/**
 * A cluster at run time, per worker: its endpoints (static, or resolved from DNS names and refreshed),
 * the load balancer over them, one connection pool per endpoint, the circuit breaker, active health checks
 * and outlier detection. Kept across reloads while its config is unchanged.
 */
import dns from 'node:dns';
import net from 'node:net';
import type { RawCluster } from '../../config/types.ts';
import { parseDuration } from '../../core/units.ts';
import type { Metrics, Value, Distribution } from '../../telemetry/metrics.ts';
import { Endpoint, type AttemptResult } from './endpoint.ts';
import { createLoadBalancer } from './lb/create-load-balancer.ts';
import { loadBalancerMetrics, type LbContext, type LoadBalancer } from './lb/load-balancer.ts';
import { OutlierDetector, outlierMetrics } from './outlier.ts';
import { Pool } from '../http1/pool.ts';
import { compileRetry, type RetrySettings } from '../router.ts';
import { CircuitBreaker, circuitBreakerMetrics } from './circuit-breaker.ts';
import { HealthChecker, healthCheckMetrics } from './health-check.ts';

/** Per-endpoint metric children, created once. */
export interface EndpointMetrics {
  requests: Value;
  errors: Value;
  timeouts: Value;
  retries: Value;
  latency: Distribution;
}

/** A cluster's run-time state. */
export class Cluster {
  readonly name: string;
  readonly configKey: string;
  readonly connectTimeoutMs: number;
  readonly timeoutMs: number;
  readonly idleTimeoutMs: number;
  readonly retry: RetrySettings;
  readonly hashOn: RawCluster['hash_on'];
  readonly breaker: CircuitBreaker;
  readonly overflow: Value;
  endpoints: Endpoint[] = [];
  #lb: LoadBalancer;
  readonly #raw: RawCluster;
  readonly #pools = new Map<Endpoint, Pool>();
  readonly #metrics: Metrics;
  readonly #endpointMetrics = new Map<Endpoint, EndpointMetrics>();
  #outlier: OutlierDetector | null = null;
  #health: HealthChecker | null = null;
  #dnsTimer: NodeJS.Timeout | null = null;
  readonly #resolved = new Map<string, string[]>();
  readonly #dnsFailures: Value;
  readonly #log: ((level: 'warn', message: string) => void) | undefined;
  #closed = false;

  constructor(raw: RawCluster, metrics: Metrics, log?: (level: 'warn', message: string) => void) {
    this.#log = log;
    this.#dnsFailures = metrics.counter('weir_upstream_dns_failures_total', 'Failed DNS lookups of cluster endpoint names', ['cluster']).labels(raw.name);
    this.name = raw.name;
    this.#raw = raw;
    this.configKey = JSON.stringify(raw);
    this.#metrics = metrics;
    this.connectTimeoutMs = parseDuration(raw.connect_timeout);
    this.timeoutMs = parseDuration(raw.timeout);
    this.idleTimeoutMs = parseDuration(raw.idle_timeout);
    this.retry = compileRetry(raw.retry);
    this.hashOn = raw.hash_on;
    this.breaker = new CircuitBreaker(raw.circuit_breakers ?? {}, { metrics: circuitBreakerMetrics(metrics, raw.name) });
    this.overflow = metrics.counter('weir_upstream_overflow_total', 'Requests refused at once by a circuit breaker', ['cluster']).labels(this.name);
    this.#lb = createLoadBalancer(raw.lb, [], {});
  }

  /** Resolves DNS names and starts health checks; resolves when the first endpoint list is known. */
  async start(): Promise<void> {
    await this.#resolve();
    const hasNames = this.#raw.endpoints.some((e) => net.isIP(hostOf(e)) === 0);
    if (hasNames) {
      this.#dnsTimer = setInterval(() => void this.#resolve(), parseDuration(this.#raw.dns_refresh));
      this.#dnsTimer.unref();
    }
  }

  /** Picks an endpoint for one attempt, or null. */
  pick(ctx: LbContext): Endpoint | null {
    return this.#lb.pick(ctx);
  }

  /** The pool of an endpoint (created on first use). */
  pool(ep: Endpoint): Pool {
    let p = this.#pools.get(ep);
    if (p === undefined) {
      const b = this.breaker;
      p = new Pool({
        host: ep.host,
        port: ep.port,
        connectTimeoutMs: this.connectTimeoutMs,
        idleTimeoutMs: this.idleTimeoutMs,
        maxIdle: this.#raw.max_idle_connections,
        maxHeaderSize: 96 * 1024,
        limits: {
          tryAcquireConnection: () => {
            if (!b.tryAcquireConnection()) return false;
            ep.activeConnections++;
            return true;
          },
          releaseConnection: () => {
            ep.activeConnections--;
            b.releaseConnection();
          },
          tryAcquirePending: () => b.tryAcquirePending(),
          releasePending: () => b.releasePending(),
        },
      });
      this.#pools.set(ep, p);
    }
    return p;
  }

  /** Metric children of an endpoint. */
  endpointMetrics(ep: Endpoint): EndpointMetrics {
    let m = this.#endpointMetrics.get(ep);
    if (m === undefined) {
      const labels = [this.name, ep.address];
      const mx = this.#metrics;
      m = {
        requests: mx.counter('weir_upstream_requests_total', 'Upstream request attempts', ['cluster', 'endpoint']).labels(...labels),
        errors: mx.counter('weir_upstream_errors_total', 'Upstream attempts that failed (connect failure, reset, protocol error)', ['cluster', 'endpoint']).labels(...labels),
        timeouts: mx.counter('weir_upstream_timeouts_total', 'Upstream attempts that timed out', ['cluster', 'endpoint']).labels(...labels),
        retries: mx.counter('weir_upstream_retries_total', 'Retried upstream attempts', ['cluster', 'endpoint']).labels(...labels),
        latency: mx.histogram('weir_upstream_request_duration_ms', 'Time from sending the request to the response head, per attempt', ['cluster', 'endpoint']).labels(...labels),
      };
      this.#endpointMetrics.set(ep, m);
    }
    return m;
  }

  /** Reports the outcome of one attempt (outlier detection and endpoint counters). */
  report(ep: Endpoint, result: AttemptResult, status?: number): void {
    ep.record(result);
    this.#outlier?.onResult(ep, result, status);
  }

  /** Closes pools, timers and health checks. */
  close(): void {
    this.#closed = true;
    if (this.#dnsTimer !== null) clearInterval(this.#dnsTimer);
    this.#outlier?.stop();
    this.#health?.stop();
    for (const p of this.#pools.values()) p.close();
  }

  /** The admin view. */
  toJSON(): object {
    return {
      name: this.name,
      lb: this.#raw.lb,
      endpoints: this.endpoints.map((e) => e.toJSON()),
      circuit_breakers: this.breaker.toJSON(),
    };
  }

  async #resolve(): Promise<void> {
    const next: Endpoint[] = [];
    const byAddress = new Map(this.endpoints.map((e) => [e.address, e]));
    for (const entry of this.#raw.endpoints) {
      const address = typeof entry === 'string' ? entry : entry.address;
      const weight = typeof entry === 'string' ? 1 : entry.weight;
      const host = hostOf(entry);
      const port = address.slice(address.lastIndexOf(':') + 1);
      let ips: string[];
      if (net.isIP(host) !== 0) ips = [host];
      else {
        try {
          ips = (await dns.promises.lookup(host, { all: true })).map((a) => a.address);
          this.#resolved.set(host, ips);
        } catch (err) {
          // A resolver hiccup must not empty the cluster: keep what the name resolved to last time.
          this.#dnsFailures.inc();
          ips = this.#resolved.get(host) ?? [];
          this.#log?.('warn', `Cannot resolve "${host}" for cluster "${this.name}": ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}; ${ips.length > 0 ? 'keeping the last known addresses' : 'no endpoints for it'}`);
        }
      }
      for (const ip of ips) {
        const a = net.isIPv6(ip) ? `[${ip}]:${port}` : `${ip}:${port}`;
        next.push(byAddress.get(a) ?? new Endpoint(a, { weight }));
      }
    }
    if (this.#closed) return;
    const same = next.length === this.endpoints.length && next.every((e, i) => e === this.endpoints[i]);
    if (same && this.endpoints.length > 0) return;
    for (const old of this.endpoints) {
      if (!next.includes(old)) {
        this.#pools.get(old)?.close();
        this.#pools.delete(old);
      }
    }
    this.endpoints = next;
    this.#lb = createLoadBalancer(this.#raw.lb, next, { metrics: loadBalancerMetrics(this.#metrics, this.name) });
    this.#outlier?.stop();
    if (this.#raw.outlier_detection !== undefined) {
      const o = this.#raw.outlier_detection;
      this.#outlier = new OutlierDetector(
        next,
        {
          consecutive_5xx: o.consecutive_5xx,
          consecutive_gateway_failure: o.consecutive_gateway_failure,
          base_ejection_time: parseDuration(o.base_ejection_time),
          max_ejection_time: parseDuration(o.max_ejection_time),
          max_ejection_percent: o.max_ejection_percent,
          interval: parseDuration(o.interval),
        },
        { metrics: outlierMetrics(this.#metrics, this.name) },
      );
      this.#outlier.start();
    }
    this.#health?.stop();
    if (this.#raw.health_check !== undefined) {
      const h = this.#raw.health_check;
      this.#health = new HealthChecker(next, {
        path: h.path,
        host: h.host,
        interval: parseDuration(h.interval),
        timeout: parseDuration(h.timeout),
        healthy_threshold: h.healthy_threshold,
        unhealthy_threshold: h.unhealthy_threshold,
        expected_statuses: h.expected_statuses,
      }, {
        metrics: healthCheckMetrics(this.#metrics, this.name),
        // As Envoy does: an endpoint that passes its health check again is no longer ejected.
        onChange: (ep, healthy) => {
          if (healthy) this.#outlier?.uneject(ep);
        },
      });
      this.#health.start();
    }
  }
}

function hostOf(entry: string | { address: string }): string {
  const a = typeof entry === 'string' ? entry : entry.address;
  const m = /^\[([^\]]+)\]:\d+$/.exec(a);
  return m !== null ? m[1] : a.slice(0, a.lastIndexOf(':'));
}
