// Traps, endless loops, memory caps and failure policies, with the hand-written edge module (test/wasm-corpus/wat/edge.wat).
import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import { buildCorpus, type Corpus } from '../../../test/wasm-corpus/build.ts';
import { buildFilterForTest } from './test-support.ts';
import { runForTest, CallbacksForTest } from './harness-for-test.ts';
import { RELOAD_BURST } from './plugin.ts';
import { HeaderMap } from '../../core/headers.ts';
import { Metrics, renderPrometheus } from '../../telemetry/metrics.ts';
import { createServer } from 'node:http';
import { once } from 'node:events';
import type { AddressInfo } from 'node:net';

let corpus: Corpus;
before(async () => {
  corpus = await buildCorpus();
});

/** The request header that selects the edge module's behaviour (see test/wasm-corpus/wat/edge.wat). */
function action(a: 'trap' | 'loop' | 'grow' | 'bad-status' | 'recurse' | 'oob' | 'missing' | 'http-trap' | 'late-reply' | 'none'): Record<string, string> {
  const letters: Record<string, string> = { 'bad-status': 'b', missing: 'm', oob: 'o', 'http-trap': 'h', 'late-reply': 'y' };
  return a === 'none' ? {} : { 'x-edge-action': letters[a] ?? a };
}

let seq = 0;
const edge = (extra: Record<string, unknown> = {}) => ({ file: corpus.edge, configuration: 'go', vm_id: `edge-${seq++}`, ...extra });

test('a trap under fail_closed answers 503, is counted and logged with the filter name; the next request gets a new VM', async () => {
  const metrics = new Metrics();
  const { factory, ctx } = await buildFilterForTest(edge({ failure_policy: 'fail_closed' }), { name: 'edgy', metrics });
  const ok = await runForTest(factory, { headers: action('none') });
  assert.equal(ok.upstream!.headers.get('x-edge'), 'ok');
  const trapped = await runForTest(factory, { headers: action('trap') });
  assert.equal(trapped.response!.status, 503);
  assert.equal(trapped.callbacks.localReply!.options!.details, 'wasm_fail_stream');
  assert.ok(trapped.callbacks.logs.some(([l, m]) => l === 'error' && m.includes('"edgy"') && m.includes('unreachable')), JSON.stringify(trapped.callbacks.logs));
  assert.match(renderPrometheus(metrics.snapshot()), /weir_wasm_vm_failures_total\{filter="edgy",reason="trap"\} 1/);
  const after = await runForTest(factory, { headers: action('none') });
  assert.equal(after.upstream!.headers.get('x-edge'), 'ok', 'beyond Envoy: the VM is recreated whatever the policy');
  assert.match(renderPrometheus(metrics.snapshot()), /weir_wasm_vm_reloads_total\{filter="edgy"\} 1/);
  void ctx;
});

test('a trap under fail_open passes the failing request through untouched; during a backoff requests pass too', async () => {
  const { factory } = await buildFilterForTest(edge({ failure_policy: 'fail_open' }));
  const trapped = await runForTest(factory, { headers: action('trap') });
  assert.equal(trapped.response!.status, 200);
  assert.equal(trapped.upstream!.headers.get('x-edge'), undefined);
  assert.equal((await runForTest(factory, { headers: action('trap') })).response!.status, 200, 'the new VM traps too');
  const next = await runForTest(factory, { headers: action('none') });
  assert.equal(next.upstream!.headers.get('x-edge'), 'ok', 'two failures in a row: the next request still gets a fresh VM');
  for (let i = 0; i < RELOAD_BURST; i++) await runForTest(factory, { headers: action('trap') });
  const during = await runForTest(factory, { headers: action('none') });
  assert.equal(during.response!.status, 200);
  assert.equal(during.upstream!.headers.get('x-edge'), undefined, 'bypassed while a burst of failures waits for its backoff');
});

test('an endless loop exhausts the CPU budget: only its request fails, and fail_reload serves the next one', async () => {
  const metrics = new Metrics();
  const { factory } = await buildFilterForTest(edge({ failure_policy: 'fail_reload', cpu_budget: 2_000_000 }), { name: 'loopy', metrics });
  const started = performance.now();
  const looped = await runForTest(factory, { headers: action('loop') });
  const elapsed = performance.now() - started;
  assert.equal(looped.response!.status, 503);
  const next = await runForTest(factory, { headers: action('none') });
  assert.equal(next.upstream!.headers.get('x-edge'), 'ok');
  const text = renderPrometheus(metrics.snapshot());
  assert.match(text, /weir_wasm_vm_failures_total\{filter="loopy",reason="cpu-budget"\} 1/);
  assert.match(text, /weir_wasm_vm_reloads_total\{filter="loopy"\} 1/);
  console.log(`# endless loop stopped after ${elapsed.toFixed(1)} ms with a budget of 2e6 steps`);
});

