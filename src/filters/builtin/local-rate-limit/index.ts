/**
 * The `local_rate_limit` filter: a token bucket per route (and per key, when `key` is set), in this worker.
 * Over the limit it answers 429 with x-ratelimit-* headers, as Envoy's local rate limit does.
 */
import type { FilterDefinition, Filter, FilterCallbacks } from '../../contract.ts';
import type { HeaderMap } from '../../../core/headers.ts';
import { parseDuration, DURATION_PATTERN } from '../../../core/units.ts';
import { TokenBucket } from './token-bucket.ts';
import { mergedOverrideSchema } from '../../override.ts';
import { headerName } from '../../../config/schema.ts';

/** The config of a `local_rate_limit` filter (and of its per-route override). */
export interface RateLimitConfig {
  max_tokens: number;
  tokens_per_fill: number;
  fill_interval: string | number;
  key?: { header?: string; source_ip?: true };
  status: number;
  headers: boolean;
  max_keys: number;
}

const properties = {
  max_tokens: { type: 'integer', minimum: 1 },
  tokens_per_fill: { type: 'integer', minimum: 1, default: 1 },
  fill_interval: { type: ['string', 'number'], pattern: DURATION_PATTERN, default: '1s' },
  key: {
    type: 'object',
    additionalProperties: false,
    minProperties: 1,
    maxProperties: 1,
    properties: { header: headerName, source_ip: { const: true } },
  },
  status: { type: 'integer', minimum: 400, maximum: 599, default: 429 },
  headers: { type: 'boolean', default: true, description: 'Add x-ratelimit-limit, -remaining and -reset' },
  max_keys: { type: 'integer', minimum: 1, default: 10000 },
};

interface Limiter {
  config: RateLimitConfig;
  intervalMs: number;
  buckets: Map<string, TokenBucket>;
}

/** Envoy's floor for a fill interval; a shorter one (0s above all) would never limit. */
const MIN_FILL_INTERVAL_MS = 50;

function limiter(config: RateLimitConfig): Limiter {
  return { config, intervalMs: parseDuration(config.fill_interval), buckets: new Map() };
}

function bucketFor(l: Limiter, key: string, now: number): TokenBucket {
  let b = l.buckets.get(key);
  if (b === undefined) {
    if (l.buckets.size >= l.config.max_keys) l.buckets.delete(l.buckets.keys().next().value!);
    b = new TokenBucket({ capacity: l.config.max_tokens, tokensPerFill: l.config.tokens_per_fill, fillIntervalMs: l.intervalMs, now });
    l.buckets.set(key, b);
  }
  return b;
}

class RateLimitFilter implements Filter {
  readonly #limiter: Limiter;
  readonly #callbacks: FilterCallbacks;
  #bucket: TokenBucket | undefined;

  constructor(l: Limiter, callbacks: FilterCallbacks) {
    this.#limiter = l;
    this.#callbacks = callbacks;
  }

  onRequestHeaders(headers: HeaderMap): 'continue' | 'stop' {
    const l = this.#limiter;
    const k = l.config.key;
    let key = this.#callbacks.info.routeName ?? '';
    if (k?.header !== undefined) key += '\u0000' + (headers.get(k.header.toLowerCase()) ?? '');
    else if (k?.source_ip) key += '\u0000' + this.#callbacks.info.downstreamClientAddress;
    const now = Date.now();
    const b = bucketFor(l, key, now);
    this.#bucket = b;
    if (b.take(now)) return 'continue';
    const replyHeaders: Record<string, string> = {};
    if (l.config.headers) this.#rateHeaders(replyHeaders, b, now);
    this.#callbacks.sendLocalReply(l.config.status, 'local_rate_limited', { headers: replyHeaders, details: 'local_rate_limited', code: 'RATE_LIMITED' });
    return 'stop';
  }

  onResponseHeaders(headers: HeaderMap): 'continue' {
    const b = this.#bucket;
    if (b !== undefined && this.#limiter.config.headers && !headers.has('x-ratelimit-limit')) {
      const h: Record<string, string> = {};
      this.#rateHeaders(h, b, Date.now());
      for (const name in h) headers.set(name, h[name]);
    }
    return 'continue';
  }

  #rateHeaders(out: Record<string, string>, b: TokenBucket, now: number): void {
    out['x-ratelimit-limit'] = String(b.capacity);
    out['x-ratelimit-remaining'] = String(Math.floor(b.remaining(now)));
    out['x-ratelimit-reset'] = String(Math.ceil(b.resetIn(now) / 1000));
  }
}

const definition: FilterDefinition<RateLimitConfig, RateLimitConfig> = {
  type: 'local_rate_limit',
  schema: { required: ['max_tokens'], properties },
  perRouteSchema: mergedOverrideSchema(properties),
  check(config) {
    if (parseDuration(config.fill_interval) >= MIN_FILL_INTERVAL_MS) return [];
    return [{ key: 'fill_interval', message: `fill_interval ${JSON.stringify(config.fill_interval)} is shorter than ${MIN_FILL_INTERVAL_MS}ms, as Envoy requires (a bucket refilled that often does not limit)` }];
  },
  factory(config) {
    const base = limiter(config);
    const perRoute = new WeakMap<RateLimitConfig, Limiter>();
    return {
      create: function createRateLimitFilter(callbacks, override) {
        let l = base;
        if (override !== undefined) {
          l = perRoute.get(override) ?? limiter({ ...config, ...override });
          perRoute.set(override, l);
        }
        return new RateLimitFilter(l, callbacks);
      },
    };
  },
};

export default definition;
