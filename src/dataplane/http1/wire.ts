/** Serialisation helpers shared by the downstream and upstream sides of the HTTP/1.1 codec. */
import { HeaderMap, contentLengthOf, isHopByHop } from '../../core/headers.ts';

const STATUS_TEXT: Record<number, string> = {
  100: 'Continue', 101: 'Switching Protocols', 200: 'OK', 201: 'Created', 202: 'Accepted', 203: 'Non-Authoritative Information',
  204: 'No Content', 205: 'Reset Content', 206: 'Partial Content', 300: 'Multiple Choices', 301: 'Moved Permanently', 302: 'Found',
  303: 'See Other', 304: 'Not Modified', 307: 'Temporary Redirect', 308: 'Permanent Redirect', 400: 'Bad Request', 401: 'Unauthorized',
  402: 'Payment Required', 403: 'Forbidden', 404: 'Not Found', 405: 'Method Not Allowed', 406: 'Not Acceptable', 408: 'Request Timeout',
  409: 'Conflict', 410: 'Gone', 411: 'Length Required', 412: 'Precondition Failed', 413: 'Payload Too Large', 414: 'URI Too Long',
  415: 'Unsupported Media Type', 416: 'Range Not Satisfiable', 417: 'Expectation Failed', 421: 'Misdirected Request',
  422: 'Unprocessable Content', 425: 'Too Early', 426: 'Upgrade Required', 428: 'Precondition Required', 429: 'Too Many Requests',
  431: 'Request Header Fields Too Large', 451: 'Unavailable For Legal Reasons', 500: 'Internal Server Error', 501: 'Not Implemented',
  502: 'Bad Gateway', 503: 'Service Unavailable', 504: 'Gateway Timeout', 505: 'HTTP Version Not Supported',
};

const COMMON_NAMES = [
  'Host', 'User-Agent', 'Accept', 'Accept-Encoding', 'Accept-Language', 'Accept-Ranges', 'Authorization', 'Cache-Control',
  'Connection', 'Content-Encoding', 'Content-Length', 'Content-Type', 'Cookie', 'Date', 'ETag', 'Expires', 'Keep-Alive',
  'Last-Modified', 'Location', 'Origin', 'Pragma', 'Referer', 'Server', 'Set-Cookie', 'Transfer-Encoding', 'Upgrade',
  'Vary', 'X-Forwarded-For', 'X-Request-Id', 'If-Modified-Since', 'If-None-Match',
];
/** The common names in lower case, as received heads usually spell them or as usual-head.ts gives them. */
export const COMMON_LOWER_NAMES: readonly string[] = COMMON_NAMES.map((n) => n.toLowerCase());
const LOWER = new Map([...COMMON_NAMES.map((n) => [n, n.toLowerCase()] as const), ...COMMON_LOWER_NAMES.map((n) => [n, n] as const)]);

/** A header name in lower case; the usual capitalised names come from a table instead of a new string each time. */
export function lowerName(name: string): string {
  return LOWER.get(name) ?? name.toLowerCase();
}

const STATUS_STRINGS: string[] = [];

/** The decimal text of a status code, made once per code. */
export function statusText(status: number): string {
  return (STATUS_STRINGS[status] ??= String(status));
}

const STATUS_LINES: string[] = [];

/** "HTTP/1.1 <status> <reason>\r\n"; with the standard reason it is made once per code. */
export function statusLine(status: number, reason: string | undefined): string {
  const standard = reasonPhrase(status);
  if (reason !== undefined && reason !== standard) return `HTTP/1.1 ${status} ${reason}\r\n`;
  return (STATUS_LINES[status] ??= `HTTP/1.1 ${status} ${standard}\r\n`);
}

/** The standard reason phrase for a status code ("" when unknown). */
export function reasonPhrase(status: number): string {
  return STATUS_TEXT[status] ?? '';
}

/** Connection tokens that are options of the connection, not names of headers to remove. */
const CONNECTION_OPTIONS: ReadonlySet<string> = new Set(['', 'close', 'keep-alive', 'upgrade']);
/** Names a Connection header never removes: weir frames from what it parsed, and Host became `:authority`. */
const NEVER_NOMINATED: ReadonlySet<string> = new Set(['content-length', 'transfer-encoding', 'host']);

/** Whether a Connection value nominates headers beyond close, keep-alive and upgrade (the usual values are not split). */
export function nominatesHeaders(value: string): boolean {
  if (value === 'keep-alive' || value === 'close' || value === 'Keep-Alive' || value === 'Close' || value === 'Upgrade' || value === 'upgrade') return false;
  for (const token of value.split(',')) {
    if (!CONNECTION_OPTIONS.has(token.trim().toLowerCase())) return true;
  }
  return false;
}

/**
 * Removes from a received head's list the headers its Connection headers nominate (RFC 9110 section 7.6.1), once,
 * on receipt: what weir or a filter adds later under a nominated name (x-forwarded-for, say) is not the peer's to
 * remove.
 */
