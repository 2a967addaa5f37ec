/**
 * Back-pressure end to end: a 1 GiB upload (chunked) and a 1 GiB download (Content-Length) stream through
 * weir while its resident memory stays bounded. The bytes are generated from a fixed pattern and checked
 * byte for byte on arrival, never stored.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import http from 'node:http';
import { startWeir, type Weir } from '../support/weir.ts';
import { startUpstream, type Upstream } from '../support/upstream.ts';
import { PATTERN, patternChecker, patternSource } from '../support/pattern.ts';

const GiB = 1024 ** 3;
const RSS_LIMIT = 300 * 1024 ** 2;

/** Samples VmRSS of `pid` every 100 ms until stopped; `stop` returns the highest value seen, `start` the first. */
function watchRss(pid: number): { start: number; stop(): number } {
  let max = 0;
  const sample = () => {
    const m = /VmRSS:\s+(\d+) kB/.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'));
    if (m !== null) max = Math.max(max, Number(m[1]) * 1024);
  };
  sample();
  const start = max;
  const timer = setInterval(sample, 100);
  return {
    start,
    stop() {
      clearInterval(timer);
      sample();
      return max;
    },
  };
}

/** Bytes the /endless upstream handler managed to write so far. */
let endlessSent = 0;

/** Resolves once `read()` stops growing (unchanged over 5 polls 100 ms apart, at most 15 s). */
async function settle(read: () => number): Promise<number> {
  let last = -1;
  let same = 0;
  for (let i = 0; i < 150 && same < 5; i++) {
    await new Promise((r) => setTimeout(r, 100));
    const now = read();
    same = now === last ? same + 1 : 0;
    last = now;
  }
  return last;
}

let up: Upstream;
let weir: Weir;

before(async () => {
  up = await startUpstream(
    (req, res) => {
      if (req.url === '/endless') {
        res.writeHead(200, { 'content-type': 'application/octet-stream' });
        let open = true;
        res.on('close', () => (open = false));
        const pump = () => {
          while (open) {
            endlessSent += 64 * 1024;
            if (!res.write(PATTERN.subarray(0, 64 * 1024))) return void res.once('drain', pump);
          }
        };
        pump();
        return;
      }
      if (req.url === '/never-read') {
        req.pause();
        return;
      }
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
      # Its own cluster, so its own upstream connection: a pooled one that carried the 1 GiB download has a receive
      # buffer the kernel grew to tcp_rmem's maximum (32 MiB here), which the bound below would then count.
      - match: { prefix: /endless }
        cluster: endless
        timeout: 0s
      - match: { prefix: / }
        cluster: up
        timeout: 0s
clusters:
  - name: up
    endpoints: [${up.address}]
    timeout: 0s
  - name: endless
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
  assert.ok(max < RSS_LIMIT, `weir RSS peaked at ${(max / 1024 ** 2).toFixed(0)} MiB (${(rss.start / 1024 ** 2).toFixed(0)} MiB before the transfer)`);
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
  assert.ok(max < RSS_LIMIT, `weir RSS peaked at ${(max / 1024 ** 2).toFixed(0)} MiB (${(rss.start / 1024 ** 2).toFixed(0)} MiB before the transfer)`);
});

test('a client that stops reading stops the upstream: weir buffers a bounded amount', async () => {
  const { hostname, port } = new URL(weir.url('edge'));
  const res = await new Promise<http.IncomingMessage>((resolve, reject) => http.get({ host: hostname, port, path: '/endless' }, resolve).on('error', reject));
  res.pause();
  const sent = await settle(() => endlessSent);
  res.destroy();
  assert.ok(sent > 0);
  assert.ok(sent < 64 * 1024 ** 2, `the upstream wrote ${(sent / 1024 ** 2).toFixed(1)} MiB into a response nobody read`);
});

test('an upstream that stops reading stops the client upload: weir buffers a bounded amount', async () => {
  const { hostname, port } = new URL(weir.url('edge'));
  const req = http.request({ host: hostname, port, method: 'POST', path: '/never-read' });
  req.on('error', () => {});
  let written = 0;
  let open = true;
  req.on('close', () => (open = false));
  const pump = () => {
    while (open) {
      written += 64 * 1024;
      if (!req.write(PATTERN.subarray(0, 64 * 1024))) return void req.once('drain', pump);
    }
  };
  pump();
  const sent = await settle(() => written);
  open = false;
  req.destroy();
  assert.ok(sent < 64 * 1024 ** 2, `the client pushed ${(sent / 1024 ** 2).toFixed(1)} MiB towards an upstream that reads nothing`);
});
