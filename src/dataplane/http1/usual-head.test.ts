import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Buffer } from 'node:buffer';
import { addedLines, copyUsualHeadLines, forwardedDate, forwardedLength, headersOf, readUsualRequestHead, readUsualResponseHead, ResponseHeadLines, unreadHeadersOf, usualHeadLines, type UsualHead } from './usual-head.ts';
import { createParser, METHODS } from './llhttp.ts';
import { headerLines, responseList } from './wire.ts';

interface Seen {
  raw: string[];
  status: number;
  reason: string;
  keepAlive: boolean;
  minor: number;
  major: number;
}

/** What llhttp makes of a head: the onHead arguments and where it stopped, or its error code. */
function llhttpReads(bytes: Buffer, maxHeaderSize: number): { ok: true; end: number; head: Seen | null } | { ok: false; code: string } {
  let seen: Seen | null = null;
  const parser = createParser('response', maxHeaderSize, {
    onHead(minor, raw, _m, _u, status, reason, _upgrade, keepAlive, major) {
      seen = { raw: [...raw], status, reason, keepAlive, minor, major };
      return 2;
    },
    onBody() {},
    onTrailers() {},
    onComplete() {},
  });
  try {
    const ret = parser.execute(bytes);
    return typeof ret === 'number' ? { ok: true, end: ret, head: seen as Seen | null } : { ok: false, code: ret.code };
  } finally {
    parser.close();
  }
}

/** Another usual head, read in between to move the reader on. */
const NEXT = Buffer.from('HTTP/1.1 200 OK\r\nContent-Length: 1\r\nX-Next: 1\r\n\r\n', 'latin1');

/** llhttp's raw list with the names lower-cased, as the reader gives them. */
function lowerNames(raw: string[]): string[] {
  return raw.map((v, i) => (i % 2 === 0 ? v.toLowerCase() : v));
}

const NGINX =
  'HTTP/1.1 200 OK\r\nServer: nginx/1.22.1\r\nDate: Wed, 02 Dec 2026 19:00:00 GMT\r\nContent-Type: text/plain\r\n' +
  'Content-Length: 12\r\nLast-Modified: Tue, 01 Dec 2026 10:00:00 GMT\r\nConnection: keep-alive\r\nETag: "6930-c"\r\n' +
  'Accept-Ranges: bytes\r\n\r\nhello world\n';

test('the usual head (nginx) is read as llhttp reads it; the body starts after the empty line', () => {
  const bytes = Buffer.from(NGINX, 'latin1');
  const head = readUsualResponseHead(bytes, 0, bytes.length, 16384);
  assert.ok(head !== null);
  const raw = usualHeadLines(head);
  const ll = llhttpReads(bytes, 16384);
  assert.ok(ll.ok && ll.head !== null);
  assert.deepEqual(
    { raw, status: head.status, reason: head.reason, keepAlive: head.keepAlive, end: head.end },
    { raw: lowerNames(ll.head.raw), status: ll.head.status, reason: ll.head.reason, keepAlive: ll.head.keepAlive, end: ll.end },
  );
  // The common names are the same strings each time (no slice made for them); others are lower-cased slices.
  assert.equal(raw[0], 'server');
  assert.equal(head.contentLength, 12);
  assert.equal(bytes.subarray(head.end).toString(), 'hello world\n');
});

