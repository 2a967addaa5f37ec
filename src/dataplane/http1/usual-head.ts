/**
 * Message heads read in JavaScript, for the usual case only, with llhttp left to read every other one:
 * - an upstream response head: `HTTP/1.1`, a final status from 200 to 599 (not 204 or 304), a body framed by one
 *   Content-Length above 0;
 * - a client request head: one of the common methods, an origin-form target, `HTTP/1.1`, no body (no Content-Length
 *   but "0", no Transfer-Encoding);
 * both with the whole head in the bytes at hand and nothing unusual in it. Anything else (a 1xx, chunked,
 * close-delimited, obs-fold, a control or non-ASCII character, a space before a colon or at the end of a value, an
 * Upgrade, two Content-Lengths, a partial head, leading empty lines) is left to llhttp.
 *
 * Why: the native parser costs a crossing into C++ and back into JavaScript for the head, V8 strings made there one
 * by one, and (for a response) a reset after each body read past it; reading the usual head here costs less than
 * that. What each reader accepts is a strict subset of what llhttp accepts, read the same way: usual-head.test.ts
 * feeds both the same heads, mutated at random, and checks that whatever a reader accepts llhttp accepts with the
 * same request line or status, headers and keep-alive.
 */
import { Buffer } from 'node:buffer';
import { HOP_BY_HOP, HeaderMap, TOKEN, type UnreadLines } from '../../core/headers.ts';
import { COMMON_LOWER_NAMES, responseList, statusText } from './wire.ts';

/**
 * A response head read by `readUsualResponseHead`. The object is reused from call to call, and its lines are only
 * marked, not made into strings: `usualHeadLines` and `copyUsualHeadLines` read them, and only until the next head is
 * read (they throw after that).
 */
export interface UsualHead {
  status: number;
  reason: string;
  keepAlive: boolean;
  contentLength: number;
  /** Offset in the buffer just past the head's empty line: where the body starts. */
  end: number;
  /** The buffer the head was read from, where it starts, and which read of a head this was. */
  buf: Buffer;
  start: number;
  serial: number;
}

/** A request head read by `readUsualRequestHead`; reused from call to call like `UsualHead`. */
export interface UsualRequestHead {
  /** Names and values interleaved, as llhttp gives them but with the names in lower case (see `rawFields`). */
  raw: string[];
  /** The method, one of the same strings each time. */
  method: string;
  url: string;
  keepAlive: boolean;
  /** Offset in the buffer just past the head's empty line: where the next message starts. */
  end: number;
}

const head: UsualHead = { status: 0, reason: '', keepAlive: true, contentLength: -1, end: 0, buf: Buffer.alloc(0), start: 0, serial: 0 };
const requestHead: UsualRequestHead = { raw: [], method: '', url: '', keepAlive: true, end: 0 };

/** RFC 9110 tchar, the characters of a header name, as a byte table made from HeaderMap's TOKEN (bytes ≥ 128: 0). */
const TCHAR = new Uint8Array(256);
for (let c = 0; c < 128; c++) if (TOKEN.test(String.fromCharCode(c))) TCHAR[c] = 1;

/** A value character accepted here: HTAB, SP and visible ASCII (obs-text and controls are left to llhttp). */
function valueChar(c: number): boolean {
  return (c >= 0x20 && c < 0x7f) || c === 0x09;
}

/** More header lines than this are left to llhttp (the offsets below have room for this many). */
const MAX_FIELDS = 64;
/** Per header line: where its name starts and ends, and where its value starts and ends, relative to the head. */
const marks = new Int32Array(MAX_FIELDS * 4);

const HTTP11 = Buffer.from('HTTP/1.1 ', 'latin1');
const HTTP11_LINE_END = Buffer.from(' HTTP/1.1\r\n', 'latin1');
const CONTENT_LENGTH = Buffer.from('content-length', 'latin1');
const TRANSFER_ENCODING = Buffer.from('transfer-encoding', 'latin1');
const UPGRADE = Buffer.from('upgrade', 'latin1');
const CONNECTION = Buffer.from('connection', 'latin1');
const PROXY_CONNECTION = Buffer.from('proxy-connection', 'latin1');
const KEEP_ALIVE = Buffer.from('keep-alive', 'latin1');
const TE = Buffer.from('te', 'latin1');
const PROXY_AUTHENTICATE = Buffer.from('proxy-authenticate', 'latin1');
const PROXY_AUTHORIZATION = Buffer.from('proxy-authorization', 'latin1');
const DATE = Buffer.from('date', 'latin1');

