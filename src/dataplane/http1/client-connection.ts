/**
 * The upstream side of the HTTP/1.1 codec: one pooled connection to one endpoint, carrying one exchange at a
 * time. The stream writes the request through it and receives the response through a `ResponseSink`.
 */
import { Buffer } from 'node:buffer';
import type { UpstreamConnection } from '../codec.ts';
import net, { type Socket } from 'node:net';
import { HeaderMap, checkHeaders } from '../../core/headers.ts';
import { ProxyError } from '../../core/errors.ts';
import { createParser, type Parser, type ParseResult } from './llhttp.ts';
import { headerLines, chunkedEnd, rawToList, responseList, responseLength } from './wire.ts';
import { Coalescer, ioEnter, ioExit, takeLentKept } from './coalescer.ts';
import { readUsualResponseHead, type UsualHead } from './usual-head.ts';
import { directReads } from './shared-reads.ts';

/** Where the response of an upstream exchange goes. */
export interface ResponseSink {
  /**
   * The response head; `contentLength` is -1 when unknown (chunked or close-delimited). A usual head comes as it was
   * read (see `headersOf`), valid only during the call.
   */
  onUpstreamHead(status: number, reason: string, headers: HeaderMap | UsualHead, contentLength: number): void;
  /**
   * A body chunk. When `lent`, it is a view of the connection's read buffer, valid only during the call: copy it to
   * keep it (or write it with `Coalescer.lent`, which says when a write kept it).
   */
  onUpstreamBody(chunk: Buffer, lent: boolean): void;
  onUpstreamTrailers(trailers: HeaderMap): void;
  onUpstreamEnd(): void;
  /** The exchange failed: reset, protocol error or timeout. `afterHead` says whether a head was received. */
  onUpstreamError(error: ProxyError, afterHead: boolean): void;
  /** The connection can take more request body. */
  onUpstreamDrain(): void;
}

/** Request framing towards the upstream. */
export interface RequestFraming {
  /** Known body length, -1 for chunked, 0 for no body. */
  contentLength: number;
}

/** Whom a connection reports its life to (its pool). */
export interface ConnectionOwner {
  /** The exchange finished and the connection may carry another. */
  release(conn: ClientConnection): void;
  /** The connection closed. */
  closed(conn: ClientConnection): void;
}

/** One connection to an upstream endpoint. */
export class ClientConnection implements UpstreamConnection {
  readonly socket: Socket;
  readonly address: string;
  /** Exchanges carried so far; > 0 means the connection was reused. */
  exchanges = 0;
  /** wallNow() when the pool last put it in its idle list. */
  idleSince = 0;
  readonly #owner: ConnectionOwner;
  readonly #out: Coalescer;
  readonly #parser: Parser;
  #sink: ResponseSink | null = null;
  #isHeadRequest = false;
  #chunked = false;
  #requestDone = false;
  #responseDone = false;
  #gotHead = false;
  #keepAlive = true;
  #closed = false;
  #upgrade = false;
  #upgradeRest: Buffer | null = null;
  /** Why onHead refused a response head (the parse error then says only that a callback failed). */
  #refusal: string | null = null;
  /** Set when the upstream switched protocols unasked; the exchange fails once execute() returned. */
  #unasked101 = false;
  /** The socket's reads, into a buffer reused from read to read (see `connect`). */
  readonly #reads: ReusedReads;
  /** Bytes still to come of a body of known length that this connection reads itself (lends); -1 when none. */
  #lentLeft = -1;
  #paused = false;
  /** A 101 head seen during execute(), delivered once execute() returned. */
  #upgradeHead: { status: number; reason: string; headers: HeaderMap } | null = null;
  readonly #maxHeaderSize: number;
  /** The parser is at the start of a message (it has none of the next response's bytes): a head may be read in JS. */
  #parserFresh = true;
  /** The body being lent follows a head read in JS: the parser never saw it, so it needs no reset after it. */
  #headReadHere = false;

