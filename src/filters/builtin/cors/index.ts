/** The `cors` filter: answers CORS preflight requests and adds CORS headers to responses for allowed origins. */
import type { FilterDefinition, Filter, FilterCallbacks } from '../../contract.ts';
import type { HeaderMap } from '../../../core/headers.ts';
import { mergedOverrideSchema } from '../../override.ts';
import { headerName } from '../../../config/schema.ts';

/** The config of a `cors` filter. */
export interface CorsConfig {
  allow_origins: string[];
  allow_origin_regex?: string[];
  allow_methods: string[];
  allow_headers: string[];
  expose_headers: string[];
  max_age?: number;
  allow_credentials: boolean;
}

const properties = {
  allow_origins: { type: 'array', items: { type: 'string' }, default: [], description: 'Exact origins, or "*"' },
  allow_origin_regex: { type: 'array', items: { type: 'string' } },
  allow_methods: { type: 'array', items: headerName, default: ['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE'] },
  allow_headers: { type: 'array', items: headerName, default: [] },
  expose_headers: { type: 'array', items: headerName, default: [] },
  max_age: { type: 'integer', minimum: 0 },
  allow_credentials: { type: 'boolean', default: false },
};

interface Policy {
  exact: Set<string>;
  any: boolean;
  regexes: RegExp[];
  methods: string;
  headers: string;
  expose: string;
  maxAge: string | undefined;
  credentials: boolean;
}

function compile(c: CorsConfig): Policy {
  return {
    exact: new Set(c.allow_origins.filter((o) => o !== '*')),
    any: c.allow_origins.includes('*'),
    // As Envoy's safe_regex (and weir's route regexes): the whole origin must match.
    regexes: (c.allow_origin_regex ?? []).map(wholeMatch),
    methods: c.allow_methods.join(', '),
    headers: c.allow_headers.join(', '),
    expose: c.expose_headers.join(', '),
    maxAge: c.max_age === undefined ? undefined : String(c.max_age),
    credentials: c.allow_credentials,
  };
}

/** A regex that must match the whole origin; a bad one is reported as the user wrote it. */
function wholeMatch(source: string): RegExp {
  try {
    new RegExp(source);
  } catch (err) {
    throw new Error(`allow_origin_regex "${source}" is not a valid regular expression: ${(err as Error).message.replace(/^Invalid regular expression: \/.*\/[a-z]*: /, '')}`);
  }
  return new RegExp(`^(?:${source})$`);
}

function allowed(p: Policy, origin: string): boolean {
  return p.any || p.exact.has(origin) || p.regexes.some((r) => r.test(origin));
}

class CorsFilter implements Filter {
  readonly #policy: Policy;
  readonly #callbacks: FilterCallbacks;
  #origin: string | undefined;

  constructor(policy: Policy, callbacks: FilterCallbacks) {
    this.#policy = policy;
    this.#callbacks = callbacks;
  }

  onRequestHeaders(headers: HeaderMap): 'continue' | 'stop' {
    const origin = headers.get('origin');
    if (origin === undefined || !allowed(this.#policy, origin)) return 'continue';
    this.#origin = origin;
    const p = this.#policy;
    if (headers.get(':method') === 'OPTIONS' && headers.has('access-control-request-method')) {
      const reply: Record<string, string> = {
        'access-control-allow-origin': p.any && !p.credentials ? '*' : origin,
        'access-control-allow-methods': p.methods,
      };
      const requested = headers.get('access-control-request-headers');
      if (p.headers !== '') reply['access-control-allow-headers'] = p.headers;
      else if (requested !== undefined) reply['access-control-allow-headers'] = requested;
      if (p.maxAge !== undefined) reply['access-control-max-age'] = p.maxAge;
      if (p.credentials) reply['access-control-allow-credentials'] = 'true';
      if (!(p.any && !p.credentials)) reply.vary = 'Origin';
      this.#callbacks.sendLocalReply(204, undefined, { headers: reply, details: 'cors_preflight' });
      return 'stop';
    }
    return 'continue';
  }

  onResponseHeaders(headers: HeaderMap): 'continue' {
    const origin = this.#origin;
    if (origin === undefined) return 'continue';
    const p = this.#policy;
    const wildcard = p.any && !p.credentials;
    headers.set('access-control-allow-origin', wildcard ? '*' : origin);
    if (!wildcard) headers.add('vary', 'Origin');
    if (p.credentials) headers.set('access-control-allow-credentials', 'true');
    if (p.expose !== '') headers.set('access-control-expose-headers', p.expose);
    return 'continue';
  }
}

const definition: FilterDefinition<CorsConfig, CorsConfig> = {
  type: 'cors',
  schema: { properties },
  perRouteSchema: mergedOverrideSchema(properties),
  factory(config) {
    const policy = compile(config);
    const perRoute = new WeakMap<CorsConfig, Policy>();
    return {
      create: function createCorsFilter(callbacks, override) {
        let p = policy;
        if (override !== undefined) {
          p = perRoute.get(override) ?? compile({ ...config, ...override });
          perRoute.set(override, p);
        }
        return new CorsFilter(p, callbacks);
      },
    };
  },
};

export default definition;
