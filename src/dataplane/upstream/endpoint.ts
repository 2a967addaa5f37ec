/**
 * The long-lived state of one upstream endpoint: where it is, what the health checker and the outlier
 * detector think of it, and the counters the admin `/clusters` page shows.
 */
import { wallNow } from '../../core/clock.ts';

/** The outcome of one upstream attempt, as the request path reports it to the endpoint and the outlier detector. */
export type AttemptResult = 'success' | '5xx' | 'connect-failure' | 'reset' | 'timeout';

/** A clock returning milliseconds since the epoch; the data plane's `wallNow` unless a test injects its own. */
export type Clock = () => number;

/** Counters of one endpoint since it was created; the admin API shows them, nothing reads them on the hot path. */
export interface EndpointStats {
  /** Attempts reported through `record()`. */
  requests: number;
  successes: number;
  errors5xx: number;
  connectFailures: number;
  resets: number;
  timeouts: number;
  /** Times the outlier detector ejected this endpoint. */
  ejections: number;
  healthCheckSuccesses: number;
  healthCheckFailures: number;
}

/** The JSON form of an endpoint, as the admin `/clusters` page shows it. */
export interface EndpointSnapshot {
  address: string;
  weight: number;
  healthy: boolean;
  ejected: boolean;
  ejectedUntil: number;
  available: boolean;
  activeRequests: number;
  activeConnections: number;
  stats: EndpointStats;
}

const ADDRESS = /^(?:\[([0-9a-fA-F:.]+)\]|([^:\s[\]]+)):(\d{1,5})$/;

/**
 * Splits a configured "host:port" (or "[v6]:port") into host and port.
 * Throws an error naming the address when it is malformed or the port is out of range.
 */
export function parseAddress(address: string): { host: string; port: number } {
  const m = ADDRESS.exec(address);
  const port = m === null ? NaN : Number(m[3]);
  if (m === null || port < 1 || port > 65535) {
    throw new Error(`Invalid endpoint address "${address}": expected "host:port" with a port from 1 to 65535`);
  }
  return { host: m[1] ?? m[2], port };
}

/**
 * One upstream endpoint of a cluster. Created once per configured address and kept across requests;
 * the load balancers read `healthy`, `ejectedUntil`, `activeRequests` and `weight`, the health checker
 * writes `healthy`, the outlier detector writes `ejectedUntil`, and the request path keeps
 * `activeRequests` and `activeConnections` up to date and calls `record()` after each attempt.
 */
export class Endpoint {
  /** The address as configured, e.g. "10.0.0.3:8080"; also the endpoint's identity within its cluster. */
  readonly address: string;
  readonly host: string;
  readonly port: number;
  /** Relative share of traffic for the weighted load balancers; a positive integer, 1 by default. */
  readonly weight: number;
  /** The active health check verdict: true until a health check says otherwise. */
  healthy = true;
  /** Clock time (ms) until which the outlier detector ejected this endpoint; 0 when it is not ejected. */
  ejectedUntil = 0;
  /** Requests in flight to this endpoint; the least-request balancer compares these. */
  activeRequests = 0;
  /** Open upstream connections to this endpoint. */
  activeConnections = 0;
  /** Counters since creation; see `EndpointStats`. */
  readonly stats: EndpointStats = {
    requests: 0,
    successes: 0,
    errors5xx: 0,
    connectFailures: 0,
    resets: 0,
    timeouts: 0,
    ejections: 0,
    healthCheckSuccesses: 0,
    healthCheckFailures: 0,
  };
  readonly #clock: Clock;

  /**
   * Parses `address` ("host:port"); throws on a malformed address or a weight that is not a positive integer.
   * `clock` decides what "now" means for `available` (default `wallNow`: the I/O event's time, see core/clock.ts).
   */
  constructor(address: string, opts: { weight?: number; clock?: Clock } = {}) {
    const { host, port } = parseAddress(address);
    const weight = opts.weight ?? 1;
    if (!Number.isInteger(weight) || weight < 1) {
      throw new Error(`Invalid weight "${weight}" of endpoint "${address}": expected a positive integer`);
    }
    this.address = address;
    this.host = host;
    this.port = port;
    this.weight = weight;
    this.#clock = opts.clock ?? wallNow;
  }

  /** True when the endpoint may take traffic now: healthy and not ejected at the injected clock's now. */
  get available(): boolean {
    return this.healthy && this.ejectedUntil <= this.#clock();
  }

  /** Like `available`, at a time the caller already read (one clock read for a whole pick). */
  availableAt(now: number): boolean {
    return this.healthy && this.ejectedUntil <= now;
  }

  /** Counts one finished upstream attempt in `stats`; call it once per attempt, whatever its outcome. */
  record(result: AttemptResult): void {
    const s = this.stats;
    s.requests++;
    switch (result) {
      case 'success':
        s.successes++;
        break;
      case '5xx':
        s.errors5xx++;
        break;
      case 'connect-failure':
        s.connectFailures++;
        break;
      case 'reset':
        s.resets++;
        break;
      case 'timeout':
        s.timeouts++;
        break;
    }
  }

  /** A plain copy of the endpoint's state for the admin API. */
  toJSON(): EndpointSnapshot {
    const now = this.#clock();
    return {
      address: this.address,
      weight: this.weight,
      healthy: this.healthy,
      ejected: this.ejectedUntil > now,
      ejectedUntil: this.ejectedUntil,
      available: this.availableAt(now),
      activeRequests: this.activeRequests,
      activeConnections: this.activeConnections,
      stats: { ...this.stats },
    };
  }
}
