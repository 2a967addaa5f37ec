// Real AssemblyScript SDK filters (test/wasm-corpus/as/filters.ts) driven through real callbacks.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:http';
import { once } from 'node:events';
import type { AddressInfo } from 'node:net';
import { buildCorpus, type Corpus } from '../../../test/wasm-corpus/build.ts';
import { buildFilterForTest } from './test-support.ts';
import { runForTest, CallbacksForTest } from './harness-for-test.ts';
import { Metrics, renderPrometheus } from '../../telemetry/metrics.ts';
import { sharedStore } from '../../core/shared-store.ts';

let corpus: Corpus;
let auth: Server;
let authAddress: string;
const authRequests: string[] = [];

before(async () => {
  corpus = await buildCorpus();
  auth = createServer((req, res) => {
    authRequests.push(`${req.method} ${req.url} host=${req.headers.host}`);
    if (req.url === '/auth/allowed') res.end('token-123');
    else {
      res.statusCode = 403;
      res.end('no');
    }
  });
  auth.listen(0, '127.0.0.1');
  await once(auth, 'listening');
  authAddress = `127.0.0.1:${(auth.address() as AddressInfo).port}`;
});

after(() => auth.close());

const as = (root_id: string, extra: Record<string, unknown> = {}) => ({ file: corpus.as, root_id, configuration: 'cfg', vm_id: `sdk-${root_id}`, ...extra });

test('headers: a filter adds, replaces and removes request headers and sees end_of_stream', async () => {
  const { factory } = await buildFilterForTest(as('headers', { configuration: 'hello' }));
  const r = await runForTest(factory, { headers: { 'x-in': 'input', 'x-replace': 'old', 'x-remove': 'gone' } });
  const h = r.upstream!.headers;
  assert.equal(h.get('x-wasm'), 'hello');
  assert.equal(h.get('x-replace'), 'replaced');
  assert.equal(h.get('x-remove'), undefined);
  assert.equal(h.get('x-seen-in'), 'input');
  assert.equal(h.get('x-header-count'), '7');
  assert.equal(h.get('x-eos'), '1');
  assert.equal(r.response!.headers.get('x-response-wasm'), '/');
  assert.equal(r.response!.headers.get('server'), 'wasm');
});

test('body: a paused body callback receives the cumulative body and can replace it', async () => {
  const { factory } = await buildFilterForTest(as('body'));
  const r = await runForTest(factory, { headers: { ':method': 'POST' }, body: ['abc', 'def', 'ghi'] }, { body: ['resp', 'onse'] });
  assert.equal(r.upstream!.body.toString(), 'sizes=3,6,9;body=ABCDEFGHI');
  assert.deepEqual(r.statuses.slice(1, 4), ['stop-and-buffer', 'stop-and-buffer', 'continue']);
  assert.equal(r.response!.body.toString(), 'response+wasm');
});

test('local reply: send_local_response from a callback that returns Continue stops the request', async () => {
  const { factory } = await buildFilterForTest(as('local_reply'));
  const denied = await runForTest(factory, { headers: { ':path': '/deny' } });
  assert.equal(denied.upstream, null);
  assert.equal(denied.response!.status, 403);
  assert.equal(denied.response!.body.toString(), 'denied\n');
  assert.equal(denied.response!.headers.get('x-denied-by'), 'wasm');
  assert.equal(denied.callbacks.localReply!.options!.details, 'denied_by_wasm');
  assert.deepEqual(denied.statuses, ['stop']);
  const allowed = await runForTest(factory, { headers: { ':path': '/ok' } });
  assert.equal(allowed.response!.status, 200);
});

test('http call: the response reaches the root context with the stream effective, which resumes it', async () => {
  const { factory } = await buildFilterForTest(as('http_call', { configuration: 'auth' }), { clusters: { auth: authAddress } });
  const callbacks = new CallbacksForTest({ clusters: { auth: authAddress } });
  const ok = await runForTest(factory, { headers: { ':path': '/allowed' } }, {}, callbacks);
  assert.equal(ok.statuses[0], 'stop-all');
  assert.equal(ok.upstream!.headers.get('x-auth'), 'token-123');
  assert.deepEqual(callbacks.resumed, ['request']);
  assert.ok(authRequests.includes('GET /auth/allowed host=auth'), authRequests.join());
  const denied = await runForTest(factory, { headers: { ':path': '/other' } }, {}, new CallbacksForTest({ clusters: { auth: authAddress } }));
  assert.equal(denied.response!.status, 401);
  assert.equal(denied.response!.body.toString(), 'auth said 403\n');
});

