// Host-call statuses as Envoy returns them, with test/wasm-corpus/wat/hostcalls.wat (one letter 'A' + status per call).
import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import { buildCorpus, type Corpus } from '../../../test/wasm-corpus/build.ts';
import { buildFilterForTest } from './test-support.ts';
import { runForTest, CallbacksForTest } from './harness-for-test.ts';

let corpus: Corpus;
before(async () => {
  corpus = await buildCorpus();
});

/** The calls of hostcalls.wat in order, with the status Envoy answers ('A' + status). */
const EXPECTED: [string, string][] = [
  ['get_log_level', 'A'], ['get_current_time_nanoseconds', 'A'], ['get_header_map_pairs', 'A'], ['get_header_map_size', 'A'],
  ['get_buffer_status of a body during headers: NOT_FOUND', 'B'], ['get_buffer_bytes of type 99: BAD_ARGUMENT', 'C'],
  ['set_buffer_bytes of the plugin configuration: BAD_ARGUMENT', 'C'], ['foreign clear_route_cache', 'A'],
  ['foreign declare_property: UNIMPLEMENTED', 'M'], ['foreign unknown: NOT_FOUND', 'B'], ['foreign compress', 'A'],
  ['grpc_call: PARSE_FAILURE', 'E'], ['grpc_cancel of an unknown token: NOT_FOUND', 'B'],
  ['define_metric of type 3: BAD_ARGUMENT', 'C'], ['define_metric counter', 'A'], ['increment_metric counter by 0: BAD_ARGUMENT', 'C'],
  ['define_metric histogram', 'A'], ['get_metric of a histogram: BAD_ARGUMENT', 'C'], ['dequeue of an unknown queue: NOT_FOUND', 'B'],
  ['register_shared_queue', 'A'], ['dequeue of an empty queue: EMPTY', 'H'], ['resolve_shared_queue of a missing queue: NOT_FOUND', 'B'],
  ['set_effective_context of an unknown id: BAD_ARGUMENT', 'C'], ['continue_stream UPSTREAM: UNIMPLEMENTED', 'M'],
  ['continue_stream 7: BAD_ARGUMENT', 'C'], ['log level 9: BAD_ARGUMENT', 'C'], ['http_call without :path: BAD_ARGUMENT', 'C'],
  ['get_shared_data of a missing key: NOT_FOUND', 'B'], ['set_header_map_pairs of response headers during the request: BAD_ARGUMENT', 'C'],
  ['done on a context that is not finishing: NOT_FOUND', 'B'], ['get_property plugin_root_id', 'A'], ['get_header_map_value of unavailable response headers: BAD_ARGUMENT', 'C'],
  ['add_header_map_value with CR LF in the value (weir refuses it; Envoy would write it): BAD_ARGUMENT', 'C'],
  ['set_header_map_pairs of request headers with a LF in a value: BAD_ARGUMENT, and the headers stay', 'C'],
  ['continue_stream DOWNSTREAM (a no-op on an HTTP stream)', 'A'],
  ['get_buffer_bytes of the plugin configuration from 2, max 2^32 - 2 (clamped: cpp-host adds in 64 bits)', 'A'],
  ['define_metric gauge with the name of the counter defined above (Envoy keeps the kinds apart)', 'A'],
];

test('host calls answer the statuses Envoy answers (hostcalls.wat)', async () => {
  const { factory } = await buildFilterForTest({ file: corpus.hostcalls, configuration: 'x' }, { clusters: { cluster: '127.0.0.1:1' } });
  const cb = new CallbacksForTest();
  const r = await runForTest(factory, { headers: {}, body: ['b'], trailers: { 'x-t': '1' } }, { body: ['r'] }, cb);
  const got = [...(cb.requestHeaders!.get('x-statuses') ?? '')];
  assert.equal(got.length, EXPECTED.length);
  const mismatches = EXPECTED.filter(([, want], i) => got[i] !== want).map(([name, want]) => `${name}: want ${want}, got ${got[EXPECTED.findIndex((e) => e[0] === name)]}`);
  assert.deepEqual(mismatches, []);
  assert.equal(cb.routeCacheClears, 2, 'foreign clear_route_cache, then adding x-statuses (Envoy clears the route cache when a request header changes)');
  assert.equal(r.upstream!.trailers!.get('x-trailer-added'), 'yes');
  assert.equal(cb.responseHeaders!.get(':status'), '299', 'set_header_map_pairs replaced the response headers');
  assert.equal(cb.responseHeaders!.get('x-only'), '1');
  assert.ok(r.upstream!.headers.get(':path') !== undefined && r.upstream!.headers.get('x-bad') === undefined, 'a refused set_header_map_pairs changed nothing');
  assert.equal(cb.resets, 1, 'close_stream reset the stream after the body callback returned');
  assert.equal(r.response, null);
});
