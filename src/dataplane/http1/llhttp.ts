/**
 * The one place that touches Node's bundled llhttp binding (the parser node:http and undici use).
 * Everything else in weir sees `createParser`, which returns a parser wired to plain callbacks.
 * Node's binding is strict by default: it rejects Content-Length with Transfer-Encoding, duplicate
 * Content-Length, bad chunk sizes, bare LF and obs-fold, which is what a proxy must do against smuggling.
 */
import { createRequire } from 'node:module';
import { ioEnter, ioExit } from './coalescer.ts';

const require = createRequire(import.meta.url);
const common = require('_http_common') as {
  HTTPParser: any;
  methods: string[];
};

const HTTPParser = common.HTTPParser;
const kOnHeaders: number = HTTPParser.kOnHeaders;
const kOnHeadersComplete: number = HTTPParser.kOnHeadersComplete;
const kOnBody: number = HTTPParser.kOnBody;
const kOnMessageComplete: number = HTTPParser.kOnMessageComplete;
const kOnMessageBegin: number = HTTPParser.kOnMessageBegin;

/**
 * Method names by llhttp's method enum. Node's `methods` lists the HTTP methods in enum order, but the enum numbers
 * PRI and RTSP's methods (34 to 45) in between, which that list leaves out: QUERY is 46, not 34.
 */
export const METHODS: readonly string[] = methodsByEnum(common.methods);

function methodsByEnum(names: readonly string[]): string[] {
  const out: string[] = [];
  for (const name of names) out[name === 'QUERY' ? 46 : out.length] = name;
  return out;
}

/** What a parser calls; `this` is not used. */
export interface ParserHandler {
  /**
   * The message head is complete. `headers` holds raw names and values interleaved.
   * For a response parser, return 1 to skip the body (HEAD), 2 to stop after the head: the bytes after it (from the
   * offset `execute` returns) are the caller's, an upgraded stream or a body it reads itself before `reset`; that
   * message gets no `onComplete`. For a request without a body, return 3 when the handler has completed it itself:
   * it gets no `onComplete` either. (Each callback of the native parser into JavaScript is a crossing with an
   * async-context scope, about 0.2 us: the ones nobody needs are switched off.)
   */
  onHead(
    versionMinor: number,
    headers: string[],
    method: number,
    url: string,
    status: number,
    reason: string,
    upgrade: boolean,
    keepAlive: boolean,
    versionMajor: number,
  ): number | void;
  onBody(chunk: Buffer): void;
  /** Trailers (raw names and values interleaved), when the message had any; called before onComplete. */
  onTrailers(trailers: string[]): void;
  onComplete(): void;
  /** Optional: the first byte of a new message was parsed. */
  onBegin?(): void;
}

/** What parsing some bytes gave: the number of bytes consumed, or the parse error (`code` e.g. HPE_HEADER_OVERFLOW). */
export type ParseResult = number | (Error & { code: string; bytesParsed: number; reason?: string });

/** A parser for one connection. */
export interface Parser {
  /** Parses bytes; returns the number consumed or the parse error; rethrows what a handler callback threw. */
  execute(data: Buffer): ParseResult;
  /** Turns `onBegin` off and on again (it is on from the start): a handler that needs it only at times saves its crossings. */
  watchBegin(on: boolean): void;
  /** Signals EOF: completes a close-delimited body; returns an Error if the message was incomplete. */
  finish(): void | (Error & { code: string });
  /**
   * True while a request parser holds part of a message: its first byte (leading CRLFs aside) was parsed and its end
   * was not. It asks llhttp_finish, which changes no state for a request (its end never depends on EOF) and costs
   * about 25 ns, where an onBegin callback into JavaScript per message costs 100-350 ns. False once closed.
   */
  midMessage(): boolean;
  /**
   * Starts over at the beginning of a message, as after a message completed. For a parser that was stopped after a
   * head (onHead returned 2) while the caller took the body itself.
   */
  reset(): void;
  /** Releases the native parser. */
  close(): void;
}

function closeNative(p: { close(): void }): void {
  p.close();
}

