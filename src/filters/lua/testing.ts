/**
 * Test support for the Lua filter until (and besides) end-to-end tests: a real `FilterCallbacks` whose `httpCall`
 * sends real HTTP requests, and a one-filter chain runner that follows the contract's statuses (stop holds until
 * resume, stop-and-buffer calls the body hook again with the whole body so far, a local reply ends the stream).
 */
import { request as httpRequest } from 'node:http';
import { HeaderMap } from '../../core/headers.ts';
import { Metrics } from '../../telemetry/metrics.ts';
import type {
  Direction,
  Filter,
  FilterCallbacks,
  FilterFactory,
  FilterStatus,
  HttpCallOptions,
  HttpCallRequest,
  HttpCallResponse,
  LocalReplyOptions,
  LogLevel,
  StreamInfo,
} from '../contract.ts';
import lua from './index.ts';
import type { LuaConfig, LuaPerRoute } from './config.ts';

/** Sends `request` to `baseUrl` with node:http; resolves with the response or a failure, never rejects. */
export function httpCallForTest(baseUrl: string, request: HttpCallRequest, options: HttpCallOptions = {}): Promise<HttpCallResponse> {
  const url = new URL(baseUrl);
  const headers: Record<string, string | string[]> = {};
  for (const [k, v] of request.headers) {
    if (k.startsWith(':')) continue;
    const prev = headers[k];
    headers[k] = prev === undefined ? v : [prev, v].flat();
  }
  headers.host = request.headers.get(':authority') ?? url.host;
  return new Promise((resolve) => {
    let done = false;
    const finish = (r: HttpCallResponse) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      resolve(r);
    };
    const failure = (kind: string): HttpCallResponse => ({ headers: HeaderMap.from({ ':status': '503' }), body: Buffer.alloc(0), trailers: null, failure: kind });
    const req = httpRequest(
      { host: url.hostname, port: url.port, method: request.headers.get(':method'), path: request.headers.get(':path'), headers },
      (res) => {
        const parts: Buffer[] = [];
        res.on('data', (c: Buffer) => parts.push(c));
        res.on('end', () => {
          const list = [':status', String(res.statusCode)];
          for (let i = 0; i < res.rawHeaders.length; i += 2) list.push(res.rawHeaders[i].toLowerCase(), res.rawHeaders[i + 1]);
          finish({ headers: new HeaderMap(list), body: Buffer.concat(parts), trailers: null });
        });
        res.on('error', () => finish(failure('reset')));
      },
    );
    const timer = options.timeoutMs ? setTimeout(() => (req.destroy(), finish(failure('timeout'))), options.timeoutMs) : undefined;
    req.on('error', () => finish(failure('connect')));
    req.end(request.body);
  });
}

/** What the upstream of a test exchange answers. */
export interface ResponseSpec {
  status?: number;
  headers?: Record<string, string | string[]>;
  body?: (string | Buffer)[];
  trailers?: Record<string, string>;
}

/** One request through the filter. */
export interface ExchangeSpec {
  method?: string;
  path?: string;
  headers?: Record<string, string | string[]>;
  body?: (string | Buffer)[];
  trailers?: Record<string, string>;
  /** The upstream's answer, or a function of what reached it. */
  response?: ResponseSpec | ((forwarded: Forwarded) => ResponseSpec | Promise<ResponseSpec>);
  perRoute?: LuaPerRoute;
  routeMetadata?: Record<string, unknown>;
  routeName?: string;
  /** TLS details as the data plane would put them on `info.tls` (keys are the Lua SSL method names). */
  tls?: Record<string, unknown>;
  /** Filter state other filters stored before this one. */
  filterState?: Record<string, string>;
  /** Destroy the stream (client went away) after the request headers hook instead of finishing. */
  abortAfterHeaders?: boolean;
}

/** A message that was passed on. */
export interface Forwarded {
  headers: HeaderMap;
  body: Buffer;
  trailers: HeaderMap | null;
}

/** What happened to one exchange. */
export interface Outcome {
  /** What reached the upstream; null when the filter answered or reset. */
  upstream: Forwarded | null;
  /** What reached the client (the local reply, if any, as a response). */
  response: Forwarded | null;
  reply: { status: number; body: Buffer; options: LocalReplyOptions | undefined } | null;
  reset: boolean;
  logs: string[];
  info: StreamInfo;
  filter: Filter;
  /** The status each hook returned, in order, e.g. "request-headers:stop". */
  statuses: string[];
}

