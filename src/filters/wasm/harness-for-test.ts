/**
 * Test support: a real FilterCallbacks (http calls go to real HTTP servers over 127.0.0.1) and a small driver that
 * runs one request through one filter with the chain runner's semantics for each status. Not used in production.
 */
import { request as httpRequest } from 'node:http';
import { HeaderMap } from '../../core/headers.ts';
import { Metrics } from '../../telemetry/metrics.ts';
import type {
  BodyChunk, Direction, FactoryContext, Filter, FilterCallbacks, FilterFactory, FilterStatus, HttpCallOptions,
  HttpCallRequest, HttpCallResponse, LocalReplyOptions, LogLevel, StreamInfo,
} from '../contract.ts';

/** Sends an http call to `http://<address>` for a cluster; never rejects. */
export function httpCallForTest(clusters: Record<string, string>, cluster: string, req: HttpCallRequest, options: HttpCallOptions = {}): Promise<HttpCallResponse> {
  return new Promise((resolve) => {
    const address = clusters[cluster];
    if (address === undefined) return resolve({ headers: new HeaderMap(), body: Buffer.alloc(0), trailers: null, failure: 'no-healthy-upstream' });
    const [host, port] = address.split(':');
    const headers: Record<string, string> = {};
    for (const [k, v] of req.headers) if (!k.startsWith(':')) headers[k] = v;
    headers.host = req.headers.get(':authority') ?? address;
    if (req.body) headers['content-length'] = String(req.body.length);
    const r = httpRequest({ host, port: Number(port), method: req.headers.get(':method'), path: req.headers.get(':path'), headers }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => {
        const list = [':status', String(res.statusCode)];
        for (let i = 0; i < res.rawHeaders.length; i += 2) list.push(res.rawHeaders[i].toLowerCase(), res.rawHeaders[i + 1]);
        resolve({ headers: new HeaderMap(list), body: Buffer.concat(chunks), trailers: null });
      });
      res.on('error', () => resolve({ headers: new HeaderMap(), body: Buffer.alloc(0), trailers: null, failure: 'reset' }));
    });
    if (options.timeoutMs) r.setTimeout(options.timeoutMs, () => r.destroy(new Error('timeout')));
    r.on('error', (err) => resolve({ headers: new HeaderMap(), body: Buffer.alloc(0), trailers: null, failure: err.message === 'timeout' ? 'timeout' : 'connect' }));
    r.end(req.body);
  });
}

/** A FactoryContext for tests: real metrics registry, logs collected, http calls to `clusters`. */
export function factoryContextForTest(opts: { name?: string; workerIndex?: number; prepared?: unknown; clusters?: Record<string, string>; metrics?: Metrics } = {}): FactoryContext & { logs: [LogLevel, string][] } {
  const clusters = opts.clusters ?? {};
  const logs: [LogLevel, string][] = [];
  return {
    name: opts.name ?? 'wasm-test',
    baseDir: process.cwd(),
    path: 'listeners[0].filters[0]',
    workerIndex: opts.workerIndex ?? 0,
    prepared: opts.prepared,
    metrics: opts.metrics ?? new Metrics(),
    clusterNames: new Set(Object.keys(clusters)),
    logs,
    log: (level, message) => void logs.push([level, message]),
    httpCall: (cluster, req, o) => httpCallForTest(clusters, cluster, req, o),
  };
}

/** A real FilterCallbacks that records what the filter did. */
export class CallbacksForTest implements FilterCallbacks {
  readonly info: StreamInfo;
  requestHeaders: HeaderMap | null = null;
  responseHeaders: HeaderMap | null = null;
  localReply: { status: number; body: Buffer; options?: LocalReplyOptions } | null = null;
  resets = 0;
  routeCacheClears = 0;
  /** Set once the response headers went downstream: a local reply is no longer possible (as the contract says). */
  responseStarted = false;
  readonly logs: [LogLevel, string][] = [];
  readonly resumed: Direction[] = [];
  readonly #clusters: Record<string, string>;
  #waiters: { direction: Direction; resolve: () => void }[] = [];

  constructor(opts: { clusters?: Record<string, string>; info?: Partial<StreamInfo> } = {}) {
    this.#clusters = opts.clusters ?? {};
    this.info = {
      requestId: 'req-1', listenerName: 'main', protocol: 'HTTP/1.1', downstreamLocalAddress: '127.0.0.1:8080',
      downstreamRemoteAddress: '127.0.0.1:54321', downstreamClientAddress: '127.0.0.1', requestedServerName: '',
      routeName: 'default', clusterName: 'backend', routeMetadata: {}, startTime: Date.now(), responseCode: 0,
      dynamicMetadata: new Map(), filterState: new Map(), upstreamAddress: null, attemptCount: 1,
      bytesIn: 0, bytesOut: 0, responseFlag: '-', details: '', connectionId: 1,
      ...opts.info,
    };
  }

  resume(direction: Direction = 'request'): void {
    this.resumed.push(direction);
    const ready = this.#waiters.filter((w) => w.direction === direction);
    this.#waiters = this.#waiters.filter((w) => w.direction !== direction);
    for (const w of ready) w.resolve();
  }