test('http call: an unknown cluster is refused with BAD_ARGUMENT and the SDK gets no callback', async () => {
  const { factory, ctx } = await buildFilterForTest(as('http_call', { configuration: 'nowhere' }), { clusters: { auth: authAddress } });
  const callbacks = new CallbacksForTest();
  const filter = factory.create(callbacks, undefined);
  callbacks.requestHeaders = (await import('../../core/headers.ts')).HeaderMap.from({ ':method': 'GET', ':path': '/x', ':authority': 'a' });
  const status = filter.onRequestHeaders!(callbacks.requestHeaders, true);
  assert.equal(status, 'stop-all');
  assert.equal(callbacks.localReply, null);
  filter.onDestroy!();
  assert.equal(ctx.logs.filter(([l]) => l === 'error').length, 0);
});

test('timers: proxy_on_tick runs on the root context every period', async () => {
  const { factory } = await buildFilterForTest(as('tick', { vm_id: `tick-${Date.now()}` }));
  await new Promise((r) => setTimeout(r, 120));
  const r = await runForTest(factory, { headers: {} });
  assert.ok(Number(r.upstream!.headers.get('x-ticks')) >= 3, `ticks ${r.upstream!.headers.get('x-ticks')}`);
  factory.destroy!();
});

test('timers: a period past 2^31 - 1 ms (30 days) does not tick at once (Node timers would fire every millisecond)', async () => {
  const { factory } = await buildFilterForTest(as('tick', { vm_id: `tick-30d-${Date.now()}`, configuration: '30d' }));
  await new Promise((r) => setTimeout(r, 100));
  const r = await runForTest(factory, { headers: {} });
  assert.equal(r.upstream!.headers.get('x-ticks'), '0');
  factory.destroy!();
});

test('shared data: values and compare-and-swap counters are shared by the filters of one vm_id', async () => {
  const vm_id = `shared-${Date.now()}`;
  const a = await buildFilterForTest(as('shared', { vm_id }), { name: 'a' });
  const b = await buildFilterForTest(as('shared', { vm_id, configuration: 'other' }), { name: 'b' });
  const r1 = await runForTest(a.factory, { headers: { 'x-shared-set': 'from-a' } });
  assert.equal(r1.upstream!.headers.get('x-shared-get'), 'from-a');
  assert.equal(r1.upstream!.headers.get('x-hits'), '1');
  assert.equal(r1.upstream!.headers.get('x-stale-cas'), '8', 'a stale cas answers CAS_MISMATCH');
  const r2 = await runForTest(b.factory, { headers: {} });
  assert.equal(r2.upstream!.headers.get('x-shared-get'), 'from-a');
  assert.equal(r2.upstream!.headers.get('x-hits'), '2');
  const other = await buildFilterForTest(as('shared', { vm_id: `${vm_id}-other` }));
  const r3 = await runForTest(other.factory, { headers: {} });
  assert.equal(r3.upstream!.headers.get('x-shared-get'), 'none', 'another vm_id has its own data');
  assert.equal(new TextDecoder().decode(sharedStore().get(`wasm:${vm_id}`, 'value')!.value), 'from-a');
});

test('shared queues: an item enqueued by a stream is delivered to the registering root context', async () => {
  const vm_id = `queue-${Date.now()}`;
  const { factory } = await buildFilterForTest(as('queue', { vm_id }));
  const r1 = await runForTest(factory, { headers: { 'x-enqueue': 'job-1' } });
  assert.equal(r1.upstream!.headers.get('x-enqueue-status'), '0');
  for (let i = 0; i < 50 && sharedStore().get(`wasm:${vm_id}`, 'dequeued') === undefined; i++) await new Promise((r) => setTimeout(r, 10));
  const r2 = await runForTest(factory, { headers: {} });
  assert.equal(r2.upstream!.headers.get('x-dequeued'), 'job-1');
});