/** What a header line is to this reader (`lineKind`), kept per line in `kinds`. */
const LINE_FORWARDED = 0;
/** A forwarded Date. */
const LINE_DATE = 1;
/** Content-Length: read for the framing, not forwarded (the codec writes its own). */
const LINE_LENGTH = 2;
/** Connection or Proxy-Connection: read for keep-alive and the options it lists, not forwarded. */
const LINE_CONNECTION = 3;
/** Another hop-by-hop line (core/headers.ts): not forwarded. */
const LINE_DROPPED = 4;
/** Transfer-Encoding or Upgrade: the head is left to llhttp. */
const LINE_REFUSED = 5;

/**
 * The kind of the line whose name (tchars) is at `buf[at, at + n)`, by its length first: each line of each head is
 * looked at once, here, and what readers of the head need later (keep-alive, the lines forwarded) comes from `kinds`.
 */
function lineKind(buf: Buffer, at: number, n: number): number {
  switch (n) {
    case 2: return nameIs(buf, at, TE) ? LINE_DROPPED : LINE_FORWARDED;
    case 4: return nameIs(buf, at, DATE) ? LINE_DATE : LINE_FORWARDED;
    case 7: return nameIs(buf, at, UPGRADE) ? LINE_REFUSED : LINE_FORWARDED;
    case 10: return nameIs(buf, at, CONNECTION) ? LINE_CONNECTION : nameIs(buf, at, KEEP_ALIVE) ? LINE_DROPPED : LINE_FORWARDED;
    case 14: return nameIs(buf, at, CONTENT_LENGTH) ? LINE_LENGTH : LINE_FORWARDED;
    case 16: return nameIs(buf, at, PROXY_CONNECTION) ? LINE_CONNECTION : LINE_FORWARDED;
    case 17: return nameIs(buf, at, TRANSFER_ENCODING) ? LINE_REFUSED : LINE_FORWARDED;
    case 18: return nameIs(buf, at, PROXY_AUTHENTICATE) ? LINE_DROPPED : LINE_FORWARDED;
    case 19: return nameIs(buf, at, PROXY_AUTHORIZATION) ? LINE_DROPPED : LINE_FORWARDED;
    default: return LINE_FORWARDED;
  }
}

// The switch above spells out HOP_BY_HOP: a name added there and not here would be forwarded as bytes.
for (const name of HOP_BY_HOP) {
  if (lineKind(Buffer.from(name, 'latin1'), 0, name.length) === LINE_FORWARDED) throw new Error(`usual-head.ts: lineKind does not know the hop-by-hop header "${name}"`);
}

/**
 * Lower-case names by length and first letter (`nameSlot`), as bytes and the string given for them: a name read is
 * compared with the one or two of its length that start as it does, not with every name of its length.
 */
type NameTable = ({ bytes: Buffer; name: string }[] | undefined)[];

/** The slot of a name of `n` bytes whose first byte is `c`, in any case; the same slot for all that are not letters. */
function nameSlot(n: number, c: number): number {
  const letter = (c | 0x20) - 0x61;
  return n * 27 + (letter >= 0 && letter < 26 ? letter : 26);
}

function nameTable(names: Iterable<string>): NameTable {
  const table: NameTable = [];
  for (const name of names) (table[nameSlot(name.length, name.charCodeAt(0))] ??= []).push({ bytes: Buffer.from(name, 'latin1'), name });
  return table;
}

/** The common names. */
const KNOWN = nameTable(COMMON_LOWER_NAMES);

/** The methods read here, by length: others (CONNECT, which llhttp reads as an upgrade, WebDAV's, ...) go to llhttp. */
const METHODS: { bytes: Buffer; name: string }[][] = [];
for (const name of ['GET', 'HEAD', 'POST', 'PUT', 'DELETE', 'OPTIONS', 'PATCH']) {
  (METHODS[name.length] ??= []).push({ bytes: Buffer.from(name, 'latin1'), name });
}

/** The name of `table` spelled (in any case) at `buf[at, at + n)`, or null. */
function nameIn(table: NameTable, buf: Buffer, at: number, n: number): string | null {
  const candidates = table[nameSlot(n, buf[at])];
  if (candidates === undefined) return null;
  for (let k = 0; k < candidates.length; k++) if (nameIs(buf, at, candidates[k].bytes)) return candidates[k].name;
  return null;
}

