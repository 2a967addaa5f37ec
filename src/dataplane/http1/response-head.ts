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
import type { Buffer } from 'node:buffer';
import { TOKEN } from '../../core/headers.ts';

/** A head read by `readUsualResponseHead`. The object is reused from call to call: read it before the next call. */
export interface UsualHead {
  /** Names (as sent) and values interleaved, as llhttp gives them. */
  raw: string[];
  status: number;
  reason: string;
  keepAlive: boolean;
  contentLength: number;
  /** Offset in the buffer just past the head's empty line: where the body starts. */
  end: number;
}

const head: UsualHead = { raw: [], status: 0, reason: '', keepAlive: true, contentLength: -1, end: 0 };
const END_OF_HEAD = '\r\n\r\n';

/** RFC 9110 tchar, the characters of a header name, as a byte table made from HeaderMap's TOKEN. */
const TCHAR = new Uint8Array(128);
for (let c = 0; c < 128; c++) if (TOKEN.test(String.fromCharCode(c))) TCHAR[c] = 1;

/** A value character accepted here: HTAB, SP and visible ASCII (obs-text and controls are left to llhttp). */
function valueChar(c: number): boolean {
  return (c >= 0x20 && c < 0x7f) || c === 0x09;
}

/**
 * Reads the head at `buf[start, end)` when it is a usual one (see above); returns null, having changed nothing,
 * otherwise. A head longer than `maxHeaderSize` bytes is left to llhttp, which refuses it.
 */
export function readUsualResponseHead(buf: Buffer, start: number, end: number, maxHeaderSize: number): UsualHead | null {
  // At least "HTTP/1.1 200\r\n" and the empty line.
  if (end - start < 16 || buf[start] !== 0x48) return null;
  const stop = buf.indexOf(END_OF_HEAD, start, 'latin1');
  if (stop < 0 || stop + 4 > end || stop + 4 - start > maxHeaderSize) return null;
  // The status line and the header lines, each with its CRLF; the empty line is left out.
  const s = buf.toString('latin1', start, stop + 2);
  if (!s.startsWith('HTTP/1.1 ')) return null;
  const d0 = s.charCodeAt(9) - 48;
  const d1 = s.charCodeAt(10) - 48;
  const d2 = s.charCodeAt(11) - 48;
  if (d0 < 2 || d0 > 5 || d1 < 0 || d1 > 9 || d2 < 0 || d2 > 9) return null;
  const status = d0 * 100 + d1 * 10 + d2;
  if (status === 204 || status === 304) return null;
  let i = 12;
  let reason = '';
  const sep = s.charCodeAt(12);
  if (sep === 0x20) {
    i = 13;
    while (i < s.length && s.charCodeAt(i) !== 0x0d) {
      const c = s.charCodeAt(i);
      if (c < 0x20 || c >= 0x7f) return null;
      i++;
    }
    reason = s.slice(13, i);
  } else if (sep !== 0x0d) return null;
  if (s.charCodeAt(i + 1) !== 0x0a) return null;
  i += 2;
  const raw: string[] = [];
  let contentLength = -1;
  let keepAlive = true;
  while (i < s.length) {
    const nameStart = i;
    let c = s.charCodeAt(i);
    while (c < 128 && TCHAR[c] === 1) c = s.charCodeAt(++i);
    if (c !== 0x3a || i === nameStart) return null;
    const name = s.slice(nameStart, i);
    i++;
    c = s.charCodeAt(i);
    while (c === 0x20 || c === 0x09) c = s.charCodeAt(++i);
    const valueStart = i;
    while (c !== 0x0d) {
      if (!valueChar(c)) return null;
      c = s.charCodeAt(++i);
    }
    if (s.charCodeAt(i + 1) !== 0x0a) return null;
    const last = i > valueStart ? s.charCodeAt(i - 1) : 0;
    if (last === 0x20 || last === 0x09) return null;
    const value = s.slice(valueStart, i);
    i += 2;
    const n = name.length;
    if (n === 14 || n === 17 || n === 7 || n === 10 || n === 16) {
      const lower = name.toLowerCase();
      if (lower === 'content-length') {
        if (contentLength >= 0 || value.length === 0 || value.length > 15) return null;
        for (let k = 0; k < value.length; k++) {
          const v = value.charCodeAt(k);
          if (v < 48 || v > 57) return null;
        }
        contentLength = Number(value);
        if (contentLength === 0) return null;
      } else if (lower === 'transfer-encoding' || lower === 'upgrade') return null;
      // llhttp reads Proxy-Connection as it reads Connection.
      else if ((lower === 'connection' || lower === 'proxy-connection') && keepAlive) keepAlive = !hasCloseToken(value);
    }
    raw.push(name, value);
  }
  if (contentLength < 0) return null;
  head.raw = raw;
  head.status = status;
  head.reason = reason;
  head.keepAlive = keepAlive;
  head.contentLength = contentLength;
  head.end = stop + 4;
  return head;
}

/** Whether a Connection value lists the option "close" (case-insensitive), as llhttp reads it. */
function hasCloseToken(value: string): boolean {
  const v = value.toLowerCase();
  if (!v.includes('close')) return false;
  for (const token of v.split(',')) if (token.trim() === 'close') return true;
  return false;
}
