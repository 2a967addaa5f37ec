/**
 * The per-request Lua filter: Envoy's yield state machine (lua_filter.cc) mapped onto weir's filter statuses.
 * Each direction runs its handler in a coroutine; `body()`, `bodyChunks()`, `trailers()` and a synchronous
 * `httpCall()` suspend it, and the hook that suspended it answers `stop` (headers held), `stop-and-buffer`
 * (body being collected) or `continue`, as Envoy does.
 */
import type { BodyChunk, Direction, Filter, FilterCallbacks, FilterStatus, HttpCallResponse } from '../contract.ts';
import type { HeaderMap } from '../../core/headers.ts';
import type { Coroutine, LuaScript, RunResult } from './script.ts';

/** What a suspended coroutine waits for. */
export const WAIT_NONE = 0;
export const WAIT_BODY = 1;
export const WAIT_CHUNK = 2;
export const WAIT_TRAILERS = 3;
export const WAIT_HTTP = 4;
export const WAIT_RESPONDED = 5;

/** Where a run was resumed from: a headers hook, a body hook before the end, the end of the stream, or a callback. */
const PHASE_HEADERS = 0;
const PHASE_BODY = 1;
const PHASE_END = 2;
const PHASE_ASYNC = 3;

/** Filter-level settings every stream of one filter shares. */
export interface StreamSetup {
  readonly filterName: string;
  readonly failOpen: boolean;
  readonly failureStatus: number;
  readonly clearRouteCache: boolean;
  readonly filterContext: Record<string, unknown> | undefined;
  readonly clusterNames: ReadonlySet<string>;
  /** Logs and counts a failed run; called once per failure. */
  onError(script: LuaScript, reason: string, message: string, cb: FilterCallbacks): void;
  /** Counts a handler run. */
  onRun(): void;
}

/** The Lua side of one direction of one stream. */
export class DirState {
  readonly dir: 0 | 1;
  co: Coroutine | null = null;
  wait = WAIT_NONE;
  headers: HeaderMap | null = null;
  /** The headers were passed on: mutations raise. */
  continued = false;
  /** A hook of this direction answered stop and has not been released yet. */
  holding = false;
  /** A body or trailers hook answered stop (besides the headers), so a resume must release that too. */
  heldBody = false;
  /** The end of stream was seen. */
  ended = false;
  /** The whole body, once complete (what `body()` returns). */
  body: BodyChunk | null = null;
  /** The body buffered so far while the script waits. */
  last: BodyChunk | null = null;
  bodyRequested = false;
  streaming = false;
  chunk: BodyChunk | null = null;
  chunkTaken = true;
  trailers: HeaderMap | null = null;
  mutated = false;
  reply: { status: number; headers: HeaderMap; body: Buffer | undefined } | null = null;

  constructor(dir: 0 | 1) {
    this.dir = dir;
  }
}

let nextId = 1;
const RECYCLED = 'the Lua state this request was suspended on was recycled after a trap in another run';

/** The filter instance of one request. */
export class LuaStream implements Filter {
  readonly id = nextId++;
  readonly script: LuaScript;
  readonly setup: StreamSetup;
  readonly cb: FilterCallbacks;
  readonly req = new DirState(0);
  #resp: DirState | null = null;
  /** Bit per header map (see `map`) whose iteration has started and not finished. */
  iterating = 0;
  readonly #routeContext: Record<string, unknown> | undefined;
  #destroyed = false;
  #left = false;
  /** In `script.suspended`. */
  #listed = false;