test('metrics: counters, gauges and histograms defined by the module appear in the Prometheus output', async () => {
  const metrics = new Metrics();
  const { factory } = await buildFilterForTest(as('metrics'), { metrics });
  await runForTest(factory, { headers: {} });
  const r = await runForTest(factory, { headers: { a: '1' } });
  assert.equal(r.upstream!.headers.get('x-requests'), '2');
  const text = renderPrometheus(metrics.snapshot());
  assert.match(text, /^wasmcustom_as_requests 2$/m);
  assert.match(text, /^wasmcustom_as_inflight 6$/m);
  assert.match(text, /^wasmcustom_as_header_count_count 2$/m);
});

test('properties: well-known paths, plugin identity and set_property', async () => {
  const { factory } = await buildFilterForTest(as('properties', { vm_id: 'props-vm' }), { name: 'props' });
  const r = await runForTest(factory, { headers: { ':path': '/a/b?q=1', ':method': 'PUT', ':authority': 'svc.local', 'x-in': 'v1' } }, { status: 201 });
  const h = r.upstream!.headers;
  assert.equal(h.get('x-p-path'), '/a/b?q=1');
  assert.equal(h.get('x-p-url-path'), '/a/b');
  assert.equal(h.get('x-p-method'), 'PUT');
  assert.equal(h.get('x-p-host'), 'svc.local');
  assert.equal(h.get('x-p-header'), 'v1');
  assert.equal(h.get('x-p-source'), '127.0.0.1:54321');
  assert.equal(h.get('x-p-source-port'), '54321');
  assert.equal(h.get('x-p-plugin'), 'props');
  assert.equal(h.get('x-p-vm'), 'props-vm');
  assert.equal(h.get('x-p-route'), 'default');
  assert.equal(h.get('x-p-missing'), '<1>', 'a missing property answers NOT_FOUND');
  assert.equal(h.get('x-p-own'), 'set-by-wasm');
  assert.equal(r.callbacks.info.filterState.get('wasm.my_prop')?.toString(), 'set-by-wasm');
  assert.equal(r.response!.headers.get('x-p-code'), '201');
});

test('lifecycle: on_done, on_log and on_delete run once each, in that order, after the response', async () => {
  const { factory } = await buildFilterForTest(as('lifecycle'));
  const r = await runForTest(factory, { headers: {} }, { status: 204 });
  const lines = r.callbacks.logs.map(([, m]) => m).filter((m) => m.startsWith('life:'));
  assert.deepEqual(lines, ['life: request_headers', 'life: response_headers', 'life: done', 'life: log 204', 'life: delete']);
});

test('pause: a root callback resumes a stream through set_effective_context, and body waits for it (stop-all)', async () => {
  const { factory } = await buildFilterForTest(as('pause'));
  const r = await runForTest(factory, { headers: { ':method': 'POST' }, body: ['x'] });
  assert.equal(r.statuses[0], 'stop-all');
  assert.equal(r.upstream!.headers.get('x-resumed-by'), 'tick');
  assert.equal(r.upstream!.headers.get('x-body-seen'), 'yes');
  assert.deepEqual(r.callbacks.resumed, ['request']);
});

test('the SDK trap on an empty plugin configuration is contained: the filter is refused with a message', async () => {
  await assert.rejects(buildFilterForTest(as('headers', { configuration: '' })), /Wasm module (trapped|called proc_exit)/);
  const { factory } = await buildFilterForTest(as('headers', { configuration: 'still-fine' }));
  const r = await runForTest(factory, { headers: {} });
  assert.equal(r.upstream!.headers.get('x-wasm'), 'still-fine');
});

test('an unknown root_id makes the SDK exit during on_context_create: the filter is refused', async () => {
  await assert.rejects(buildFilterForTest(as('no_such_root', { vm_id: 'nosuch' })), /proc_exit|trapped/);
});

test('two filters with the same vm_id and code share one VM (one module global), another vm_id gets its own', async () => {
  const vm_id = `pair-${Date.now()}`;
  const a = await buildFilterForTest(as('vmcount', { vm_id, configuration: 'a' }), { name: 'a' });
  const b = await buildFilterForTest(as('vmcount', { vm_id, configuration: 'b' }), { name: 'b' });
  const c = await buildFilterForTest(as('vmcount', { vm_id: `${vm_id}-c`, configuration: 'c' }), { name: 'c' });
  const seen: string[] = [];
  for (const f of [a, b, c, a, b]) {
    const r = await runForTest(f.factory, { headers: {} });
    for (const [k, v] of r.upstream!.headers) if (k.startsWith('x-vmcount-')) seen.push(`${k.slice(10)}=${v}`);
  }
  assert.deepEqual(seen, ['a=1', 'b=2', 'c=1', 'a=3', 'b=4']);
});

