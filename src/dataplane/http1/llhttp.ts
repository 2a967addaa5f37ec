/**
 * The one place that touches Node's bundled llhttp binding (the parser node:http and undici use).
 * Everything else in weir sees `createParser`, which returns a parser wired to plain callbacks.
 * Node's binding is strict by default: it rejects Content-Length with Transfer-Encoding, duplicate
 * Content-Length, bad chunk sizes, bare LF and obs-fold, which is what a proxy must do against smuggling.
 */
import { createRequire } from 'node:module';

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

/** Method names by llhttp's method index. */
export const METHODS: readonly string[] = common.methods;

/** What a parser calls; `this` is not used. */
export interface ParserHandler {
  /**
   * The message head is complete. `headers` holds raw names and values interleaved.
   * For a response parser, return 1 to skip the body (HEAD), 2 to treat the rest as an upgraded stream.
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
  ): number | void;
  onBody(chunk: Buffer): void;
  /** Trailers (raw names and values interleaved), when the message had any; called before onComplete. */
  onTrailers(trailers: string[]): void;
  onComplete(): void;
}

/** A parser for one connection. */
export interface Parser {
  /** Parses bytes; returns the number consumed, or an Error with `code` (e.g. HPE_HEADER_OVERFLOW). */
  execute(data: Buffer): number | (Error & { code: string; bytesParsed: number });
  /** Signals EOF: completes a close-delimited body; returns an Error if the message was incomplete. */
  finish(): void | (Error & { code: string });
  /** Releases the native parser. */
  close(): void;
}

/** Creates a request (`kind: 'request'`) or response parser. `maxHeaderSize` bounds the head in bytes. */
export function createParser(kind: 'request' | 'response', maxHeaderSize: number, handler: ParserHandler): Parser {
  const p = new HTTPParser();
  p.initialize(kind === 'request' ? HTTPParser.REQUEST : HTTPParser.RESPONSE, {}, maxHeaderSize, 0);
  // The binding flushes headers in batches of 32 through kOnHeaders when a head is large, and sends
  // trailers the same way: collect them here and hand them over whole.
  let pending: string[] = [];
  let pendingUrl = '';
  let inBody = false;
  p[kOnHeaders] = function onHeaders(headers: string[], url: string): void {
    for (let i = 0; i < headers.length; i++) pending.push(headers[i]);
    if (!inBody) pendingUrl += url;
  };
  p[kOnHeadersComplete] = function onHeadersComplete(
    _major: number,
    minor: number,
    headers: string[] | undefined,
    method: number,
    url: string | undefined,
    status: number,
    reason: string,
    upgrade: boolean,
    keepAlive: boolean,
  ): number | void {
    if (headers === undefined) {
      headers = pending;
      pending = [];
    }
    if (url === undefined) {
      url = pendingUrl;
      pendingUrl = '';
    }
    inBody = true;
    return handler.onHead(minor, headers, method, url, status, reason, upgrade, keepAlive);
  };
  p[kOnBody] = handler.onBody;
  p[kOnMessageComplete] = function onMessageComplete(): void {
    inBody = false;
    if (pending.length > 0) {
      const trailers = pending;
      pending = [];
      pendingUrl = '';
      handler.onTrailers(trailers);
    }
    handler.onComplete();
  };
  return {
    execute: (data) => p.execute(data),
    finish: () => p.finish(),
    close: () => {
      p.close?.();
    },
  };
}
