/**
 * An upstream response head read in JavaScript, for the usual case only: `HTTP/1.1`, a final status from 200 to 599
 * (not 204 or 304), a body framed by one Content-Length above 0, the whole head in the bytes at hand, and nothing
 * unusual in it. Anything else (a 1xx, chunked, close-delimited, obs-fold, a control or non-ASCII character, a
 * space before a colon or at the end of a value, an Upgrade, two Content-Lengths, a partial head) is left to llhttp.
 *
 * Why: the native parser costs a crossing into C++ and back into JavaScript for the head, V8 strings made there one
 * by one, and a reset after each body read past it; reading the usual head here costs less than that. What it
 * accepts is a strict subset of what llhttp accepts, read the same way: response-head.test.ts feeds both the same
 * heads, mutated at random, and checks that whatever this accepts llhttp accepts with the same status, reason,
 * headers and keep-alive.
 */
import { Buffer } from 'node:buffer';
import { TOKEN } from '../../core/headers.ts';
import { COMMON_LOWER_NAMES } from './wire.ts';

/** A head read by `readUsualResponseHead`. The object is reused from call to call: read it before the next call. */
export interface UsualHead {
  /**
   * Names and values interleaved, as llhttp gives them, except that the common names (wire.ts) come in lower case
   * whatever their case on the wire: the same strings each time, with no slice made for them.
   */
  raw: string[];
  status: number;
  reason: string;
  keepAlive: boolean;
  contentLength: number;
  /** Offset in the buffer just past the head's empty line: where the body starts. */
  end: number;
}

const head: UsualHead = { raw: [], status: 0, reason: '', keepAlive: true, contentLength: -1, end: 0 };

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
const CONTENT_LENGTH = Buffer.from('content-length', 'latin1');
const TRANSFER_ENCODING = Buffer.from('transfer-encoding', 'latin1');
const UPGRADE = Buffer.from('upgrade', 'latin1');
const CONNECTION = Buffer.from('connection', 'latin1');
const PROXY_CONNECTION = Buffer.from('proxy-connection', 'latin1');

/** The common names by length, as lower-case bytes and the string given for them. */
const KNOWN: { bytes: Buffer; name: string }[][] = [];
for (const name of COMMON_LOWER_NAMES) (KNOWN[name.length] ??= []).push({ bytes: Buffer.from(name, 'latin1'), name });

/** The common name spelled (in any case) at `buf[at, at + n)`, or null. */
function knownName(buf: Buffer, at: number, n: number): string | null {
  const candidates = KNOWN[n];
  if (candidates === undefined) return null;
  for (const k of candidates) if (nameIs(buf, at, k.bytes)) return k.name;
  return null;
}

/** Whether the header name at `buf[at, at + lower.length)` is `lower`, ignoring ASCII case (the bytes are tchars). */
function nameIs(buf: Buffer, at: number, lower: Buffer): boolean {
  for (let k = 0; k < lower.length; k++) if ((buf[at + k] | 0x20) !== lower[k]) return false;
  return true;
}

/**
 * Reads the head at `buf[start, end)` when it is a usual one (see above); returns null, having changed nothing,
 * otherwise. A head longer than `maxHeaderSize` bytes is left to llhttp, which refuses it.
 *
 * The bytes are scanned as they are (indexing a Buffer is cheaper than charCodeAt on a string just made from it);
 * one latin1 string of the head is made at the end, and the values and the uncommon names are slices of it.
 */