  /** The response side, made when first needed (many requests never get that far with a script). */
  get resp(): DirState {
    return (this.#resp ??= new DirState(1));
  }

  constructor(script: LuaScript, setup: StreamSetup, cb: FilterCallbacks, routeContext: Record<string, unknown> | undefined) {
    this.script = script;
    this.setup = setup;
    this.cb = cb;
    this.#routeContext = routeContext;
    script.enter();
  }

  onRequestHeaders(headers: HeaderMap, endOfStream: boolean): FilterStatus {
    const d = this.req;
    d.headers = headers;
    d.ended = endOfStream;
    if (!this.script.hasRequest) return 'continue';
    return this.#start(d);
  }

  onRequestBody(chunk: BodyChunk, endOfStream: boolean): FilterStatus {
    return this.#body(this.req, chunk, endOfStream);
  }

  onRequestTrailers(trailers: HeaderMap): FilterStatus {
    return this.#trailers(this.req, trailers);
  }

  onResponseHeaders(headers: HeaderMap, endOfStream: boolean): FilterStatus {
    // Without envoy_on_response no Lua code sees the response: its side is not even made.
    if (!this.script.hasResponse) return 'continue';
    const d = this.resp;
    d.headers = headers;
    d.ended = endOfStream;
    return this.#start(d);
  }

  onResponseBody(chunk: BodyChunk, endOfStream: boolean): FilterStatus {
    return this.#body(this.resp, chunk, endOfStream);
  }

  onResponseTrailers(trailers: HeaderMap): FilterStatus {
    return this.#trailers(this.resp, trailers);
  }

  skipsBody(direction: Direction): boolean {
    // A handler that ended (or never ran) reads no more of its direction; one still suspended may ask for the body.
    const d = direction === 'request' ? this.req : this.#resp;
    return d === null || (d.co === null && !d.holding);
  }

  onDestroy(): void {
    this.#destroyed = true;
    if (this.#listed) this.script.suspended.delete(this);
    this.#drop(this.req);
    if (this.#resp !== null) this.#drop(this.#resp);
    if (!this.#left) {
      this.#left = true;
      this.script.leave();
    }
  }

  #drop(d: DirState): void {
    if (d.co !== null) {
      this.script.release(d.co);
      d.co = null;
    }
  }

  /** The header map `w` selects: 0/1 request/response headers, 2/3 their trailers, 4 the request headers read-only. */
  map(w: number): HeaderMap | null {
    switch (w) {
      case 0:
        return this.req.headers;
      case 1:
        return this.resp.headers;
      case 2:
        return this.req.trailers;
      case 3:
        return this.resp.trailers;
      default:
        return this.cb.requestHeaders;
    }
  }

  /** The buffer `b` selects: 0/1 request/response body, 2/3 the current request/response chunk. */
  buffer(b: number): BodyChunk | null {
    const d = (b & 1) === 0 ? this.req : this.resp;
    return b < 2 ? d.body : d.chunk;
  }

  /** Replaces a buffer's bytes; a whole body also updates content-length while the headers can still change. */
  setBuffer(b: number, data: Buffer): void {
    const d = (b & 1) === 0 ? this.req : this.resp;
    const target = b < 2 ? d.body : d.chunk;
    if (target !== null) target.data = data;
    const h = d.headers;
    // A chunked message whose whole body is now known becomes a fixed-length one, as Envoy's setBytes sets
    // content-length; one with trailers stays chunked, since a fixed-length HTTP/1 message cannot carry them.
    if (b < 2 && h !== null && !d.continued && !h.frozen && d.trailers === null) {
      h.remove('transfer-encoding');
      h.set('content-length', String(data.length));
    }
  }

  /** Route metadata for this filter, falling back to Envoy's filter name. */
  routeMetadata(): unknown {
    const md = this.cb.info.routeMetadata;
    return md[this.setup.filterName] ?? md['envoy.filters.http.lua'] ?? null;
  }

  /** The route's `filter_context`, or the filter's. */
  filterContext(): Record<string, unknown> {
    return this.#routeContext ?? this.setup.filterContext ?? {};
  }

  /** The connection's TLS details, when the data plane provides them as `info.tls`. */
  tls(): Record<string, unknown> | null {
    const tls = (this.cb.info as unknown as { tls?: Record<string, unknown> | null }).tls;
    return tls ?? null;
  }

  /** Records a custom HTTP/1 reason phrase for the response (filter state `weir.http1_reason_phrase`). */
  setReason(phrase: string): void {
    this.cb.info.filterState.set('weir.http1_reason_phrase', phrase);
  }

  /** Asks for the downstream connection to close after this response (filter state `weir.drain_connection`). */
  drain(): void {
    this.cb.info.filterState.set('weir.drain_connection', 'true');
  }

  /** Resumes the coroutine of `d` when the synchronous httpCall it waits for completes. */
  awaitCall(d: DirState, call: Promise<HttpCallResponse>, duplicates: boolean): void {
    const co = d.co;
    call.then(
      (res) => this.#callDone(d, co, res, duplicates),
      () => this.#callDone(d, co, undefined, duplicates),
    );
  }

  #callDone(d: DirState, co: Coroutine | null, res: HttpCallResponse | undefined, duplicates: boolean): void {
    if (this.#destroyed || co === null || d.co !== co || d.wait !== WAIT_HTTP) return;
    if (this.script.broken) {
      d.co = null;
      this.#fail(d, 'error', RECYCLED, PHASE_ASYNC);
      return;
    }
    try {
      this.#pushCallResult(co, res, duplicates);
    } catch (err) {
      // Pushing happens outside a protected call: a VM that cannot take the values is done for.
      this.script.markBroken();
      d.co = null;
      this.#fail(d, 'memory', `cannot hand the httpCall response to the script: ${(err as Error).message}`, PHASE_ASYNC);
      return;
    }
    d.wait = WAIT_NONE;
    this.#settle(d, this.script.resume(this, co, 2), PHASE_ASYNC);
  }

  #pushCallResult(co: Coroutine, res: HttpCallResponse | undefined, duplicates: boolean): void {
    const vm = this.script.vm;
    if (res === undefined || res.failure !== undefined) {
      vm.pushValue(co.L, { ':status': '503' });
      vm.pushString(co.L, 'upstream failure');
    } else {
      const headers: Record<string, string | string[]> = {};
      const list = res.headers.list;
      for (let i = 0; i < list.length; i += 2) {
        const prev = headers[list[i]];
        if (duplicates && prev !== undefined) headers[list[i]] = Array.isArray(prev) ? [...prev, list[i + 1]] : [prev, list[i + 1]];
        else headers[list[i]] = list[i + 1];
      }
      vm.pushValue(co.L, headers);
      if (res.body.length > 0) vm.pushBytes(co.L, res.body);
      else vm.x.lua_pushnil(co.L);
    }
  }

  #start(d: DirState): FilterStatus {
    this.setup.onRun();
    d.wait = WAIT_NONE;
    let co: Coroutine;
    try {
      co = this.script.coroutine();
    } catch (err) {
      this.script.markBroken();
      return this.#fail(d, 'error', `the Lua VM failed: ${(err as Error).message}`, PHASE_HEADERS);
    }
    d.co = co;
    return this.#settle(d, this.script.start(this, co, d.dir), PHASE_HEADERS);
  }

