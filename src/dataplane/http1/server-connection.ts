/**
 * The downstream side of the HTTP/1.1 codec: one instance per accepted connection. It reads the usual request head
 * itself (usual-head.ts) and every other one with llhttp, hands each request to the listener's `onRequest`, and
 * writes the response that the stream produces. Responses go out in request order; a pipelined request waits
 * (reading paused) until the one before it is done.
 */
import { Buffer } from 'node:buffer';
import type { DownstreamConnection } from '../codec.ts';
import type { Socket } from 'node:net';
import { HeaderMap, bodilessStatus, checkHeaders, contentLengthOf } from '../../core/headers.ts';
import { ProxyError, type ErrorCode } from '../../core/errors.ts';
import { batchedListener, createParser, METHODS, type Parser, type ParserHandler, type ParseResult } from './llhttp.ts';
import { addedLines, copyUsualHeadLines, forwardedDate, forwardedLength, headersOf, readUsualRequestHead, ResponseHeadLines, type UsualHead } from './usual-head.ts';
import { readIntoSharedBuffer } from './shared-reads.ts';
import { normalizePath } from '../../core/path.ts';
import { reasonPhrase, headerLines, chunkedEnd, rawToList, lowerName, statusLine, nominatesHeaders, dropNominated, isConnectionHeader, dropConnectionHeaders } from './wire.ts';
import { Coalescer, exchangeOpened, exchangeClosed, ioEnter, ioExit } from './coalescer.ts';
import { formatAddress } from '../../core/units.ts';
import { monoNow, wallNow } from '../../core/clock.ts';

/** A parsed request head. `headers` starts with :authority, :path, :method, :scheme. */
export interface RequestHead {
  readonly method: string;
  readonly versionMinor: number;
  readonly headers: HeaderMap;
  readonly keepAlive: boolean;
  readonly upgrade: boolean;
  /** True when the request has a body (Content-Length > 0 or chunked). */
  readonly hasBody: boolean;
  readonly expectContinue: boolean;
}

/** What the lifecycle gives the codec for each request: where the request body goes. */
export interface RequestSink {
  /** Called once the codec made this exchange the active one: run the request path. */
  start(): void;
  onBody(chunk: Buffer): void;
  onTrailers(trailers: HeaderMap): void;
  onEnd(): void;
  /** The client went away or sent something invalid before the exchange completed. */
  onAbort(error: ProxyError): void;
  /** The downstream socket can take more response data. */
  onDrain(): void;
}

/** Framing of a response the stream sends. */
export interface ResponseFraming {
  /** Known length, or -1 for chunked (HTTP/1.1) or close-delimited (HTTP/1.0). */
  contentLength: number;
  /** No body follows (HEAD, 204, 304, or an empty local reply with content-length written). */
  noBody: boolean;
}

/** Connection-level settings, from the listener config. */
export interface ServerOptions {
  maxHeaderSize: number;
  maxUriSize: number;
  /** Normalise the request path (dot segments, unreserved %XX) before anything sees it; `mergeSlashes`: also "//". */
  normalizePath: boolean;
  mergeSlashes: boolean;
  headerTimeoutMs: number;
  idleTimeoutMs: number;
  /** Called for each request; returns the sink for its body. */
  onRequest(conn: ServerConnection, head: RequestHead): RequestSink;
  /** Counts connections in and out (active connections gauge). */
  onConnectionClose?(conn: ServerConnection): void;
  /**
   * A request was refused before it became a stream (a bad head or body framing, a head that came too late):
   * `head` is its request line when it was read. Called once per refusal, for the access log and the counters.
   */
  onRejected?(conn: ServerConnection, err: ProxyError, status: number, head: { method: string; path: string } | null): void;
}

interface Queued {
  head: RequestHead;
  events: (Buffer | HeaderMap | null)[];
}

const CONTINUE = 'HTTP/1.1 100 Continue\r\n\r\n';
/** The largest body that a response head's buffer leaves room for: with the head, it stays in Buffer's shared pool (4 KiB). */
const BODY_ROOM_MAX = 3 * 1024;

