// Proxy-Wasm filters end to end: the real `weir run` with two workers, real HTTP, the test corpus modules.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { startWeir, type Weir } from '../support/weir.ts';
import { startUpstream, type Upstream } from '../support/upstream.ts';
import { metric } from '../support/metrics.ts';
import { buildCorpus, type Corpus } from '../wasm-corpus/build.ts';

let corpus: Corpus;
let backend: Upstream;
let auth: Upstream;
let weir: Weir;

type Echo = { headers: Record<string, string>; body: string };

/** The config; `swap` picks the module behind the "swap" route, `extra` adds filters to the listener. */
const config = (opts: { swap?: string; extra?: string } = {}) => `
listeners:
  - name: edge
    address: 127.0.0.1:0
    filters:
      - name: count-a
        type: wasm
        file: modules/filters.wasm
        root_id: vmcount
        vm_id: pair
        configuration: a
      - name: count-b
        type: wasm
        file: modules/filters.wasm
        root_id: vmcount
        vm_id: pair
        configuration: b
      - name: shared
        type: wasm
        file: modules/filters.wasm
        root_id: shared
        vm_id: counters
        configuration: { "note": "YAML passed on as JSON" }
      - name: metrics
        type: wasm
        file: modules/filters.wasm
        root_id: metrics
        configuration: m
      - name: queue
        type: wasm
        file: modules/filters.wasm
        root_id: queue
        vm_id: queues
        configuration: q
${opts.extra ?? ''}
    routes:
      - name: auth-check
        match: { prefix: /auth-check }
        cluster: backend
        filters:
          - name: auth-call
            type: wasm
            file: modules/filters.wasm
            root_id: http_call
            configuration: auth
      - name: body
        match: { prefix: /body }
        cluster: backend
        filters:
          - name: body
            type: wasm
            file: modules/filters.wasm
            root_id: body
            configuration: b
      - name: pause
        match: { prefix: /pause }
        cluster: backend
        filters:
          - name: pause
            type: wasm
            file: modules/filters.wasm
            root_id: pause
            configuration: p
      - name: swap
        match: { prefix: /swap }
        cluster: backend
        filters:
          - name: swap
            type: wasm
            file: ${opts.swap ?? 'modules/edge.wasm'}
            configuration: go
            failure_policy: fail_reload
      - name: all
        match: { prefix: / }
        cluster: backend
clusters:
  - name: backend
    endpoints: [${backend.address}]
  - name: auth
    endpoints: [${auth.address}]
`;

before(async () => {
  corpus = await buildCorpus();
  backend = await startUpstream();
  auth = await startUpstream((req, res) => {
    if (req.url === '/auth/auth-check/allowed') res.end('token-123');
    else res.writeHead(403).end('no');
  });
  weir = await startWeir(config(), {
    workers: 2,
    files: {
      'modules/filters.wasm': readFileSync(corpus.as),
      'modules/edge.wasm': readFileSync(corpus.edge),
      'modules/abi010.wasm': readFileSync(corpus.abi010),
      'modules/big.wasm': readFileSync(corpus.big),
    },
  });
});

after(async () => {
  await weir?.stop();
  await backend?.close();
  await auth?.close();
});

const get = async (path: string, headers: Record<string, string> = {}): Promise<{ status: number; echo: Echo | null }> => {
  const res = await fetch(`${weir.url('edge')}${path}`, { headers });
  const text = await res.text();
  return { status: res.status, echo: res.headers.get('content-type') === 'application/json' ? (JSON.parse(text) as Echo) : null };
};

test('wasm e2e: two filters with one vm_id share one VM in each worker', async () => {
  const { echo } = await get('/pair');
  const a = Number(echo!.headers['x-vmcount-a']);
  const b = Number(echo!.headers['x-vmcount-b']);
  assert.equal(b, a + 1, `one module global counts both filters: a=${a} b=${b}`);
});

test('wasm e2e: an http call from a request pauses it until the auth cluster answers', async () => {
  const allowed = await get('/auth-check/allowed');
  assert.equal(allowed.status, 200);
  assert.equal(allowed.echo!.headers['x-auth'], 'token-123');
  const denied = await fetch(`${weir.url('edge')}/auth-check/other`);
  assert.equal(denied.status, 401);
  assert.equal(await denied.text(), 'auth said 403\n');
});

test('wasm e2e: a paused body callback gets the cumulative body and replaces it; the response body is appended to', async () => {
  const res = await fetch(`${weir.url('edge')}/body`, { method: 'POST', body: 'abc'.repeat(1000) });
  const text = await res.text();
  assert.equal(res.status, 200);
  assert.match(text, /\+wasm$/, 'the response body was appended to');
  const echoed = JSON.parse(text.slice(0, -'+wasm'.length)) as Echo;
  assert.match(echoed.body, /^sizes=[0-9,]*3000;body=(ABC){1000}$/);
});

test('wasm e2e: headers paused until a root tick resumes the stream through set_effective_context; the body waits', async () => {
  const res = await fetch(`${weir.url('edge')}/pause`, { method: 'POST', body: 'x' });
  const echoed = (await res.json()) as Echo;
  assert.equal(echoed.headers['x-resumed-by'], 'tick');
  assert.equal(echoed.body, 'x');
});