/** Whether `buf` holds `bytes` at `at` (the caller checked that they fit). */
function bytesAre(buf: Buffer, at: number, bytes: Buffer): boolean {
  for (let k = 0; k < bytes.length; k++) if (buf[at + k] !== bytes[k]) return false;
  return true;
}

/** Whether the header name at `buf[at, at + lower.length)` is `lower`, ignoring ASCII case (the bytes are tchars). */
function nameIs(buf: Buffer, at: number, lower: Buffer): boolean {
  for (let k = 0; k < lower.length; k++) if ((buf[at + k] | 0x20) !== lower[k]) return false;
  return true;
}

/** What `readFields` found besides the offsets in `marks`. */
let fieldCount = 0;
/** The Content-Length value, or -1 without one. */
let fieldLength = -1;
/** The number of digits of the Content-Length value. */
let fieldLengthDigits = 0;
/** A Connection or Proxy-Connection line was seen. */
let fieldConnection = false;
/** A forwarded Date line was seen. */
let fieldDate = false;
/** Per line, its `lineKind`. */
const kinds = new Uint8Array(MAX_FIELDS);
/**
 * Set by `keepAliveOf`: a Connection line lists something besides its options close and keep-alive, the names of
 * headers to remove with it.
 */
let fieldNominates = false;
/** Counts the heads `readFields` read: what `marks` describe belongs to the read numbered `fieldSerial`. */
let fieldSerial = 0;

/**
 * Reads the header lines from `buf[i]` up to the empty line, all below `limit`. Returns the offset of the empty
 * line's CR, with `marks` and the `field*` values set, or -1 when the lines are not usual: a Transfer-Encoding or an
 * Upgrade, a Content-Length that is not one plain number, or anything llhttp might read otherwise.
 */
function readFields(buf: Buffer, i: number, limit: number, start: number): number {
  let fields = 0;
  let contentLength = -1;
  let digits = 0;
  let connection = false;
  let date = false;
  for (;;) {
    if (i >= limit) return -1;
    let c = buf[i];
    if (c === 0x0d) break;
    const nameStart = i;
    while (TCHAR[c] === 1 && ++i < limit) c = buf[i];
    if (i >= limit || c !== 0x3a || i === nameStart) return -1;
    const nameEnd = i;
    i++;
    while (i < limit && ((c = buf[i]) === 0x20 || c === 0x09)) i++;
    const valueStart = i;
    while (i < limit && (c = buf[i]) !== 0x0d) {
      if (!valueChar(c)) return -1;
      i++;
    }
    if (i + 1 >= limit || buf[i + 1] !== 0x0a) return -1;
    if (i > valueStart) {
      const last = buf[i - 1];
      if (last === 0x20 || last === 0x09) return -1;
    }
    const valueEnd = i;
    i += 2;
    if (fields === MAX_FIELDS) return -1;
    const kind = lineKind(buf, nameStart, nameEnd - nameStart);
    if (kind === LINE_LENGTH) {
      digits = valueEnd - valueStart;
      if (contentLength >= 0 || digits === 0 || digits > 15) return -1;
      let v = 0;
      for (let k = valueStart; k < valueEnd; k++) {
        const d = buf[k] - 48;
        if (d < 0 || d > 9) return -1;
        v = v * 10 + d;
      }
      contentLength = v;
    } else if (kind === LINE_REFUSED) {
      return -1;
    } else if (kind === LINE_CONNECTION) {
      // llhttp reads Proxy-Connection as it reads Connection; the values are read by `keepAliveOf`, once the head is whole.
      connection = true;
    } else if (kind === LINE_DATE) {
      date = true;
    }
    kinds[fields] = kind;
    const m = fields * 4;
    marks[m] = nameStart - start;
    marks[m + 1] = nameEnd - start;
    marks[m + 2] = valueStart - start;
    marks[m + 3] = valueEnd - start;
    fields++;
  }
  // buf[i] is the CR of the empty line.
  if (i + 1 >= limit || buf[i + 1] !== 0x0a) return -1;
  fieldSerial++;
  fieldCount = fields;
  fieldLength = contentLength;
  fieldLengthDigits = digits;
  fieldConnection = connection;
  fieldDate = date;
  return i;
}

/**
 * The raw list of the lines `readFields` marked, from `s`, the head from `start` as a latin1 string; the names in
 * lower case (the common ones as the same strings each time). The list starts after `skip` slots left for the caller.
 */