/** A built filter factory with the metrics and logs it writes. */
export interface LuaFilterForTest {
  factory: FilterFactory<LuaPerRoute>;
  metrics: Metrics;
  /** Lines the streams logged. */
  logs: string[];
  /** Lines the factory logged (building the filter, outside any request). */
  factoryLogs: string[];
  clusters: Record<string, string>;
  exchange(spec: ExchangeSpec): Promise<Outcome>;
  destroy(): void;
}

/** Validates nothing, prepares and builds a `lua` filter as a worker would, with clusters mapped to base URLs. */
export async function buildLuaForTest(config: LuaConfig, options: { name?: string; clusters?: Record<string, string>; metrics?: Metrics } = {}): Promise<LuaFilterForTest> {
  const name = options.name ?? 'lua-test';
  const logs: string[] = [];
  const factoryLogs: string[] = [];
  const clusters = options.clusters ?? {};
  const metrics = options.metrics ?? new Metrics();
  const log = (level: LogLevel, message: string) => factoryLogs.push(`${level} [${name}] ${message}`);
  const prepared = await lua.prepare!(config, { name, baseDir: process.cwd(), path: 'test', log });
  const factory = await lua.factory(config, {
    name,
    baseDir: process.cwd(),
    path: 'test',
    workerIndex: 0,
    prepared: structuredClone(prepared),
    log,
    metrics,
    httpCall: (cluster, req, opts) => httpCallForTest(clusters[cluster], req, opts),
    clusterNames: new Set(Object.keys(clusters)),
  });
  const built: LuaFilterForTest = {
    factory,
    metrics,
    logs,
    factoryLogs,
    clusters,
    exchange: (spec) => exchangeForTest(built, spec),
    destroy: () => factory.destroy?.(),
  };
  return built;
}

