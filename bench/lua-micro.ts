/**
 * Micro-benchmark of the Lua filter's request path: µs of CPU per request over the same loop without the filter.
 * Scenarios: `two-gets-one-add` (issue 3's budget: read two request headers, add one), `bench-lua-headers` (the
 * script of `npm run bench` lua-headers: one get and one add on the request, one add on the response) and
 * `bench-lua-respond` (the script of lua-respond: a local reply from respond()).
 * Run: npx node bench/lua-micro.ts [iterations]; LUA_INSTRUCTION_LIMIT=0 measures without the instruction budget.
 * Prints figures only; nothing here is asserted.
 */
import { Metrics } from '../src/telemetry/metrics.ts';
import lua from '../src/filters/lua/index.ts';
import { idleCallbacks, report, requestHeaders, responseHeaders } from './micro-support.ts';

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
const cb = idleCallbacks(() => { replies++; });

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
    report(`${scenario.name} (clear_route_cache: ${clear})`, withLua, passthrough, iterations);
    factory.destroy?.();
  }
}
