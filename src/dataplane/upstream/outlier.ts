/**
 * Passive outlier detection: the request path reports each upstream attempt, and an endpoint that fails
 * too many times in a row is ejected (taken out of load balancing) for a time that grows with each ejection.
 */
import type { AttemptResult, Clock, Endpoint } from './endpoint.ts';
import type { Metrics, Value } from '../../telemetry/metrics.ts';
import { wallNow } from '../../core/clock.ts';

/** A cluster's `outlier_detection` settings, durations in milliseconds. */
export interface OutlierConfig {
  /** Consecutive 5xx responses or local failures (connect failure, reset, timeout) that eject; 0 disables. */
  consecutive_5xx: number;
  /** Consecutive gateway failures (502, 503, 504, connect failure, reset, timeout) that eject; 0 disables. */
  consecutive_gateway_failure: number;
  /** Ejection time of a first ejection; the n-th ejection in a row lasts n times this. */
  base_ejection_time: number;
  /** Cap on the ejection time (the larger of this and `base_ejection_time` applies). */
  max_ejection_time: number;
  /** Most of the cluster (in percent) that may be ejected at once; see `OutlierDetector` for the exact rule. */
  max_ejection_percent: number;
  /** How often `start()` sweeps: un-ejects expired endpoints; a multiplier decays by one per interval un-ejected. */
  interval: number;
}

/** Envoy's defaults, used for every key the config leaves out. */
export const OUTLIER_DEFAULTS: Readonly<OutlierConfig> = Object.freeze({
  consecutive_5xx: 5,
  consecutive_gateway_failure: 5,
  base_ejection_time: 30_000,
  max_ejection_time: 300_000,
  max_ejection_percent: 10,
  interval: 10_000,
});

/** Why an endpoint was ejected. */
export type EjectionReason = 'consecutive_5xx' | 'consecutive_gateway_failure';

/** What `onChange` receives when an endpoint is ejected or returns to service. */
export type OutlierEvent =
  | { type: 'eject'; endpoint: Endpoint; reason: EjectionReason; until: number; ejections: number }
  | { type: 'uneject'; endpoint: Endpoint };

/** The label children an outlier detector updates; see `outlierMetrics()`. */
export interface OutlierMetrics {
  ejectedConsecutive5xx: Value;
  ejectedConsecutiveGatewayFailure: Value;
  /** Ejections that were due but refused because too much of the cluster was ejected already. */
  overflow: Value;
  /** Endpoints ejected now (a gauge). */
  active: Value;
}

/** Declares the outlier detection metrics in `metrics` and returns the children for `cluster`. */
export function outlierMetrics(metrics: Metrics, cluster: string): OutlierMetrics {
  const ejections = metrics.counter('weir_upstream_outlier_ejections_total', 'Endpoints ejected by outlier detection, by reason', ['cluster', 'reason']);
  return {
    ejectedConsecutive5xx: ejections.labels(cluster, 'consecutive_5xx'),
    ejectedConsecutiveGatewayFailure: ejections.labels(cluster, 'consecutive_gateway_failure'),
    overflow: metrics
      .counter('weir_upstream_outlier_ejections_overflow_total', 'Outlier ejections refused because max_ejection_percent of the cluster was ejected', ['cluster'])
      .labels(cluster),
    active: metrics.gauge('weir_upstream_outlier_ejections_active', 'Endpoints currently ejected by outlier detection', ['cluster']).labels(cluster),
  };
}

interface State {
  consecutive5xx: number;
  consecutiveGateway: number;
  /** Ejections in a row: the ejection time multiplier. */
  multiplier: number;
  ejected: boolean;
  /** When the multiplier last decayed (or the endpoint was un-ejected); NaN when it has nothing to decay. */
  decayFrom: number;
}

/**
 * Outlier detector of one cluster. It writes `endpoint.ejectedUntil` (the load balancers skip an endpoint
 * until then) and `endpoint.stats.ejections`.
 *
 * - A 5xx response, connect failure, reset or timeout adds to the consecutive 5xx count; a gateway failure
 *   (502/503/504 when the status is given, connect failure, reset, timeout) to the consecutive gateway
 *   failure count; a success resets both, and a non-gateway 5xx resets the gateway count.
 * - Reaching a threshold ejects the endpoint for `base_ejection_time × n` (n = ejections in a row,
 *   capped at `max_ejection_time`) and resets its counts. Each full `interval` an endpoint spends un-ejected
 *   lowers n by one. Results reported while an endpoint is ejected are ignored.
 * - The ejected share: an ejection is allowed when the cluster would then have at most
 *   `max_ejection_percent` of its endpoints ejected, or when none is ejected (so one endpoint may always be
 *   ejected, as Envoy documents), unless `max_ejection_percent` is 0. Envoy's code checks the share before the
 *   ejection and so may go one endpoint past the maximum; weir never does, except for that first one.
 * - Un-ejection happens when the clock passes `ejectedUntil` (the load balancers see it at once); `sweep()`,
 *   run every `interval` by `start()` and on each result, resets `ejectedUntil` to 0 and reports it.
 */
export class OutlierDetector {
  /** The effective settings (defaults filled in). */
  readonly config: Readonly<OutlierConfig>;
  readonly #states = new Map<Endpoint, State>();
  readonly #clock: Clock;
  readonly #metrics: OutlierMetrics | undefined;
  readonly #onChange: ((event: OutlierEvent) => void) | undefined;
  #timer: ReturnType<typeof setInterval> | undefined;

