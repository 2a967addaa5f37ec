// Rows of the docs/wasm.md matrix whose values a test must check, not only a status: test/wasm-corpus/wat/matrix.wat
// (ABI 0.2.1) and clear-route-cache-0-1-0.wat (ABI 0.1.0), run through the real host (no mocks).
import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import { deflateSync, inflateSync } from 'node:zlib';
import { buildCorpus, type Corpus } from '../../../test/wasm-corpus/build.ts';
import { buildFilterForTest } from './test-support.ts';
import { runForTest, CallbacksForTest } from './harness-for-test.ts';
import { Metrics, renderPrometheus } from '../../telemetry/metrics.ts';
import { readFile } from 'node:fs/promises';
import { startWeir } from '../../../test/support/weir.ts';
import { startUpstream } from '../../../test/support/upstream.ts';
import { rawExchange } from '../../../test/support/raw.ts';

let corpus: Corpus;
before(async () => {
  corpus = await buildCorpus();
});

/** The calls of matrix.wat's request headers callback in order, with the status Envoy answers ('A' + status). */
const EXPECTED: [string, string][] = [
  ['get_header_map_size of the request headers', 'A'], ['get_log_level', 'A'], ['get_current_time_nanoseconds', 'A'],
  ['grpc_stream: PARSE_FAILURE (no gRPC service can be parsed)', 'E'],
  ['grpc_send on an odd token (a call, not a stream): BAD_ARGUMENT', 'C'], ['grpc_send on an unknown stream token: NOT_FOUND', 'B'],
  ['grpc_close of an unknown call: NOT_FOUND', 'B'], ['grpc_close of an unknown stream: NOT_FOUND', 'B'], ['grpc_cancel of an unknown stream: NOT_FOUND', 'B'],
  ['define_metric histogram', 'A'], ['increment_metric on a histogram: BAD_ARGUMENT', 'C'], ['record_metric on a histogram', 'A'],
  ['define_metric counter', 'A'], ['increment_metric counter by -1: BAD_ARGUMENT', 'C'], ['increment_metric counter by 5', 'A'],
  ['record_metric counter 2 (adds)', 'A'], ['get_metric counter', 'A'],
  ['define_metric gauge', 'A'], ['increment_metric gauge by 5', 'A'], ['increment_metric gauge by -2', 'A'], ['get_metric gauge', 'A'],
  ['foreign compress', 'A'], ['foreign uncompress of the compressed bytes', 'A'], ['foreign uncompress of a node:zlib stream', 'A'],
  ['foreign uncompress of garbage: SERIALIZATION_FAILURE', 'D'], ['envoy_resolve_dns: UNIMPLEMENTED', 'M'],
];

/** Envoy's `HeaderMap::byteSize()`: the bytes of every name and value (header strings hold one byte per character). */
function envoyByteSize(entries: Iterable<[string, string]>): number {
  let n = 0;
  for (const [k, v] of entries) n += Buffer.byteLength(k, 'latin1') + Buffer.byteLength(v, 'latin1');
  return n;
}

/** Parses the Proxy-Wasm pair serialization (written here, independently of src/filters/wasm/pairs.ts) into hex names and values. */
function parsePairs(b: Buffer): [string, string][] {
  const n = b.readUInt32LE(0);
  const out: [string, string][] = [];
  let at = 4 + n * 8;
  for (let i = 0; i < n; i++) {
    const kl = b.readUInt32LE(4 + i * 8);
    const vl = b.readUInt32LE(8 + i * 8);
    const k = b.subarray(at, at + kl).toString('hex');
    assert.equal(b[at + kl], 0, 'NUL after the name');
    at += kl + 1;
    const v = b.subarray(at, at + vl).toString('hex');
    assert.equal(b[at + vl], 0, 'NUL after the value');
    at += vl + 1;
    out.push([k, v]);
  }
  assert.equal(at, b.length);
  return out;
}