  /** Resolves at the next resume of `direction`, or when a local reply or reset ends the stream. */
  waitForResume(direction: Direction): Promise<void> {
    return new Promise((resolve) => this.#waiters.push({ direction, resolve }));
  }

  sendLocalReply(status: number, body: string | Buffer = '', options?: LocalReplyOptions): void {
    if (this.localReply !== null) throw new Error('a local reply was already sent');
    if (this.responseStarted) throw new Error('the response has started');
    this.localReply = { status, body: Buffer.from(body), options };
    for (const w of this.#waiters.splice(0)) w.resolve();
  }

  reset(): void {
    this.resets++;
    for (const w of this.#waiters.splice(0)) w.resolve();
  }

  httpCall(cluster: string, req: HttpCallRequest, options?: HttpCallOptions): Promise<HttpCallResponse> {
    return httpCallForTest(this.#clusters, cluster, req, options);
  }

  clearRouteCache(): void {
    this.routeCacheClears++;
  }

  setUpstreamOverrideHost(): void {}

  log(level: LogLevel, message: string): void {
    this.logs.push([level, message]);
  }

  failed(message: string): void {
    this.logs.push(['error', message]);
  }
}

/** What `runForTest` saw. */
export interface RunResult {
  /** What reached the upstream: null when a local reply or reset stopped the request. */
  upstream: { headers: HeaderMap; body: Buffer; trailers?: HeaderMap } | null;
  /** What the client got: the local reply, or the upstream response after the filter. */
  response: { status: number; headers: HeaderMap; body: Buffer } | null;
  callbacks: CallbacksForTest;
  statuses: FilterStatus[];
}

/**
 * Runs one request through one filter like the chain runner: a stopped phase waits for resume; `stop-and-buffer`
 * calls the body hook again with the whole body so far; a local reply ends the request.
 */
export async function runForTest(factory: FilterFactory, req: { headers: Record<string, string>; body?: string[]; trailers?: Record<string, string> }, res: { status?: number; headers?: Record<string, string>; body?: string[] } = {}, callbacks = new CallbacksForTest()): Promise<RunResult> {
  const filter: Filter = factory.create(callbacks, undefined);
  const statuses: FilterStatus[] = [];
  const cb = callbacks;
  const stopped = (): boolean => cb.localReply !== null || cb.resets > 0;
  const hold = async (status: FilterStatus | void, direction: Direction): Promise<void> => {
    statuses.push(status ?? 'continue');
    if ((status === 'stop' || status === 'stop-all') && !stopped()) await cb.waitForResume(direction);
  };
  const finish = (result: RunResult): RunResult => {
    filter.onLog?.();
    filter.onDestroy?.();
    return result;
  };
  const runBody = async (direction: Direction, chunks: string[]): Promise<Buffer | null> => {
    const hook = direction === 'request' ? filter.onRequestBody : filter.onResponseBody;
    const passed: Buffer[] = [];
    let buffered: Buffer = Buffer.alloc(0);
    for (let i = 0; i < chunks.length; i++) {
      const eos = i === chunks.length - 1;
      const chunk: BodyChunk = { data: Buffer.concat([buffered, Buffer.from(chunks[i])]) };
      const status = hook ? await hook.call(filter, chunk, eos) : 'continue';
      if (stopped()) return null;
      if (status === 'stop-and-buffer' && !eos) {
        statuses.push(status);
        buffered = chunk.data;
        continue;
      }
      await hold(status, direction);
      if (stopped()) return null;
      buffered = Buffer.alloc(0);
      passed.push(chunk.data);
    }
    return Buffer.concat(passed);
  };

  const requestHeaders = HeaderMap.from({ ':method': 'GET', ':path': '/', ':authority': 'example', ':scheme': 'http', ...req.headers });
  cb.requestHeaders = requestHeaders;
  const bodyChunks = req.body ?? [];
  await hold(await filter.onRequestHeaders?.(requestHeaders, bodyChunks.length === 0), 'request');
  const replied = (): RunResult => finish({ upstream: null, response: cb.localReply ? { status: cb.localReply.status, headers: HeaderMap.from(normalise(cb.localReply.options?.headers)), body: cb.localReply.body } : null, callbacks: cb, statuses });
  if (stopped()) return replied();
  const upstreamBody = await runBody('request', bodyChunks);
  if (upstreamBody === null) return replied();
  let trailers: HeaderMap | undefined;
  if (req.trailers !== undefined) {
    trailers = HeaderMap.from(req.trailers);
    await hold(await filter.onRequestTrailers?.(trailers), 'request');
    if (stopped()) return replied();
  }
  const upstream: { headers: HeaderMap; body: Buffer; trailers?: HeaderMap } = { headers: requestHeaders, body: upstreamBody, trailers };

  const responseHeaders = HeaderMap.from({ ':status': String(res.status ?? 200), ...res.headers });
  cb.responseHeaders = responseHeaders;
  const resChunks = res.body ?? [];
  await hold(await filter.onResponseHeaders?.(responseHeaders, resChunks.length === 0), 'response');
  if (!stopped()) cb.responseStarted = true;
  if (stopped()) return finish({ upstream, response: cb.localReply ? { status: cb.localReply.status, headers: new HeaderMap(), body: cb.localReply.body } : null, callbacks: cb, statuses });
  const responseBody = await runBody('response', resChunks);
  return finish({ upstream, response: responseBody === null ? null : { status: Number(responseHeaders.get(':status')), headers: responseHeaders, body: responseBody }, callbacks: cb, statuses });
}

function normalise(h: LocalReplyOptions['headers']): Record<string, string | string[]> {
  if (h === undefined) return {};
  if (h instanceof HeaderMap) return h.toObject();
  return h;
}