export function readUsualResponseHead(buf: Buffer, start: number, end: number, maxHeaderSize: number): UsualHead | null {
  // Every byte looked at is below `limit`: a head that does not end there is partial or too long for this reader.
  const limit = Math.min(end, start + maxHeaderSize);
  // At least "HTTP/1.1 200\r\n" and the empty line.
  if (limit - start < 16) return null;
  for (let k = 0; k < HTTP11.length; k++) if (buf[start + k] !== HTTP11[k]) return null;
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
  i += 2;
  let fields = 0;
  let contentLength = -1;
  let keepAlive = true;
  let connection = false;
  for (;;) {
    if (i >= limit) return null;
    let c = buf[i];
    if (c === 0x0d) break;
    const nameStart = i;
    while (TCHAR[c] === 1 && ++i < limit) c = buf[i];
    if (i >= limit || c !== 0x3a || i === nameStart) return null;
    const nameEnd = i;
    i++;
    while (i < limit && ((c = buf[i]) === 0x20 || c === 0x09)) i++;
    const valueStart = i;
    while (i < limit && (c = buf[i]) !== 0x0d) {
      if (!valueChar(c)) return null;
      i++;
    }
    if (i + 1 >= limit || buf[i + 1] !== 0x0a) return null;
    if (i > valueStart) {
      const last = buf[i - 1];
      if (last === 0x20 || last === 0x09) return null;
    }
    const valueEnd = i;
    i += 2;
    const n = nameEnd - nameStart;
    if (n === 14 && nameIs(buf, nameStart, CONTENT_LENGTH)) {
      const digits = valueEnd - valueStart;
      if (contentLength >= 0 || digits === 0 || digits > 15) return null;
      let v = 0;
      for (let k = valueStart; k < valueEnd; k++) {
        const d = buf[k] - 48;
        if (d < 0 || d > 9) return null;
        v = v * 10 + d;
      }
      if (v === 0) return null;
      contentLength = v;
    } else if ((n === 17 && nameIs(buf, nameStart, TRANSFER_ENCODING)) || (n === 7 && nameIs(buf, nameStart, UPGRADE))) {
      return null;
    } else if ((n === 10 && nameIs(buf, nameStart, CONNECTION)) || (n === 16 && nameIs(buf, nameStart, PROXY_CONNECTION))) {
      // llhttp reads Proxy-Connection as it reads Connection; the values are read below, once the head is whole.
      connection = true;
    }
    if (fields === MAX_FIELDS) return null;
    const m = fields * 4;
    marks[m] = nameStart - start;
    marks[m + 1] = nameEnd - start;
    marks[m + 2] = valueStart - start;
    marks[m + 3] = valueEnd - start;
    fields++;
  }
  // buf[i] is the CR of the empty line.
  if (i + 1 >= limit || buf[i + 1] !== 0x0a || contentLength < 0) return null;
  const s = buf.toString('latin1', start, i);
  const raw = new Array<string>(fields * 2);
  for (let f = 0; f < fields; f++) {
    const m = f * 4;
    raw[2 * f] = knownName(buf, start + marks[m], marks[m + 1] - marks[m]) ?? s.slice(marks[m], marks[m + 1]);
    raw[2 * f + 1] = s.slice(marks[m + 2], marks[m + 3]);
  }
  if (connection) {
    for (let f = 0; f < fields && keepAlive; f++) {
      const m = f * 4;
      const n = marks[m + 1] - marks[m];
      if ((n === 10 && nameIs(buf, start + marks[m], CONNECTION)) || (n === 16 && nameIs(buf, start + marks[m], PROXY_CONNECTION))) {
        keepAlive = !listsClose(buf, start + marks[m + 2], start + marks[m + 3]);
      }
    }
  }
  head.raw = raw;
  head.status = status;
  head.reason = reasonEnd > start + 13 ? s.slice(13, reasonEnd - start) : '';
  head.keepAlive = keepAlive;
  head.contentLength = contentLength;
  head.end = i + 2;
  return head;
}

const CLOSE = Buffer.from('close', 'latin1');

/** Whether the Connection value at `buf[from, to)` lists the option "close" (case-insensitive), as llhttp reads it. */
function listsClose(buf: Buffer, from: number, to: number): boolean {
  for (let k = from; k <= to; ) {
    let e = k;
    while (e < to && buf[e] !== 0x2c) e++;
    let a = k;
    let b = e;
    while (a < b && (buf[a] === 0x20 || buf[a] === 0x09)) a++;
    while (b > a && (buf[b - 1] === 0x20 || buf[b - 1] === 0x09)) b--;
    if (b - a === 5 && nameIs(buf, a, CLOSE)) return true;
    k = e + 1;
  }
  return false;
}