test('matrix.wat: values of log level, time, header map size, metrics, foreign functions, gRPC statuses and shims', async () => {
  const metrics = new Metrics();
  const { factory, ctx } = await buildFilterForTest({ file: corpus.matrix, configuration: 'matrix-config', vm_configuration: 'vmconf!' }, { metrics });
  // Buffer status of the configuration buffers: length of what was configured, flags 0.
  const rootLogs = ctx.logs.map(([, m]) => m);
  assert.ok(rootLogs.includes('vm-start 7:0:7:0'), `proxy_on_vm_start sees the VM configuration's length: ${JSON.stringify(rootLogs)}`);
  assert.ok(rootLogs.includes('configure 13:0:13:0'), `proxy_on_configure sees the plugin configuration's length: ${JSON.stringify(rootLogs)}`);

  const cb = new CallbacksForTest();
  // 'caf\xe9' is one byte per character on the wire (header strings are latin1): 4 bytes, not UTF-8's 5.
  const sent = { 'x-one': 'abc', 'x-two': 'caf\u00e9' };
  const before = Date.now();
  const r = await runForTest(factory, { headers: sent, body: ['abc', 'defg'] }, { body: ['xy', 'z'] }, cb);
  const after = Date.now();
  const h = cb.requestHeaders!;

  const got = [...(h.get('x-statuses') ?? '')];
  assert.equal(got.length, EXPECTED.length, `x-statuses: ${got.join('')}`);
  assert.deepEqual(EXPECTED.filter(([, want], i) => got[i] !== want).map(([name, want]) => `${name}: want ${want}, got ${got[EXPECTED.findIndex((e) => e[0] === name)]}`), []);

  // proxy_get_log_level: the host answers info (2), and a message the module logs at that level is not dropped.
  assert.equal(h.get('x-log-level'), '2');
  assert.ok(cb.logs.some(([level, m]) => level === 'info' && m.startsWith('request-body ')), 'a log line at the level the host answered reaches the log');

  // proxy_get_current_time_nanoseconds: wall-clock time in nanoseconds.
  const nowMs = Number(BigInt(h.get('x-now')!) / 1_000_000n);
  assert.ok(nowMs >= before - 2000 && nowMs <= after + 2000, `time ${nowMs} ms not within 2 s of Date.now() (${before}..${after})`);

  // proxy_get_header_map_size: bytes of every name and value, pseudo-headers included, before the module added any.
  const requestSeen: [string, string][] = [[':method', 'GET'], [':path', '/'], [':authority', 'example'], [':scheme', 'http'], ...Object.entries(sent)];
  assert.equal(Number(h.get('x-map-size')), envoyByteSize(requestSeen));
  assert.equal(Number(h.get('x-map-size')), 7 + 3 + 5 + 1 + 10 + 7 + 7 + 4 + 5 + 3 + 5 + 4);
  // Header values are bytes both ways: the module reads the wire bytes of x-two, and a byte it writes stays one byte.
  assert.equal(h.get('x-two-hex'), '636166e9');
  assert.equal(h.get('x-byte'), '\u00e9');
  assert.deepEqual(parsePairs(Buffer.from(h.get('x-pairs-hex')!, 'hex')), requestSeen.map(([k, v]) => [Buffer.from(k, 'latin1').toString('hex'), Buffer.from(v, 'latin1').toString('hex')]),
    'get_header_map_pairs serializes the bytes of each name and value');
  assert.equal(h.get('x-prop-hex'), '636166e9', 'the property request.headers.x-two is the bytes too');

  // Metrics: counter 5 + record 2 = 7, gauge 5 - 2 = 3, histogram one observation of 7; visible in /metrics form.
  assert.equal(h.get('x-counter'), '7');
  assert.equal(h.get('x-gauge'), '3');
  const text = renderPrometheus(metrics.snapshot());
  assert.match(text, /^wasmcustom_counter_m(_total)? 7$/m);
  assert.match(text, /^wasmcustom_gauge_m 3$/m);
  assert.match(text, /^wasmcustom_histo_m_count 1$/m);
  assert.match(text, /^wasmcustom_histo_m_sum 7$/m);

  // Foreign functions: compress gives a zlib stream node:zlib inflates; uncompress inverts it and reads node's own.
  assert.equal(inflateSync(Buffer.from(h.get('x-compressed')!, 'hex')).toString(), 'hello hello hello');
  assert.equal(h.get('x-roundtrip'), 'hello hello hello');
  assert.equal(h.get('x-uncompressed'), 'weir matrix uncompress');
  assert.equal(deflateSync('weir matrix uncompress').length, 30, 'the stream embedded in matrix.wat');

  // Shims: pthread_equal compares, emscripten_notify_memory_growth returns, seed is the time in ms, trace logs.
  assert.equal(h.get('x-shims'), '1:0');
  const seed = Number(h.get('x-seed'));
  assert.ok(seed >= before - 2000 && seed <= after + 2000, `seed ${seed} not within 2 s of Date.now()`);
  assert.ok(cb.logs.some(([level, m]) => level === 'trace' && m === 'tracing 1.5 2'), `env.trace logs its message and n values: ${JSON.stringify(cb.logs)}`);

  // proxy_get_buffer_status of a present body: its length so far (cumulative while buffering), flags 0.
  const bodyLogs = cb.logs.map(([, m]) => m).filter((m) => m.includes('-body '));
  assert.deepEqual(bodyLogs, ['request-body 3:0:3:0', 'request-body 7:0:7:0', 'response-body 2:0:2:0', 'response-body 3:0:3:0']);
  assert.equal(r.upstream!.body.toString(), 'abcdefg');
  assert.equal(r.response!.body.toString(), 'xyz');
});

