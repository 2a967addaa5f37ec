/**
 * Back-pressure end to end: a 1 GiB upload (chunked) and a 1 GiB download (Content-Length) stream through
 * weir while its resident memory stays bounded. The bytes are generated from a fixed pattern and checked
 * byte for byte on arrival, never stored.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import http from 'node:http';
import { randomBytes } from 'node:crypto';
import { Readable } from 'node:stream';
import { startWeir, type Weir } from '../support/weir.ts';
import { startUpstream, type Upstream } from '../support/upstream.ts';

const GiB = 1024 ** 3;
const RSS_LIMIT = 300 * 1024 ** 2;
/** An odd period, so the pattern shifts against every chunk boundary on the way. */
const PATTERN = randomBytes(1024 * 1024 + 7);

/** A stream of `total` bytes: PATTERN repeated, as slices of the one buffer (nothing allocated per chunk). */
function patternSource(total: number): Readable {
  let sent = 0;
  return new Readable({
    highWaterMark: 64 * 1024,
    read() {
      if (sent >= total) return void this.push(null);
      const off = sent % PATTERN.length;
      const n = Math.min(64 * 1024, PATTERN.length - off, total - sent);
      sent += n;
      this.push(PATTERN.subarray(off, off + n));
    },
  });
}

/** Checks arriving bytes against the pattern; `bytes` counts them, `bad` counts chunks that differ. */
function patternChecker(): { bytes: number; bad: number; check(chunk: Buffer): void } {
  const st = {
    bytes: 0,
    bad: 0,
    check(chunk: Buffer) {
      let i = 0;
      while (i < chunk.length) {
        const off = st.bytes % PATTERN.length;
        const n = Math.min(chunk.length - i, PATTERN.length - off);
        if (chunk.compare(PATTERN, off, off + n, i, i + n) !== 0) st.bad++;
        st.bytes += n;
        i += n;
      }
    },
  };
  return st;
}

/** Samples VmRSS of `pid` every 100 ms until stopped; returns the highest value seen, in bytes. */
function watchRss(pid: number): { stop(): number } {
  let max = 0;
  const sample = () => {
    const m = /VmRSS:\s+(\d+) kB/.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'));
    if (m !== null) max = Math.max(max, Number(m[1]) * 1024);
  };
  sample();
  const timer = setInterval(sample, 100);
  return {
    stop() {
      clearInterval(timer);
      sample();
      return max;
    },
  };
}

let up: Upstream;
let weir: Weir;

before(async () => {
  up = await startUpstream(
    (req, res) => {
      if (req.url === '/download') {
        res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': String(GiB) });
        patternSource(GiB).pipe(res);
        return;
      }
      const checker = patternChecker();
      req.on('data', (c: Buffer) => checker.check(c));
      req.on('end', () => {
        const text = JSON.stringify({ bytes: checker.bytes, bad: checker.bad, te: req.headers['transfer-encoding'] ?? null });
        res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
        res.end(text);
      });
    },
    { stream: true },
  );
  weir = await startWeir(`
listeners:
  - name: edge
    address: 127.0.0.1:0
    filters:
      - name: tag
        type: headers
        response_add: { x-served-by: weir }
    routes:
      - match: { prefix: / }
        cluster: up
        timeout: 0s
clusters:
  - name: up
    endpoints: [${up.address}]
    timeout: 0s
`);
});

after(async () => {
  await weir?.stop();
  await up?.close();
});

test('a 1 GiB chunked upload streams through with weir RSS under 300 MiB', { timeout: 600_000 }, async () => {
  const rss = watchRss(weir.process.pid!);
  const { hostname, port } = new URL(weir.url('edge'));
  const result = await new Promise<{ status: number; body: string }>((resolve, reject) => {
    const req = http.request({ host: hostname, port, method: 'POST', path: '/upload' }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => (body += d));
      res.on('end', () => resolve({ status: res.statusCode!, body }));
    });
    req.on('error', reject);
    patternSource(GiB).pipe(req);
  });
  const max = rss.stop();
  assert.equal(result.status, 200);
  const seen = JSON.parse(result.body);
  assert.equal(seen.te, 'chunked');
  assert.equal(seen.bytes, GiB, 'the upstream received every byte');
  assert.equal(seen.bad, 0, 'in order and unchanged');
  assert.ok(max < RSS_LIMIT, `weir RSS peaked at ${(max / 1024 ** 2).toFixed(0)} MiB`);
});

test('a 1 GiB download streams through with weir RSS under 300 MiB', { timeout: 600_000 }, async () => {
  const rss = watchRss(weir.process.pid!);
  const { hostname, port } = new URL(weir.url('edge'));
  const result = await new Promise<{ status: number; length: string | undefined; bytes: number; bad: number }>((resolve, reject) => {
    http
      .get({ host: hostname, port, path: '/download' }, (res) => {
        const checker = patternChecker();
        res.on('data', (c: Buffer) => checker.check(c));
        res.on('end', () => resolve({ status: res.statusCode!, length: res.headers['content-length'], bytes: checker.bytes, bad: checker.bad }));
        res.on('error', reject);
      })
      .on('error', reject);
  });
  const max = rss.stop();
  assert.equal(result.status, 200);
  assert.equal(result.length, String(GiB));
  assert.equal(result.bytes, GiB);
  assert.equal(result.bad, 0);
  assert.ok(max < RSS_LIMIT, `weir RSS peaked at ${(max / 1024 ** 2).toFixed(0)} MiB`);
});