function rawFields(buf: Buffer, start: number, s: string, skip = 0): string[] {
  const raw = new Array<string>(skip + fieldCount * 2);
  for (let f = 0; f < fieldCount; f++) {
    const m = f * 4;
    const at = start + marks[m];
    const n = marks[m + 1] - marks[m];
    raw[skip + 2 * f] = nameIn(KNOWN, buf, at, n) ?? lowerSlice(buf, at, n, s.slice(marks[m], marks[m + 1]));
    raw[skip + 2 * f + 1] = s.slice(marks[m + 2], marks[m + 3]);
  }
  return raw;
}

/** `name`, the header name at `buf[at, at + n)`, in lower case: itself unless it has an upper-case letter. */
function lowerSlice(buf: Buffer, at: number, n: number, name: string): string {
  for (let k = at; k < at + n; k++) {
    const c = buf[k];
    if (c >= 0x41 && c <= 0x5a) return name.toLowerCase();
  }
  return name;
}

/**
 * Keep-alive of an HTTP/1.1 message whose lines `readFields` marked: unless a Connection line lists "close". Sets
 * `fieldNominates` from the same reading of the values.
 */
function keepAliveOf(buf: Buffer, start: number): boolean {
  fieldNominates = false;
  if (!fieldConnection) return true;
  let close = false;
  for (let f = 0; f < fieldCount; f++) {
    if (kinds[f] !== LINE_CONNECTION) continue;
    const m = f * 4;
    const options = connectionOptions(buf, start + marks[m + 2], start + marks[m + 3]);
    if ((options & LISTS_CLOSE) !== 0) close = true;
    if ((options & LISTS_OTHER) !== 0) fieldNominates = true;
  }
  return !close;
}

/**
 * Reads the response head at `buf[start, end)` when it is a usual one (see above); returns null, having changed
 * nothing, otherwise. A head longer than `maxHeaderSize` bytes is left to llhttp, which refuses it.
 *
 * The bytes are scanned as they are (indexing a Buffer is cheaper than charCodeAt on a string just made from it);
 * one latin1 string of the head is made at the end, and the values and the uncommon names are slices of it.
 */
export function readUsualResponseHead(buf: Buffer, start: number, end: number, maxHeaderSize: number): UsualHead | null {
  // Every byte looked at is below `limit`: a head that does not end there is partial or too long for this reader.
  const limit = Math.min(end, start + maxHeaderSize);
  // At least "HTTP/1.1 200\r\n" and the empty line.
  if (limit - start < 16) return null;
  if (!bytesAre(buf, start, HTTP11)) return null;
  const d0 = buf[start + 9] - 48;
  const d1 = buf[start + 10] - 48;
  const d2 = buf[start + 11] - 48;
  if (d0 < 2 || d0 > 5 || d1 < 0 || d1 > 9 || d2 < 0 || d2 > 9) return null;
  const status = d0 * 100 + d1 * 10 + d2;
  if (status === 204 || status === 304) return null;
  let i = start + 12;
  let reasonEnd = i;
  if (buf[i] === 0x20) {
    i++;
    while (i < limit && buf[i] !== 0x0d) {
      const c = buf[i];
      if (c < 0x20 || c >= 0x7f) return null;
      i++;
    }
    reasonEnd = i;
  } else if (buf[i] !== 0x0d) return null;
  if (i + 1 >= limit || buf[i + 1] !== 0x0a) return null;
  i = readFields(buf, i + 2, limit, start);
  if (i < 0 || fieldLength <= 0) return null;
  head.status = status;
  // "OK" is most reasons: the same string each time rather than one made per response.
  const r = start + 13;
  head.reason = reasonEnd === r + 2 && buf[r] === 0x4f && buf[r + 1] === 0x4b ? 'OK' : reasonEnd > r ? buf.toString('latin1', r, reasonEnd) : '';
  head.keepAlive = keepAliveOf(buf, start);
  head.contentLength = fieldLength;
  head.end = i + 2;
  head.buf = buf;
  head.start = start;
  head.serial = fieldSerial;
  return head;
}

function checkCurrent(h: UsualHead): void {
  if (h.serial !== fieldSerial) throw new Error('the lines of a usual head were read after the next head was read');
}

/**
 * The header lines of `h` as llhttp gives them (names and values interleaved), except that the names come in lower
 * case, the common names (wire.ts) as the same strings each time, with no slice made for them.
 */