test('heads outside the usual case are left to llhttp', () => {
  const cases = [
    'HTTP/1.0 200 OK\r\nContent-Length: 1\r\n\r\n',
    'HTTP/1.1 100 Continue\r\n\r\n',
    'HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nContent-Length: 1\r\n\r\n',
    'HTTP/1.1 204 No Content\r\nContent-Length: 1\r\n\r\n',
    'HTTP/1.1 304 Not Modified\r\nContent-Length: 1\r\n\r\n',
    'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n',
    'HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n',
    'HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n',
    'HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\n',
    'HTTP/1.1 200 OK\r\nContent-Length: 1, 1\r\n\r\n',
    'HTTP/1.1 200 OK\r\nContent-Length : 1\r\n\r\n',
    'HTTP/1.1 200 OK\r\nContent-Length: 1 \r\n\r\n',
    'HTTP/1.1 200 OK\r\nX-Folded: a\r\n b\r\nContent-Length: 1\r\n\r\n',
    'HTTP/1.1 200 OK\nContent-Length: 1\r\n\r\n',
    'HTTP/1.1 200 OK\r\nX-Bare: a\nb\r\nContent-Length: 1\r\n\r\n',
    'HTTP/1.1 200 OK\r\nX-Nul: a\0b\r\nContent-Length: 1\r\n\r\n',
    'HTTP/1.1 200 Caf\xe9\r\nContent-Length: 1\r\n\r\n',
    'HTTP/1.1 200 OK\r\nContent-Length: 1\r\n',
    'HTTP/1.1 200 OK\r\nContent-Length: 1234567890123456\r\n\r\n',
    // More header lines than the reader keeps offsets for.
    'HTTP/1.1 200 OK\r\n' + 'X-A: 1\r\n'.repeat(64) + 'Content-Length: 1\r\n\r\n',
  ];
  for (const text of cases) {
    const bytes = Buffer.from(text, 'latin1');
    assert.equal(readUsualResponseHead(bytes, 0, bytes.length, 16384), null, JSON.stringify(text));
  }
  const big = Buffer.from(`HTTP/1.1 200 OK\r\nX-Big: ${'a'.repeat(200)}\r\nContent-Length: 1\r\n\r\n`, 'latin1');
  assert.equal(readUsualResponseHead(big, 0, big.length, 100), null, 'over maxHeaderSize');
  assert.notEqual(readUsualResponseHead(big, 0, big.length, 16384), null);
});

test('only the bytes in [start, end) count: a head whose end lies past them, in stale bytes of the buffer, is not read', () => {
  const bytes = Buffer.from('xxHTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\n', 'latin1');
  assert.equal(readUsualResponseHead(bytes, 2, bytes.length - 2, 16384), null);
  assert.equal(readUsualResponseHead(bytes, 2, bytes.length, 16384)?.end, bytes.length);
});