test('matrix.wat: proxy_clear_route_cache (0.2.x, as the AssemblyScript SDK calls it) clears the route cache once', async () => {
  const { factory } = await buildFilterForTest({ file: corpus.matrix, configuration: 'matrix-config' });
  const cb = new CallbacksForTest();
  await runForTest(factory, { headers: { 'x-clear': '1' } }, {}, cb);
  assert.equal(cb.responseHeaders!.get('x-clear-status'), '0');
  assert.equal(cb.routeCacheClears, 1);
  const plain = new CallbacksForTest();
  await runForTest(factory, { headers: {} }, {}, plain);
  assert.equal(plain.routeCacheClears, 15, 'without x-clear: only the 15 header additions clear it, not the hostcall');
});

test('clear-route-cache-0-1-0.wat: the 0.1.0 hostcall proxy_clear_route_cache clears the route cache of the stream', async () => {
  const { factory } = await buildFilterForTest({ file: corpus.clearRouteCache010, configuration: 'x' });
  for (let i = 0; i < 2; i++) {
    const cb = new CallbacksForTest();
    const r = await runForTest(factory, { headers: {} }, {}, cb);
    assert.equal(cb.responseHeaders!.get('x-clear-status'), '0:0', 'OK from the root context (nothing to clear) and from the stream');
    assert.equal(cb.routeCacheClears, 1);
    assert.notEqual(r.upstream, null);
  }
});

test('matrix.wat: env.abort traps with the AssemblyScript message and location; the next request gets a new VM', async () => {
  const metrics = new Metrics();
  const { factory } = await buildFilterForTest({ file: corpus.matrix, configuration: 'matrix-config' }, { metrics, name: 'matrix' });
  const cb = new CallbacksForTest();
  const r = await runForTest(factory, { headers: { 'x-abort': '1' } }, {}, cb);
  assert.equal(r.upstream, null);
  assert.equal(r.response?.status, 503);
  const line = cb.logs.find(([level, m]) => level === 'error' && m.includes('aborted'));
  assert.ok(line, JSON.stringify(cb.logs));
  assert.match(line[1], /failed \(trap\): Wasm module aborted at matrix\.ts:12:34: boom$/);
  assert.match(renderPrometheus(metrics.snapshot()), /^weir_wasm_vm_failures_total\{filter="matrix",reason="trap"\} 1$/m);
  const next = new CallbacksForTest();
  await runForTest(factory, { headers: {} }, {}, next);
  assert.equal(next.requestHeaders!.get('x-log-level'), '2', 'a new VM serves the next request');
});

test('matrix.wat through weir run: a non-ASCII header byte from the client reaches the module as that byte, and a byte the module adds reaches the upstream as is', async () => {
  const backend = await startUpstream();
  const weir = await startWeir(`
listeners:
  - name: edge
    address: 127.0.0.1:0
    filters:
      - name: matrix
        type: wasm
        file: modules/matrix.wasm
        configuration: matrix-config
    routes:
      - match: { prefix: / }
        cluster: backend
clusters:
  - name: backend
    endpoints: [${backend.address}]
`, { files: { 'modules/matrix.wasm': await readFile(corpus.matrix) } });
  try {
    const res = await rawExchange(weir.url('edge'), Buffer.from('GET / HTTP/1.1\r\nhost: a\r\nx-two: caf\xe9\r\nconnection: close\r\n\r\n', 'latin1'));
    assert.match(res.text, /^HTTP\/1\.1 200 /);
    assert.equal(backend.requests.length, 1);
    const seen = backend.requests[0].headers;
    assert.equal(seen['x-two-hex'], '636166e9', 'the module read the 4 bytes the client sent');
    assert.equal(seen['x-byte'], '\u00e9', 'the one byte 0xe9 the module wrote (node reads header bytes as latin1)');
    assert.equal(seen['x-two'], 'caf\u00e9');
  } finally {
    await weir.stop();
    await backend.close();
  }
});
