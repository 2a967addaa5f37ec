/**
 * Micro-benchmark of the Lua filter's request path: µs of CPU per request over the same loop without the filter.
 * Scenarios: `two-gets-one-add` (issue 3's budget: read two request headers, add one), `bench-lua-headers` (the
 * script of `npm run bench` lua-headers: one get and one add on the request, one add on the response) and
 * `bench-lua-respond` (the script of lua-respond: a local reply from respond()).
 * Run: npx node bench/lua-micro.ts [iterations]; LUA_INSTRUCTION_LIMIT=0 measures without the instruction budget.
 * Prints figures only; nothing here is asserted.
 */
import { HeaderMap } from '../src/core/headers.ts';
import { Metrics } from '../src/telemetry/metrics.ts';
import type { FilterCallbacks, StreamInfo } from '../src/filters/contract.ts';
import lua from '../src/filters/lua/index.ts';

const SCENARIOS: { name: string; source: string; response: boolean; reply?: boolean }[] = [
  {
    name: 'two-gets-one-add',
    response: false,
    source: `
function envoy_on_request(handle)
  local headers = handle:headers()
  local ua = headers:get("user-agent")
  local id = headers:get("x-request-id")
  headers:add("x-lua", "1")
end`,
  },
  {
    name: 'bench-lua-headers',
    response: true,
    source: `
function envoy_on_request(request_handle)
  local ua = request_handle:headers():get("user-agent")
  request_handle:headers():add("x-lua", "1")
end

function envoy_on_response(response_handle)
  response_handle:headers():add("x-filtered", "lua")
end`,
  },
  {
    name: 'bench-lua-respond',
    response: false,
    reply: true,
    source: `
function envoy_on_request(request_handle)
  request_handle:respond({[":status"] = "200"}, "local reply\\n")
end`,
  },
];

const iterations = Number(process.argv[2] ?? 200_000);

const instructionLimit = process.env.LUA_INSTRUCTION_LIMIT === undefined ? undefined : Number(process.env.LUA_INSTRUCTION_LIMIT);

async function build(source: string, clearRouteCache: boolean) {
  const config = { source, clear_route_cache: clearRouteCache, instruction_limit: instructionLimit };
  const log = () => {};
  const prepared = await lua.prepare!(config, { name: 'bench', baseDir: '.', path: 'bench', log });
  return lua.factory(config, {
    name: 'bench', baseDir: '.', path: 'bench', workerIndex: 0, prepared, log, metrics: new Metrics(),
    httpCall: () => Promise.reject(new Error('no clusters')), clusterNames: new Set(),
  });
}

let replies = 0;
const info = { routeMetadata: {}, dynamicMetadata: new Map(), filterState: new Map() } as unknown as StreamInfo;
const cb: FilterCallbacks = {
  info, requestHeaders: null, responseHeaders: null,
  resume() {}, sendLocalReply() { replies++; }, reset() {}, httpCall: () => Promise.reject(new Error('none')),
  clearRouteCache() {}, setUpstreamOverrideHost() {}, log() {},
};

function requestHeaders(): HeaderMap {
  return new HeaderMap([':method', 'GET', ':path', '/api/items?id=7', ':authority', 'example.com', ':scheme', 'http',
    'user-agent', 'wrk/4.2', 'accept', '*/*', 'x-request-id', 'a5b0c2d4-0000-4000-8000-000000000000']);
}

function responseHeaders(): HeaderMap {
  return new HeaderMap([':status', '200', 'content-type', 'text/plain', 'content-length', '12']);
}

function cpu(run: () => void, n: number): number {
  const t0 = process.cpuUsage();
  for (let i = 0; i < n; i++) run();
  const t = process.cpuUsage(t0);
  return (t.user + t.system) / n;
}

for (const scenario of SCENARIOS) {
  for (const clear of [false, true]) {
    const factory = await build(scenario.source, clear);
    const withLua = () => {
      const f = factory.create(cb, undefined);
      const req = requestHeaders();
      f.onRequestHeaders!(req, true);
      if (scenario.response) f.onResponseHeaders!(responseHeaders(), true);
      f.onDestroy!();
    };
    const passthrough = () => {
      const req = requestHeaders();
      const res = scenario.response ? responseHeaders() : null;
      if (req.size === 0 || res?.size === 0) throw new Error('empty');
    };
    replies = 0;
    const check = requestHeaders();
    const f = factory.create(cb, undefined);
    f.onRequestHeaders!(check, true);
    f.onDestroy!();
    if (scenario.reply ? replies !== 1 : check.get('x-lua') !== '1') throw new Error('the script did not run');
    cpu(withLua, iterations / 4);
    cpu(passthrough, iterations / 4);
    const results: number[] = [];
    for (let round = 0; round < 5; round++) results.push(cpu(withLua, iterations) - cpu(passthrough, iterations));
    results.sort((a, b) => a - b);
    console.log(
      `${scenario.name} (clear_route_cache: ${clear}): ${results[2].toFixed(3)} µs CPU per request over passthrough ` +
        `(median of 5 × ${iterations}; min ${results[0].toFixed(3)}, max ${results[4].toFixed(3)})`,
    );
    factory.destroy?.();
  }
}
