/** The `headers` filter: adds, sets and removes request and response headers. */
import type { FilterDefinition, Filter, FilterCallbacks } from '../../contract.ts';
import { checkHeader, type HeaderMap } from '../../../core/headers.ts';

const map = { type: 'object', additionalProperties: { type: 'string' } };
const list = { type: 'array', items: { type: 'string' } };
const properties = {
  request_add: map,
  request_set: map,
  request_remove: list,
  response_add: map,
  response_set: map,
  response_remove: list,
};

/** The config of a `headers` filter (and of its per-route override). */
export interface HeadersConfig {
  request_add?: Record<string, string>;
  request_set?: Record<string, string>;
  request_remove?: string[];
  response_add?: Record<string, string>;
  response_set?: Record<string, string>;
  response_remove?: string[];
}

interface Ops {
  add: string[];
  set: string[];
  remove: string[];
}

function compileOps(add?: Record<string, string>, set?: Record<string, string>, remove?: string[]): Ops | null {
  const ops: Ops = {
    add: Object.entries(add ?? {}).flatMap(([k, v]) => [k.toLowerCase(), v]),
    set: Object.entries(set ?? {}).flatMap(([k, v]) => [k.toLowerCase(), v]),
    remove: (remove ?? []).map((k) => k.toLowerCase()),
  };
  // A bad name or value is a config error, found at load rather than on every request.
  for (const pairs of [ops.add, ops.set]) for (let i = 0; i < pairs.length; i += 2) checkHeader(pairs[i], pairs[i + 1]);
  return ops.add.length + ops.set.length + ops.remove.length === 0 ? null : ops;
}

function apply(ops: Ops, headers: HeaderMap): void {
  for (const name of ops.remove) headers.remove(name);
  for (let i = 0; i < ops.set.length; i += 2) headers.set(ops.set[i], ops.set[i + 1]);
  for (let i = 0; i < ops.add.length; i += 2) headers.add(ops.add[i], ops.add[i + 1]);
}

class HeadersFilter implements Filter {
  readonly #request: Ops | null;
  readonly #response: Ops | null;
  constructor(request: Ops | null, response: Ops | null) {
    this.#request = request;
    this.#response = response;
  }
  onRequestHeaders(headers: HeaderMap): 'continue' {
    if (this.#request !== null) apply(this.#request, headers);
    return 'continue';
  }
  onResponseHeaders(headers: HeaderMap): 'continue' {
    if (this.#response !== null) apply(this.#response, headers);
    return 'continue';
  }
}

function compile(c: HeadersConfig): HeadersFilter {
  return new HeadersFilter(
    compileOps(c.request_add, c.request_set, c.request_remove),
    compileOps(c.response_add, c.response_set, c.response_remove),
  );
}

const definition: FilterDefinition<HeadersConfig, HeadersConfig> = {
  type: 'headers',
  schema: { properties },
  perRouteSchema: { properties },
  prepare(config) {
    // Run by `weir validate` too: a header that could not be written is reported before start.
    compile(config);
  },
  factory(config) {
    // The filter keeps no per-request state, so one instance serves every request.
    const shared = compile(config);
    const perRoute = new WeakMap<HeadersConfig, HeadersFilter>();
    return {
      create: function createHeadersFilter(_callbacks: FilterCallbacks, override?: HeadersConfig): Filter {
        if (override === undefined) return shared;
        let f = perRoute.get(override);
        if (f === undefined) {
          f = compile(override);
          perRoute.set(override, f);
        }
        return f;
      },
    };
  },
};

export default definition;
