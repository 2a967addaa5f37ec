/**
 * The load balancer contract and the rules every policy shares: which endpoints may be picked
 * (available, not tried yet, or any untried one in panic mode) and the override host.
 */
import type { Clock, Endpoint } from '../endpoint.ts';
import type { Metrics, Value } from '../../../telemetry/metrics.ts';
import { wallNow } from '../../../core/clock.ts';

/** What one pick knows about the request. */
export interface LbContext {
  /** The ring hash key (from a header, a cookie or the source IP per `hash_on`); ignored by the other policies. */
  hashKey: string | undefined;
  /** Endpoints this request already tried, in order; none of them is picked again. `null` when none. */
  tried: readonly Endpoint[] | null;
  /** An endpoint ("host:port", or "host" for any of its ports) to use if it is in the cluster and may be picked. */
  overrideHost?: string;
}

/**
 * A load balancing policy over a fixed list of endpoints. `pick()` returns an endpoint that is not in
 * `ctx.tried`: an available one, or, when fewer than the panic threshold (50%) of the cluster's endpoints
 * are available, any one (Envoy's panic mode). It returns null when no endpoint qualifies, so calling it
 * again with the previous picks in `tried` yields the endpoints in fallback order, then null.
 * Availability is read at each pick; a change of membership needs a new load balancer.
 */
export interface LoadBalancer {
  pick(ctx: LbContext): Endpoint | null;
}

/** The load balancing policies a cluster can name in its `lb` key. */
export type LbPolicy = 'round_robin' | 'least_request' | 'random' | 'ring_hash';

/** The label children a load balancer updates; see `loadBalancerMetrics()`. */
export interface LoadBalancerMetrics {
  /** Picks made in panic mode (fewer available endpoints than the panic threshold). */
  panic: Value;
}

/** Options shared by every policy; all optional. */
export interface LbOptions {
  /** Returns a number in [0, 1); `Math.random` by default. Tests inject a seeded one. */
  random?: () => number;
  /** The time availability is judged at (ms since the epoch); `wallNow` by default. */
  clock?: Clock;
  /** Percentage of available endpoints under which the cluster is in panic mode; 50 by default, 0 disables it. */
  panicThreshold?: number;
  /**
   * Ring hash only: points on the ring per unit of endpoint weight; 256 by default. Fixed, not derived from the
   * cluster's size, so that a change of membership moves only the keys of the endpoints that came or went.
   */
  ringPointsPerWeight?: number;
  /** Counters to update; none by default. */
  metrics?: LoadBalancerMetrics;
}

/** Declares the load balancer metrics in `metrics` and returns the children for `cluster`. */
export function loadBalancerMetrics(metrics: Metrics, cluster: string): LoadBalancerMetrics {
  return {
    panic: metrics
      .counter('weir_upstream_lb_panic_total', 'Endpoint picks made in panic mode because too few endpoints were available', ['cluster'])
      .labels(cluster),
  };
}

/** True when `ep` may be picked: available (or the cluster is in panic) and not tried by this request yet. */
export function isCandidate(ep: Endpoint, now: number, panic: boolean, tried: readonly Endpoint[] | null): boolean {
  return (panic || ep.availableAt(now)) && (tried === null || !tried.includes(ep));
}

/**
 * The shared part of every policy: reads the clock once, decides panic mode, honours the override host,
 * then lets the policy choose among the candidates (`isCandidate`).
 */
export abstract class BaseLoadBalancer implements LoadBalancer {
  /** The cluster's endpoints, in configured order. */
  readonly endpoints: readonly Endpoint[];
  /** The injected randomness, for the policies that need it. */
  protected readonly random: () => number;
  readonly #clock: Clock;
  readonly #panicThreshold: number;
  readonly #metrics: LoadBalancerMetrics | undefined;

  constructor(endpoints: readonly Endpoint[], opts: LbOptions = {}) {
    this.endpoints = endpoints.slice();
    this.random = opts.random ?? Math.random;
    this.#clock = opts.clock ?? wallNow;
    this.#panicThreshold = opts.panicThreshold ?? 50;
    this.#metrics = opts.metrics;
  }

  /** See `LoadBalancer.pick`. */
  pick(ctx: LbContext): Endpoint | null {
    const eps = this.endpoints;
    const n = eps.length;
    if (n === 0) return null;
    const now = this.#clock();
    let available = 0;
    for (let i = 0; i < n; i++) if (eps[i].availableAt(now)) available++;
    const panic = available * 100 < this.#panicThreshold * n;
    if (!panic && available === 0) return null;
    if (panic) this.#metrics?.panic.inc();
    const tried = ctx.tried !== null && ctx.tried.length > 0 ? ctx.tried : null;
    if (ctx.overrideHost !== undefined) {
      for (let i = 0; i < n; i++) {
        const ep = eps[i];
        if ((ep.address === ctx.overrideHost || ep.host === ctx.overrideHost) && isCandidate(ep, now, panic, tried)) return ep;
      }
    }
    return this.choose(now, panic, tried, ctx.hashKey);
  }

  /** Picks one endpoint for which `isCandidate(ep, now, panic, tried)` holds, or null when there is none. */
  protected abstract choose(now: number, panic: boolean, tried: readonly Endpoint[] | null, hashKey: string | undefined): Endpoint | null;
}

/**
 * Draws one candidate with a probability proportional to its weight, or null when there is none.
 * Shared by the random and least-request policies.
 */
export function weightedDraw(
  eps: readonly Endpoint[],
  random: () => number,
  now: number,
  panic: boolean,
  tried: readonly Endpoint[] | null,
): Endpoint | null {
  let total = 0;
  let last: Endpoint | null = null;
  for (let i = 0; i < eps.length; i++) {
    if (isCandidate(eps[i], now, panic, tried)) {
      total += eps[i].weight;
      last = eps[i];
    }
  }
  if (last === null) return null;
  let r = random() * total;
  for (let i = 0; i < eps.length; i++) {
    const ep = eps[i];
    if (!isCandidate(ep, now, panic, tried)) continue;
    r -= ep.weight;
    if (r < 0) return ep;
  }
  return last;
}
