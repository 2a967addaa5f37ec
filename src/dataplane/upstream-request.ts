/**
 * One request to a cluster on behalf of a stream: picks an endpoint, takes a pooled connection, sends the
 * request, and retries on another endpoint when the policy allows, within per-try and overall timeouts.
 * The stream sees one response (or one failure), whatever the number of attempts.
 */
import type { HeaderMap } from '../core/headers.ts';
import { ProxyError } from '../core/errors.ts';
import { timeoutList, type TimeoutList, type TimeoutTicket, type Expirable } from '../core/timeout-list.ts';
import type { UpstreamConnection, ResponseSink, PoolWaiter, ConnectionSource, UsualHead } from './codec.ts';
import type { Cluster } from './upstream/cluster.ts';
import type { Endpoint, AttemptResult } from './upstream/endpoint.ts';
import type { RetrySettings } from './router.ts';
import type { AttemptFailure } from './upstream/retry-policy.ts';
import { monoNow } from '../core/clock.ts';

/** What the stream receives. */
export interface UpstreamListener {
  /** `headers`: a map, or a usual head as the codec read it, valid only during the call (`headersOf` makes it a map). */
  onResponseHead(status: number, reason: string, headers: HeaderMap | UsualHead, contentLength: number): void;
  /** `lent`: the chunk is valid only during the call (see `ResponseSink.onUpstreamBody`). */
  onResponseBody(chunk: Buffer, lent: boolean): void;
  onResponseTrailers(trailers: HeaderMap): void;
  onResponseEnd(): void;
  /** No response: every attempt failed, or the failure came after the head (then `afterHead`). */
  onUpstreamFailure(error: ProxyError, afterHead: boolean): void;
  /** The upstream can take more request body. */
  onUpstreamDrain(): void;
  /** Block or unblock reading the downstream request body (back-pressure while connecting). */
  blockRequest(blocked: boolean): void;
}

/** Settings of one upstream request. */
export interface UpstreamRequestOptions {
  cluster: Cluster;
  headers: HeaderMap;
  /** Request body length: -1 unknown (chunked), 0 none. */
  contentLength: number;
  hashKey: string | undefined;
  overrideHost: string | undefined;
  /** With an override host: answer 503 when that endpoint cannot be used, instead of picking another. */
  overrideStrict?: boolean;
  retry: RetrySettings;
  /** Overall deadline from the end of the request to the end of the response, across retries (0: none). */
  timeoutMs: number;
  /** Longest silence from the upstream while the response streams (0: none). */
  idleTimeoutMs: number;
  bufferLimit: number;
  upgrade: boolean;
  /** The Host to send instead of the client's: a name (host_rewrite), or "" for the endpoint's address. */
  hostRewrite?: string;
}

const DONE = 3;
/** No body kept (yet): most requests have none, so the arrays are made on the first chunk. */
const NO_CHUNKS: Buffer[] = [];

/** One upstream request with its attempts. */
export class UpstreamRequest implements ResponseSink, PoolWaiter, Expirable {
  readonly #l: UpstreamListener;
  readonly #o: UpstreamRequestOptions;
  #conn: UpstreamConnection | null = null;
  #pool: ConnectionSource | null = null;
  #endpoint: Endpoint | null = null;
  #tried: Endpoint[] | null = null;
  /** Body kept for a retry; null once it outgrew the buffer limit (no more retries then). */
  #replay: Buffer[] | null = NO_CHUNKS;
  #replayBytes = 0;
  #trailers: HeaderMap | null = null;
  #requestEnded = false;
  #headSeen = false;
  /** 0 idle, 1 connecting, 2 sending/receiving, 3 done. */
  #state = 0;
  retries = 0;
  #attemptStart = 0;
  #firstAttempt = 0;
  /** Ticket of the overall deadline in the route timeout's TimeoutList, or -1. */
  #deadline: TimeoutTicket = -1;
  /** When the deadline was armed (monoNow). */
  #deadlineFrom = 0;
  #deadlineList: TimeoutList | null = null;
  #tryTimer: NodeJS.Timeout | null = null;
  /** Ticket of the response idle timeout in its TimeoutList, or -1; armed once the head came, beside the deadline. */
  #idleTicket = -1;
  #idleList: TimeoutList | null = null;
  #backoff: NodeJS.Timeout | null = null;
  #blocked = false;
  /** Time from the first attempt to the response head, ms. */
  upstreamMs = -1;
  /** The last failure's flag, for the access log. */
  lastError: ProxyError | null = null;

