/**
 * Micro-benchmark of the Lua filter's request path: µs of CPU per request for a script that reads two headers and
 * adds one, over the same loop without the filter. Run: npx node bench/lua-micro.ts [iterations]
 * Prints figures only; nothing here is asserted.
 */
import { HeaderMap } from '../src/core/headers.ts';
import { Metrics } from '../src/telemetry/metrics.ts';
import type { FilterCallbacks, StreamInfo } from '../src/filters/contract.ts';
import lua from '../src/filters/lua/index.ts';

const SCRIPT = process.env.LUA_SCRIPT ?? `
function envoy_on_request(handle)
  local headers = handle:headers()
  local ua = headers:get("user-agent")
  local id = headers:get("x-request-id")
  headers:add("x-lua", "1")
end
`;

const iterations = Number(process.argv[2] ?? 200_000);

async function build(clearRouteCache: boolean) {
  const config = { source: SCRIPT, clear_route_cache: clearRouteCache };
  const log = () => {};
  const prepared = await lua.prepare!(config, { name: 'bench', baseDir: '.', path: 'bench', log });
  return lua.factory(config, {
    name: 'bench', baseDir: '.', path: 'bench', workerIndex: 0, prepared, log, metrics: new Metrics(),
    httpCall: () => Promise.reject(new Error('no clusters')), clusterNames: new Set(),
  });
}

const info = { routeMetadata: {}, dynamicMetadata: new Map(), filterState: new Map() } as unknown as StreamInfo;
const cb: FilterCallbacks = {
  info, requestHeaders: null, responseHeaders: null,
  resume() {}, sendLocalReply() {}, reset() {}, httpCall: () => Promise.reject(new Error('none')),
  clearRouteCache() {}, setUpstreamOverrideHost() {}, log() {},
};

function headers(): HeaderMap {
  return new HeaderMap([':method', 'GET', ':path', '/api/items?id=7', ':authority', 'example.com', ':scheme', 'http',
    'user-agent', 'wrk/4.2', 'accept', '*/*', 'x-request-id', 'a5b0c2d4-0000-4000-8000-000000000000']);
}

function loop(run: (h: HeaderMap) => void, n: number): number {
  const t0 = process.cpuUsage();
  for (let i = 0; i < n; i++) run(headers());
  const t = process.cpuUsage(t0);
  return ((t.user + t.system) / n);
}

const passthrough = (h: HeaderMap) => { if (h.size === 0) throw new Error('empty'); };
for (const clear of [false, true]) {
  const factory = await build(clear);
  const withLua = (h: HeaderMap) => {
    const f = factory.create(cb, undefined);
    f.onRequestHeaders!(h, true);
    f.onDestroy!();
  };
  const check = headers();
  withLua(check);
  if (process.env.LUA_SCRIPT === undefined && check.get('x-lua') !== '1') throw new Error('the script did not run');
  loop(withLua, iterations / 4); loop(passthrough, iterations / 4); // warm up
  const results: number[] = [];
  for (let round = 0; round < 5; round++) results.push(loop(withLua, iterations) - loop(passthrough, iterations));
  results.sort((a, b) => a - b);
  console.log(`lua-headers (clear_route_cache: ${clear}): ${results[2].toFixed(3)} µs CPU per request over passthrough (median of 5 × ${iterations}; min ${results[0].toFixed(3)}, max ${results[4].toFixed(3)})`);
  factory.destroy?.();
}
