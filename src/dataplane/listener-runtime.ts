/**
 * A listener as one snapshot compiled it: its router, its default filter chain, its settings and the
 * metric children its streams update. Streams hold the ListenerRuntime they started with.
 */
import type { Router } from './router.ts';
import type { ChainEntry, Snapshot } from './snapshot.ts';
import type { Metrics, Value, Distribution, Family } from '../telemetry/metrics.ts';
import type { Logger } from '../telemetry/log.ts';
import type { ErrorKind, ProxyError } from '../core/errors.ts';
import { publishStreamComplete, RejectedRequest } from '../telemetry/channels.ts';
import type { LogLevel } from '../filters/contract.ts';
import type { Stream } from './stream.ts';
import { formatAddress } from '../core/units.ts';
import { monoNow } from '../core/clock.ts';

/** Per-listener settings, durations and sizes in ms and bytes. */
export interface ListenerSettings {
  bufferLimit: number;
  maxHeaderSize: number;
  maxUriSize: number;
  headerTimeoutMs: number;
  idleTimeoutMs: number;
  /** How long a filter may hold a stream with nothing happening (Envoy's stream_idle_timeout); 0: no limit. */
  streamIdleTimeoutMs: number;
  generateRequestId: boolean;
  preserveHost: boolean;
  normalizePath: boolean;
  mergeSlashes: boolean;
  xffTrustedHops: number;
}

interface RouteStats {
  byClass: Value[];
  duration: Distribution;
}

/** The compiled listener. */
export class ListenerRuntime {
  readonly name: string;
  readonly host: string;
  readonly port: number;
  readonly settings: ListenerSettings;
  readonly router: Router;
  readonly defaultChain: readonly ChainEntry[];
  readonly snapshot: Snapshot;
  readonly #log: Logger;
  readonly #requests: Family<Value>;
  readonly #durations: Family<Distribution>;
  readonly #errors: Family<Value>;
  readonly #filterErrors: Family<Value>;
  readonly #routeStats = new Map<string, RouteStats>();
  readonly #filterDurations: Family<Distribution>;
  readonly #filterTimes = new Map<string, Distribution>();

  constructor(o: {
    name: string;
    host: string;
    port: number;
    settings: ListenerSettings;
    router: Router;
    defaultChain: readonly ChainEntry[];
    snapshot: Snapshot;
    metrics: Metrics;
    log: Logger;
  }) {
    this.name = o.name;
    this.host = o.host;
    this.port = o.port;
    this.settings = o.settings;
    this.router = o.router;
    this.defaultChain = o.defaultChain;
    this.snapshot = o.snapshot;
    this.#log = o.log;
    this.#requests = o.metrics.counter('weir_downstream_requests_total', 'Downstream requests completed, by listener, route and status class', ['listener', 'route', 'status_class']);
    this.#durations = o.metrics.histogram('weir_downstream_request_duration_ms', 'Time from the request head to the end of the response', ['listener', 'route']);
    this.#errors = o.metrics.counter('weir_errors_total', 'Local replies for errors, by listener and error code', ['listener', 'code']);
    this.#filterDurations = o.metrics.histogram('weir_filter_duration_ms', 'Time spent in one filter\'s hooks per request', ['listener', 'filter', 'type'], [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 50]);
    this.#filterErrors = o.metrics.counter('weir_filter_errors_total', 'Filter failures (exceptions, traps, budgets), by filter', ['listener', 'filter']);
  }

  /** Where the listener binds. */
  get address(): string {
    return formatAddress(this.host, this.port);
  }

  /** Counts a completed stream. */
  streamDone(s: Stream): void {
    const route = s.route?.name ?? '';
    let st = this.#routeStats.get(route);
    if (st === undefined) {
      st = {
        byClass: ['0xx', '1xx', '2xx', '3xx', '4xx', '5xx'].map((c) => this.#requests.labels(this.name, route, c)),
        duration: this.#durations.labels(this.name, route),
      };
      this.#routeStats.set(route, st);
    }
    const cls = Math.min(5, Math.floor(s.responseCode / 100));
    st.byClass[cls].inc();
    st.duration.observe(monoNow() - s.startMono);
    const ms = s.filterMs;
    if (ms !== null) {
      for (let i = 0; i < ms.length; i++) {
        const name = s.entries[i].name;
        let h = this.#filterTimes.get(name);
        if (h === undefined) {
          h = this.#filterDurations.labels(this.name, name, s.entries[i].type);
          this.#filterTimes.set(name, h);
        }
        h.observe(ms[i]);
      }
    }
  }

  /** A request the codec refused before it became a stream: counted as a request and an error, and published. */
  rejected(err: ProxyError, status: number, downstream: string, head: { method: string; path: string } | null): void {
    this.countError(err.kind);
    this.#requests.labels(this.name, '', `${Math.min(5, Math.floor(status / 100))}xx`).inc();
    publishStreamComplete(new RejectedRequest(this.name, status, err.kind.flag, err.message, downstream, head?.method ?? null, head?.path ?? null));
  }

  /** Counts an error local reply. */
  countError(kind: ErrorKind): void {
    this.#errors.labels(this.name, kind.code).inc();
  }

  /** Logs and counts a filter failure. */
  filterError(filter: string, message: string, s: Stream): void {
    this.#filterErrors.labels(this.name, filter).inc();
    this.#log.filter('error', filter, message, s.requestId);
  }

  /** A log line from a filter. */
  filterLog(level: LogLevel, filter: string, message: string, s: Stream): void {
    this.#log.filter(level, filter, message, s.requestId);
  }

  /** A log line about a stream. */
  log(level: 'info' | 'warn' | 'error', message: string, s: Stream): void {
    this.#log.pino[level]({ listener: this.name, request_id: s.requestId }, message);
  }
}
