/**
 * The one filter contract. Built-in, TypeScript, Lua and Proxy-Wasm filters all implement `Filter`;
 * docs/lifecycle.md shows where each hook runs on the request path.
 */
import type { HeaderMap } from '../core/headers.ts';
import type { ErrorCode } from '../core/errors.ts';

/**
 * What a hook tells the chain runner:
 * - `continue`: pass the headers, data or trailers on to the next filter.
 * - `stop`: hold them here until `callbacks.resume()`; this filter still receives the body of a stopped
 *   header phase (Envoy's StopIteration), and returning `continue` from a body hook then continues the headers
 *   too. A stopped body chunk, and what arrives after it, is held (with back-pressure) until resume; on resume
 *   the stopped chunk goes on and later chunks pass through this filter's body hook again.
 * - `stop-all`: like `stop` on headers, but this filter receives no body or trailers until it resumes
 *   (Envoy's StopAllIterationAndWatermark, what a paused Proxy-Wasm header callback means).
 * - `stop-and-buffer`: on a body hook only: keep buffering; the hook is called again with the whole
 *   body buffered so far, up to the buffer limit (over it: 413 on requests, 500 on responses).
 */
export type FilterStatus = 'continue' | 'stop' | 'stop-all' | 'stop-and-buffer';

/**
 * A hook may return a status, nothing (continue), or a promise of either: the stream waits for it. While a header
 * hook's promise is pending, the filter receives no body (as with `stop-all`); a resolved `continue` resumes.
 */
export type HookResult = FilterStatus | void | Promise<FilterStatus | void>;

/** A body chunk handed to a body hook; assign `data` to replace what is passed on. */
export interface BodyChunk {
  data: Buffer;
}

/**
 * A per-request filter. Every hook is optional; a missing hook means `continue`.
 * Hooks run in config order on the request and in reverse order on the response.
 */
export interface Filter {
  onRequestHeaders?(headers: HeaderMap, endOfStream: boolean): HookResult;
  onRequestBody?(chunk: BodyChunk, endOfStream: boolean): HookResult;
  onRequestTrailers?(trailers: HeaderMap): HookResult;
  onResponseHeaders?(headers: HeaderMap, endOfStream: boolean): HookResult;
  onResponseBody?(chunk: BodyChunk, endOfStream: boolean): HookResult;
  onResponseTrailers?(trailers: HeaderMap): HookResult;
  /**
   * Asked once the headers of `direction` went past every filter: true when this filter will not look at that
   * direction's body or trailers again (a Lua handler that has ended, say), and stays true. The chain then passes
   * them by without calling its body and trailer hooks, without a copy when no other filter looks either.
   */
  skipsBody?(direction: Direction): boolean;
  /** Called once when the stream is complete (or reset), after the response was sent: read-only access. */
  onLog?(): void;
  /** Called last, once, whether the stream completed or was reset; release per-request resources here. */
  onDestroy?(): void;
}

/** The direction of traffic. */
export type Direction = 'request' | 'response';

/** A request that a filter sends to a configured cluster, outside the stream (Lua httpCall, proxy_http_call). */
export interface HttpCallRequest {
  /** Must hold `:method`, `:path` and `:authority`. */
  headers: HeaderMap;
  body?: Buffer;
  trailers?: HeaderMap;
}

/** The answer to an `httpCall`; a failed call resolves with `failure` set instead of rejecting. */
export interface HttpCallResponse {
  headers: HeaderMap;
  body: Buffer;
  trailers: HeaderMap | null;
  /** Set when no response came: 'reset' | 'timeout' | 'connect' | 'overflow' | 'no-healthy-upstream'. */
  failure?: string;
}

/** Options of an `httpCall`. */
export interface HttpCallOptions {
  /** 0 or absent: no timeout. */
  timeoutMs?: number;
  /** Add x-forwarded-for from the downstream address (Lua `send_xff`). */
  sendXff?: boolean;
}

/** Read access to the stream: ids, addresses, route, timing, and metadata shared between filters. */
export interface StreamInfo {
  readonly requestId: string;
  readonly listenerName: string;
  /** "HTTP/1.0" or "HTTP/1.1". */
  readonly protocol: string;
  readonly downstreamLocalAddress: string;
  readonly downstreamRemoteAddress: string;
  /** The address that x-forwarded-for names, or the remote address. */
  readonly downstreamClientAddress: string;
  readonly requestedServerName: string;
  /** Null when no route matched (yet). */
  readonly routeName: string | null;
  readonly clusterName: string | null;
  /** Route metadata from config: `metadata: { <filter name>: {...} }`. */
  readonly routeMetadata: Readonly<Record<string, unknown>>;
  /** Milliseconds since the epoch when the request started. */
  readonly startTime: number;
  /** Set once the response started. */
  readonly responseCode: number;
  /** Envoy-style dynamic metadata: namespace → key → value. */
  readonly dynamicMetadata: Map<string, Record<string, unknown>>;
  /** Opaque per-request state shared by filters (Envoy filter state; Proxy-Wasm set_property). */
  readonly filterState: Map<string, string | Buffer>;
  /** The endpoint the request was sent to, "host:port", once chosen. */
  readonly upstreamAddress: string | null;
  readonly attemptCount: number;
  /** Request body bytes received from the client so far (the access log's `bytes_in`). */
  readonly bytesIn: number;
  /** Response body bytes sent to the client so far (the access log's `bytes_out`). */
  readonly bytesOut: number;
  /** The access log's `flags`: Envoy-style short names joined by commas ("UF,URX"), or "-". */
  readonly responseFlag: string;
  /** The access log's `details` (an error message, `direct_response`, a filter's reason), or '' while there are none. */
  readonly details: string;
  /** The downstream connection's id, unique in the process. */
  readonly connectionId: number;
}

