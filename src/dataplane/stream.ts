/**
 * The request lifecycle, written once. docs/lifecycle.md draws the same steps with the same names:
 *
 *   codec.onRequest → Stream.start: request id, x-forwarded-*, route match, filters created
 *   → request Pipeline (filters in order) → routeRequest: direct response | redirect | UpstreamRequest
 *   → onResponseHead → response Pipeline (filters in reverse) → codec.sendHead/sendBody/sendEnd
 *   → complete: onLog, access log, metrics, onDestroy
 *
 * A local reply (from a filter, the router or an error) leaves the request path and enters the response path.
 */
import { Buffer } from 'node:buffer';
import { requestId } from '../core/request-id.ts';
import { timeoutList, type TimeoutList, type Expirable } from '../core/timeout-list.ts';
import { HeaderMap, bodilessStatus, contentLengthOf, validReasonPhrase } from '../core/headers.ts';
import { ProxyError, ERRORS, type ErrorKind } from '../core/errors.ts';
import type { Filter, StreamInfo, LocalReplyOptions } from '../filters/contract.ts';
import type { DownstreamConnection, RequestHead, RequestSink, UsualHead } from './codec.ts';
import { headersOf, ResponseHeadLines, unreadHeadersOf } from './http1/usual-head.ts';
import { Pipeline, filled } from './chain.ts';
import { UpstreamRequest, type UpstreamListener } from './upstream-request.ts';
import { FilterHandle } from './filter-handle.ts';
import type { Route } from './router.ts';
import type { ListenerRuntime } from './listener-runtime.ts';
import type { Snapshot, ChainEntry } from './snapshot.ts';
import { tunnel } from './tunnel.ts';
import { publishStreamComplete } from '../telemetry/channels.ts';
import { RouterSink, ClientSink } from './stream-sinks.ts';
import { connectionId } from './connection-id.ts';
import { monoNow, wallNow } from '../core/clock.ts';

const EMPTY = Buffer.alloc(0);
const NO_FILTERS: readonly Filter[] = Object.freeze([]);
const NO_ENTRIES: readonly ChainEntry[] = Object.freeze([]);

/** One request/response exchange. Implements the codec's sink, the upstream's listener and StreamInfo. */
export class Stream implements RequestSink, UpstreamListener, StreamInfo, Expirable {
  readonly listener: ListenerRuntime;
  readonly snapshot: Snapshot;
  readonly conn: DownstreamConnection;
  readonly head: RequestHead;
  readonly startTime = wallNow();
  readonly startMono = monoNow();
  requestId = '';
  /** The path and Host as the client sent them, before filters and rewrites. */
  originalPath = '';
  originalAuthority = '';
  route: Route | null = null;
  clusterName: string | null = null;
  /** The filter instances of this request, in chain order (shared empty array when the chain is empty). */
  filters: Filter[] = NO_FILTERS as Filter[];
  entries: readonly ChainEntry[] = NO_ENTRIES;
  /** Time spent in each filter's hooks, ms; null without filters. */
  filterMs: number[] | null = null;
  requestHeaders: HeaderMap;
  responseHeaders: HeaderMap | null = null;
  responseCode = 0;
  responseFlag = '-';
  details = '';
  bytesIn = 0;
  bytesOut = 0;
  upstream: UpstreamRequest | null = null;
  /** Set when the stream completed, was reset or answered locally on the request path. */
  requestHalted = false;
  done = false;
  #req: Pipeline | null = null;
  #res: Pipeline | null = null;
  #routeCleared = false;
  #responseEos = false;
  #overrideHost: string | undefined;
  #overrideStrict = false;
  #dynamicMetadata: Map<string, Record<string, unknown>> | null = null;
  #filterState: Map<string, string | Buffer> | null = null;
  /** x-forwarded-for as the client sent it. */
  #clientXff: string | undefined;
  /** The downstream socket is full; the upstream response is paused until it drains. */
  downstreamBlocked = false;