  /** `socket` comes from `connect`, which sets up its reads. */
  constructor(socket: Socket, address: string, owner: ConnectionOwner, maxHeaderSize: number) {
    const reads = readsOf.get(socket);
    if (reads === undefined) throw new Error('ClientConnection: the socket was not opened by connect()');
    this.socket = socket;
    this.#reads = reads;
    this.#out = new Coalescer(socket, () => this.#writeFailed());
    this.address = address;
    this.#owner = owner;
    this.#maxHeaderSize = maxHeaderSize;
    this.#parser = createParser('response', maxHeaderSize, {
      onBegin: () => this.#onBegin(),
      onHead: (minor, raw, _m, _u, status, reason, upgrade, keepAlive) => this.#onHead(minor, raw, status, reason, upgrade, keepAlive),
      onBody: (chunk) => this.#sink?.onUpstreamBody(chunk, false),
      onTrailers: (raw) => this.#sink?.onUpstreamTrailers(new HeaderMap(rawToList(raw))),
      onComplete: () => {
        this.#parserFresh = true;
        // Bytes after this response in the same read would be one nobody asked for: hear of its first byte.
        this.#parser.watchBegin(true);
        this.#onComplete();
      },
    });
    socket.setNoDelay(true);
    reads.onRead = (n, buf) => this.#onRead(n, buf);
    socket.on('end', () => this.#onEnd());
    socket.on('error', () => this.#onClose());
    socket.on('close', () => this.#onClose());
    socket.on('drain', () => this.#sink?.onUpstreamDrain());
  }

  /** Whether the connection is open. */
  get usable(): boolean {
    return !this.#closed && !this.socket.destroyed && !this.#out.broken;
  }

  /**
   * Starts an exchange: writes the request head (`:method`, `:path`, `:authority` become the request line
   * and Host). The body follows through `writeBody` and `endRequest`.
   */
  startRequest(headers: HeaderMap, framing: RequestFraming, sink: ResponseSink, keepUpgrade: boolean): void {
    this.exchanges++;
    this.#sink = sink;
    // A response that begins while an exchange is on is that exchange's: no need to hear of its first byte.
    this.#parser.watchBegin(false);
    this.#gotHead = false;
    this.#requestDone = false;
    this.#responseDone = false;
    this.#upgrade = keepUpgrade;
    const method = headers.get(':method')!;
    this.#isHeadRequest = method === 'HEAD';
    if (headers.unchecked) checkHeaders(headers);
    // Without an :authority (a filter removed it) Host goes empty, as RFC 9112 section 3.2 has a client send it.
    let out = method + ' ' + headers.get(':path') + ' HTTP/1.1\r\nhost: ' + (headers.get(':authority') ?? '') + '\r\n' + headerLines(headers, true, keepUpgrade);
    if (keepUpgrade) out += 'connection: upgrade\r\n';
    if (framing.contentLength > 0) out += 'content-length: ' + framing.contentLength + '\r\n';
    else if (framing.contentLength < 0) out += 'transfer-encoding: chunked\r\n';
    else if (method === 'POST' || method === 'PUT' || method === 'PATCH') out += 'content-length: 0\r\n';
    this.#chunked = framing.contentLength < 0;
    this.#out.text(out + '\r\n');
    if (framing.contentLength === 0) this.#requestDone = true;
  }

  /** Writes request body; returns false when the caller should wait for `onUpstreamDrain`. */
  writeBody(chunk: Buffer): boolean {
    if (this.#closed || chunk.length === 0) return !this.#closed;
    const out = this.#out;
    if (this.#chunked) {
      out.text(chunk.length.toString(16) + '\r\n');
      out.bytes(chunk);
      out.text('\r\n');
    } else out.bytes(chunk);
    return out.writable;
  }

  /** Ends the request body (with trailers when chunked). */
  endRequest(trailers: HeaderMap | null): void {
    if (this.#closed || this.#requestDone) return;
    if (this.#chunked) this.#out.text(chunkedEnd(trailers));
    this.#requestDone = true;
    this.#maybeRelease();
  }

  /** Stops reading the response (back-pressure); `resume` undoes it. */
  pause(): void {
    this.#paused = true;
    this.socket.pause();
  }

  /** Resumes reading the response. */
  resume(): void {
    this.#paused = false;
    if (this.#closed) return;
    this.socket.resume();
  }

  /** Abandons the exchange and closes the connection (timeouts, downstream resets). */
  abort(): void {
    this.#sink = null;
    this.socket.destroy();
  }

  /**
   * After a 101, detaches the socket from HTTP: returns the bytes that followed the response head. The
   * pool keeps counting the connection until the socket closes.
   */
  detach(): Buffer {
    this.#out.flush();
    this.#closed = true;
    this.#sink = null;
    for (const event of ['data', 'drain', 'end', 'error', 'close']) this.socket.removeAllListeners(event);
    this.socket.once('close', () => this.#owner.closed(this));
    this.#parser.close();
    this.#reads.onRead = pushCopy(this.socket);
    const rest = this.#upgradeRest ?? Buffer.alloc(0);
    this.#upgradeRest = null;
    return rest;
  }

  #onHead(_minor: number, raw: string[], status: number, reason: string, upgrade: boolean, keepAlive: boolean): number {
    if (status < 100) {
      // Not an HTTP status (RFC 9110 section 15): llhttp frames it as a final response, weir would take it for an interim one.
      this.#refusal = `status ${String(status).padStart(3, '0')} is not an HTTP status`;
      return -1;
    }
    if (status < 200 && status !== 101) return 0; // 1xx interim responses: weir answers 100-continue itself
    if (status === 101 && (!this.#upgrade || !upgrade)) {
      // A server may switch protocols only when asked, and says to what in Upgrade (RFC 9110 sections 15.2.2 and
      // 7.8). Failing the callback would not do: Node's parser ignores errors once it sees an upgrade, so the
      // exchange fails after execute().
      this.#refusal = this.#upgrade ? 'a 101 without an Upgrade header' : null;
      this.#unasked101 = true;
      return 1;
    }
    const list = responseList(status, raw);
    if (typeof list === 'string') {
      this.#refusal = list;
      return -1;
    }
    const contentLength = responseLength;
    if (this.#sink === null) {
      // A second response after the exchange completed, in the same bytes: the connection is out of step.
      this.socket.destroy();
      return 1;
    }
    this.#gotHead = true;
    this.#keepAlive = keepAlive;
    if (status === 101 && upgrade && this.#upgrade) {
      // The stream detaches the socket (and frees this parser) when it sees the 101: tell it only once
      // execute() has returned, with the bytes that followed the head in hand.
      this.#upgradeHead = { status, reason, headers: new HeaderMap(list) };
      return 2;
    }
    let next = 0;
    if (this.#isHeadRequest || status === 204 || status === 304) next = 1;
    else if (contentLength > 0) {
      // A body of known length: the parser stops after the head and this connection reads the body itself, lending
      // the read buffer to the sink instead of a copy per chunk (for large bodies, the copies' memory made V8 run
      // full collections; for small ones, the parser's body and completion callbacks cost more than its reset).
      this.#lentLeft = contentLength;
      next = 2;
    }
    this.#sink.onUpstreamHead(status, reason, new HeaderMap(list), contentLength);
    return next;
  }

  /**
   * A head `readUsualResponseHead` read: a final status, a Content-Length body, nothing to refuse. The sink gets it
   * unmade (the lines are made into a map only if it asks, during the call); its body is lent as it comes.
   */
  #onUsualHead(head: UsualHead): void {
    this.#gotHead = true;
    this.#keepAlive = head.keepAlive;
    this.#lentLeft = head.contentLength;
    this.#headReadHere = true;
    this.#sink!.onUpstreamHead(head.status, head.reason, head, head.contentLength);
  }

  /** A read into the socket's reused buffer: heads go through the parser, a body of known length is lent as it comes. */
  #onRead(n: number, buf: Buffer): void {
    ioEnter();
    this.#reading = true;
    try {
      let at = 0;
      while (at < n && !this.socket.destroyed) {
        const left = this.#lentLeft;
        if (left > 0) {
          const take = left < n - at ? left : n - at;
          this.#lentLeft = left - take;
          const chunk = buf.subarray(at, at + take);
          at += take;
          this.#sink?.onUpstreamBody(chunk, true);
          if (this.#lentLeft === 0) {
            this.#lentLeft = -1;
            if (this.#headReadHere) this.#headReadHere = false;
            else this.#parser.reset();
            this.#parserFresh = true;
            // Bytes after the body in the same read are a response nobody asked for: the connection is out of step.
            if (at < n) this.#keepAlive = false;
            this.#onComplete();
          }
          continue;
        }
        if (this.#sink === null) {
          this.socket.destroy();
          return;
        }
        if (this.#parserFresh && !this.#isHeadRequest && !this.#upgrade && !this.#gotHead) {
          // The usual head (a final status, a Content-Length body, nothing unusual) is read here; llhttp reads the rest.
          const head = readUsualResponseHead(buf, at, n, this.#maxHeaderSize);
          if (head !== null) {
            at = head.end;
            this.#onUsualHead(head);
            continue;
          }
        }
        const data = buf.subarray(at, n);
        this.#parserFresh = false;
        const ret = this.#parser.execute(data);
        this.#afterParse(ret, data);
        // The parser stops after a head whose body this connection reads itself; otherwise it took every byte.
        if (typeof ret !== 'number' || this.#lentLeft < 0) return;
        at += ret;
      }
    } finally {
      this.#reading = false;
      if (this.#handBackAfterRead) {
        this.#handBackAfterRead = false;
        this.#handBack();
      }
      ioExit();
    }
  }

  /** True while `#onRead` runs: an exchange that completes then goes back to the pool once the whole read was seen. */
  #reading = false;
  #handBackAfterRead = false;

  #onComplete(): void {
    // A 1xx interim response completes without a head (see `#onHead`). An upgrade's head and a head whose body this
    // connection reads itself end the parser's message without a completion (see `ParserHandler.onHead`).
    if (!this.#gotHead) return;
    this.#responseDone = true;
    const sink = this.#sink;
    if (sink !== null) sink.onUpstreamEnd();
    this.#maybeRelease();
  }

  #maybeRelease(): void {
    if (!this.#responseDone || !this.#requestDone || this.#sink === null) return;
    this.#sink = null;
    // A pause belongs to the exchange (its client was slow): an idle connection reads, to see the server close it.
    if (this.#paused) this.resume();
    // The rest of the read being parsed may hold such a response: the pool, which may hand the connection to a
    // waiting request at once, gets it only after the read.
    if (this.#reading) this.#handBackAfterRead = true;
    else this.#handBack();
  }

  #handBack(): void {
    if (this.#keepAlive && this.usable) this.#owner.release(this);
    else this.socket.destroy();
  }

  /**
   * A request write failed: the upstream reset the connection, typically after answering without reading the whole
   * upload. Its answer may be waiting in the socket's reads, which go on (the coalescer drops what is still
   * written): the read side ends the exchange, with that answer or with the reset.
   */
  #writeFailed(): void {
    if (this.#sink === null) this.socket.destroy();
    else if (this.#paused) this.resume();
  }

  #onBegin(): void {
    // A response starting on an idle connection: the server is confused (a stray or extra response); do not reuse it.
    if (this.#sink === null) this.socket.destroy();
  }

  /** After the parser went through `data` (what remained of a read). */
  #afterParse(ret: ParseResult, data: Buffer): void {
    if (typeof ret !== 'number' || this.#unasked101) {
      this.#protocolError(this.#refusal ?? (typeof ret !== 'number' ? ret.code : 'a 101 to a request that did not ask to upgrade'));
      return;
    }
    const up = this.#upgradeHead;
    if (up !== null) {
      this.#upgradeHead = null;
      // `data` is a view of the reused read buffer: the rest is kept, so it is copied.
      this.#upgradeRest = ret < data.length ? Buffer.from(data.subarray(ret)) : null;
      this.socket.pause();
      this.#sink?.onUpstreamHead(up.status, up.reason, up.headers, -1);
    }
  }

  /** The response cannot be read: the connection closes and the exchange fails (502 before a head, a reset after). */
  #protocolError(reason: string): void {
    const sink = this.#sink;
    this.#sink = null;
    this.socket.destroy();
    sink?.onUpstreamError(new ProxyError('UPSTREAM_PROTOCOL_ERROR', `Invalid response from upstream "${this.address}": ${reason}`), this.#gotHead);
  }

  #onEnd(): void {
    // EOF completes a close-delimited body; anything else ending here is a reset.
    if (this.#sink !== null && this.#gotHead && !this.#responseDone && this.#lentLeft < 0) {
      const err = this.#parser.finish();
      if (err === undefined && this.#responseDone) return;
    }
    this.socket.destroy();
  }

  #onClose(): void {
    if (this.#closed) return;
    this.#closed = true;
    const sink = this.#sink;
    this.#sink = null;
    this.#parser.close();
    if (sink !== null && !this.#responseDone) {
      sink.onUpstreamError(new ProxyError('UPSTREAM_RESET', `Upstream "${this.address}" closed the connection`), this.#gotHead);
    }
    this.#owner.closed(this);
  }
}

/**
 * The first read buffer of a connection; a read that fills it moves the connection to one four times larger, up to
 * READ_BUFFER_MAX: 128 KiB lets one read take a 64 KiB response with its head (against two reads and two client
 * writes with 64 KiB: passthrough-64k 75.4 -> 63.4 us CPU per request).
 */
const READ_BUFFER_MIN = 16 * 1024;
const READ_BUFFER_MAX = 128 * 1024;

/**
 * The reads of a socket from `connect`, into one buffer reused from read to read (net's `onread` option) instead of
 * a new Buffer per read. What a read lends on (see `ResponseSink.onUpstreamBody`) must be copied by whoever keeps
 * it; a write that keeps it says so (`takeLentKept`), and the next read goes into a new buffer.
 */
class ReusedReads {
  #buffer = Buffer.allocUnsafe(READ_BUFFER_MIN);
  #filled = false;
  /** Who handles the reads: the connection, or after an upgrade `pushCopy`. Returning false stops reading. */
  onRead: (n: number, buf: Buffer) => boolean | void = stray;

  /** net's callback for each read. */
  read(n: number, buf: Uint8Array): boolean {
    this.#filled = n === buf.length;
    return this.onRead(n, buf as Buffer) !== false;
  }

  /** net's source of the buffer for the next read, asked after each one. */
  next(): Buffer {
    this.#renew();
    return this.#buffer;
  }

  /** The data reads straight from the handle (`directReads`): the read is in the buffer in use. */
  direct(n: number): boolean {
    return this.read(n, this.#buffer);
  }

  /** The buffer for the next read when it is not the one in use, else undefined (see `directReads`). */
  directNext(): Buffer | undefined {
    return this.#renew() ? this.#buffer : undefined;
  }

  /** Takes a new buffer if a write kept the one in use or a read filled it (it grows then); returns whether it did. */
  #renew(): boolean {
    const size = this.#buffer.length;
    const grow = this.#filled && size < READ_BUFFER_MAX;
    if (!takeLentKept() && !grow) return false;
    this.#buffer = Buffer.allocUnsafe(grow ? Math.min(size * 4, READ_BUFFER_MAX) : size);
    return true;
  }
}

/** Before a connection takes the socket nothing should arrive: a server that talks first is not HTTP. */
function stray(this: void): boolean {
  return false;
}

/** After an upgrade: each read becomes a copy pushed as a 'data' event, as a socket without `onread` would. */
function pushCopy(socket: Socket): (n: number, buf: Buffer) => boolean {
  return (n, buf) => socket.push(Buffer.from(buf.subarray(0, n)));
}

const readsOf = new WeakMap<Socket, ReusedReads>();

/** Opens a TCP connection; calls back once with the socket or an error. */
export function connect(
  host: string,
  port: number,
  timeoutMs: number,
  done: (err: ProxyError | null, socket: Socket | null) => void,
): Socket {
  const reads = new ReusedReads();
  const socket = net.connect({
    host,
    port,
    noDelay: true,
    onread: { buffer: () => reads.next(), callback: (n: number, buf: Uint8Array) => reads.read(n, buf) },
  });
  readsOf.set(socket, reads);
  directReads(socket, (n) => reads.direct(n), () => reads.directNext());
  let settled = false;
  const timer = timeoutMs > 0 ? setTimeout(() => finish(new ProxyError('UPSTREAM_CONNECT_FAILURE', `Cannot connect to upstream "${host}:${port}": timed out after ${timeoutMs}ms`)), timeoutMs) : null;
  function finish(err: ProxyError | null): void {
    if (settled) return;
    settled = true;
    if (timer !== null) clearTimeout(timer);
    socket.removeListener('error', onError);
    socket.removeListener('connect', onConnect);
    if (err !== null) {
      socket.destroy();
      done(err, null);
    } else done(null, socket);
  }
  function onError(e: NodeJS.ErrnoException): void {
    const reason = e.code === 'ECONNREFUSED' ? 'connection refused' : e.code ?? e.message;
    finish(new ProxyError('UPSTREAM_CONNECT_FAILURE', `Cannot connect to upstream "${host}:${port}": ${reason}`));
  }
  function onConnect(): void {
    finish(null);
  }
  socket.once('error', onError);
  socket.once('connect', onConnect);
  return socket;
}