test('http call from a root context (a tick, outside any request) goes through the worker and answers the root', async () => {
  const { factory } = await buildFilterForTest(as('root_call', { vm_id: `root-call-${Date.now()}`, configuration: 'auth' }), { clusters: { auth: authAddress } });
  let seen = 'pending';
  for (let i = 0; i < 100 && seen === 'pending'; i++) {
    await new Promise((r) => setTimeout(r, 10));
    seen = (await runForTest(factory, { headers: {} })).upstream!.headers.get('x-root-call')!;
  }
  assert.equal(seen, '200 token-123');
  factory.destroy!();
});

test('a failed http call answers with no headers, and proxy_get_status reports BROKEN_CONNECTION', async () => {
  const dead = { dead: '127.0.0.1:1' };
  const { factory } = await buildFilterForTest(as('http_call', { configuration: 'dead' }), { clusters: dead });
  const r = await runForTest(factory, { headers: { ':path': '/allowed' } }, {}, new CallbacksForTest({ clusters: dead }));
  assert.equal(r.response!.status, 502);
  assert.equal(r.response!.body.toString(), 'call failed: 11 reset\n');
});

test('allow_on_headers_stop_iteration: a paused header callback holds only the headers; the body still reaches the filter', async () => {
  const { factory } = await buildFilterForTest(as('pause', { allow_on_headers_stop_iteration: true }));
  const { HeaderMap } = await import('../../core/headers.ts');
  const cb = new CallbacksForTest();
  const filter = factory.create(cb, undefined);
  cb.requestHeaders = HeaderMap.from({ ':method': 'POST', ':path': '/', ':authority': 'a', ':scheme': 'http' });
  assert.equal(filter.onRequestHeaders!(cb.requestHeaders, false), 'stop');
  assert.equal(filter.onRequestBody!({ data: Buffer.from('x') }, true), 'continue');
  assert.equal(cb.requestHeaders.get('x-body-seen'), 'yes');
  await cb.waitForResume('request');
  filter.onDestroy!();
});

test('a module without body callbacks gives a filter without body hooks (the chain passes bodies by), unless allow_on_headers_stop_iteration', async () => {
  const { factory } = await buildFilterForTest({ file: corpus.headerRw });
  const filter = factory.create(new CallbacksForTest(), undefined);
  assert.equal(filter.onRequestBody, undefined);
  assert.equal(filter.onResponseBody, undefined);
  filter.onDestroy!();
  const { factory: stopIteration } = await buildFilterForTest({ file: corpus.headerRw, allow_on_headers_stop_iteration: true, vm_id: 'stop-iteration' });
  const other = stopIteration.create(new CallbacksForTest(), undefined);
  assert.equal(typeof other.onRequestBody, 'function', 'a body chunk answering continue resumes paused headers, as in Envoy');
  other.onDestroy!();
  const { factory: sdk } = await buildFilterForTest(as('pause'));
  const withBody = sdk.create(new CallbacksForTest(), undefined);
  assert.equal(typeof withBody.onResponseBody, 'function');
  withBody.onDestroy!();
});

test('an http call made after its stream ended (from proxy_on_log) is answered through the root context, as in Envoy', async () => {
  const clusters = { collector: authAddress };
  const { factory, ctx } = await buildFilterForTest({ file: corpus.calloutAfterEnd, vm_id: `callout-after-end-${Date.now()}` }, { clusters });
  for (let i = 0; i < 3; i++) await runForTest(factory, { headers: {} }, {}, new CallbacksForTest({ clusters }));
  const answered = () => ctx.logs.filter(([, m]) => m === 'answered').length;
  for (let i = 0; i < 200 && answered() < 3; i++) await new Promise((r) => setTimeout(r, 10));
  assert.equal(answered(), 3, 'every call answered, none dropped with its stream');
  assert.deepEqual(ctx.logs.filter(([, m]) => m === 'call refused'), []);
  factory.destroy!();
});