/** Runs one request (and, unless answered locally, its response) through the filter. */
export async function exchangeForTest(built: LuaFilterForTest, spec: ExchangeSpec): Promise<Outcome> {
  const logs = built.logs;
  const statuses: string[] = [];
  const reqHeaders = new HeaderMap([':method', spec.method ?? 'GET', ':path', spec.path ?? '/', ':authority', 'test.local', ':scheme', 'http']);
  for (const [k, v] of Object.entries(spec.headers ?? {})) for (const one of [v].flat()) reqHeaders.add(k, one);
  let respHeaders: HeaderMap | null = null;
  let reply: Outcome['reply'] = null;
  let reset = false;
  let wake: (() => void) | null = null;
  const resumed = { request: 0, response: 0 };
  const info: StreamInfo = {
    requestId: 'test-request',
    listenerName: 'test',
    protocol: 'HTTP/1.1',
    downstreamLocalAddress: '127.0.0.1:10000',
    downstreamRemoteAddress: '127.0.0.1:54321',
    downstreamClientAddress: '10.1.2.3:0',
    requestedServerName: 'sni.test',
    routeName: spec.routeName ?? 'test-route',
    clusterName: 'backend',
    routeMetadata: spec.routeMetadata ?? {},
    startTime: Date.now(),
    responseCode: 0,
    dynamicMetadata: new Map(),
    filterState: new Map(Object.entries(spec.filterState ?? {})),
    upstreamAddress: null,
    attemptCount: 0,
    bytesIn: 0,
    bytesOut: 0,
    responseFlag: '-',
    details: '',
    connectionId: 1,
  };
  if (spec.tls !== undefined) (info as unknown as { tls: unknown }).tls = spec.tls;
  const cb: FilterCallbacks & { routeCleared: number; override: [string, boolean] | null } = {
    info,
    get requestHeaders() {
      return reqHeaders;
    },
    get responseHeaders() {
      return respHeaders;
    },
    resume(direction?: Direction) {
      resumed[direction ?? 'request']++;
      wake?.();
    },
    sendLocalReply(status, body, options) {
      // Headers are compared as a plain object in tests, whichever form the filter gave.
      const headers = options?.headers instanceof HeaderMap ? options.headers.toObject() : options?.headers;
      reply = { status, body: body === undefined ? Buffer.alloc(0) : Buffer.from(body), options: options && { ...options, headers } };
      wake?.();
    },
    reset() {
      reset = true;
      wake?.();
    },
    httpCall: (cluster, req, opts) => httpCallForTest(built.clusters[cluster], req, opts),
    routeCleared: 0,
    override: null,
    clearRouteCache() {
      this.routeCleared++;
    },
    setUpstreamOverrideHost(host, strict) {
      this.override = [host, strict];
    },
    log(level, message) {
      logs.push(`${level} [${'lua-test'}] ${message}`);
    },
    failed(message) {
      logs.push(`error [${'lua-test'}] ${message}`);
    },
  };
  const filter = built.factory.create(cb, spec.perRoute);
  const finished = () => reply !== null || reset;
  const waitFor = async (direction: Direction, seen: number) => {
    const deadline = Date.now() + 5000;
    while (resumed[direction] === seen && !finished()) {
      if (Date.now() > deadline) throw new Error(`The filter never resumed the ${direction} path`);
      await new Promise<void>((r) => {
        wake = r;
        setTimeout(r, 20);
      });
    }
  };
  const drive = async (direction: Direction, headers: HeaderMap, chunks: Buffer[], trailers: HeaderMap | null): Promise<Forwarded | null> => {
    const isReq = direction === 'request';
    const hooks = isReq
      ? { h: filter.onRequestHeaders, b: filter.onRequestBody, t: filter.onRequestTrailers }
      : { h: filter.onResponseHeaders, b: filter.onResponseBody, t: filter.onResponseTrailers };
    const call = async (name: string, f: (() => unknown) | undefined): Promise<FilterStatus> => {
      const st = ((f === undefined ? undefined : await f()) ?? 'continue') as FilterStatus;
      statuses.push(`${direction}-${name}:${st}`);
      return st;
    };
    let seen = resumed[direction];
    let held = (await call('headers', hooks.h && (() => hooks.h!.call(filter, headers, chunks.length === 0 && trailers === null)))) !== 'continue';
    if (finished()) return null;
    if (isReq && spec.abortAfterHeaders) {
      filter.onDestroy?.();
      reset = true;
      return null;
    }
    if (!held) headers.frozen = true;
    const out: Buffer[] = [];
    let pending: Buffer | null = null;
    for (let i = 0; i < chunks.length; i++) {
      const eos = i === chunks.length - 1 && trailers === null;
      const chunk: { data: Buffer } = { data: pending === null ? chunks[i] : Buffer.concat([pending, chunks[i]]) };
      const st = await call('body', hooks.b && (() => hooks.b!.call(filter, chunk, eos)));
      if (finished()) return null;
      if (st === 'stop-and-buffer' && !eos) {
        pending = chunk.data;
        continue;
      }
      pending = null;
      if (st !== 'continue') {
        await waitFor(direction, seen);
        seen = resumed[direction];
        if (finished()) return null;
      }
      held = false;
      headers.frozen = true;
      out.push(chunk.data);
    }
    if (trailers !== null) {
      const st = await call('trailers', hooks.t && (() => hooks.t!.call(filter, trailers)));
      if (finished()) return null;
      if (st !== 'continue') {
        await waitFor(direction, seen);
        if (finished()) return null;
      }
      held = false;
      if (pending !== null) out.push(pending);
    }
    if (held) {
      await waitFor(direction, seen);
      if (finished()) return null;
    }
    headers.frozen = true;
    return { headers, body: Buffer.concat(out), trailers };
  };
  const toBuffers = (b: (string | Buffer)[] | undefined) => (b ?? []).map((x) => Buffer.from(x));
  const trailerMap = (t: Record<string, string> | undefined) => (t === undefined ? null : HeaderMap.from(t));
  let upstream: Forwarded | null = null;
  let response: Forwarded | null = null;
  try {
    upstream = await drive('request', reqHeaders, toBuffers(spec.body), trailerMap(spec.trailers));
    if (upstream !== null) {
      const r = typeof spec.response === 'function' ? await spec.response(upstream) : (spec.response ?? {});
      respHeaders = HeaderMap.from({ ':status': String(r.status ?? 200), ...(r.headers ?? {}) });
      response = await drive('response', respHeaders, toBuffers(r.body), trailerMap(r.trailers));
    }
    if (reply !== null) {
      const rp = reply as NonNullable<Outcome['reply']>;
      response = { headers: HeaderMap.from({ ':status': String(rp.status), ...((rp.options?.headers as Record<string, string>) ?? {}) }), body: rp.body, trailers: null };
    }
  } finally {
    if (!spec.abortAfterHeaders) {
      filter.onLog?.();
      filter.onDestroy?.();
    }
  }
  return { upstream, response, reply, reset, logs, info, filter, statuses };
}