/** One downstream connection. */
export class ServerConnection implements DownstreamConnection {
  readonly socket: Socket;
  readonly localAddress: string;
  readonly remoteAddress: string;
  readonly #opts: ServerOptions;
  readonly #out: Coalescer;
  /**
   * llhttp, for the requests that usual-head.ts does not read: made for the first of them, and given up when the
   * connection idles (see `park`). Null before and after.
   */
  #parser: Parser | null;
  readonly #handler: ParserHandler;
  /** monoNow() when the connection last became idle between requests. */
  #idleSince: number;
  /** The sink receiving body events of the request being parsed (null between requests). */
  #parsing: RequestSink | Queued | null = null;
  /** Requests parsed while an earlier response was still going out. */
  #queue: Queued[] = [];
  /**
   * A chunked request whose head was parsed by the current execute(): it starts once execute() returns, so that
   * a malformed chunk in the same bytes rejects it before anything reaches the upstream.
   */
  #deferred: Queued | null = null;
  /** A malformed request pipelined behind ones being answered: its error reply goes out once they are done. */
  #failAfter: ProxyError | null = null;
  /** The request line of the last head parsed, for the access log of a request refused later (its body framing). */
  #lastMethod = '';
  #lastUrl = '';
  /** The exchange whose response is being written. */
  #active: RequestSink | null = null;
  #activeHead: RequestHead | null = null;
  #requestDone = false;
  #responseStarted = false;
  #chunked = false;
  #closeAfter = false;
  #noBody = false;
  #closed = false;
  #upgraded = false;
  #pendingUpgrade = false;
  #finishWhenRead = false;
  #tornDown = false;
  #paused = 0;
  /** After an upgrade request's head: reads are no longer parsed but pushed to the socket, as 'data' for the tunnel. */
  #tunnelReads = false;
  /**
   * The header or idle timeout: `#deadline` (monoNow() ms) is when it expires. One pending native timer
   * serves many deadlines: moving the deadline later leaves it alone, and when it fires early it waits out the
   * rest, so a keep-alive request costs no timer of its own.
   */
  #timer: NodeJS.Timeout | null = null;
  #timerAt = 0;
  #deadline = 0;
  #timerKind: 'header' | 'idle' | null = null;
  /**
   * The head of the request being parsed was read (its method and target are known) and its message has not ended:
   * a refusal of it is logged with its request line.
   */
  #headRead = false;
  /** Set by `upgrade()`: bytes received after the upgrade request's head. */
  #upgradeHead: Buffer | null = null;