export function usualHeadLines(h: UsualHead): string[] {
  return linesOf(h, 0);
}

/** `usualHeadLines` after `skip` slots left for the caller. */
function linesOf(h: UsualHead, skip: number): string[] {
  checkCurrent(h);
  return rawFields(h.buf, h.start, h.buf.toString('latin1', h.start, h.end - 2), skip);
}

/** The headers of a received response head: a map as it is, a usual head (during the read) made into one. */
export function headersOf(h: HeaderMap | UsualHead): HeaderMap {
  if (h instanceof HeaderMap) return h;
  // A usual head has a Content-Length weir can frame by and no Transfer-Encoding: nothing to refuse.
  if (fieldNominates) return new HeaderMap(responseList(h.status, usualHeadLines(h), true) as string[]);
  return new HeaderMap(statusAndLines(h));
}

/** The list of a usual head whose Connection nominates nothing: the lines after the status, read once. */
function statusAndLines(h: UsualHead): string[] {
  const list = linesOf(h, 2);
  list[0] = ':status';
  list[1] = statusText(h.status);
  return list;
}

/**
 * The lines of a usual response head behind a map made without reading them (`HeaderMap.unread`). While the head is
 * the one read last and the read callback has not returned (`detach`), its lines are in the read buffer, and the codec
 * forwards them from there as bytes (with what filters added after them) when nothing needed the map's list. The head
 * is also kept as a string (the one the list's values would be sliced from anyway), read again should the list be
 * needed after the read buffer moved on (a filter that held the head and resumed later, a body filter, a log).
 */
export class ResponseHeadLines implements UnreadLines {
  readonly status: number;
  readonly contentLength: number;
  readonly #head: UsualHead;
  readonly #serial: number;
  readonly #count: number;
  /** The head's bytes as a latin1 string. */
  readonly #text: string;
  #read = false;
  /** The read buffer may hold other bytes now: the lines come from `#text`. */
  #detached = false;

  constructor(h: UsualHead) {
    checkCurrent(h);
    this.status = h.status;
    this.contentLength = h.contentLength;
    this.#head = h;
    this.#serial = h.serial;
    this.#count = fieldCount + 1;
    this.#text = h.buf.toString('latin1', h.start, h.end);
  }

  /** The head, while its lines are unread and still the ones `marks` describe; otherwise null. */
  current(): UsualHead | null {
    return !this.#read && !this.#detached && this.#head.serial === this.#serial && fieldSerial === this.#serial ? this.#head : null;
  }

  /** Called when the read callback that read the head returns: the read buffer will be reused. */
  detach(): void {
    this.#detached = true;
  }