  constructor(listener: ListenerRuntime, conn: DownstreamConnection, head: RequestHead) {
    this.listener = listener;
    this.snapshot = listener.snapshot;
    this.snapshot.active++;
    this.conn = conn;
    this.head = head;
    this.requestHeaders = head.headers;
  }

  /** Runs the request path from its headers. */
  start(): void {
    const s = this.listener.settings;
    const h = this.requestHeaders;
    const list = h.list;
    // Envoy's edge behaviour: x-request-id kept or generated, x-forwarded-for appended, x-forwarded-proto set.
    let id = h.get('x-request-id');
    if (id === undefined && s.generateRequestId) {
      id = requestId();
      list.push('x-request-id', id);
    }
    this.requestId = id ?? '';
    const remote = this.conn.socket.remoteAddress ?? '';
    const xff = h.getJoined('x-forwarded-for');
    this.#clientXff = xff;
    if (xff === undefined) list.push('x-forwarded-for', remote);
    else {
      h.remove('x-forwarded-for');
      list.push('x-forwarded-for', xff + ', ' + remote);
    }
    if (s.xffTrustedHops === 0 || !h.has('x-forwarded-proto')) {
      if (h.has('x-forwarded-proto')) h.set('x-forwarded-proto', 'http');
      else list.push('x-forwarded-proto', 'http');
    }
    if (this.head.hasBody && s.idleTimeoutMs > 0) {
      this.#bodyTimers = timeoutList(s.idleTimeoutMs);
      this.#bodyTimer = this.#bodyTimers.arm(this);
    }
    this.originalPath = h.get(':path')!;
    this.originalAuthority = h.get(':authority')!;
    this.route = this.listener.router.match(h);
    this.entries = this.route?.chain ?? this.listener.defaultChain;
    const n = this.entries.length;
    if (n > 0) {
      this.filterMs = filled(n, 0);
      this.filters = [];
      for (let i = 0; i < n; i++) {
        const e = this.entries[i];
        const handle = new FilterHandle(this, i, e.name);
        try {
          this.filters.push(e.factory.create(handle, e.perRoute));
        } catch (err) {
          this.filters.push({});
          this.filterFailed(i, err, 'request');
          return;
        }
      }
    }
    if (n === 0) {
      // No filters: the request goes straight to the router, without a pipeline.
      this.routeRequest(h, !this.head.hasBody);
      return;
    }
    this.#req = new Pipeline(this.filters, 'request', new RouterSink(this), s.bufferLimit, this.filterMs);
    this.#req.headers(h, !this.head.hasBody);
  }

  // --- body events from the codec ---