test('failing requests fail alone: the next request gets a fresh VM, until a burst of failures backs off', async () => {
  const { factory } = await buildFilterForTest(edge({ failure_policy: 'fail_reload' }));
  assert.equal((await runForTest(factory, { headers: action('trap') })).response!.status, 503);
  assert.equal((await runForTest(factory, { headers: action('trap') })).response!.status, 503, 'the reload is immediate, and traps again');
  const innocent = await runForTest(factory, { headers: action('none') });
  assert.equal(innocent.upstream!.headers.get('x-edge'), 'ok', 'an innocent request after two failures is served');
  for (let i = 0; i < RELOAD_BURST; i++) await runForTest(factory, { headers: action('trap') });
  const during = await runForTest(factory, { headers: action('none') });
  assert.equal(during.response!.status, 503, 'more than RELOAD_BURST failures in a second: the reload waits for its backoff (1 s)');
});

test('unbounded recursion traps (stack overflow) and is contained', async () => {
  const { factory } = await buildFilterForTest(edge({ failure_policy: 'fail_reload' }));
  assert.equal((await runForTest(factory, { headers: action('recurse') })).response!.status, 503);
  assert.equal((await runForTest(factory, { headers: action('none') })).upstream!.headers.get('x-edge'), 'ok');
});

test('the memory cap makes memory.grow fail inside the module instead of growing the process', async () => {
  const { factory } = await buildFilterForTest(edge({ memory_limit_mb: 4 }));
  const r = await runForTest(factory, { headers: action('grow') });
  assert.equal(r.upstream!.headers.get('x-grow'), 'failed');
  const { factory: roomy } = await buildFilterForTest(edge({ memory_limit_mb: 64 }));
  const r2 = await runForTest(roomy, { headers: action('grow') });
  assert.equal(r2.upstream!.headers.get('x-grow'), undefined, 'with room the same growth succeeds');
});

test('a module that needs more memory at start than the cap is refused at load time', async () => {
  await assert.rejects(buildFilterForTest({ file: corpus.big, memory_limit_mb: 1, configuration: 'go' }), /over the cap/);
});

test('a header callback returning an unknown status stops headers and body, as Envoy does', async () => {
  const { factory } = await buildFilterForTest(edge());
  const cb = new CallbacksForTest();
  const filter = factory.create(cb, undefined);
  const headers = HeaderMap.from({ ':method': 'GET', ':path': '/', ':authority': 'a', ':scheme': 'http', ...action('bad-status') });
  assert.equal(filter.onRequestHeaders!(headers, true), 'stop-all');
  filter.onDestroy!();
});

test('pointers outside guest memory answer INVALID_MEMORY_ACCESS instead of trapping', async () => {
  const { factory } = await buildFilterForTest(edge());
  const r = await runForTest(factory, { headers: action('oob') });
  assert.equal(r.upstream!.headers.get('x-status'), '6');
});

test('ABI 0.2.1: a missing header answers NOT_FOUND', async () => {
  const { factory } = await buildFilterForTest(edge());
  const r = await runForTest(factory, { headers: action('missing') });
  assert.equal(r.upstream!.headers.get('x-status'), '1');
});

test('proxy_on_configure returning false refuses the filter config with a message', async () => {
  await assert.rejects(buildFilterForTest(edge({ configuration: 'reject' }), { name: 'picky' }), /rejected the configuration of filter "picky"/);
});

test('a trap in the http call response of a paused request applies the policy to that request', async () => {
  const server = createServer((_req, res) => res.end('up'));
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const clusters = { up: `127.0.0.1:${(server.address() as AddressInfo).port}` };
  try {
    const closed = await buildFilterForTest(edge({ failure_policy: 'fail_closed' }), { clusters });
    const r1 = await runForTest(closed.factory, { headers: action('http-trap') }, {}, new CallbacksForTest({ clusters }));
    assert.equal(r1.statuses[0], 'stop-all');
    assert.equal(r1.response!.status, 503);
    const open = await buildFilterForTest(edge({ failure_policy: 'fail_open' }), { clusters });
    const cb = new CallbacksForTest({ clusters });
    const r2 = await runForTest(open.factory, { headers: action('http-trap') }, {}, cb);
    assert.equal(r2.response!.status, 200, 'fail_open resumes the paused request');
    assert.deepEqual(cb.resumed, ['request']);
  } finally {
    server.close();
  }
});

test('a local reply asked for after the response started resets the stream instead', async () => {
  const { factory } = await buildFilterForTest(edge());
  const r = await runForTest(factory, { headers: action('late-reply') }, { body: ['partial'] });
  assert.equal(r.callbacks.resets, 1);
  assert.equal(r.callbacks.localReply, null);
  assert.ok(r.callbacks.logs.some(([l, m]) => l === 'warn' && m.includes('418')));
});