/** A small seeded generator, so that a failure repeats. */
function random(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** `count` heads, each one of `bases` (in turn) with up to three random edits: a piece inserted or put in place of a byte, or a byte removed. */
function* mutations(bases: string[], pieces: string[], seed: number, count: number): Generator<{ text: string; edits: number }> {
  const next = random(seed);
  for (let n = 0; n < count; n++) {
    let text = bases[n % bases.length];
    const edits = Math.floor(next() * 4);
    for (let e = 0; e < edits; e++) {
      const at = Math.floor(next() * text.length);
      const piece = pieces[Math.floor(next() * pieces.length)];
      const kind = next();
      if (kind < 0.4) text = text.slice(0, at) + piece + text.slice(at);
      else if (kind < 0.8) text = text.slice(0, at) + piece + text.slice(at + 1);
      else text = text.slice(0, at) + text.slice(at + 1);
    }
    yield { text, edits };
  }
}

test('whatever head the JavaScript reader accepts, llhttp accepts and reads the same way (20 000 random mutations)', () => {
  const bases = [
    NGINX.slice(0, NGINX.indexOf('\r\n\r\n') + 4),
    'HTTP/1.1 404 Not Found\r\ncontent-length: 9\r\n\r\n',
    'HTTP/1.1 503\r\nContent-Length: 3\r\nConnection: Keep-Alive, Close\r\n\r\n',
    'HTTP/1.1 200 OK\r\nProxy-Connection: close\r\nContent-Length: 2\r\nX-Empty:\r\nX-Tab:\tv\tw\r\n\r\n',
    'HTTP/1.1 200 OK\r\nCONTENT-TYPE: a\r\nContent-Typf: b\r\nSERVEr: c\r\ncontent-length: 1\r\n\r\n',
  ];
  const pieces = ['\r', '\n', '\r\n', '\t', ' ', ':', ',', '\0', '\x7f', '\x80', '\xff', 'a', 'Z', '0', '9', '-', '"', '(',
    'close', 'keep-alive', 'Content-Length: 7\r\n', 'Transfer-Encoding: chunked\r\n', 'Upgrade: h2c\r\n', '\r\n ',
    'Connection: close\r\n', 'HTTP/1.0', '1', ' OK'];
  let accepted = 0;
  let mutatedAccepted = 0;
  let forwarded = 0;
  for (const { text, edits } of mutations(bases, pieces, 20261202, 20000)) {
    const bytes = Buffer.from(text + 'body', 'latin1');
    const head = readUsualResponseHead(bytes, 0, bytes.length, 16384);
    if (head === null) continue;
    accepted++;
    if (edits > 0) mutatedAccepted++;
    const raw = usualHeadLines(head);
    if (forwardedLines(head) !== null) forwarded++;
    const ll = llhttpReads(bytes, 16384);
    const where = JSON.stringify(text);
    assert.ok(ll.ok, `llhttp refused (${ll.ok ? '' : ll.code}) what the reader accepted: ${where}`);
    assert.ok(ll.head !== null, where);
    assert.equal(ll.head.major * 10 + ll.head.minor, 11, where);
    assert.deepEqual(raw, lowerNames(ll.head.raw), where);
    // The map made of a usual head is the one the codec makes of what llhttp read.
    const expected = responseList(ll.head.status, ll.head.raw);
    assert.deepEqual(headersOf(head).list, expected, where);
    // So is a map whose lines are read later, before or after the next head was read.
    const now = unreadHeadersOf(head);
    const later = unreadHeadersOf(head);
    assert.equal(now.size, expected.length / 2, where);
    assert.deepEqual(now.list, expected, where);
    assert.equal(head.status, ll.head.status, where);
    assert.equal(head.reason, ll.head.reason, where);
    assert.equal(head.keepAlive, ll.head.keepAlive, where);
    assert.equal(head.end, ll.end, where);
    readUsualResponseHead(NEXT, 0, NEXT.length, 16384);
    assert.deepEqual(later.list, expected, where);
  }
  // The comparison means something only if many heads, mutated ones among them, went through it.
  assert.ok(accepted > 5000, `only ${accepted} heads accepted`);
  assert.ok(mutatedAccepted > 1000, `only ${mutatedAccepted} mutated heads accepted`);
  assert.ok(forwarded > 4000, `only ${forwarded} heads forwarded as bytes`);
});

/**
 * The lines of a usual head that go on as bytes, read back as [lower-case name, value] pairs, after checking them
 * against what the map path writes for the same head (headerLines of headersOf): the same headers in the same order,
 * and Date found when the map has one. Null when the head goes the map path.
 */
function forwardedLines(head: UsualHead): string[][] | null {
  const length = forwardedLength(head);
  const map = headersOf(head);
  const expected = parseLines(headerLines(map, true, false));
  if (length < 0) {
    // Only a Connection value naming more than its options sends a head the map path.
    assert.ok(map.getAll('connection').length + map.getAll('proxy-connection').length > 0);
    return null;
  }
  const hasDate = forwardedDate;
  const out = Buffer.alloc(length + 2, 0x2a);
  assert.equal(copyUsualHeadLines(head, out, 1), length + 1, 'the copy fills what forwardedLength counted');
  assert.equal(out[0], 0x2a);
  assert.equal(out[length + 1], 0x2a, 'nothing is written past it');
  const lines = parseLines(out.toString('latin1', 1, length + 1));
  assert.deepEqual(lines, expected);
  assert.equal(hasDate, map.has('date'));
  return lines;
}

/** "Name: value\r\n" lines as [lower-case name, value without leading white space] pairs. */
function parseLines(text: string): string[][] {
  if (text === '') return [];
  assert.ok(text.endsWith('\r\n'));
  return text.slice(0, -2).split('\r\n').map((line) => {
    const colon = line.indexOf(':');
    return [line.slice(0, colon).toLowerCase(), line.slice(colon + 1).replace(/^[ \t]+/, '')];
  });
}

test('the lines of a usual head go on as they came, but for the hop-by-hop ones and Content-Length', () => {
  const bytes = Buffer.from(NGINX, 'latin1');
  const head = readUsualResponseHead(bytes, 0, bytes.length, 16384)!;
  const length = forwardedLength(head);
  const out = Buffer.alloc(length);
  copyUsualHeadLines(head, out, 0);
  assert.equal(out.toString('latin1'),
    'Server: nginx/1.22.1\r\nDate: Wed, 02 Dec 2026 19:00:00 GMT\r\nContent-Type: text/plain\r\n' +
    'Last-Modified: Tue, 01 Dec 2026 10:00:00 GMT\r\nETag: "6930-c"\r\nAccept-Ranges: bytes\r\n');
  assert.equal(forwardedDate, true);
  const again = readUsualResponseHead(bytes, 0, bytes.length, 16384)!;
  assert.throws(() => copyUsualHeadLines(again, Buffer.alloc(length), 0), /without forwardedLength/, 'the copy reads what forwardedLength found');
  const odd = Buffer.from('HTTP/1.1 200 OK\r\nKeep-Alive: timeout=5\r\nTE: trailers\r\nX-A:1\r\nProxy-Authenticate: Basic\r\nProxy-Authorization: Basic eA==\r\nContent-Length: 1\r\nConnection: keep-alive, close\r\n\r\nx', 'latin1');
  const h2 = readUsualResponseHead(odd, 0, odd.length, 16384)!;
  const out2 = Buffer.alloc(forwardedLength(h2));
  copyUsualHeadLines(h2, out2, 0);
  assert.equal(out2.toString('latin1'), 'X-A:1\r\n');
  assert.equal(forwardedDate, false);
  assert.equal(h2.keepAlive, false, 'close is read among other options');
  // A Connection header that names another header to remove sends the head the map path, which removes it.
  const nominating = Buffer.from('HTTP/1.1 200 OK\r\nConnection: x-secret\r\nX-Secret: 1\r\nContent-Length: 1\r\n\r\nx', 'latin1');
  const h3 = readUsualResponseHead(nominating, 0, nominating.length, 16384)!;
  assert.equal(forwardedLength(h3), -1);
  assert.equal(headersOf(h3).has('x-secret'), false);
  // Once another head is read (a pipelined request, say), the lines are gone: reading them throws, never misreads.
  const request = Buffer.from('GET / HTTP/1.1\r\nHost: a\r\n\r\n', 'latin1');
  assert.ok(readUsualRequestHead(request, 0, request.length, 16384) !== null);
  assert.throws(() => forwardedLength(h3), /after the next head was read/);
  assert.throws(() => headersOf(h3), /after the next head was read/);
});

interface SeenRequest {
  raw: string[];
  method: string;
  url: string;
  keepAlive: boolean;
  upgrade: boolean;
  version: number;
}

/** What llhttp makes of a request: its head, and whether the message ended with the bytes given (no body, no more). */
function llhttpReadsRequest(bytes: Buffer, maxHeaderSize: number): { ok: true; head: SeenRequest | null; complete: boolean } | { ok: false; code: string } {
  let seen: SeenRequest | null = null;
  let complete = false;
  let body = false;
  const parser = createParser('request', maxHeaderSize, {
    onHead(minor, raw, method, url, _s, _r, upgrade, keepAlive, major) {
      seen = { raw: [...raw], method: METHODS[method], url, keepAlive, upgrade, version: major * 10 + minor };
    },
    onBody() {
      body = true;
    },
    onTrailers() {},
    onComplete() {
      complete = true;
    },
  });
  try {
    const ret = parser.execute(bytes);
    if (typeof ret !== 'number') return { ok: false, code: ret.code };
    return { ok: true, head: seen as SeenRequest | null, complete: complete && !body && ret === bytes.length && !parser.midMessage() };
  } finally {
    parser.close();
  }
}

const CURL = 'GET /api/items?id=7 HTTP/1.1\r\nHost: 127.0.0.1:8080\r\nUser-Agent: curl/8.5.0\r\nAccept: */*\r\n\r\n';

test('the usual request head (curl) is read as llhttp reads it; the next message starts after the empty line', () => {
  const bytes = Buffer.from(CURL + 'GET /next HTTP/1.1\r\n', 'latin1');
  const head = readUsualRequestHead(bytes, 0, bytes.length, 16384);
  assert.ok(head !== null);
  assert.equal(head.end, CURL.length);
  const ll = llhttpReadsRequest(bytes.subarray(0, head.end), 16384);
  assert.ok(ll.ok && ll.head !== null && ll.complete);
  assert.deepEqual(
    { raw: head.raw, method: head.method, url: head.url, keepAlive: head.keepAlive },
    { raw: lowerNames(ll.head.raw), method: ll.head.method, url: ll.head.url, keepAlive: ll.head.keepAlive },
  );
  assert.deepEqual(head.raw, ['host', '127.0.0.1:8080', 'user-agent', 'curl/8.5.0', 'accept', '*/*']);
  const close = Buffer.from('DELETE /x HTTP/1.1\r\nHost: a\r\nConnection: Close\r\nContent-Length: 0\r\n\r\n', 'latin1');
  assert.equal(readUsualRequestHead(close, 0, close.length, 16384)?.keepAlive, false);
});

test('request heads outside the usual case are left to llhttp', () => {
  const cases = [
    'GET / HTTP/1.0\r\nHost: a\r\n\r\n',
    'GET http://a/ HTTP/1.1\r\nHost: a\r\n\r\n',
    'OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n',
    'CONNECT a:443 HTTP/1.1\r\nHost: a:443\r\n\r\n',
    'PROPFIND / HTTP/1.1\r\nHost: a\r\n\r\n',
    'get / HTTP/1.1\r\nHost: a\r\n\r\n',
    '\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n',
    'GET  / HTTP/1.1\r\nHost: a\r\n\r\n',
    'GET / HTTP/1.1 \r\nHost: a\r\n\r\n',
    'GET /caf\xe9 HTTP/1.1\r\nHost: a\r\n\r\n',
    'POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello',
    'POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 00\r\n\r\n',
    'POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\nContent-Length: 0\r\n\r\n',
    'POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n',
    'GET / HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n',
    'GET / HTTP/1.1\r\nHost: a\r\nX-Folded: a\r\n b\r\n\r\n',
    'GET / HTTP/1.1\nHost: a\r\n\r\n',
    'GET / HTTP/1.1\r\nHost : a\r\n\r\n',
    'GET / HTTP/1.1\r\nHost: a\r\n',
    'GET / HTTP/1.1\r\n' + 'X-A: 1\r\n'.repeat(64) + 'Host: a\r\n\r\n',
  ];
  for (const text of cases) {
    const bytes = Buffer.from(text, 'latin1');
    assert.equal(readUsualRequestHead(bytes, 0, bytes.length, 16384), null, JSON.stringify(text));
  }
  const big = Buffer.from(`GET /${'a'.repeat(200)} HTTP/1.1\r\nHost: a\r\n\r\n`, 'latin1');
  assert.equal(readUsualRequestHead(big, 0, big.length, 100), null, 'over maxHeaderSize');
  assert.notEqual(readUsualRequestHead(big, 0, big.length, 16384), null);
});

test('whatever request head the JavaScript reader accepts, llhttp accepts and reads the same way (20 000 random mutations)', () => {
  const bases = [
    CURL,
    'GET / HTTP/1.1\r\nHost: localhost\r\n\r\n',
    'HEAD /a/b/../c?x=%20&y#frag HTTP/1.1\r\nhost: h:1\r\nConnection: keep-alive, Close\r\nX-Tab:\tv\tw\r\n\r\n',
    'DELETE /items/1 HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\nProxy-Connection: close\r\nX-Empty:\r\n\r\n',
    'OPTIONS /{x}|[y]^`\\"<> HTTP/1.1\r\nHOST: a\r\nACCEPT: b\r\nAccepu: c\r\nexpect: 100-continue\r\n\r\n',
  ];
  const pieces = ['\r', '\n', '\r\n', '\t', ' ', ':', ',', '\0', '\x7f', '\x80', '\xff', 'a', 'Z', '0', '9', '-', '"', '(',
    '/', '?', '#', '%', '*', 'close', 'keep-alive', 'Content-Length: 7\r\n', 'Content-Length: 0\r\n', 'Transfer-Encoding: chunked\r\n',
    'Upgrade: h2c\r\n', '\r\n ', 'Connection: close\r\n', 'HTTP/1.0', 'HTTP/1.1', '1', 'POST', 'GET', 'CONNECT', 'http://h'];
  let accepted = 0;
  let mutatedAccepted = 0;
  for (const { text, edits } of mutations(bases, pieces, 20261203, 20000)) {
    const bytes = Buffer.from(text + 'GET', 'latin1');
    const head = readUsualRequestHead(bytes, 0, bytes.length, 16384);
    if (head === null) continue;
    accepted++;
    if (edits > 0) mutatedAccepted++;
    const ll = llhttpReadsRequest(bytes.subarray(0, head.end), 16384);
    const where = JSON.stringify(text);
    assert.ok(ll.ok, `llhttp refused (${ll.ok ? '' : ll.code}) what the reader accepted: ${where}`);
    assert.ok(ll.head !== null, where);
    assert.ok(ll.complete, `llhttp did not end the message where the reader did: ${where}`);
    assert.equal(ll.head.version, 11, where);
    assert.equal(ll.head.upgrade, false, where);
    assert.equal(head.method, ll.head.method, where);
    assert.equal(head.url, ll.head.url, where);
    assert.deepEqual(head.raw, lowerNames(ll.head.raw), where);
    assert.equal(head.keepAlive, ll.head.keepAlive, where);
  }
  assert.ok(accepted > 5000, `only ${accepted} heads accepted`);
  assert.ok(mutatedAccepted > 1000, `only ${mutatedAccepted} mutated heads accepted`);
});

test('a map made of a usual head reads its lines only when needed; added lines wait apart and go after them', () => {
  const bytes = Buffer.from('HTTP/1.1 200 OK\r\nServer: Up\r\nContent-Length: 2\r\nConnection: keep-alive\r\n\r\nhi', 'latin1');
  const head = readUsualResponseHead(bytes, 0, bytes.length, 16384)!;
  const map = unreadHeadersOf(head);
  const lines = map.unreadLines;
  assert.ok(lines instanceof ResponseHeadLines);
  assert.equal(lines.status, 200);
  assert.equal(lines.contentLength, 2);
  assert.equal(map.size, 4);
  map.add('X-Added', 'a');
  map.add('x-added', 'b');
  // Still unread: the codec can forward the head's bytes with the added lines after them.
  assert.equal(lines.current(), head);
  assert.equal(map.size, 6);
  assert.equal(addedLines(map.added), 'x-added: a\r\nx-added: b\r\n');
  // A name the codec writes itself (or a pseudo-header) makes the map read its lines first, keeping the order.
  map.add('date', 'Tue, 01 Dec 2026 00:00:00 GMT');
  assert.equal(map.unreadLines, null);
  assert.equal(lines.current(), null);
  assert.deepEqual(map.list, [':status', '200', 'server', 'Up', 'content-length', '2', 'connection', 'keep-alive',
    'x-added', 'a', 'x-added', 'b', 'date', 'Tue, 01 Dec 2026 00:00:00 GMT']);
  assert.deepEqual(map.added, []);
  // Reading (get) reads the lines too; once another head was read they come from the kept copy.
  const again = unreadHeadersOf(readUsualResponseHead(bytes, 0, bytes.length, 16384)!);
  readUsualResponseHead(NEXT, 0, NEXT.length, 16384);
  assert.equal((again.unreadLines as ResponseHeadLines).current(), null);
  assert.equal(again.get('server'), 'Up');
  assert.equal(again.unreadLines, null);
  // Once the read callback returned (detach), the lines come from the copy too, whatever the buffer holds now.
  const copy = Buffer.from(bytes);
  const held = unreadHeadersOf(readUsualResponseHead(copy, 0, copy.length, 16384)!);
  const heldLines = held.unreadLines as ResponseHeadLines;
  heldLines.detach();
  copy.fill(0x20);
  assert.equal(heldLines.current(), null);
  held.add('x-late', '1');
  assert.deepEqual(held.list, [':status', '200', 'server', 'Up', 'content-length', '2', 'connection', 'keep-alive', 'x-late', '1']);
});