  constructor(socket: Socket, opts: ServerOptions) {
    this.socket = socket;
    this.#out = new Coalescer(socket);
    this.#opts = opts;
    this.localAddress = hostPort(socket.localAddress, socket.localPort);
    this.remoteAddress = hostPort(socket.remoteAddress, socket.remotePort);
    this.#handler = {
      onHead: (minor, raw, method, url, _s, _r, upgrade, keepAlive, major) => this.#onHead(minor, raw, METHODS[method], url, upgrade, keepAlive, major),
      onBody: (chunk) => this.#event(chunk),
      onTrailers: (raw) => this.#event(new HeaderMap(rawToList(raw))),
      onComplete: () => this.#event(null),
    };
    this.#parser = null;
    this.#idleSince = monoNow();
    socket.setNoDelay(true);
    if (!readIntoSharedBuffer(socket, this.#onBytes)) socket.on('data', this.#onData);
    socket.on('end', () => this.#onEnd());
    socket.on('error', () => socket.destroy());
    socket.on('close', () => this.#teardown('DOWNSTREAM_RESET'));
    socket.on('drain', () => this.#active?.onDrain());
    this.#arm('header');
  }

  /** True once the response head of the active exchange was written. */
  get responseStarted(): boolean {
    return this.#responseStarted;
  }

  /** Writes 100 Continue, when the client asked for it and no response has started (never to HTTP/1.0). */
  sendContinue(): void {
    if (!this.#responseStarted && !this.#closed && this.#activeHead !== null && this.#activeHead.versionMinor >= 1) this.#out.text(CONTINUE);
  }

  /**
   * Writes the response head of the active exchange. `reason` overrides the standard phrase.
   * Returns false if the socket is gone.
   */
  sendHead(status: number, headers: HeaderMap | UsualHead, framing: ResponseFraming, reason?: string, localBody = 0): boolean {
    if (this.#closed || this.#responseStarted) return false;
    this.#responseStarted = true;
    const line = statusLine(status, reason);
    let usual: UsualHead | null = null;
    let added = '';
    if (!(headers instanceof HeaderMap)) usual = headers;
    else {
      // A map whose lines no filter read: they are still the upstream's, and what filters added goes after them.
      const unread = headers.unreadLines;
      if (unread instanceof ResponseHeadLines && (usual = unread.current()) !== null) added = addedLines(headers.added);
    }
    if (usual !== null) {
      // A usual upstream head: its lines go on as they came, copied from the read buffer.
      const lines = forwardedLength(usual);
      if (lines >= 0) {
        const tail = added + this.#framing(status, framing, forwardedDate);
        const size = line.length + lines + tail.length;
        const out = Buffer.allocUnsafe(size + this.#bodyRoom(framing.contentLength));
        let at = out.write(line, 0, 'latin1');
        at = copyUsualHeadLines(usual, out, at);
        out.write(tail, at, 'latin1');
        this.#out.bytesWithRoom(out, size);
        return true;
      }
    }
    if (!(headers instanceof HeaderMap)) headers = headersOf(headers);
    if (headers.unchecked) checkHeaders(headers);
    const text = line + headerLines(headers, true, status === 101) + this.#framing(status, framing, headers.has('date'));
    const room = localBody > 0 ? localBody : this.#bodyRoom(framing.contentLength);
    if (room === 0) this.#out.text(text);
    else {
      const out = Buffer.allocUnsafe(text.length + room);
      out.write(text, 0, 'latin1');
      this.#out.bytesWithRoom(out, text.length);
    }
    return true;
  }

  /**
   * The room to leave after a response head for its body, so that a small body of known length (`contentLength`)
   * goes out in the head's buffer (see `Coalescer.bytesWithRoom`); 0 for none. Call after `#framing`.
   */
  #bodyRoom(contentLength: number): number {
    return this.#noBody || contentLength <= 0 || contentLength > BODY_ROOM_MAX ? 0 : contentLength;
  }

  /**
   * The lines of a response head after its headers, up to the empty line: Date (unless the head has one), the
   * framing, the connection's options. Sets how the body is written.
   */
  #framing(status: number, framing: ResponseFraming, hasDate: boolean): string {
    const head = this.#activeHead!;
    let out = hasDate ? '' : 'date: ' + httpDate() + '\r\n';
    // 1xx, 204 and 304 have no body, whatever follows (a filter may have changed the status of one that had).
    this.#noBody = framing.noBody || bodilessStatus(status);
    const isHead = head.method === 'HEAD';
    if (status === 101) {
      out += 'connection: upgrade\r\n';
    } else {
      if (framing.contentLength >= 0) {
        if (!bodilessStatus(status)) out += 'content-length: ' + framing.contentLength + '\r\n';
      } else if (!framing.noBody || isHead) {
        if (head.versionMinor >= 1) {
          if (!isHead) this.#chunked = true;
          out += 'transfer-encoding: chunked\r\n';
        } else this.#closeAfter = true;
      }
      // A response that starts before the request body was read (a 413, an early 403) ends the connection, since
      // the rest of the body cannot be skipped safely: say so, or a keep-alive client sends its next request into
      // a connection that is closing.
      if (!head.keepAlive || this.#closeAfter || (!this.#requestDone && head.hasBody)) {
        this.#closeAfter = true;
        out += 'connection: close\r\n';
      } else if (head.versionMinor === 0) out += 'connection: keep-alive\r\n';
    }
    if (isHead) this.#noBody = true;
    return out + '\r\n';
  }

  /** Writes a body chunk (`lent`: valid only during the call); returns false when the caller should wait for `onDrain`. */
  sendBody(chunk: Buffer, lent = false): boolean {
    if (this.#closed || this.#noBody || chunk.length === 0) return !this.#closed;
    const out = this.#out;
    if (this.#chunked) out.text(chunk.length.toString(16) + '\r\n');
    if (lent) out.lent(chunk);
    else out.bytes(chunk);
    if (this.#chunked) out.text('\r\n');
    return out.writable;
  }

  /** Ends the active response (with trailers when chunked); the next pipelined request may proceed. */
  sendEnd(trailers: HeaderMap | null): void {
    if (this.#closed) return;
    if (this.#chunked) this.#out.text(chunkedEnd(trailers));
    this.#finishExchange();
  }

  /** Writes a complete response in one go (local replies). */
  sendResponse(status: number, headers: HeaderMap, body: Buffer | null, reason?: string): void {
    const isHead = this.#activeHead?.method === 'HEAD';
    const len = body === null ? 0 : body.length;
    const noBody = bodilessStatus(status);
    const inline = isHead || noBody || len > BODY_ROOM_MAX ? 0 : len;
    if (!this.sendHead(status, headers, { contentLength: noBody ? -1 : len, noBody: true }, reason, inline)) return;
    if (!isHead && !noBody && body !== null && len > 0) this.#out.bytes(body);
    this.#chunked = false;
    this.#finishExchange();
  }

  /**
   * Makes the next response the last one (Connection: close). With `closeIdleNow`, a connection with no
   * exchange in progress closes at once; without it, it stays until its next response or its idle timeout
   * (closing idle keep-alive connections races with clients that are sending on them).
   */
  closeWhenIdle(closeIdleNow: boolean): void {
    this.#closeAfter = true;
    if (closeIdleNow && this.#active === null && this.#parsing === null && this.#queue.length === 0) {
      this.#closed = true;
      this.#end();
    }
  }

  /** Stops reading from the client (back-pressure); balanced by `resume`. */
  pause(): void {
    if (this.#paused++ > 0) return;
    this.socket.pause();
  }

  /** Resumes reading after `pause`. */
  resume(): void {
    if (this.#paused > 0 && --this.#paused === 0 && !this.#closed) this.socket.resume();
  }

  /** Closes the connection at once, without a response (stream reset). */
  destroy(): void {
    this.socket.destroy();
  }

  /**
   * Hands the raw socket over for a tunnel (WebSocket) after a 101: returns the bytes the client
   * sent after its request head. The connection stops parsing HTTP.
   */
  upgrade(): Buffer {
    this.#upgraded = true;
    this.#out.flush();
    this.#stopTimer();
    this.socket.removeAllListeners('data');
    this.socket.removeAllListeners('drain');
    this.socket.removeAllListeners('end');
    this.#parser?.close();
    if (this.#active !== null) exchangeClosed();
    this.#active = null;
    const head = this.#upgradeHead ?? Buffer.alloc(0);
    this.#upgradeHead = null;
    return head;
  }

  /** Flushes what is queued, then half-closes; the socket closes once the client's FIN is read. */
  #end(): void {
    this.#out.flush();
    this.socket.end();
    this.#readToEnd();
  }

  /** After the last response: reads go on, unparsed, even where a pause stopped them, for the client's FIN. */
  #readToEnd(): void {
    this.#closed = true;
    this.#paused = 0;
    this.socket.resume();
  }

  /**
   * A request head, read by usual-head.ts or by llhttp (`method` is undefined when llhttp read one weir has no name
   * for); `lower`: the names in `raw` are in lower case already (usual-head.ts gives them so).
   */
  #onHead(minor: number, raw: string[], method: string | undefined, url: string, upgrade: boolean, keepAlive: boolean, major: number, lower = false): number {
    if (major !== 1) throw new ProxyError('HTTP_VERSION_NOT_SUPPORTED', `HTTP/${major}.${minor} is not supported on an HTTP/1.1 listener`);
    this.#clearTimer();
    this.#lastUrl = url;
    this.#lastMethod = '';
    if (method === undefined) throw new ProxyError('NOT_IMPLEMENTED', 'The request method has no name in weir');
    this.#lastMethod = method;
    this.#headRead = true;
    if (url.length > this.#opts.maxUriSize) throw new ProxyError('URI_TOO_LONG');
    const parserUpgrade = upgrade;
    if (upgrade && minor === 0) {
      // Upgrade is ignored in HTTP/1.0 (RFC 9110 section 7.8): the request goes on without it. llhttp stopped after
      // the head, so the connection closes after the response, as after a refused upgrade.
      upgrade = false;
      this.#pendingUpgrade = true;
    }
    const list = [':authority', '', ':path', url, ':method', method, ':scheme', 'http'];
    let hasBody = false;
    let chunked = false;
    let expectContinue = false;
    let hosts = 0;
    let nominating = false;
    let connectionHeaders = false;
    let transferEncoding = '';
    for (let i = 0; i < raw.length; i += 2) {
      const name = lower ? raw[i] : lowerName(raw[i]);
      const value = raw[i + 1];
      if (name === 'host') {
        if (hosts++ > 0) throw new ProxyError('DOWNSTREAM_PROTOCOL_ERROR', 'Request has more than one Host header');
        list[1] = value;
        continue;
      }
      if (name === 'content-length') {
        // llhttp takes lengths up to 2^64 - 1; past 2^53 - 1 weir would forward another length than the one it reads.
        if (contentLengthOf(value) < 0) throw new ProxyError('REQUEST_BODY_TOO_LARGE', `Content-Length ${value.trim()} is larger than weir can frame`);
        hasBody = value !== '0';
      }
      else if (name === 'transfer-encoding') {
        transferEncoding = transferEncoding === '' ? value : transferEncoding + ', ' + value;
        hasBody = chunked = true;
      }
      else if (name === 'expect' && value.toLowerCase() === '100-continue') expectContinue = true;
      else if (name === 'upgrade' && upgrade && value.trim().toLowerCase() === 'h2c') {
        // An h2c upgrade would tunnel HTTP/2 straight to the upstream, past routing and filters (h2c
        // smuggling): as Envoy does, the request goes on as plain HTTP/1.1 without it.
        upgrade = false;
        this.#pendingUpgrade = true;
        continue;
      } else if (name === 'http2-settings') continue;
      else if (name === 'connection' && !nominating) nominating = nominatesHeaders(value);
      if (!connectionHeaders && isConnectionHeader(name)) connectionHeaders = true;
      list.push(name, value);
    }
    if (nominating) dropNominated(list);
    if (connectionHeaders) dropConnectionHeaders(list, upgrade);
    if (chunked) {
      // llhttp rejects codings that do not end in chunked (400, RFC 9112 section 6.1) but accepts "gzip, chunked",
      // in one field or in two; weir decodes only chunked, so other codings get 501, as in nginx.
      const codings = transferEncoding.toLowerCase().split(',').map((c) => c.trim());
      if (codings.length > 1) throw new ProxyError('NOT_IMPLEMENTED', `Transfer-Encoding "${transferEncoding}" is not supported`);
      // An HTTP/1.0 message with Transfer-Encoding has faulty framing: serve it, then close (RFC 9112 section 6.1).
      if (minor === 0) keepAlive = false;
    }
    if (minor >= 1 && hosts === 0) throw new ProxyError('DOWNSTREAM_PROTOCOL_ERROR', 'HTTP/1.1 request without a Host header');
    if (url.charCodeAt(0) !== 47 /* / */) absoluteForm(list, url);
    // A fragment is not part of a request (RFC 9112 section 3.2); forwarded, "/admin#x" would pass a route for
    // "/admin" that the upstream then serves. Envoy refuses it too.
    if (list[3].includes('#')) throw new ProxyError('DOWNSTREAM_PROTOCOL_ERROR', `Invalid request target "${list[3].slice(0, 100)}": it has a fragment ("#")`);
    const opts = this.#opts;
    if ((opts.normalizePath || opts.mergeSlashes) && list[3].charCodeAt(0) === 47) list[3] = normalizePath(list[3], opts.normalizePath, opts.mergeSlashes);
    // Host is uri-host [":" port] (RFC 9110 section 7.2): the characters Envoy allows in an authority, nothing else.
    if (!AUTHORITY.test(list[1])) throw new ProxyError('DOWNSTREAM_PROTOCOL_ERROR', `Invalid Host "${list[1].slice(0, 100)}"`);
    if (method === 'CONNECT') throw new ProxyError('DOWNSTREAM_PROTOCOL_ERROR', 'CONNECT is not supported');
    if (upgrade) this.#pendingUpgrade = true;
    const head: RequestHead = { method, versionMinor: minor, headers: new HeaderMap(list), keepAlive, upgrade, hasBody, expectContinue };
    if (this.#active === null && this.#queue.length === 0 && this.#deferred === null) {
      if (chunked) this.#parsing = this.#deferred = { head, events: [] };
      else this.#start(head, true);
    } else {
      const q: Queued = { head, events: [] };
      this.#queue.push(q);
      this.#parsing = q;
      this.pause();
    }
    if (!hasBody && !parserUpgrade && !this.#pendingUpgrade) {
      // The request ends with its head: completed here, without the parser's completion callback (see ParserHandler).
      this.#event(null);
      return 3;
    }
    return 0;
  }

  /** Makes `head` the active exchange; `parsing` says whether its body is still being parsed. */
  #start(head: RequestHead, parsing: boolean, requestDone = false): RequestSink {
    this.#activeHead = head;
    this.#responseStarted = false;
    this.#chunked = false;
    this.#noBody = false;
    this.#requestDone = requestDone;
    const sink = this.#opts.onRequest(this, head);
    if (this.#active === null) exchangeOpened();
    this.#active = sink;
    if (parsing) this.#parsing = sink;
    sink.start();
    return sink;
  }

  #event(ev: Buffer | HeaderMap | null): void {
    if (ev === null) this.#headRead = false;
    const target = this.#parsing;
    if (target === null) return;
    if ('events' in target) {
      target.events.push(ev);
      if (ev === null) this.#parsing = null;
      return;
    }
    if (ev === null) {
      this.#parsing = null;
      this.#requestDone = true;
      target.onEnd();
      if (this.#finishWhenRead) {
        this.#finishWhenRead = false;
        this.#finishExchange();
      }
    } else if (ev instanceof HeaderMap) target.onTrailers(ev);
    else target.onBody(ev);
  }

  /**
   * Gives up llhttp on a connection idle between requests since before `idleBefore` (monoNow() ms): the native
   * parser (about 6 KB) is most of what an idle keep-alive connection would cost. Returns true if it did.
   */
  park(idleBefore: number): boolean {
    const parser = this.#parser;
    if (parser === null || this.#closed || this.#upgraded || this.#closeAfter || this.#active !== null
      || this.#parsing !== null || this.#queue.length > 0 || this.#deferred !== null || this.#failAfter !== null
      || this.#paused > 0 || this.#idleSince > idleBefore || parser.midMessage()) return false;
    this.#parser = null;
    parser.close();
    return true;
  }

  /** Each read of the socket, in the buffer all connections share (see shared-reads.ts). */
  readonly #onBytes = (n: number, buf: Buffer): boolean => {
    // After an upgrade request's head the bytes are the tunnel's: copied out of the shared buffer.
    if (this.#tunnelReads) return this.socket.push(Buffer.from(buf.subarray(0, n)));
    ioEnter();
    try {
      this.#read(buf, n);
    } finally {
      ioExit();
    }
    return true;
  };

  /** Each read, where the socket cannot hand them over in the shared buffer. */
  readonly #onData = batchedListener((data) => this.#read(data, data.length));

  /**
   * Reads the requests in `buf[0, end)`: the usual heads here, one after the other, and from the first other one on
   * (or from the middle of a message llhttp holds), the rest of the bytes with llhttp.
   */
  #read(buf: Buffer, end: number): void {
    let at = 0;
    while (at < end && this.#failAfter === null && !this.#closed && !this.#tunnelReads) {
      const parser = this.#parser;
      if (parser === null || !parser.midMessage()) {
        const head = readUsualRequestHead(buf, at, end, this.#opts.maxHeaderSize);
        if (head !== null) {
          at = head.end;
          try {
            this.#onHead(1, head.raw, head.method, head.url, false, head.keepAlive, 1, true);
          } catch (err) {
            this.#protocolError(asProxyError(err));
            return;
          }
          continue;
        }
      }
      this.#parse(at === 0 && end === buf.length ? buf : buf.subarray(at, end));
      return;
    }
  }

  /** Runs llhttp over `data` (the rest of a read): it parses every message in it. */
  #parse(data: Buffer): void {
    const parser = (this.#parser ??= createParser('request', this.#opts.maxHeaderSize, this.#handler));
    let ret: ParseResult;
    let thrown: unknown = undefined;
    try {
      ret = parser.execute(data);
    } catch (err) {
      ret = 0;
      thrown = err;
    }
    this.#afterParse(ret, thrown, data);
  }

  /** After llhttp went through `data`. */
  #afterParse(ret: ParseResult, thrown: unknown, data: Buffer): void {
    if (this.#failAfter !== null) return;
    if (thrown !== undefined) {
      this.#protocolError(asProxyError(thrown));
      return;
    }
    if (typeof ret !== 'number') {
      const code = ret.code === 'HPE_HEADER_OVERFLOW' ? 'HEADERS_TOO_LARGE' : 'DOWNSTREAM_PROTOCOL_ERROR';
      this.#protocolError(new ProxyError(code, `Malformed request from "${this.remoteAddress}": ${ret.code} ${ret.reason ?? ''}`.trim()));
      return;
    }
    // A request head that did not arrive whole: the rest of it must now come in time. (A head begun is a message
    // the parser holds part of while no request's body is being read.)
    if (this.#timerKind !== 'header' && this.#parsing === null && !this.#pendingUpgrade && !this.#closed && this.#parser !== null
      && this.#parser.midMessage()) this.#arm('header');
    const deferred = this.#deferred;
    if (deferred !== null) {
      this.#deferred = null;
      this.#startQueued(deferred);
    }
    if (this.#pendingUpgrade) {
      // llhttp stops after an upgrade request's head; what follows belongs to the tunnel, or to nobody if
      // the upstream refuses the upgrade (then the connection closes after the response). `data` may be a view of
      // the shared read buffer: the rest is copied.
      this.#pendingUpgrade = false;
      this.#closeAfter = true;
      this.#upgradeHead = ret < data.length ? Buffer.from(data.subarray(ret)) : null;
      this.#tunnelReads = true;
      this.pause();
    }
  }

  #protocolError(err: ProxyError): void {
    const status = err.kind.status;
    const sink = this.#parsing;
    this.#parsing = null;
    this.#deferred = null;
    if (this.#active !== null && this.#active !== sink && !this.#closed) {
      // Pipelined behind a request still being answered: that one (and complete ones queued) are answered first.
      if (sink !== null && 'events' in sink) {
        const i = this.#queue.indexOf(sink);
        if (i >= 0) this.#queue.splice(i, 1);
      }
      this.#failAfter = err;
      return;
    }
    if (sink !== null && !('events' in sink)) sink.onAbort(err);
    const wasClosed = this.#closed;
    // Between exchanges the previous response is complete: the error reply may follow it.
    const reply = !this.#closed && (this.#active === null || (this.#active === sink && !this.#responseStarted));
    if (reply) {
      this.#responseStarted = true;
      const body = err.kind.body;
      this.#out.flush();
      this.socket.end(`HTTP/1.1 ${status} ${reasonPhrase(status)}\r\ncontent-type: text/plain\r\ncontent-length: ${body.length}\r\nconnection: close\r\n\r\n${body}`, 'latin1');
      this.#readToEnd();
    } else this.socket.destroy();
    this.#closed = true;
    // A stream that was under way logs itself (its sink was aborted); the refusal of a request that never became
    // one is logged here, with its request line when the head had been read.
    if (!wasClosed && (sink === null || 'events' in sink)) {
      const head = !this.#headRead || this.#lastMethod === '' ? null : { method: this.#lastMethod, path: this.#lastUrl };
      this.#opts.onRejected?.(this, err, reply ? status : 0, head);
    }
  }

  #finishExchange(): void {
    if (!this.#requestDone && !this.#closeAfter && !this.#activeHead!.hasBody && this.#parsing === this.#active) {
      // Answered before the (bodiless) request was fully parsed: finish once the parser completes it.
      this.#finishWhenRead = true;
      return;
    }
    if (this.#active !== null) exchangeClosed();
    this.#active = null;
    this.#activeHead = null;
    const requestDone = this.#requestDone;
    if (this.#closeAfter || !requestDone) {
      // An unfinished request body cannot be skipped safely: close, as nginx and Envoy do.
      this.#closed = true;
      this.#end();
      return;
    }
    const next = this.#queue.shift();
    if (next !== undefined) {
      this.resume();
      this.#startQueued(next);
    } else if (this.#failAfter !== null) {
      const err = this.#failAfter;
      this.#failAfter = null;
      this.#responseStarted = false;
      this.#protocolError(err);
    } else if (this.#parsing === null) {
      this.#idleSince = this.#arm('idle');
    }
  }

  /** Starts a request parsed earlier and replays the body events it collected meanwhile. */
  #startQueued(next: Queued): void {
    const stillParsing = this.#parsing === next;
    const complete = !stillParsing && next.events[next.events.length - 1] === null;
    const sink = this.#start(next.head, stillParsing, complete);
    for (const ev of next.events) {
      if (ev === null) {
        if (this.#activeHead === next.head) this.#requestDone = true;
        sink.onEnd();
      } else if (ev instanceof HeaderMap) sink.onTrailers(ev);
      else sink.onBody(ev);
    }
  }

  #onEnd(): void {
    // The client sent FIN: it is gone, as Envoy and nginx take it (listener sockets are not half-open). An
    // exchange in progress is reset now (DC), so that its upstream request is cancelled instead of finished.
    if (this.#active !== null) {
      this.socket.destroy();
      return;
    }
    this.#end();
  }

  #teardown(code: ErrorCode): void {
    if (this.#tornDown) return;
    this.#tornDown = true;
    this.#closed = true;
    this.#stopTimer();
    if (!this.#upgraded) {
      const active = this.#active;
      if (active !== null) exchangeClosed();
      this.#active = null;
      this.#queue.length = 0;
      if (active !== null) active.onAbort(new ProxyError(code, 'Client connection closed before the response was complete'));
      this.#parser?.close();
    }
    this.#opts.onConnectionClose?.(this);
  }

  /** Arms the header or idle timeout; returns the time it read (monoNow(), ms). */
  #arm(kind: 'header' | 'idle'): number {
    const now = monoNow();
    const ms = kind === 'header' ? this.#opts.headerTimeoutMs : this.#opts.idleTimeoutMs;
    if (ms <= 0) {
      this.#clearTimer();
      return now;
    }
    this.#timerKind = kind;
    const deadline = now + ms;
    this.#deadline = deadline;
    if (this.#timer !== null) {
      if (this.#timerAt <= deadline) return now;
      clearTimeout(this.#timer);
    }
    this.#timerAt = deadline;
    this.#timer = setTimeout(onTimer, ms, this);
    return now;
  }

  /** Disarms the timeout; a pending native timer stays, to be reused or to fire with nothing to do. */
  #clearTimer(): void {
    this.#timerKind = null;
  }

  #stopTimer(): void {
    this.#timerKind = null;
    if (this.#timer !== null) {
      clearTimeout(this.#timer);
      this.#timer = null;
    }
  }

  /** Called by the timer. */
  timedOut(): void {
    this.#timer = null;
    const kind = this.#timerKind;
    if (kind === null) return;
    const left = this.#deadline - monoNow();
    if (left > 0) {
      this.#timerAt = this.#deadline;
      this.#timer = setTimeout(onTimer, Math.ceil(left), this);
      return;
    }
    this.#timerKind = null;
    if (kind === 'idle') {
      this.#closed = true;
      this.#end();
    } else if (kind === 'header') {
      this.#protocolError(new ProxyError('REQUEST_TIMEOUT', 'Client sent no complete request head in time'));
    }
  }

}

let dateText = '';
let dateSecond = 0;

/** The current time as an HTTP date, formatted at most once a second. */
function httpDate(): string {
  const now = wallNow();
  const second = Math.floor(now / 1000);
  if (second !== dateSecond) {
    dateSecond = second;
    dateText = new Date(now).toUTCString();
  }
  return dateText;
}

/** An authority's characters: unreserved, sub-delims, ':', '@', '[', ']' and '%' (empty is allowed: RFC 9112 section 3.2). */
const AUTHORITY = /^[A-Za-z0-9\-._~!$&'()*+,;=:@[\]%]*$/;

const ABSOLUTE_FORM = /^https?:\/\/([^/?#@]+)((?:[/?][^#]*)?)$/i;

/**
 * An absolute-form request target (`GET http://host/path`): its authority replaces Host and the upstream gets
 * the origin form, as RFC 9112 section 3.2.2 requires of servers. Other targets are left to routing.
 */
function absoluteForm(list: string[], url: string): void {
  const m = ABSOLUTE_FORM.exec(url);
  if (m === null) {
    if (/^[a-z][a-z0-9+.-]*:\/\//i.test(url)) throw new ProxyError('DOWNSTREAM_PROTOCOL_ERROR', `Invalid request target "${url.slice(0, 100)}"`);
    return;
  }
  list[1] = m[1];
  list[3] = m[2].charCodeAt(0) === 47 /* / */ ? m[2] : '/' + m[2];
}

/** What a request's handling threw, as the error its refusal reports (anything but a ProxyError is weir's own fault). */
function asProxyError(err: unknown): ProxyError {
  return err instanceof ProxyError ? err : new ProxyError('INTERNAL', String(err));
}

function onTimer(conn: ServerConnection): void {
  conn.timedOut();
}

/** "ip:port", with IPv6 addresses in brackets. */
function hostPort(ip: string | undefined, port: number | undefined): string {
  return formatAddress(ip ?? '', port ?? 0);
}