export function dropNominated(list: string[]): void {
  const nominated = new Set<string>();
  for (let i = 0; i < list.length; i += 2) {
    if (list[i] !== 'connection') continue;
    for (const token of list[i + 1].split(',')) {
      const name = token.trim().toLowerCase();
      if (!CONNECTION_OPTIONS.has(name) && !NEVER_NOMINATED.has(name)) nominated.add(name);
    }
  }
  let to = 0;
  for (let i = 0; i < list.length; i += 2) {
    if (list[i].charCodeAt(0) !== 58 && nominated.has(list[i])) continue;
    list[to++] = list[i];
    list[to++] = list[i + 1];
  }
  list.length = to;
}

/**
 * Appends the regular (non-pseudo) headers as "name: value\r\n" lines, leaving out hop-by-hop headers (and with
 * `skipFraming`, Content-Length, which the caller writes itself). Nominated headers went on receipt (`dropNominated`).
 */
export function headerLines(headers: HeaderMap, skipFraming: boolean, keepUpgrade: boolean): string {
  const list = headers.list;
  let out = '';
  for (let i = 0; i < list.length; i += 2) {
    const name = list[i];
    if (name.charCodeAt(0) === 58) continue;
    if (isHopByHop(name)) {
      if (!(keepUpgrade && name === 'upgrade')) continue;
    }
    if (skipFraming && name === 'content-length') continue;
    out += name + ': ' + list[i + 1] + '\r\n';
  }
  return out;
}

/** Formats trailers for the end of a chunked body: "0\r\n", the trailer lines, "\r\n". */
export function chunkedEnd(trailers: HeaderMap | null): string {
  if (trailers === null || trailers.size === 0) return '0\r\n\r\n';
  let out = '0\r\n';
  const list = trailers.list;
  for (let i = 0; i < list.length; i += 2) {
    if (isHopByHop(list[i]) || list[i] === 'content-length') continue;
    out += list[i] + ': ' + list[i + 1] + '\r\n';
  }
  return out + '\r\n';
}

/** The headers of a request's connection that Envoy removes before its filters run (see `dropConnectionHeaders`). */
export function isConnectionHeader(name: string): boolean {
  switch (name.length) {
    case 7: return name === 'upgrade';
    case 10: return name === 'connection' || name === 'keep-alive';
    case 16: return name === 'proxy-connection';
    case 17: return name === 'transfer-encoding';
    default: return false;
  }
}

/**
 * Removes from a received request's list what describes its connection rather than the request, as Envoy's connection
 * manager does before the filters see the headers: Keep-Alive, Proxy-Connection, Transfer-Encoding (the codec has
 * framed the body already) and, unless the request upgrades, Connection and Upgrade. Filters written for Envoy see
 * the same headers then; weir writes the framing and the connection options of each hop itself.
 */
export function dropConnectionHeaders(list: string[], upgrade: boolean): void {
  let to = 0;
  for (let i = 0; i < list.length; i += 2) {
    const name = list[i];
    if (isConnectionHeader(name) && !(upgrade && (name === 'connection' || name === 'upgrade'))) continue;
    list[to++] = name;
    list[to++] = list[i + 1];
  }
  list.length = to;
}

/** Lower-cases raw interleaved names and values into a HeaderMap list (no pseudo-headers). */
export function rawToList(raw: string[]): string[] {
  const out = new Array<string>(raw.length);
  for (let i = 0; i < raw.length; i += 2) {
    out[i] = lowerName(raw[i]);
    out[i + 1] = raw[i + 1];
  }
  return out;
}

/** What `responseList` found besides the list: the Content-Length value (-1 without one). */
export let responseLength = -1;

/**
 * The list of a received response head (`:status`, then the names in lower case), with the headers its Connection
 * header nominates removed and `responseLength` set; or the reason to refuse it: a Content-Length weir cannot frame
 * by, or a transfer coding other than chunked. With `lower`, the raw names are in lower case already.
 */
export function responseList(status: number, raw: string[], lower = false): string[] | string {
  const list = new Array<string>(raw.length + 2);
  list[0] = ':status';
  list[1] = statusText(status);
  let contentLength = -1;
  let nominating = false;
  for (let i = 0; i < raw.length; i += 2) {
    const name = lower ? raw[i] : lowerName(raw[i]);
    const value = raw[i + 1];
    if (name === 'content-length') {
      // llhttp checked the digits and takes up to 2^64 - 1; past 2^53 - 1 a number would pass on another length.
      contentLength = contentLengthOf(value);
      if (contentLength < 0) return `Content-Length ${value.trim()} is larger than weir can frame`;
    } else if (name === 'transfer-encoding' && value.trim().toLowerCase() !== 'chunked') {
      // Codings other than chunked (gzip, chunked) cannot be passed on after de-chunking: refuse (502).
      return `Transfer-Encoding "${value}" cannot be passed on`;
    } else if (name === 'connection' && !nominating) nominating = nominatesHeaders(value);
    list[i + 2] = name;
    list[i + 3] = value;
  }
  if (nominating) dropNominated(list);
  responseLength = contentLength;
  return list;
}