/** Creates a request (`kind: 'request'`) or response parser. `maxHeaderSize` bounds the head in bytes. */
export function createParser(kind: 'request' | 'response', maxHeaderSize: number, handler: ParserHandler): Parser {
  const p = new HTTPParser();
  const type = kind === 'request' ? HTTPParser.REQUEST : HTTPParser.RESPONSE;
  p.initialize(type, {}, maxHeaderSize, 0);
  // The binding flushes headers in batches of 32 through kOnHeaders when a head is large, and sends
  // trailers the same way: collect them here and hand them over whole.
  let pending: string[] = [];
  let pendingUrl = '';
  let inBody = false;
  // A throw must not cross the native parser: it is kept here, parsing stops, and `execute` rethrows it.
  let thrown: unknown = undefined;
  p[kOnHeaders] = function onHeaders(headers: string[], url: string): void {
    for (let i = 0; i < headers.length; i++) pending.push(headers[i]);
    if (!inBody) pendingUrl += url;
  };
  let onMessageBegin: (() => void) | undefined;
  if (handler.onBegin !== undefined) {
    const onBegin = handler.onBegin;
    onMessageBegin = function onMessageBegin(): void {
      if (thrown !== undefined) return;
      try {
        onBegin();
      } catch (err) {
        thrown = err;
      }
    };
    p[kOnMessageBegin] = onMessageBegin;
  }
  let beginOn = onMessageBegin !== undefined;
  // The native parser calls only functions: a callback switched off costs it a property read. Stores to the parser
  // object are not free either (about 40 ns), so they are made only when the setting changes.
  let completeOn = true;
  function watchComplete(on: boolean): void {
    if (on === completeOn) return;
    completeOn = on;
    p[kOnMessageComplete] = on ? onMessageComplete : undefined;
  }
  p[kOnHeadersComplete] = function onHeadersComplete(
    major: number,
    minor: number,
    headers: string[] | undefined,
    method: number,
    url: string | undefined,
    status: number,
    reason: string,
    upgrade: boolean,
    keepAlive: boolean,
  ): number | void {
    if (thrown !== undefined) return -1;
    if (headers === undefined) {
      headers = pending;
      pending = [];
    }
    if (url === undefined) {
      url = pendingUrl;
      pendingUrl = '';
    }
    inBody = true;
    try {
      const next = handler.onHead(minor, headers, method, url, status, reason, upgrade, keepAlive, major);
      if (next === 2 || next === 3) {
        // The message ends here for llhttp, not for the handler (2), or the handler ended it (3).
        watchComplete(false);
        if (next === 3) {
          inBody = false;
          return 0;
        }
      } else watchComplete(true);
      return next;
    } catch (err) {
      thrown = err;
      return -1;
    }
  };
  const onBody = handler.onBody;
  p[kOnBody] = function onBodyChunk(chunk: Buffer): void {
    if (thrown !== undefined) return;
    try {
      onBody(chunk);
    } catch (err) {
      thrown = err;
    }
  };
  const onMessageComplete = function onMessageComplete(): void {
    inBody = false;
    if (thrown !== undefined) return;
    try {
      if (pending.length > 0) {
        const trailers = pending;
        pending = [];
        pendingUrl = '';
        handler.onTrailers(trailers);
      }
      handler.onComplete();
    } catch (err) {
      thrown = err;
    }
  };
  p[kOnMessageComplete] = onMessageComplete;
  let executing = 0;
  let closed = false;
  function takeThrown(): unknown {
    const t = thrown;
    thrown = undefined;
    return t;
  }
  return {
    execute(data) {
      executing++;
      let ret;
      try {
        ret = p.execute(data);
      } finally {
        executing--;
      }
      if (thrown !== undefined) throw takeThrown();
      return ret;
    },
    finish() {
      const ret = p.finish();
      if (thrown !== undefined) throw takeThrown();
      return ret;
    },
    midMessage() {
      // A request parser's llhttp_finish calls no callback (a request's end never waits for EOF).
      return !closed && typeof p.finish() === 'object';
    },
    watchBegin(on) {
      if (on === beginOn || onMessageBegin === undefined) return;
      beginOn = on;
      p[kOnMessageBegin] = on ? onMessageBegin : undefined;
    },
    reset() {
      p.initialize(type, {}, maxHeaderSize, 0);
      pending = [];
      pendingUrl = '';
      inBody = false;
    },
    close: () => {
      if (closed) return;
      closed = true;
      if (executing === 0) {
        p.close();
        return;
      }
      // The native parser must not be freed while it is parsing (a close from its own callback, or from a tick run
      // inside one; e.g. a 101 that llhttp did not take as an upgrade): freed then, it crashes the process. Free it
      // on a later turn.
      setImmediate(closeNative, p);
    },
  };
}

/** A 'data' listener that feeds `onData` with the writes it causes batched into one per read (see coalescer.ts). */
export function batchedListener(onData: (data: Buffer) => void): (data: Buffer) => void {
  return (data: Buffer) => {
    ioEnter();
    try {
      onData(data);
    } finally {
      ioExit();
    }
  };
}