test('wasm e2e: shared data written in one worker is read in the other', async () => {
  const n = 30;
  const hits: number[] = [];
  const local: number[] = [];
  await get('/set', { 'x-shared-set': 'written-once', connection: 'close' });
  for (let i = 0; i < n; i++) {
    const { echo } = await get('/count', { connection: 'close' });
    assert.equal(echo!.headers['x-shared-get'], 'written-once');
    hits.push(Number(echo!.headers['x-hits']));
    local.push(Number(echo!.headers['x-local-hits']));
  }
  const first = Math.min(...hits);
  assert.deepEqual([...hits].sort((a, b) => a - b), Array.from({ length: n }, (_, i) => first + i), 'one counter across workers');
  // One VM alone would count up by one on every request (from wherever earlier tests left it); both workers
  // serving breaks that run somewhere.
  const oneVm = local.every((v, i) => i === 0 || v === local[i - 1] + 1);
  assert.ok(!oneVm, `requests were served by both workers (per-VM counts ${local.join(',')})`);
});

test('wasm e2e: shared queue items enqueued on either worker reach the registering root context', async () => {
  for (let i = 1; i <= 6; i++) {
    const { echo } = await get('/enqueue', { 'x-enqueue': `item-${i}`, connection: 'close' });
    assert.equal(echo!.headers['x-enqueue-status'], '0');
  }
  let last = '';
  for (let i = 0; i < 100 && last !== 'item-6'; i++) {
    await new Promise((r) => setTimeout(r, 10));
    last = (await get('/dequeued', { connection: 'close' })).echo!.headers['x-dequeued'];
  }
  assert.equal(last, 'item-6', 'the registrant dequeued every item, the last one last');
});

test('wasm e2e: module metrics appear in /metrics, summed over workers', async () => {
  const before = await metric(weir.admin, 'wasmcustom_as_requests');
  for (let i = 0; i < 4; i++) await get('/m', { connection: 'close' });
  assert.equal(await metric(weir.admin, 'wasmcustom_as_requests'), before + 4);
});

test('wasm e2e: a reload with unchanged modules compiles nothing; a new module replaces the old while requests flow', async () => {
  const compiled = await metric(weir.admin, 'weir_wasm_module_compilations');
  assert.ok(compiled >= 2, `compilations ${compiled}`);
  const same = await weir.reload(config());
  assert.equal(same.status, 200, await same.text());
  assert.equal(await metric(weir.admin, 'weir_wasm_module_compilations'), compiled, 'same hashes: nothing compiled');

  assert.equal((await get('/swap')).echo!.headers['x-edge'], 'ok');
  let stop = false;
  const statuses: number[] = [];
  const flow = Array.from({ length: 4 }, async () => {
    while (!stop) statuses.push((await get('/swap/flow')).status);
  });
  await new Promise((r) => setTimeout(r, 100));
  const swapped = await weir.reload(config({ swap: 'modules/abi010.wasm' }));
  assert.equal(swapped.status, 200, await swapped.text());
  await new Promise((r) => setTimeout(r, 200));
  stop = true;
  await Promise.all(flow);
  const after = await get('/swap');
  assert.equal(after.echo!.headers['x-config'], 'go', 'the ABI 0.1.0 module now serves the route');
  assert.equal(after.echo!.headers['x-edge'], undefined);
  assert.ok(statuses.length > 10, `requests flowed during the reload (${statuses.length})`);
  assert.deepEqual([...new Set(statuses)], [200], 'no request failed during the swap');
  assert.equal(await metric(weir.admin, 'weir_wasm_module_compilations'), compiled + 1, 'only the new module was compiled');
});

test('wasm e2e: a trapping request fails alone; the next one is served (fail_reload)', async () => {
  assert.equal((await weir.reload(config())).status, 200);
  const failuresBefore = await metric(weir.admin, 'weir_filter_errors_total', { filter: 'swap' });
  const trapped = await get('/swap/trap', { 'x-edge-action': 'trap' });
  assert.equal(trapped.status, 503);
  assert.equal((await get('/swap/after')).echo!.headers['x-edge'], 'ok');
  assert.ok((await metric(weir.admin, 'weir_wasm_vm_failures_total', { filter: 'swap', reason: 'trap' })) >= 1);
  assert.equal((await metric(weir.admin, 'weir_filter_errors_total', { filter: 'swap' })) - failuresBefore, 1, 'counted as a filter failure too');
});

test('wasm e2e: an endless loop fails only its own request; concurrent requests are served', async () => {
  const looping = get('/swap/loop', { 'x-edge-action': 'loop', connection: 'close' });
  const others = await Promise.all(Array.from({ length: 6 }, () => get('/pair', { connection: 'close' })));
  assert.deepEqual(others.map((o) => o.status), [200, 200, 200, 200, 200, 200]);
  assert.equal((await looping).status, 503);
  assert.ok((await metric(weir.admin, 'weir_wasm_vm_failures_total', { filter: 'swap', reason: 'cpu-budget' })) >= 1);
});

test('wasm e2e: cold start of a newly added 1 MiB module (measured and reported)', async () => {
  const extra = `      - name: big
        type: wasm
        file: modules/big.wasm
        configuration: go`;
  const started = performance.now();
  const res = await weir.reload(config({ extra }));
  assert.equal(res.status, 200, await res.text());
  const reloaded = performance.now();
  const first = await get('/big');
  const served = performance.now();
  assert.equal(first.echo!.headers['x-edge'], 'ok');
  console.log(`# cold start of a ${readFileSync(corpus.big).length} byte module: reload answered after ${(reloaded - started).toFixed(1)} ms, first request served ${(served - reloaded).toFixed(1)} ms later (${(served - started).toFixed(1)} ms in all)`);
});
