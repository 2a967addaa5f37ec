// Loading: ABI versions, imports, exports, start restrictions, WASI, and the compiled-module cache.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:http';
import { once } from 'node:events';
import { mkdtemp, readFile, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { AddressInfo } from 'node:net';
import { buildCorpus, type Corpus } from '../../../test/wasm-corpus/build.ts';
import { buildFilterForTest } from './test-support.ts';
import { runForTest } from './harness-for-test.ts';
import { moduleCacheStats, sha256Hex } from './module-cache.ts';
import { Metrics, renderPrometheus } from '../../telemetry/metrics.ts';

let corpus: Corpus;
let server: Server;
let base: string;
let cacheDir: string;
let serverHits = 0;
let serverUp = true;
let bigBytes: Buffer;
let slowBytes: Buffer;

before(async () => {
  corpus = await buildCorpus();
  bigBytes = await readFile(corpus.edge);
  slowBytes = await readFile(corpus.wasi);
  cacheDir = await mkdtemp(join(tmpdir(), 'weir-wasm-cache-'));
  process.env.WEIR_CACHE_DIR = cacheDir;
  server = createServer((req, res) => {
    serverHits++;
    if (!serverUp) return void res.writeHead(500).end();
    if (req.url === '/edge.wasm') res.end(bigBytes);
    else if (req.url === '/slow.wasm') setTimeout(() => res.end(slowBytes), 300);
    else res.writeHead(404).end();
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});

after(async () => {
  server.close();
  delete process.env.WEIR_CACHE_DIR;
  await rm(cacheDir, { recursive: true, force: true });
});

test('ABI 0.1.0: two-parameter header callback, get_configuration, OK with an empty value for a missing header', async () => {
  const { factory, prepared } = await buildFilterForTest({ file: corpus.abi010, configuration: 'conf-010' });
  assert.equal(prepared.ok && prepared.abi, '0.1.0');
  const r = await runForTest(factory, { headers: {} });
  const h = r.upstream!.headers;
  assert.equal(h.get('x-missing-status'), '0');
  assert.equal(h.get('x-config'), 'conf-010');
  assert.equal(h.get('x-continue-status'), '0');
  assert.equal(r.statuses[0], 'continue', 'a continue requested during the callback turns its pause into continue');
});

test('an unknown import fails loading with a message that names it', async () => {
  await assert.rejects(buildFilterForTest({ file: corpus.unknownImport }), /missing import "env\.proxy_frobnicate"/);
});

test('a module without an ABI marker, or without an allocator, fails loading', async () => {
  await assert.rejects(buildFilterForTest({ file: corpus.noAbiMarker }), /missing or unknown Proxy-Wasm ABI version/);
  await assert.rejects(buildFilterForTest({ file: corpus.noMalloc }), /neither malloc nor proxy_on_memory_allocate/);
});

test('only proxy_log and a few WASI calls are allowed while a module starts (restricted_callback)', async () => {
  await assert.rejects(buildFilterForTest({ file: corpus.restrictedStart, configuration: 'x' }), /restricted host call "proxy_set_tick_period_milliseconds"/);
});

test('WASI: fd_write goes to the log under both module names, clocks, random and environ work, the rest answer EINVAL/EBADF', async () => {
  const { factory, ctx } = await buildFilterForTest({ file: corpus.wasi, configuration: 'x', environment: { A: '1', B: '2' } });
  assert.ok(ctx.logs.some(([l, m]) => l === 'info' && m === 'hello from wasi'), JSON.stringify(ctx.logs));
  assert.ok(ctx.logs.some(([l, m]) => l === 'error' && m === 'error from wasi'));
  const h = (await runForTest(factory, { headers: {} })).upstream!.headers;
  assert.equal(h.get('x-clock'), '00');
  assert.equal(h.get('x-time-set'), '01');
  assert.equal(h.get('x-random'), '00');
  assert.equal(h.get('x-poll'), '28', 'poll_oneoff without subscriptions: EINVAL');
  assert.equal(h.get('x-filestat'), '08');
  assert.equal(h.get('x-yield'), '00');
  assert.equal(h.get('x-environ'), '02');
});

test('a module is compiled once per hash: a second load, as on a reload, compiles nothing', async () => {
  const metrics = new Metrics();
  const first = await buildFilterForTest({ file: corpus.abi010, configuration: 'a' }, { metrics });
  const before = moduleCacheStats().compilations;
  const second = await buildFilterForTest({ file: corpus.abi010, configuration: 'b', vm_id: 'other' }, { metrics });
  assert.equal(moduleCacheStats().compilations, before);
  assert.equal(second.prepared.ok && second.prepared.compiled, false);
  assert.equal(first.prepared.ok && second.prepared.ok && first.prepared.sha256, second.prepared.ok && second.prepared.sha256);
  assert.match(renderPrometheus(metrics.snapshot()), new RegExp(`^weir_wasm_module_compilations ${before}$`, 'm'));
});

test('the compiled module crosses to a worker thread by structured clone and runs there without recompiling', async () => {
  const { prepared } = await buildFilterForTest({ file: corpus.edge, configuration: 'go' });
  const { Worker } = await import('node:worker_threads');
  const before = moduleCacheStats().compilations;
  const url = new URL('./test-support.ts', import.meta.url).href;
  const code = `
    const { workerData, parentPort } = require('node:worker_threads');
    (async () => {
      const { buildFactoryFromPreparedForTest } = await import(${JSON.stringify(url)});
      parentPort.postMessage(await buildFactoryFromPreparedForTest(workerData));
    })().catch((e) => parentPort.postMessage(String(e)));`;
  const worker = new Worker(code, { eval: true, workerData: prepared });
  const [answer] = await once(worker, 'message');
  await worker.terminate();
  assert.equal(answer, 'x-edge=ok');
  assert.equal(moduleCacheStats().compilations, before);
});

test('a remote module is downloaded once into the on-disk cache, verified, and reused when the server is down', async () => {
  const sha = sha256Hex(bigBytes);
  const config = { url: `${base}/edge.wasm`, sha256: sha, configuration: 'go' };
  const hits = serverHits;
  const { factory } = await buildFilterForTest(config);
  assert.equal(serverHits, hits + 1);
  assert.ok((await stat(join(cacheDir, 'wasm', `${sha}.wasm`))).size > 0);
  assert.equal((await runForTest(factory, { headers: {} })).upstream!.headers.get('x-edge'), 'ok');
  serverUp = false;
  await buildFilterForTest(config);
  assert.equal(serverHits, hits + 1, 'the second load reads the disk cache');
  serverUp = true;
});

test('a wrong sha256 is refused; a failed download keeps the last good module or applies the failure policy', async () => {
  const wrong = '0'.repeat(64);
  await assert.rejects(buildFilterForTest({ file: corpus.edge, sha256: wrong }), /sha256 is "[0-9a-f]{64}", config expects "0{64}"/);
  const missing = await buildFilterForTest({ url: `${base}/missing.wasm`, sha256: wrong, configuration: 'go' }, { name: 'remote-missing' });
  assert.equal(missing.prepared.ok, false);
  const r = await runForTest(missing.factory, { headers: {} });
  assert.equal(r.response!.status, 503);
  const open = await buildFilterForTest({ url: `${base}/missing.wasm`, sha256: wrong, configuration: 'go', failure_policy: 'fail_open' }, { name: 'remote-open' });
  assert.equal((await runForTest(open.factory, { headers: {} })).response!.status, 200);
});

test('a slow download does not hold the config load past fetch_timeout_ms; it lands in the cache for the next load', async () => {
  const sha = sha256Hex(slowBytes);
  const config = { url: `${base}/slow.wasm`, sha256: sha, configuration: 'x', fetch_timeout_ms: 50 };
  const hits = serverHits;
  const started = performance.now();
  const first = await buildFilterForTest(config, { name: 'slow' });
  const waited = performance.now() - started;
  assert.equal(first.prepared.ok, false);
  assert.match(first.prepared.ok ? '' : first.prepared.error, /within 50 ms; the download goes on/);
  console.log(`# config load waited ${waited.toFixed(0)} ms for a 300 ms download`);
  await new Promise((r) => setTimeout(r, 500));
  const second = await buildFilterForTest(config, { name: 'slow' });
  assert.equal(second.prepared.ok, true);
  assert.equal(serverHits, hits + 1, 'one download served both loads');
});

test('a root context whose on_done answers false is deleted once it calls proxy_done; streams finish at once', async () => {
  const { factory, ctx } = await buildFilterForTest({ file: corpus.lateDone, configuration: 'x', vm_id: 'late-done' });
  const r = await runForTest(factory, { headers: {} });
  assert.deepEqual(r.callbacks.logs.map(([, m]) => m), ['stream on_done', 'stream on_delete']);
  factory.destroy!();
  const lines = (): string[] => ctx.logs.map(([, m]) => m).filter((m) => m.startsWith('root') || m === 'tick');
  assert.deepEqual(lines(), ['root on_done'], 'on_delete waits for proxy_done');
  for (let i = 0; i < 100 && lines().length < 3; i++) await new Promise((res) => setTimeout(res, 5));
  assert.deepEqual(lines(), ['root on_done', 'tick', 'root on_delete']);
});