  constructor(
    endpoints: readonly Endpoint[],
    config: Partial<OutlierConfig> = {},
    opts: { clock?: Clock; metrics?: OutlierMetrics; onChange?: (event: OutlierEvent) => void } = {},
  ) {
    this.config = Object.freeze({ ...OUTLIER_DEFAULTS, ...config });
    for (const ep of endpoints) this.#states.set(ep, { consecutive5xx: 0, consecutiveGateway: 0, multiplier: 0, ejected: false, decayFrom: NaN });
    this.#clock = opts.clock ?? wallNow;
    this.#metrics = opts.metrics;
    this.#onChange = opts.onChange;
  }

  /**
   * Reports the outcome of one upstream attempt to `endpoint`; may eject it. `status` (the response status of a
   * '5xx' result) tells a gateway failure (502, 503, 504) from other 5xx. Endpoints of other clusters are ignored.
   */
  onResult(endpoint: Endpoint, result: AttemptResult, status?: number): void {
    const st = this.#states.get(endpoint);
    if (st === undefined) return;
    const now = this.#clock();
    this.#refresh(endpoint, st, now);
    if (st.ejected) return;
    if (result === 'success') {
      st.consecutive5xx = 0;
      st.consecutiveGateway = 0;
      return;
    }
    st.consecutive5xx++;
    if (result !== '5xx' || status === 502 || status === 503 || status === 504) st.consecutiveGateway++;
    else st.consecutiveGateway = 0;
    const c = this.config;
    if (c.consecutive_5xx > 0 && st.consecutive5xx >= c.consecutive_5xx) this.#eject(endpoint, st, now, 'consecutive_5xx');
    else if (c.consecutive_gateway_failure > 0 && st.consecutiveGateway >= c.consecutive_gateway_failure) {
      this.#eject(endpoint, st, now, 'consecutive_gateway_failure');
    }
  }

  /** Returns `endpoint` to service now (e.g. after a successful active health check) and clears its counts. */
  uneject(endpoint: Endpoint): void {
    const st = this.#states.get(endpoint);
    if (st === undefined || !st.ejected) return;
    endpoint.ejectedUntil = this.#clock();
    this.#refresh(endpoint, st, endpoint.ejectedUntil);
  }

  /** Un-ejects every endpoint whose ejection time has passed and decays multipliers; `start()` calls it every `interval`. */
  sweep(): void {
    const now = this.#clock();
    for (const [ep, st] of this.#states) this.#refresh(ep, st, now);
  }

  /** The number of endpoints ejected now. */
  get ejectedCount(): number {
    this.sweep();
    let n = 0;
    for (const st of this.#states.values()) if (st.ejected) n++;
    return n;
  }

  /** The ejection multiplier of `endpoint` (ejections in a row, decayed); 0 for an unknown endpoint. */
  multiplierOf(endpoint: Endpoint): number {
    const st = this.#states.get(endpoint);
    if (st === undefined) return 0;
    this.#refresh(endpoint, st, this.#clock());
    return st.multiplier;
  }

  /** Starts sweeping every `interval` ms (an unref'd timer, so it never keeps the process alive); idempotent. */
  start(): void {
    if (this.#timer !== undefined) return;
    this.#timer = setInterval(() => this.sweep(), this.config.interval);
    this.#timer.unref();
  }

  /** Stops the sweeps; endpoints keep their state. */
  stop(): void {
    clearInterval(this.#timer);
    this.#timer = undefined;
  }

  #eject(ep: Endpoint, st: State, now: number, reason: EjectionReason): void {
    const c = this.config;
    st.consecutive5xx = 0;
    st.consecutiveGateway = 0;
    let ejected = 0;
    for (const [other, s] of this.#states) {
      this.#refresh(other, s, now);
      if (s.ejected) ejected++;
    }
    const allowed = c.max_ejection_percent > 0 && (ejected === 0 || (ejected + 1) * 100 <= c.max_ejection_percent * this.#states.size);
    if (!allowed) {
      this.#metrics?.overflow.inc();
      return;
    }
    st.multiplier++;
    st.ejected = true;
    st.decayFrom = NaN;
    const until = now + Math.min(c.base_ejection_time * st.multiplier, Math.max(c.base_ejection_time, c.max_ejection_time));
    ep.ejectedUntil = until;
    ep.stats.ejections++;
    if (this.#metrics !== undefined) {
      (reason === 'consecutive_5xx' ? this.#metrics.ejectedConsecutive5xx : this.#metrics.ejectedConsecutiveGatewayFailure).inc();
      this.#metrics.active.inc();
    }
    this.#onChange?.({ type: 'eject', endpoint: ep, reason, until, ejections: st.multiplier });
  }

  #refresh(ep: Endpoint, st: State, now: number): void {
    if (st.ejected) {
      if (ep.ejectedUntil > now) return;
      st.ejected = false;
      st.decayFrom = ep.ejectedUntil;
      ep.ejectedUntil = 0;
      this.#metrics?.active.dec();
      this.#onChange?.({ type: 'uneject', endpoint: ep });
    }
    if (st.multiplier > 0 && !Number.isNaN(st.decayFrom)) {
      const steps = Math.floor((now - st.decayFrom) / this.config.interval);
      if (steps > 0) {
        st.multiplier = Math.max(0, st.multiplier - steps);
        st.decayFrom += steps * this.config.interval;
      }
    }
  }
}