/** Log levels shared by every filter runtime. */
export type LogLevel = 'trace' | 'debug' | 'info' | 'warn' | 'error' | 'critical';

/**
 * What a filter can do to its stream. Kept small on purpose.
 */
export interface FilterCallbacks {
  readonly info: StreamInfo;
  /** The request headers (read them from the response path too); null before they arrived. */
  readonly requestHeaders: HeaderMap | null;
  /** The response headers, once the response started. */
  readonly responseHeaders: HeaderMap | null;
  /** Resumes a direction this filter stopped (default: the direction of the hook that stopped last). */
  resume(direction?: Direction): void;
  /** Answers the request locally; no later filter runs on the request path. Allowed until response headers were sent. */
  sendLocalReply(status: number, body?: string | Buffer, options?: LocalReplyOptions): void;
  /** Resets the stream: both connections of this request are closed without a response. */
  reset(): void;
  /**
   * Reports a failure the filter's runtime handled itself, by its own policy (a Lua error answered 500 or passed on
   * fail-open, a Wasm trap): one `error` log line, counted in `weir_filter_errors_total` as a hook that threw is.
   */
  failed(message: string): void;
  /** Sends a request to a configured cluster; resolves with the response or a failure, never rejects. */
  httpCall(cluster: string, request: HttpCallRequest, options?: HttpCallOptions): Promise<HttpCallResponse>;
  /** Re-runs route matching when the request headers change (Envoy's clearRouteCache). */
  clearRouteCache(): void;
  /** Asks the load balancer to use this endpoint "ip:port" (or "ip"); strict means 503 if it is not in the cluster. */
  setUpstreamOverrideHost(host: string, strict: boolean): void;
  /** Writes one log line that names the filter. */
  log(level: LogLevel, message: string): void;
}

/** Options of a local reply. */
export interface LocalReplyOptions {
  headers?: Record<string, string | string[]> | HeaderMap;
  /** Short machine-readable reason for the access log (response code details). */
  details?: string;
  /** Custom HTTP/1 reason phrase. */
  reason?: string;
  /** The catalogued error this reply stands for (its flag goes to the access log, and it is counted). */
  code?: ErrorCode;
}

/** What a filter factory gets once per worker when a config snapshot is built. */
export interface FactoryContext {
  /** The filter's name in the config. */
  readonly name: string;
  /** The folder of the config file, to resolve relative paths against. */
  readonly baseDir: string;
  /** The config path of this filter, for messages: e.g. "listeners[0].filters[2]". */
  readonly path: string;
  /** 0-based index of this worker thread. */
  readonly workerIndex: number;
  /** What `prepare` returned in the main thread (structured-cloned), or undefined. */
  readonly prepared: unknown;
  /** Logs with the filter's name. */
  log(level: LogLevel, message: string): void;
  /** The metrics registry of this worker, for metrics that filters declare. */
  readonly metrics: import('../telemetry/metrics.ts').Metrics;
  /** Sends a request to a cluster outside any stream (Proxy-Wasm root contexts, timers). */
  httpCall(cluster: string, request: HttpCallRequest, options?: HttpCallOptions): Promise<HttpCallResponse>;
  /** Names of the configured clusters. */
  readonly clusterNames: ReadonlySet<string>;
}

/** What a factory returns: a cheap per-request constructor. */
export interface FilterFactory<R = unknown> {
  /** Builds the per-request filter; `perRoute` is the route's override config, if any. */
  create(callbacks: FilterCallbacks, perRoute: R | undefined): Filter;
  /** Called when the snapshot that holds this factory is retired and no request uses it any more. */
  destroy?(): void;
}

/** A JSON Schema object (draft-07, as ajv validates it). */
export type JsonSchema = Record<string, unknown>;

/** Main-thread context of `prepare`. */
export interface PrepareContext {
  readonly name: string;
  readonly baseDir: string;
  readonly path: string;
  log(level: LogLevel, message: string): void;
  /** Asks for the running config to be applied again (e.g. a module finished downloading after the load). */
  requestReload?(reason: string): void;
}

/**
 * A kind of filter: its config schema, optional per-route schema and its factory.
 * Registered once in filters/registry.ts under `type`.
 */
export interface FilterDefinition<C = any, R = any> {
  /** The `type` key in config, e.g. "headers". */
  readonly type: string;
  /** The schema of the filter's own keys (besides `name`, `type`, `disabled`). */
  readonly schema: JsonSchema;
  /** The schema of a route's override (`routes[].filters.<name>`), if the filter accepts one. */
  readonly perRouteSchema?: JsonSchema;
  /**
   * Checks what the schema cannot express, on a config that passed it (for a route's override: the filter's config
   * with the override merged in). Returns problems by key; `weir validate` and a reload report them at that key's
   * line, before anything is built.
   */
  check?(config: C): { key: string; message: string }[];
  /**
   * Runs once per config load in the main thread, before any worker builds the snapshot: the place for
   * expensive work that can be shared across workers (read files, fetch and compile Wasm). Throw to reject the
   * config; the message is reported with the filter's path. The result must be structured-cloneable.
   */
  prepare?(config: C, ctx: PrepareContext): unknown | Promise<unknown>;
  /** Runs once per worker per snapshot; does the remaining expensive work and returns the per-request constructor. */
  factory(config: C, ctx: FactoryContext): FilterFactory<R> | Promise<FilterFactory<R>>;
}