  onBody(chunk: Buffer): void {
    this.bytesIn += chunk.length;
    this.progress++;
    if (this.#bodyTimer >= 0) {
      this.#bodyTimers!.cancel(this.#bodyTimer);
      this.#bodyTimer = this.#bodyTimers!.arm(this);
    }
    if (this.requestHalted) return;
    if (this.#req !== null) this.#req.data(chunk, false);
    else this.upstream?.data(chunk, false);
  }

  onTrailers(trailers: HeaderMap): void {
    this.#stopBodyTimer();
    this.progress++;
    if (this.requestHalted) return;
    if (this.#req !== null) this.#req.trailers(trailers);
    else this.upstream?.trailers(trailers);
  }

  onEnd(): void {
    this.#stopBodyTimer();
    this.progress++;
    if (this.requestHalted || !this.head.hasBody) return;
    if (this.#req !== null) this.#req.data(EMPTY, true);
    else this.upstream?.data(EMPTY, true);
  }

  /** Ticket of the request body idle timeout, or -1. */
  #bodyTimer = -1;
  #bodyTimers: TimeoutList | null = null;

  #stopBodyTimer(): void {
    if (this.#bodyTimer >= 0) this.#bodyTimers!.cancel(this.#bodyTimer);
    this.#bodyTimer = -1;
  }

  /** Events the stream carried since it began; the stream idle watch reads it to tell a held stream from a quiet one. */
  progress = 0;
  #idleWatch: IdleWatch | null = null;

  /**
   * A filter stopped iteration (called by the pipelines' sinks). A filter that never resumes would hold the request,
   * and its client, forever: as Envoy's stream_idle_timeout, the stream ends once nothing happened on it for the
   * listener's `stream_idle_timeout`. Only streams that a filter held pay for the watch.
   */
  filterStopped(): void {
    this.progress++;
    if (this.#idleWatch !== null || this.done) return;
    const ms = this.listener.settings.streamIdleTimeoutMs;
    if (ms > 0) this.#idleWatch = new IdleWatch(this, timeoutList(ms));
  }

  /** Nothing happened on the stream for `stream_idle_timeout` since a filter held it (called by its IdleWatch). */
  idleExpired(): void {
    if (this.done) return;
    const ms = this.listener.settings.streamIdleTimeoutMs;
    this.localReply(ERRORS.STREAM_IDLE_TIMEOUT, `Nothing happened on the stream for ${ms}ms while filter "${this.#holder()}" held it`, this.filters.length);
  }

  /** The name of the filter that stopped last, for the idle timeout's message. */
  #holder(): string {
    const res = this.#res;
    const i = res !== null && res.lastStopped >= 0 ? res.length - 1 - res.lastStopped : this.#req?.lastStopped ?? -1;
    return this.entries[i]?.name ?? '?';
  }

  /** The client sent no request body bytes for the listener's idle_timeout (called by the TimeoutList). */
  expire(): void {
    this.#bodyTimer = -1;
    if (this.done) return;
    this.localReply(ERRORS.REQUEST_TIMEOUT, `Client sent no request body for ${this.listener.settings.idleTimeoutMs}ms`, this.filters.length);
  }

  onAbort(error: ProxyError): void {
    if (this.done) return;
    this.responseFlag = error.kind.flag;
    this.details = error.message;
    if (error.kind.status > 0 && !this.conn.responseStarted && error.kind.code !== 'DOWNSTREAM_RESET') {
      // The codec answers protocol errors itself; count the status it sent.
      this.responseCode = error.kind.status;
    }
    this.#finish(true);
  }

  onDrain(): void {
    if (this.downstreamBlocked) {
      this.downstreamBlocked = false;
      this.upstream?.pauseResponse(false);
    }
  }

  // --- what the request pipeline delivers: the router ---

  /** The request headers passed every filter: route them (called by the RouterSink). */
  routeRequest(h: HeaderMap, eos: boolean): void {
    if (this.#routeCleared && this.#routeInputsChanged(h)) this.route = this.listener.router.match(h);
    const route = this.route;
    if (route === null) {
      this.localReply(ERRORS.NO_ROUTE, `No route for "${h.get(':path')}" on listener "${this.listener.name}"`, this.filters.length);
      return;
    }
    const action = route.action;
    if (action.kind === 'direct') {
      this.details = 'direct_response';
      this.sendLocalReply(action.status, action.body ?? undefined, { headers: action.headers, details: 'direct_response' }, this.filters.length);
      return;
    }
    if (action.kind === 'redirect') {
      this.#redirect(route, h);
      return;
    }
    let clusterName = action.clusters[0].name;
    if (action.clusters.length > 1) {
      let r = Math.random() * action.totalWeight;
      for (const c of action.clusters) {
        r -= c.weight;
        if (r < 0) {
          clusterName = c.name;
          break;
        }
      }
    }
    this.clusterName = clusterName;
    const cluster = this.snapshot.clusters.get(clusterName)!;
    const path = h.get(':path')!;
    if (route.prefixRewrite !== undefined && route.prefix !== undefined) h.set(':path', route.prefixRewrite + path.slice(route.prefix.length));
    else if (route.regexRewrite !== undefined) {
      const q = path.indexOf('?');
      const p = q < 0 ? path : path.slice(0, q);
      h.set(':path', p.replace(route.regexRewrite.re, route.regexRewrite.substitution) + (q < 0 ? '' : path.slice(q)));
    }
    let newHost: string | undefined = route.hostRewrite;
    // An HTTP/1.0 request may come without Host: the upstream gets its own address then, as NGINX sends $proxy_host.
    if (newHost === undefined && (route.autoHostRewrite || !this.listener.settings.preserveHost || h.get(':authority') === '')) newHost = '';
    if (this.head.expectContinue) {
      h.remove('expect');
      if (!eos) this.conn.sendContinue();
    }
    h.frozen = true;
    const hashOn = route.hashOn ?? cluster.hashOn;
    let hashKey: string | undefined;
    if (hashOn !== undefined) {
      if (hashOn.header !== undefined) hashKey = h.get(hashOn.header.toLowerCase());
      else if (hashOn.cookie !== undefined) hashKey = cookieValue(h.getJoined('cookie'), hashOn.cookie);
      else hashKey = this.conn.socket.remoteAddress;
    }
    this.upstream = new UpstreamRequest(this, {
      cluster,
      headers: h,
      // A Content-Length the filters left that is not a number frames nothing: the body goes chunked.
      contentLength: eos ? 0 : contentLengthOf(h.get('content-length')),
      hashKey,
      overrideHost: this.#overrideHost,
      overrideStrict: this.#overrideStrict,
      retry: route.retry ?? cluster.retry,
      timeoutMs: route.timeoutMs > 0 ? route.timeoutMs : this.head.upgrade ? 0 : cluster.timeoutMs,
      idleTimeoutMs: route.idleTimeoutMs,
      bufferLimit: this.listener.settings.bufferLimit,
      upgrade: this.head.upgrade,
      hostRewrite: newHost,
    });
    this.upstream.start();
  }

  /**
   * Whether matching again could pick another route: always when some route matches on headers, else only when
   * `:path`, `:authority` or `:method` changed since the first match (a filter that adds an unrelated header
   * clears the route cache too, as in Envoy, and the answer would be the same route).
   */
  #routeInputsChanged(h: HeaderMap): boolean {
    return this.listener.router.readsHeaders || h.get(':path') !== this.originalPath ||
      h.get(':authority') !== this.originalAuthority || h.get(':method') !== this.head.method;
  }

  #redirect(route: Route, h: HeaderMap): void {
    const a = route.action as Extract<Route['action'], { kind: 'redirect' }>;
    let location = a.location;
    if (location === undefined) {
      const full = h.get(':path')!;
      const q = full.indexOf('?');
      let path = q < 0 ? full : full.slice(0, q);
      const query = q < 0 || a.stripQuery ? '' : full.slice(q);
      if (a.path !== undefined) path = a.path;
      else if (a.prefixRewrite !== undefined && route.prefix !== undefined) path = a.prefixRewrite + path.slice(route.prefix.length);
      location = `${a.scheme ?? 'http'}://${a.host ?? h.get(':authority')}${path}${query}`;
    }
    this.sendLocalReply(a.status, undefined, { headers: { location }, details: 'redirect' }, this.filters.length);
  }

  // --- the upstream's answers ---

  onResponseHead(status: number, reason: string, head: HeaderMap | UsualHead, contentLength: number): void {
    this.progress++;
    if (status === 101 && this.head.upgrade) {
      this.#upgrade(headersOf(head));
      return;
    }
    this.responseCode = status;
    this.reason = reason;
    this.#reasonStatus = status;
    if (this.upstream?.retriesExhausted && this.responseFlag === '-') this.responseFlag = ERRORS.RETRY_LIMIT_EXCEEDED.flag;
    const noBody = this.head.method === 'HEAD' || bodilessStatus(status) || contentLength === 0;
    if (noBody) this.#responseEos = true;
    if (this.filters.length === 0) {
      // No filters: straight to the client, without a pipeline; a usual head's lines go on as they came, unmade.
      if (head instanceof HeaderMap) this.writeResponseHead(head, noBody);
      else this.#forwardHead(status, head, contentLength, noBody);
      return;
    }
    // The filters get a map whose lines are read only if one of them needs them: one that adds headers, or does not
    // look at them, lets the upstream's lines go on as bytes.
    const headers = head instanceof HeaderMap ? head : unreadHeadersOf(head);
    this.responseHeaders = headers;
    this.#response(this.filters.length).headers(headers, noBody);
    // The read buffer is reused once the codec's callback returns: a filter still holding the head reads a copy.
    const unread = headers.unreadLines;
    if (unread instanceof ResponseHeadLines) unread.detach();
  }

  /** Writes a usual upstream head that no filter sees (`writeResponseHead` for a head not made into a map). */
  #forwardHead(status: number, head: UsualHead, contentLength: number, eos: boolean): void {
    this.conn.sendHead(status, head, { contentLength, noBody: eos }, this.reason);
    this.#bodyLeft = eos || this.head.method === 'HEAD' ? -1 : contentLength;
    if (eos) this.complete(null);
  }

  /** A custom HTTP/1 reason phrase for the response. */
  reason: string | undefined;
  /** The status `reason` was given with: a filter that changes `:status` makes the phrase the standard one. */
  #reasonStatus = 0;

  onResponseBody(chunk: Buffer, lent: boolean): void {
    if (this.done) return;
    this.progress++;
    const res = this.#res;
    if (res !== null) {
      // Filters may keep what they see: they get a copy of a lent chunk, unless none of them looks at the body.
      if (!lent) res.data(chunk, false);
      else if (res.bodyPassesThrough) this.writeResponseBody(chunk, false, true);
      else res.data(Buffer.from(chunk), false);
    } else if (this.filters.length === 0) this.writeResponseBody(chunk, false, lent);
  }

  onResponseTrailers(trailers: HeaderMap): void {
    if (this.done) return;
    this.progress++;
    this.#responseEos = true;
    if (this.#res !== null) this.#res.trailers(trailers);
    else if (this.filters.length === 0) this.complete(trailers);
  }

  onResponseEnd(): void {
    if (this.done || this.#responseEos) return;
    this.#responseEos = true;
    if (this.#res !== null) this.#res.data(EMPTY, true);
    else if (this.filters.length === 0) this.writeResponseBody(EMPTY, true);
  }

  onUpstreamFailure(error: ProxyError, afterHead: boolean): void {
    if (this.done) return;
    this.responseFlag = error.kind.flag;
    this.details = error.message;
    if (afterHead || this.conn.responseStarted) {
      this.listener.log('warn', error.message, this);
      this.#reset();
      return;
    }
    this.localReply(error.kind, undefined, this.filters.length, error.message);
  }

  onUpstreamDrain(): void {
    if (this.#upstreamBlocked) {
      this.#upstreamBlocked = false;
      this.conn.resume();
    }
  }

  #upstreamBlocked = false;

  blockRequest(blocked: boolean): void {
    if (blocked === this.#upstreamBlocked) return;
    this.#upstreamBlocked = blocked;
    if (blocked) this.conn.pause();
    else this.conn.resume();
  }

  // --- the response path ---

  #response(upTo: number): Pipeline {
    if (this.#res !== null) return this.#res;
    this.#res = new Pipeline(this.filters, 'response', new ClientSink(this, upTo), this.listener.settings.bufferLimit, this.filterMs, upTo);
    return this.#res;
  }

  /** The response headers passed every filter: write them (called by the ClientSink). */
  writeResponseHead(h: HeaderMap, eos: boolean): void {
    this.responseHeaders = h;
    const unread = h.unreadLines;
    // A map whose lines are unread has the upstream's status and Content-Length (a filter changing either read them).
    const usual = unread instanceof ResponseHeadLines ? unread : null;
    const status = usual !== null ? usual.status : Number(h.get(':status'));
    if (!(status >= 200 && status <= 999)) {
      // `:status` is checked to be three digits when set; a 1xx is still no final response (the client would wait).
      this.localReply(ERRORS.INTERNAL, undefined, 0, `A filter set :status ${h.get(':status')} on the final response`);
      return;
    }
    this.responseCode = status;
    if (status !== this.#reasonStatus) this.reason = undefined;
    const length = usual !== null ? usual.contentLength : contentLengthOf(h.get('content-length'));
    h.frozen = true;
    const state = this.#filterState;
    if (state !== null) {
      // Set by Lua's setHttp1ReasonPhrase and drainConnectionUponCompletion.
      const phrase = state.get('weir.http1_reason_phrase');
      if (typeof phrase === 'string' && validReasonPhrase(phrase)) this.reason = phrase;
      if (state.get('weir.drain_connection') === 'true') this.conn.closeWhenIdle(false);
    }
    this.conn.sendHead(status, h, { contentLength: length, noBody: eos }, this.reason);
    const bodiless = eos || bodilessStatus(status) || this.head.method === 'HEAD';
    this.#bodyLeft = bodiless ? -1 : length;
    if (eos) this.complete(null);
  }

  /** Response body bytes the written Content-Length still announces; -1 when it announces none (or no body goes). */
  #bodyLeft = -1;

  /**
   * The response body does not match the Content-Length written to the client (a filter changed one and not the
   * other): the client connection is reset, since any other ending would let it read a wrong message.
   */
  #lengthMismatch(what: string): void {
    this.responseFlag = ERRORS.INTERNAL.flag;
    this.details = `The response body is ${what} than the Content-Length sent to the client (filters changed one and not the other)`;
    this.listener.log('warn', this.details, this);
    this.#reset();
  }

  /** Response body that passed every filter (called by the ClientSink); `lent`: valid only during the call. */
  writeResponseBody(chunk: Buffer, eos: boolean, lent = false): void {
    if (this.#bodyLeft >= 0) {
      if (chunk.length > this.#bodyLeft) return this.#lengthMismatch('longer');
      this.#bodyLeft -= chunk.length;
    }
    this.bytesOut += chunk.length;
    if (!this.conn.sendBody(chunk, lent) && this.upstream !== null) {
      this.downstreamBlocked = true;
      this.upstream.pauseResponse(true);
    }
    if (eos) this.complete(null);
  }

  /** The response pipeline's index of chain filter `i`. */
  responseIndex(i: number): number {
    return this.#res === null ? -1 : this.#res.indexOf(i);
  }

  /** Resumes a direction at chain filter `i`. */
  resumeAt(i: number, direction: 'request' | 'response'): void {
    if (this.done) return;
    this.progress++;
    if (direction === 'request') {
      if (!this.requestHalted) this.#req?.resume(i);
    } else if (this.#res !== null) this.#res.resume(this.responseIndex(i));
  }

  /** Answers with a catalogued error. */
  localReply(kind: ErrorKind, message: string | undefined, upTo: number, details?: string): void {
    // After used-up retries the flag says both what failed and that retries ran out, as Envoy writes "UF,URX".
    this.responseFlag = this.upstream?.retriesExhausted ? `${kind.flag},${ERRORS.RETRY_LIMIT_EXCEEDED.flag}` : kind.flag;
    if (message !== undefined || details !== undefined) this.details = details ?? message!;
    this.listener.countError(kind);
    this.sendLocalReply(kind.status, kind.body, { details: kind.code.toLowerCase() }, upTo);
  }

  /** Sends a local reply through the response filters of chain filters [0, upTo). */
  sendLocalReply(status: number, body: string | Buffer | undefined, opts: LocalReplyOptions | undefined, upTo: number): void {
    if (this.done) return;
    if (opts?.details !== undefined && this.details === '') this.details = opts.details;
    if (opts?.code !== undefined && this.responseFlag === '-') {
      this.responseFlag = ERRORS[opts.code].flag;
      this.listener.countError(ERRORS[opts.code]);
    }
    if (this.conn.responseStarted) {
      // Too late for a reply: the client gets a reset, and the access log says why.
      this.#reset();
      return;
    }
    this.requestHalted = true;
    if (this.upstream !== null) this.upstream.cancel();
    // 1xx, 204 and 304 responses have no body, whatever the caller gave.
    const bodyless = bodilessStatus(status);
    const buf = body === undefined || bodyless ? null : typeof body === 'string' ? Buffer.from(body) : body;
    const given = opts?.headers;
    let headers: HeaderMap;
    if (given === undefined) {
      // The common case (errors, direct responses without headers): the list is built once, no lookups.
      const list = [':status', statusText(status)];
      if (buf !== null && buf.length > 0) list.push('content-type', 'text/plain');
      if (!bodyless) list.push('content-length', String(buf?.length ?? 0));
      headers = new HeaderMap(list);
    } else {
      headers = given instanceof HeaderMap ? given : HeaderMap.from(given);
      headers.list.unshift(':status', statusText(status));
      if (buf !== null && buf.length > 0 && !headers.has('content-type')) headers.add('content-type', 'text/plain');
      if (bodyless) headers.remove('content-length');
      else headers.set('content-length', String(buf?.length ?? 0));
    }
    if (this.#res !== null) {
      // A local reply from the response path: answer directly, the response filters already ran.
      this.#res = null;
      this.responseCode = status;
      this.responseHeaders = headers;
      this.bytesOut += buf?.length ?? 0;
      this.conn.sendResponse(status, headers, buf, opts?.reason);
      this.#finish(false);
      return;
    }
    this.reason = opts?.reason;
    this.#reasonStatus = status;
    this.#responseEos = true;
    const empty = buf === null || buf.length === 0;
    if (upTo === 0) {
      // No response filters to run: straight to the client.
      this.writeResponseHead(headers, empty);
      if (!empty && !this.done) this.writeResponseBody(buf, true);
      return;
    }
    const res = this.#response(upTo);
    res.headers(headers, empty);
    if (!empty && !this.done) res.data(buf, true);
  }

  /** A filter hook threw, rejected, or a runtime reported a failure. */
  filterFailed(i: number, error: unknown, direction: 'request' | 'response'): void {
    const name = this.entries[i]?.name ?? `#${i}`;
    const message = error instanceof Error ? error.message : String(error);
    this.listener.filterError(name, message, this);
    this.details = `filter "${name}" failed: ${message}`;
    if (direction === 'response' && this.conn.responseStarted) {
      this.responseFlag = ERRORS.FILTER_FAILURE.flag;
      this.#reset();
      return;
    }
    this.#res = direction === 'response' ? this.#res : null;
    this.localReply(ERRORS.FILTER_FAILURE, undefined, direction === 'request' ? i : 0, this.details);
  }

  /** Clears the route so that it is matched again when the request headers reach the router. */
  clearRouteCache(): void {
    this.#routeCleared = true;
  }

  /** Pins the endpoint the load balancer picks. */
  setUpstreamOverrideHost(host: string, strict: boolean): void {
    this.#overrideHost = host;
    this.#overrideStrict = strict;
  }

  /** Resets the stream: both connections closed, no response. */
  reset(): void {
    this.#reset();
  }

  #upgrade(headers: HeaderMap): void {
    const upstreamConn = this.upstream!.connection!;
    // A tunnel is quiet as long as its ends are: the stream idle watch is for filters that hold a request.
    this.#idleWatch?.cancel();
    this.responseCode = 101;
    this.conn.sendHead(101, headers, { contentLength: -1, noBody: true });
    const downRest = this.conn.upgrade();
    const upRest = upstreamConn.detach();
    tunnel(this.conn.socket, upstreamConn.socket, downRest, upRest, (inBytes, outBytes) => {
      this.bytesIn += inBytes;
      this.bytesOut += outBytes;
      this.#finish(false);
    });
  }

  /** Ends the response (with trailers); called by the ClientSink and on end of stream. */
  complete(trailers: HeaderMap | null): void {
    if (this.done) return;
    if (this.#bodyLeft > 0) return this.#lengthMismatch('shorter');
    this.conn.sendEnd(trailers);
    this.#finish(false);
  }

  #reset(): void {
    if (this.done) return;
    this.conn.destroy();
    this.#finish(true);
  }

  #finish(reset: boolean): void {
    if (this.done) return;
    this.done = true;
    this.#stopBodyTimer();
    this.#idleWatch?.cancel();
    this.requestHalted = true;
    if (reset && this.upstream !== null) this.upstream.cancel();
    if (reset && this.responseFlag === '-') this.responseFlag = 'DC';
    for (let i = 0; i < this.filters.length; i++) {
      const f = this.filters[i];
      try {
        f.onLog?.();
      } catch (err) {
        this.listener.filterError(this.entries[i].name, `onLog: ${(err as Error).message}`, this);
      }
    }
    this.listener.streamDone(this);
    publishStreamComplete(this);
    for (let i = 0; i < this.filters.length; i++) {
      try {
        this.filters[i].onDestroy?.();
      } catch (err) {
        this.listener.filterError(this.entries[i].name, `onDestroy: ${(err as Error).message}`, this);
      }
    }
    this.snapshot.release();
  }

  // --- StreamInfo ---

  get listenerName(): string {
    return this.listener.name;
  }
  get protocol(): string {
    return this.head.versionMinor === 0 ? 'HTTP/1.0' : 'HTTP/1.1';
  }
  get downstreamLocalAddress(): string {
    return this.conn.localAddress;
  }
  get downstreamRemoteAddress(): string {
    return this.conn.remoteAddress;
  }
  /**
   * The client's IP: the connection's peer, or with `xff_trusted_hops: N` the address N entries from the right
   * of x-forwarded-for as the client sent it (Envoy's rule), when there is one.
   */
  get downstreamClientAddress(): string {
    const hops = this.listener.settings.xffTrustedHops;
    if (hops > 0 && this.#clientXff !== undefined) {
      const parts = this.#clientXff.split(',');
      const ip = parts[parts.length - hops]?.trim();
      if (ip) return ip;
    }
    return this.conn.socket.remoteAddress ?? '';
  }
  get requestedServerName(): string {
    return '';
  }
  get routeName(): string | null {
    return this.route?.name ?? null;
  }
  get routeMetadata(): Readonly<Record<string, unknown>> {
    return this.route?.metadata ?? {};
  }
  get dynamicMetadata(): Map<string, Record<string, unknown>> {
    return (this.#dynamicMetadata ??= new Map());
  }
  get filterState(): Map<string, string | Buffer> {
    return (this.#filterState ??= new Map());
  }
  get upstreamAddress(): string | null {
    return this.upstream?.lastEndpoint?.address ?? null;
  }
  get attemptCount(): number {
    return this.upstream === null ? 0 : this.upstream.retries + 1;
  }
  get connectionId(): number {
    return connectionId(this.conn);
  }
}

function cookieValue(header: string | undefined, name: string): string | undefined {
  if (header === undefined) return undefined;
  for (const part of header.split(/;\s*/)) {
    const eq = part.indexOf('=');
    if (eq > 0 && part.slice(0, eq) === name) return part.slice(eq + 1);
  }
  return undefined;
}

const STATUS_TEXT: string[] = [];

/** The decimal text of a status code, made once per code. */
function statusText(status: number): string {
  return (STATUS_TEXT[status] ??= String(status));
}

/** Watches a stream a filter held: expires it after a full `stream_idle_timeout` without progress. */
class IdleWatch implements Expirable {
  readonly #stream: Stream;
  readonly #list: TimeoutList;
  #seen: number;
  #ticket: number;

  constructor(stream: Stream, list: TimeoutList) {
    this.#stream = stream;
    this.#list = list;
    this.#seen = stream.progress;
    this.#ticket = list.arm(this);
  }

  /** Stops watching (the stream ended or became a tunnel): the list lets go of the stream at once. */
  cancel(): void {
    this.#list.cancel(this.#ticket);
  }

  expire(): void {
    const s = this.#stream;
    if (s.done) return;
    if (s.progress !== this.#seen) {
      this.#seen = s.progress;
      this.#ticket = this.#list.arm(this);
      return;
    }
    s.idleExpired();
  }
}