  read(): string[] {
    this.#read = true;
    let h: UsualHead | null = this.#head;
    if (this.#detached || h.serial !== this.#serial || fieldSerial !== this.#serial) {
      const b = Buffer.from(this.#text, 'latin1');
      h = readUsualResponseHead(b, 0, b.length, b.length);
      if (h === null) throw new Error('a usual response head did not read the same again');
    }
    const list = rawFields(h.buf, h.start, this.#text, 2);
    list[0] = ':status';
    list[1] = statusText(this.status);
    return list;
  }

  count(): number {
    return this.#count;
  }
}

/**
 * The headers of a usual response head (during the read) as a map whose lines are read only when needed, or at once
 * when its Connection nominates headers to remove.
 */
export function unreadHeadersOf(h: UsualHead): HeaderMap {
  return fieldNominates ? headersOf(h) : HeaderMap.unread(new ResponseHeadLines(h));
}

/** The lines `HeaderMap.add` appended to a map whose lines were unread, as "name: value\r\n" lines. */
export function addedLines(added: readonly string[]): string {
  let out = '';
  for (let i = 0; i < added.length; i += 2) out += added[i] + ': ' + added[i + 1] + '\r\n';
  return out;
}

/** What `forwardedLength` found: whether one of the forwarded lines is a Date. */
export let forwardedDate = false;
let forwardedSerial = -1;

/**
 * The bytes of the header lines of `h` that go on as they are (every line but the hop-by-hop ones and Content-Length,
 * which the codec writes itself), with `forwardedDate` set; or -1 when the lines cannot go on as bytes: a Connection
 * value that nominates headers to remove (anything but close and keep-alive), which the map path handles.
 */
export function forwardedLength(h: UsualHead): number {
  checkCurrent(h);
  if (fieldNominates) return -1;
  let total = 0;
  for (let f = 0; f < fieldCount; f++) {
    if (kinds[f] > LINE_DATE) continue;
    const m = f * 4;
    total += marks[m + 3] - marks[m] + 2;
  }
  forwardedDate = fieldDate;
  forwardedSerial = fieldSerial;
  return total;
}

/**
 * Copies the lines `forwardedLength` counted into `out` at `at`, in runs of adjacent lines; returns the end offset.
 * `forwardedLength` of the same head must have come first (it throws otherwise).
 */
export function copyUsualHeadLines(h: UsualHead, out: Buffer, at: number): number {
  checkCurrent(h);
  if (forwardedSerial !== h.serial) throw new Error('copyUsualHeadLines without forwardedLength of the same head');
  const { buf, start } = h;
  let run = -1;
  let runEnd = -1;
  for (let f = 0; f < fieldCount; f++) {
    const m = f * 4;
    const lineStart = start + marks[m];
    if (kinds[f] > LINE_DATE) continue;
    const lineEnd = start + marks[m + 3] + 2;
    if (lineStart !== runEnd) {
      if (run >= 0) at += buf.copy(out, at, run, runEnd);
      run = lineStart;
    }
    runEnd = lineEnd;
  }
  if (run >= 0) at += buf.copy(out, at, run, runEnd);
  return at;
}

/**
 * Reads the request head at `buf[start, end)` when it is a usual one without a body (see above); returns null,
 * having changed nothing, otherwise. As with responses, a head longer than `maxHeaderSize` bytes is left to llhttp.
 */
export function readUsualRequestHead(buf: Buffer, start: number, end: number, maxHeaderSize: number): UsualRequestHead | null {
  const limit = Math.min(end, start + maxHeaderSize);
  // At least "GET / HTTP/1.1\r\n" and the empty line.
  if (limit - start < 18) return null;
  let i = start;
  while (i < start + 8 && buf[i] !== 0x20) i++;
  const candidates = METHODS[i - start];
  if (candidates === undefined) return null;
  let method = '';
  for (const m of candidates) {
    if (bytesAre(buf, start, m.bytes)) {
      method = m.name;
      break;
    }
  }
  if (method === '') return null;
  // An origin-form target of visible ASCII; the others (absolute-form, asterisk-form) are llhttp's.
  const urlStart = ++i;
  if (buf[i] !== 0x2f) return null;
  while (i < limit) {
    const c = buf[i];
    if (c <= 0x20 || c >= 0x7f) break;
    i++;
  }
  const urlEnd = i;
  if (i + HTTP11_LINE_END.length > limit) return null;
  if (!bytesAre(buf, i, HTTP11_LINE_END)) return null;
  i = readFields(buf, i + HTTP11_LINE_END.length, limit, start);
  // A Content-Length other than a plain "0" is a body (or a length spelled in a way llhttp and weir may read apart).
  if (i < 0 || (fieldLength >= 0 && (fieldLength !== 0 || fieldLengthDigits !== 1))) return null;
  const s = buf.toString('latin1', start, i);
  requestHead.raw = rawFields(buf, start, s);
  requestHead.method = method;
  requestHead.url = s.slice(urlStart - start, urlEnd - start);
  requestHead.keepAlive = keepAliveOf(buf, start);
  requestHead.end = i + 2;
  return requestHead;
}

const CLOSE = Buffer.from('close', 'latin1');

/** `connectionOptions` found "close". */
const LISTS_CLOSE = 1;
/** `connectionOptions` found a token that is neither "close" nor "keep-alive". */
const LISTS_OTHER = 2;

/** What the comma-separated Connection value at `buf[from, to)` lists (case-insensitive, as llhttp reads it). */
function connectionOptions(buf: Buffer, from: number, to: number): number {
  let found = 0;
  for (let k = from; k <= to; ) {
    let e = k;
    while (e < to && buf[e] !== 0x2c) e++;
    let a = k;
    let b = e;
    while (a < b && (buf[a] === 0x20 || buf[a] === 0x09)) a++;
    while (b > a && (buf[b - 1] === 0x20 || buf[b - 1] === 0x09)) b--;
    const n = b - a;
    if (n === 5 && nameIs(buf, a, CLOSE)) found |= LISTS_CLOSE;
    else if (n > 0 && !(n === 10 && nameIs(buf, a, KEEP_ALIVE))) found |= LISTS_OTHER;
    k = e + 1;
  }
  return found;
}