  #resumeIn(d: DirState, phase: number): FilterStatus {
    d.wait = WAIT_NONE;
    return this.#settle(d, this.script.resume(this, d.co!, 0), phase);
  }

  #body(d: DirState, chunk: BodyChunk, eos: boolean): FilterStatus {
    if (eos) d.ended = true;
    if (d.co === null) return 'continue';
    switch (d.wait) {
      case WAIT_BODY:
        if (!eos) {
          d.last = chunk;
          d.holding = true;
          return 'stop-and-buffer';
        }
        d.body = chunk;
        return this.#resumeIn(d, PHASE_END);
      case WAIT_CHUNK:
        d.chunk = chunk;
        d.chunkTaken = false;
        return this.#resumeIn(d, eos ? PHASE_END : PHASE_BODY);
      case WAIT_TRAILERS:
        return eos ? this.#resumeIn(d, PHASE_END) : 'continue';
      case WAIT_HTTP:
        d.last = chunk;
        if (eos) d.body = chunk;
        d.holding = true;
        if (!eos) return 'stop-and-buffer';
        d.heldBody = true;
        return 'stop';
      default:
        return 'stop';
    }
  }

  #trailers(d: DirState, trailers: HeaderMap): FilterStatus {
    d.trailers = trailers;
    d.ended = true;
    if (d.co === null) return 'continue';
    switch (d.wait) {
      case WAIT_BODY:
        d.body = d.last;
        return this.#resumeIn(d, PHASE_END);
      case WAIT_CHUNK:
      case WAIT_TRAILERS:
        return this.#resumeIn(d, PHASE_END);
      default:
        d.holding = true;
        d.heldBody = true;
        return 'stop';
    }
  }

  /** Turns how a run ended into the hook's status (or, after a callback, into resume/local reply). */
  #settle(d: DirState, r: RunResult, phase: number): FilterStatus {
    if (r.kind === 'done') {
      // respond() ended the run by returning (frames.ts) rather than by a yield.
      if (d.wait === WAIT_RESPONDED) return this.#respond(d);
      this.script.recycle(d.co!);
      d.co = null;
      return this.#proceed(d, phase);
    }
    if (r.kind === 'error') {
      // The script failed after respond() (a <close> handler as the frames returned, or code after a respond() made
      // in the script's own coroutine): the reply stands, as on Envoy, which sends it inside respond().
      if (d.wait === WAIT_RESPONDED) {
        this.setup.onError(this.script, r.reason, r.message, this.cb);
        return this.#respond(d);
      }
      return this.#fail(d, r.reason, r.message, phase);
    }
    if (!this.#listed) {
      this.#listed = true;
      this.script.suspended.add(this);
    }
    switch (d.wait) {
      case WAIT_RESPONDED:
        return this.#respond(d);
      case WAIT_BODY:
        d.holding = true;
        return phase === PHASE_BODY ? 'stop-and-buffer' : 'stop';
      case WAIT_HTTP:
        d.holding = true;
        return 'stop';
      case WAIT_CHUNK:
      case WAIT_TRAILERS:
        return this.#proceed(d, phase);
      default:
        return this.#fail(d, 'error', 'script performed an unexpected yield', phase);
    }
  }

  #proceed(d: DirState, phase: number): FilterStatus {
    if (d.dir === 0 && d.mutated && this.setup.clearRouteCache && !d.continued) {
      d.mutated = false;
      this.cb.clearRouteCache();
    }
    d.continued = true;
    if (phase === PHASE_ASYNC && d.holding) {
      d.holding = false;
      this.cb.resume(direction(d));
      // The chain runner releases held headers and a held body with one resume each.
      if (d.heldBody) this.cb.resume(direction(d));
      d.heldBody = false;
    }
    d.holding = false;
    return 'continue';
  }

  #respond(d: DirState): FilterStatus {
    const reply = d.reply!;
    this.script.release(d.co!);
    d.co = null;
    d.holding = false;
    this.cb.sendLocalReply(reply.status, reply.body, { headers: reply.headers, details: 'lua_respond' });
    return 'stop';
  }

  /** Fails the directions suspended on this stream's Lua state, which broke (a trap in another request's run). */
  abandon(): void {
    if (this.#destroyed) return;
    for (const d of [this.req, this.#resp]) {
      if (d === null || d.co === null) continue;
      d.co = null;
      d.wait = WAIT_NONE;
      this.#fail(d, 'error', RECYCLED, PHASE_ASYNC);
    }
  }

  #fail(d: DirState, reason: string, message: string, phase: number): FilterStatus {
    this.setup.onError(this.script, reason, message, this.cb);
    if (d.co !== null) {
      this.script.release(d.co);
      d.co = null;
    }
    if (this.setup.failOpen) return this.#proceed(d, phase);
    d.holding = false;
    // Once the response head went to the client this resets the stream (flag FF, details lua_<reason>).
    this.cb.sendLocalReply(this.setup.failureStatus, 'lua filter failure', { details: `lua_${reason}`, code: 'FILTER_FAILURE' });
    return 'stop';
  }
}

function direction(d: DirState): Direction {
  return d.dir === 0 ? 'request' : 'response';
}
