import { buildWasmModule } from './wasm-module.ts';
import type { ProbeResponse } from './probe.ts';

/** A goal of issue 5: the most weir may spend, as a multiple of the peer's figure. */
export interface Goal {
  cpuRatio: number;
  p99Ratio: number;
}

/** One benchmark scenario: the request wrk sends, the nginx server that is weir's peer, and weir's filter chain. */
export interface Scenario {
  name: string;
  /** Path requested from both proxies. */
  path: string;
  /** Which server of the nginx peer to compare with: its port is the port base plus this offset. */
  nginxOffset: 1 | 2 | 3;
  /** How the report names the peer. */
  peerLabel: string;
  /** A remark printed beside the scenario, or null. */
  note: string | null;
  /** weir's filter chain for this scenario (config format of issues 2, 3 and 4), or why weir cannot run it yet. */
  weirFilters(): Promise<readonly object[] | string>;
  /** Checks one response (from either proxy) before measuring: a problem, or null when it is right. */
  check(response: ProbeResponse): string | null;
  /** The goal of issue 5 for this scenario, or null when the issue sets none. */
  goal: Goal | null;
}

const luaHeadersSource = `function envoy_on_request(request_handle)
  local ua = request_handle:headers():get("user-agent")
  request_handle:headers():add("x-lua", "1")
end

function envoy_on_response(response_handle)
  response_handle:headers():add("x-filtered", "lua")
end
`;

const luaRespondSource = `function envoy_on_request(request_handle)
  request_handle:respond({[":status"] = "200"}, "local reply\\n")
end
`;

function expectBody(length: number): (response: ProbeResponse) => string | null {
  return function checkBody(response) {
    if (response.status !== 200) return `status ${response.status}, expected 200`;
    if (response.body.length !== length) return `body of ${response.body.length} bytes, expected ${length}`;
    return null;
  };
}

function expectHeader(name: string): (response: ProbeResponse) => string | null {
  return function checkHeader(response) {
    if (response.status !== 200) return `status ${response.status}, expected 200`;
    if (response.headers[name] === undefined) return `no "${name}" response header`;
    if (response.body.length !== 12) return `body of ${response.body.length} bytes, expected the upstream's 12`;
    return null;
  };
}

/** Builds bench/wasm/headers.wat, which does the lua-headers work as a Proxy-Wasm module, and configures it. */
async function wasmHeadersFilters(): Promise<readonly object[] | string> {
  try {
    return [{ name: 'bench-wasm', type: 'wasm', file: await buildWasmModule('headers') }];
  } catch (error) {
    return (error as Error).message;
  }
}

const proxyGoal: Goal = { cpuRatio: 1.0, p99Ratio: 1.5 };

/** Every scenario, in report order. */
export const scenarios: readonly Scenario[] = [
  {
    name: 'passthrough', path: '/', nginxOffset: 1, peerLabel: 'nginx', note: null,
    weirFilters: async () => [], check: expectBody(12), goal: proxyGoal,
  },
  {
    name: 'passthrough-1k', path: '/1k', nginxOffset: 1, peerLabel: 'nginx', note: null,
    weirFilters: async () => [], check: expectBody(1024), goal: proxyGoal,
  },
  {
    name: 'passthrough-64k', path: '/64k', nginxOffset: 1, peerLabel: 'nginx', note: null,
    weirFilters: async () => [], check: expectBody(65536), goal: proxyGoal,
  },
  {
    name: 'headers', path: '/', nginxOffset: 2, peerLabel: 'nginx + ngx_lua',
    note: 'weir\'s built-in headers filter (one request and one response header added) against the nginx lua-headers server, nginx\'s nearest equivalent work',
    weirFilters: async () => [{
      name: 'bench-headers', type: 'headers',
      request_add: { 'x-lua': '1' }, response_add: { 'x-filtered': 'headers' },
    }],
    check: expectHeader('x-filtered'), goal: null,
  },
  {
    name: 'lua-headers', path: '/', nginxOffset: 2, peerLabel: 'nginx + ngx_lua', note: null,
    weirFilters: async () => [{ name: 'bench-lua', type: 'lua', source: luaHeadersSource }],
    check: expectHeader('x-filtered'), goal: proxyGoal,
  },
  {
    name: 'lua-respond', path: '/', nginxOffset: 3, peerLabel: 'nginx + ngx_lua', note: null,
    weirFilters: async () => [{ name: 'bench-lua', type: 'lua', source: luaRespondSource }],
    check: expectBody('local reply\n'.length), goal: proxyGoal,
  },
  {
    name: 'wasm-headers', path: '/', nginxOffset: 2, peerLabel: 'nginx + ngx_lua',
    note: 'weir runs bench/wasm/headers.wat, a hand-written Proxy-Wasm module (no SDK), against the nginx lua-headers server',
    weirFilters: wasmHeadersFilters, check: expectHeader('x-filtered'), goal: { cpuRatio: 1.15, p99Ratio: 1.5 },
  },
];
