/**
 * Micro-benchmark of the Proxy-Wasm filter's request path: µs of CPU per request over the same loop without the filter.
 * It runs bench/wasm/headers.wat (the module of `npm run bench` wasm-headers: one get and one add on the request, one
 * add on the response) through the whole stream lifecycle: create, request headers, response headers, response body,
 * log, destroy, with 64 requests in flight.
 * Run: npx node bench/wasm-micro.ts [iterations]. Prints figures only; nothing here is asserted.
 */
import { dirname } from 'node:path';
import type { HeaderMap } from '../src/core/headers.ts';
import { Metrics } from '../src/telemetry/metrics.ts';
import type { Filter } from '../src/filters/contract.ts';
import wasm from '../src/filters/wasm/index.ts';
import { buildWasmModule } from './wasm-module.ts';
import { idleCallbacks, report, requestHeaders, responseHeaders } from './micro-support.ts';

const iterations = Number(process.argv[2] ?? 200_000);

const file = await buildWasmModule('headers');
const config = { file };
const log = () => {};
const base = { name: 'bench', baseDir: dirname(file), path: 'bench', log };
const prepared = await wasm.prepare!(config, base);
const factory = await wasm.factory(config, {
  ...base, workerIndex: 0, prepared, metrics: new Metrics(),
  httpCall: () => Promise.reject(new Error('no clusters')), clusterNames: new Set(),
});

const cb = idleCallbacks();

// Requests in flight, as with wrk -c64 against one worker: each loop step starts one request and finishes the one
// started IN_FLIGHT steps before, so that per-request objects live as long as they do in the proxy (the garbage
// collector's cost depends on that).
const IN_FLIGHT = 64;
const BODY = Buffer.from('hello world\n');
const inFlight: (Filter | null)[] = new Array(IN_FLIGHT).fill(null);
const heldMaps: (HeaderMap | null)[] = new Array(IN_FLIGHT).fill(null);
let step = 0;

function withWasm(): void {
  const i = step++ % IN_FLIGHT;
  const old = inFlight[i];
  if (old !== null) {
    old.onResponseHeaders!(responseHeaders(), false);
    // The chain calls a body hook only if the filter has one.
    old.onResponseBody?.({ data: BODY }, true);
    old.onLog!();
    old.onDestroy!();
  }
  const f = factory.create(cb, undefined);
  f.onRequestHeaders!(requestHeaders(), true);
  inFlight[i] = f;
}

function passthrough(): void {
  const i = step++ % IN_FLIGHT;
  const req = requestHeaders();
  const res = responseHeaders();
  if (req.size === 0 || res.size === 0) throw new Error('empty');
  heldMaps[i] = req;
}

const req = requestHeaders();
const res = responseHeaders();
const f = factory.create(cb, undefined);
f.onRequestHeaders!(req, true);
f.onResponseHeaders!(res, true);
f.onLog!();
f.onDestroy!();
if (req.get('x-lua') !== '1' || res.get('x-filtered') !== 'wasm') throw new Error('the module did not run');

report('wasm-headers', withWasm, passthrough, iterations);
factory.destroy?.();