  constructor(listener: UpstreamListener, opts: UpstreamRequestOptions) {
    this.#l = listener;
    this.#o = opts;
  }

  /** Set when the response is a retriable failure answered after the last allowed retry. */
  retriesExhausted = false;
  /** The endpoint of the latest attempt, for the access log. */
  lastEndpoint: Endpoint | null = null;

  /** The connection, once the response head was seen (used for upgrades). */
  get connection(): UpstreamConnection | null {
    return this.#conn;
  }

  /** Sets the Host of the request; the first rewrite keeps the client's Host in x-forwarded-host. */
  #rewriteHost(host: string): void {
    const h = this.#o.headers;
    h.frozen = false;
    if (!h.has('x-forwarded-host')) h.add('x-forwarded-host', h.get(':authority') ?? '');
    h.set(':authority', host);
    h.frozen = true;
  }

  /** Starts the first attempt. */
  start(): void {
    if (this.#o.contentLength === 0) {
      this.#requestEnded = true;
      this.#armDeadline();
    }
    this.#attempt();
  }

  /** Arms the per-try timeout of the current attempt, once the whole request is known (as the route timeout). */
  #armTryTimer(): void {
    const ms = this.#o.retry.perTryTimeoutMs;
    if (ms > 0 && this.#tryTimer === null) this.#tryTimer = setTimeout(onTryTimeout, ms, this);
  }

  /**
   * The route timeout runs from the end of the request to the end of the response, as in Envoy: a client that is
   * slow to send its body is the client's problem (the stream's body timeout), not the upstream's.
   */
  #armDeadline(): void {
    if (this.#o.timeoutMs > 0 && this.#deadline < 0 && this.#state !== DONE) {
      this.#deadlineList = timeoutList(this.#o.timeoutMs);
      this.#deadline = this.#deadlineList.arm(this);
      this.#deadlineFrom = monoNow();
    }
  }

  /** Request body from the stream's request pipeline. */
  data(chunk: Buffer, endOfStream: boolean): void {
    if (this.#state === DONE) return;
    const declared = this.#o.contentLength;
    if (declared >= 0) {
      this.#bodyBytes += chunk.length;
      if (this.#bodyBytes > declared || (endOfStream && this.#bodyBytes < declared)) {
        this.#lengthMismatch(this.#bodyBytes > declared ? 'longer' : 'shorter');
        return;
      }
    }
    if (chunk.length > 0) {
      if (this.#state === 2) {
        if (this.#replay !== null) this.#keep(chunk);
        if (!this.#conn!.writeBody(chunk)) this.#l.blockRequest(true);
      } else if (this.#replay !== null) {
        if (this.#replay === NO_CHUNKS) this.#replay = [];
        const kept = this.#replay;
        this.#keep(chunk);
        if (this.#replay === null) {
          // Connecting and no more room to keep the body for a retry: what was kept is still to be sent,
          // and reading stops until the connection is up.
          this.#pendingWhileBlocked = kept;
          this.#blocked = true;
          this.#l.blockRequest(true);
        }
      } else {
        if (this.#pendingWhileBlocked === NO_CHUNKS) this.#pendingWhileBlocked = [];
        this.#pendingWhileBlocked.push(chunk);
        if (!this.#blocked) {
          this.#blocked = true;
          this.#l.blockRequest(true);
        }
      }
    }
    if (endOfStream) this.#endRequest();
  }

  /** Keeps a body chunk for a retry; gives up keeping (no more retries) past the buffer limit. */
  #keep(chunk: Buffer): void {
    if (this.#replay === NO_CHUNKS) this.#replay = [];
    this.#replay!.push(chunk);
    this.#replayBytes += chunk.length;
    if (this.#replayBytes > this.#o.bufferLimit) this.#replay = null;
  }

  #pendingWhileBlocked: Buffer[] = NO_CHUNKS;

  /** Request body bytes passed on so far, against a known Content-Length. */
  #bodyBytes = 0;

  /**
   * The request body does not match the Content-Length sent upstream (a filter changed one and not the other):
   * sending it would desynchronise the connection, so the request fails (500) and the connection is closed.
   */
  #lengthMismatch(what: string): void {
    const afterHead = this.#headSeen;
    this.cancel();
    this.lastError = new ProxyError('INTERNAL', `The request body is ${what} than the Content-Length sent upstream (filters changed one and not the other)`);
    this.#l.onUpstreamFailure(this.lastError, afterHead);
  }

  /** Request trailers; they end the request. */
  trailers(trailers: HeaderMap): void {
    if (this.#state === DONE) return;
    if (this.#o.contentLength > this.#bodyBytes) {
      this.#lengthMismatch('shorter');
      return;
    }
    this.#trailers = trailers;
    this.#endRequest();
  }

  /** Abandons the request (downstream reset, local reply). */
  cancel(): void {
    if (this.#state === DONE) return;
    this.#state = DONE;
    this.#clearTimers();
    if (this.#conn !== null) this.#conn.abort();
    else if (this.#pool !== null) this.#pool.cancel(this);
    this.#conn = null;
    this.#endAttempt();
  }

  /** Back-pressure from the downstream: stop or resume reading the response. */
  pauseResponse(paused: boolean): void {
    if (this.#conn === null) return;
    if (paused) this.#conn.pause();
    else this.#conn.resume();
  }

  #endRequest(): void {
    this.#requestEnded = true;
    this.#armDeadline();
    if (this.#state === 1 || this.#state === 2) this.#armTryTimer();
    if (this.#state === 2) this.#conn!.endRequest(this.#trailers);
  }

  #attempt(): void {
    const o = this.#o;
    let ep = o.cluster.pick({ hashKey: o.hashKey, tried: this.#tried, overrideHost: o.overrideHost });
    if (ep !== null && o.overrideStrict && o.overrideHost !== undefined && ep.address !== o.overrideHost && ep.host !== o.overrideHost) {
      this.lastError ??= new ProxyError('NO_HEALTHY_UPSTREAM', `Override host "${o.overrideHost}" is not a usable endpoint of cluster "${o.cluster.name}"`);
      ep = null;
    }
    if (ep === null) {
      // No endpoint left to try: the last attempt's failure is the answer (or none was ever healthy).
      this.#fail(this.lastError ?? new ProxyError('NO_HEALTHY_UPSTREAM', `No healthy endpoint in cluster "${o.cluster.name}"`));
      return;
    }
    if (!o.cluster.breaker.tryAcquireRequest()) {
      o.cluster.overflow.inc();
      this.#fail(new ProxyError('UPSTREAM_OVERFLOW', `Cluster "${o.cluster.name}" has too many active requests`));
      return;
    }
    if (this.#retryFrom !== null) {
      // Only a retry that goes out counts: none does when no other endpoint is left.
      this.retries++;
      o.cluster.endpointMetrics(this.#retryFrom).retries.inc();
      this.#retryFrom = null;
    }
    this.#endpoint = ep;
    this.lastEndpoint = ep;
    ep.activeRequests++;
    (this.#tried ??= []).push(ep);
    this.#state = 1;
    this.#headSeen = false;
    this.#attemptStart = monoNow();
    if (this.#firstAttempt === 0) this.#firstAttempt = this.#attemptStart;
    o.cluster.endpointMetrics(ep).requests.inc();
    if (this.#requestEnded) this.#armTryTimer();
    if (o.hostRewrite !== undefined) this.#rewriteHost(o.hostRewrite === '' ? ep.address : o.hostRewrite);
    this.#pool = o.cluster.pool(ep);
    this.#pool.acquire(this);
  }

  onPoolReady(conn: UpstreamConnection, _reused: boolean): void {
    if (this.#state !== 1) {
      // Cancelled while connecting: hand the connection back untouched.
      conn.abort();
      return;
    }
    this.#conn = conn;
    this.#state = 2;
    const o = this.#o;
    conn.startRequest(o.headers, { contentLength: o.contentLength }, this, o.upgrade);
    const body = this.#replay ?? this.#pendingWhileBlocked;
    let writable = true;
    for (const chunk of body) writable = conn.writeBody(chunk);
    if (this.#replay === null) this.#pendingWhileBlocked = NO_CHUNKS;
    this.#blocked = false;
    // Reading resumes now, or on the connection's drain when the kept body filled its buffer.
    this.#l.blockRequest(!writable);
    if (this.#requestEnded) conn.endRequest(this.#trailers);
  }

  onPoolFailure(error: ProxyError): void {
    if (this.#state !== 1) return;
    if (error.kind.code === 'UPSTREAM_OVERFLOW') {
      this.#o.cluster.overflow.inc();
      this.#endAttempt();
      this.#fail(error);
      return;
    }
    this.#attemptFailed(error, 'connect-failure', 'connect-failure');
  }

  onUpstreamHead(status: number, reason: string, headers: HeaderMap | UsualHead, contentLength: number): void {
    if (this.#state !== 2) return;
    const o = this.#o;
    const ep = this.#endpoint!;
    if (status >= 400 && !this.#o.upgrade) {
      const backoff = this.#decideRetry(status);
      if (backoff !== null) {
        o.cluster.report(ep, status >= 500 ? '5xx' : 'success', status);
        this.lastError = new ProxyError('UPSTREAM_RESET', `Upstream "${ep.address}" answered ${status}`);
        this.#conn!.abort();
        this.#conn = null;
        this.#endAttempt();
        this.#scheduleRetry(backoff);
        return;
      }
      // A retriable answer with the retries used up goes to the client as it is, flagged URX (as Envoy does).
      if (this.retries > 0 && this.#noRetryReason === 'limit') this.retriesExhausted = true;
    }
    this.#headSeen = true;
    if (status === 101 && o.upgrade) {
      // The exchange becomes a tunnel: it no longer holds a request slot; the connection stays with the stream.
      this.#state = DONE;
      this.#clearTimers();
      o.cluster.report(ep, 'success', status);
      this.#endAttempt();
      this.upstreamMs = monoNow() - this.#firstAttempt;
      this.#l.onResponseHead(status, reason, headers, contentLength);
      return;
    }
    // The deadline stays: it covers the response until its end.
    this.#clearTimers(true);
    const now = monoNow();
    this.upstreamMs = now - this.#firstAttempt;
    o.cluster.endpointMetrics(ep).latency.observe(now - this.#attemptStart);
    o.cluster.report(ep, status >= 500 ? '5xx' : 'success', status);
    if (o.idleTimeoutMs > 0) {
      this.#idleList = timeoutList(o.idleTimeoutMs);
      this.#idleTicket = this.#idleList.arm(this);
    }
    this.#l.onResponseHead(status, reason, headers, contentLength);
  }

  onUpstreamBody(chunk: Buffer, lent: boolean): void {
    if (this.#state !== 2) return;
    if (this.#idleTicket >= 0) {
      this.#idleList!.cancel(this.#idleTicket);
      this.#idleTicket = this.#idleList!.arm(this);
    }
    this.#l.onResponseBody(chunk, lent);
  }

  onUpstreamTrailers(trailers: HeaderMap): void {
    if (this.#state === 2) this.#l.onResponseTrailers(trailers);
  }

  onUpstreamEnd(): void {
    if (this.#state !== 2) return;
    // A response that completes before the request body did: the rest of the body has nowhere to go,
    // so the connection cannot be reused (as Envoy resets the upstream stream).
    if (!this.#requestEnded) this.#conn?.abort();
    this.#state = DONE;
    this.#clearTimers();
    this.#endAttempt();
    this.#l.onResponseEnd();
  }

  onUpstreamError(error: ProxyError, afterHead: boolean): void {
    if (this.#state !== 2) return;
    this.#conn = null;
    if (afterHead || this.#headSeen) {
      this.#state = DONE;
      this.#clearTimers();
      this.#o.cluster.report(this.#endpoint!, 'reset');
      this.#o.cluster.endpointMetrics(this.#endpoint!).errors.inc();
      this.#endAttempt();
      this.lastError = error;
      this.#l.onUpstreamFailure(error, true);
      return;
    }
    this.#attemptFailed(error, 'reset', 'reset');
  }

  onUpstreamDrain(): void {
    this.#l.onUpstreamDrain();
  }

  /** Per-try timeout fired. */
  tryTimedOut(): void {
    this.#tryTimer = null;
    if (this.#state !== 1 && this.#state !== 2) return;
    const ep = this.#endpoint!;
    this.#o.cluster.endpointMetrics(ep).timeouts.inc();
    if (this.#conn !== null) this.#conn.abort();
    else this.#pool?.cancel(this);
    this.#conn = null;
    this.#attemptFailed(
      new ProxyError('UPSTREAM_TIMEOUT', `Upstream "${ep.address}" of cluster "${this.#o.cluster.name}" did not answer within the per-try timeout`),
      'timeout',
      'timeout',
    );
  }

  /**
   * Called by a TimeoutList: before the response head, the overall deadline passed (no more attempts); after it,
   * the deadline passed before the response ended, or the response went silent for longer than the idle timeout.
   */
  expire(): void {
    if (this.#headSeen) {
      // Both timeouts call here (their lists may be one list): the deadline's is due when its time has run out.
      if (this.#deadline >= 0 && monoNow() - this.#deadlineFrom >= this.#o.timeoutMs) this.#responseTimedOut();
      else this.#idleTimedOut();
      return;
    }
    this.#deadline = -1;
    if (this.#state === DONE) return;
    const ep = this.#endpoint;
    if (this.#conn !== null) this.#conn.abort();
    else this.#pool?.cancel(this);
    this.#conn = null;
    if (ep !== null) {
      this.#o.cluster.endpointMetrics(ep).timeouts.inc();
      this.#o.cluster.report(ep, 'timeout');
      this.#endAttempt();
    }
    this.#fail(new ProxyError('UPSTREAM_TIMEOUT', `Cluster "${this.#o.cluster.name}" did not answer within ${this.#o.timeoutMs}ms`));
  }

  #idleTimedOut(): void {
    this.#idleTicket = -1;
    this.#failAfterHead(new ProxyError('UPSTREAM_TIMEOUT', `Upstream "${this.lastEndpoint?.address}" went idle while sending the response`));
  }

  /** The route timeout passed while the response was still coming: the exchange is cut off (the client's reset). */
  #responseTimedOut(): void {
    this.#deadline = -1;
    const ep = this.#endpoint;
    if (this.#state !== 2 || ep === null) return;
    this.#o.cluster.endpointMetrics(ep).timeouts.inc();
    this.#failAfterHead(new ProxyError('UPSTREAM_TIMEOUT', `Cluster "${this.#o.cluster.name}" did not complete the response within ${this.#o.timeoutMs}ms`));
  }

  #failAfterHead(error: ProxyError): void {
    if (this.#state !== 2) return;
    this.#state = DONE;
    this.#clearTimers();
    this.#conn?.abort();
    this.#conn = null;
    this.#endAttempt();
    this.lastError = error;
    this.#l.onUpstreamFailure(error, true);
  }

  /** Backoff elapsed: next attempt. */
  backoffDone(): void {
    this.#backoff = null;
    this.#o.cluster.breaker.releaseRetry();
    if (this.#state === 0) this.#attempt();
  }

  #attemptFailed(error: ProxyError, result: AttemptResult, failure: AttemptFailure): void {
    const ep = this.#endpoint!;
    this.#o.cluster.endpointMetrics(ep).errors.inc();
    this.#o.cluster.report(ep, result);
    this.#endAttempt();
    this.lastError = error;
    const backoff = this.#decideRetry(failure);
    if (backoff === null) {
      // The failure itself is the answer (502 for a reset, 503 for a connect failure); used-up retries add URX.
      if (this.#noRetryReason === 'limit' && this.retries > 0) this.retriesExhausted = true;
      this.#fail(error);
    }
    else this.#scheduleRetry(backoff);
  }

  /** Returns the backoff before a retry (the retry slot then taken), or null when no retry may happen. */
  #decideRetry(failure: AttemptFailure): number | null {
    const o = this.#o;
    const d = o.retry.policy.decide({ method: o.headers.get(':method')!, retries: this.retries, failure });
    if (!d.retry) {
      this.#noRetryReason = d.reason;
      return null;
    }
    if (this.#replay === null || this.#state === DONE) return null;
    // Retries go to another endpoint; with none left, the failure (or the upstream's own answer) stands.
    if (o.cluster.pick({ hashKey: o.hashKey, tried: this.#tried, overrideHost: o.overrideHost }) === null) {
      this.#noRetryReason = 'no-endpoint';
      return null;
    }
    if (!o.cluster.breaker.tryAcquireRetry(o.retry.policy.budget)) {
      this.#noRetryReason = 'budget';
      return null;
    }
    return d.backoffMs;
  }

  #noRetryReason = '';
  /** The endpoint whose failure the next attempt retries; counted once that attempt really starts. */
  #retryFrom: Endpoint | null = null;

  #scheduleRetry(backoffMs: number): void {
    this.#retryFrom = this.lastEndpoint;
    this.#state = 0;
    this.#backoff = setTimeout(onBackoff, backoffMs, this);
  }

  /** Ends the accounting of the current attempt (active requests, breaker, per-try timer). */
  #endAttempt(): void {
    const ep = this.#endpoint;
    if (ep === null) return;
    ep.activeRequests--;
    this.#o.cluster.breaker.releaseRequest();
    this.#endpoint = null;
    if (this.#tryTimer !== null) {
      clearTimeout(this.#tryTimer);
      this.#tryTimer = null;
    }
  }

  #fail(error: ProxyError): void {
    if (this.#state === DONE) return;
    this.#state = DONE;
    this.#clearTimers();
    this.lastError = error;
    this.#l.onUpstreamFailure(error, false);
  }

  /** Cancels the timers; with `keepDeadline`, all but the route timeout's deadline. */
  #clearTimers(keepDeadline = false): void {
    if (this.#deadline >= 0 && !keepDeadline) {
      this.#deadlineList!.cancel(this.#deadline);
      this.#deadline = -1;
    }
    if (this.#tryTimer !== null) clearTimeout(this.#tryTimer);
    if (this.#backoff !== null) {
      clearTimeout(this.#backoff);
      this.#o.cluster.breaker.releaseRetry();
    }
    if (this.#idleTicket >= 0 && this.#state === DONE) {
      this.#idleList!.cancel(this.#idleTicket);
      this.#idleTicket = -1;
    }
    this.#tryTimer = this.#backoff = null;
  }
}

function onTryTimeout(r: UpstreamRequest): void {
  r.tryTimedOut();
}
function onBackoff(r: UpstreamRequest): void {
  r.backoffDone();
}
