/**
 * Route matching: virtual hosts by Host, then routes in config order, first match wins.
 * A route matches on path (prefix, exact or regex, query string excluded), method, headers and query.
 */
import { Buffer } from 'node:buffer';
import type { HeaderMap } from '../core/headers.ts';
import type { RawRoute, RawStringMatcher } from '../config/types.ts';
import type { ChainEntry } from './snapshot.ts';
import type { RawRetry } from '../config/types.ts';
import { parseDuration } from '../core/units.ts';
import { RetryPolicy } from './upstream/retry-policy.ts';

/** A compiled string matcher for a header or query parameter. */
interface ValueMatcher {
  name: string;
  test(value: string | undefined): boolean;
}

function valueMatcher(m: RawStringMatcher, lowerName: boolean): ValueMatcher {
  const name = lowerName ? m.name.toLowerCase() : m.name;
  let test: (v: string | undefined) => boolean;
  if (m.exact !== undefined) test = (v) => v === m.exact;
  else if (m.prefix !== undefined) test = (v) => v !== undefined && v.startsWith(m.prefix!);
  else if (m.regex !== undefined) {
    const re = new RegExp(`^(?:${m.regex})$`);
    test = (v) => v !== undefined && re.test(v);
  } else if (m.present === false) test = (v) => v === undefined;
  else test = (v) => v !== undefined;
  return { name, test: m.invert ? (v) => !test(v) : test };
}

/** What a matched route does. */
export type RouteAction =
  | { kind: 'cluster'; clusters: { name: string; weight: number }[]; totalWeight: number }
  | { kind: 'direct'; status: number; body: Buffer | null; headers: Record<string, string> | undefined }
  | { kind: 'redirect'; status: number; location?: string; scheme?: string; host?: string; path?: string; prefixRewrite?: string; stripQuery: boolean };

/** Retry settings: the decision policy and the per-try timeout in milliseconds (0: none). */
export interface RetrySettings {
  policy: RetryPolicy;
  perTryTimeoutMs: number;
}

/** Compiles a retry section (durations to milliseconds). */
export function compileRetry(r: RawRetry | undefined): RetrySettings {
  if (r === undefined) return { policy: new RetryPolicy(), perTryTimeoutMs: 0 };
  return {
    policy: new RetryPolicy({
      retry_on: r.retry_on,
      num_retries: r.num_retries,
      retriable_status_codes: r.retriable_status_codes,
      retry_non_idempotent: r.retry_non_idempotent,
      backoff_base: parseDuration(r.backoff_base),
      backoff_max: parseDuration(r.backoff_max),
      budget_percent: r.budget_percent,
      min_retry_concurrency: r.min_retry_concurrency,
    }),
    perTryTimeoutMs: r.per_try_timeout === undefined ? 0 : parseDuration(r.per_try_timeout),
  };
}

/** How long a response may stall between two reads from the upstream when the route does not say. */
export const DEFAULT_RESPONSE_IDLE_MS = 60_000;

/** A compiled route. */
export interface Route {
  readonly name: string;
  readonly action: RouteAction;
  readonly prefix: string | undefined;
  readonly prefixRewrite: string | undefined;
  readonly regexRewrite: { re: RegExp; substitution: string } | undefined;
  readonly hostRewrite: string | undefined;
  readonly autoHostRewrite: boolean;
  /** Overall timeout in ms (0: the cluster's default). */
  readonly timeoutMs: number;
  readonly idleTimeoutMs: number;
  readonly retry: RetrySettings | undefined;
  readonly hashOn: RawRoute['hash_on'];
  readonly metadata: Readonly<Record<string, unknown>>;
  /** The filters that run for this route: the listener's (minus disabled ones) then the route's own. */
  readonly chain: readonly ChainEntry[];
  /** The route matches on headers other than `:path`, `:authority` and `:method`. */
  readonly readsHeaders: boolean;
  /** Tests the request. */
  matches(path: string, query: string, headers: HeaderMap): boolean;
}

/** Builds a route from config; `chain` was built by the snapshot. */
export function compileRoute(raw: RawRoute, index: number, vhostName: string, chain: readonly ChainEntry[]): Route {
  const m = raw.match;
  const headerMatchers = (m.headers ?? []).map((h) => valueMatcher(h, true));
  const queryMatchers = (m.query ?? []).map((q) => valueMatcher(q, false));
  const methods = m.methods === undefined ? null : new Set(m.methods);
  const regex = m.regex === undefined ? null : new RegExp(`^(?:${m.regex})$`);
  const { prefix, path } = m;
  let action: RouteAction;
  if (raw.direct_response !== undefined) {
    const d = raw.direct_response;
    action = { kind: 'direct', status: d.status, body: d.body === undefined ? null : Buffer.from(d.body), headers: d.headers !== undefined && Object.keys(d.headers).length > 0 ? d.headers : undefined };
  } else if (raw.redirect !== undefined) {
    const r = raw.redirect;
    action = { kind: 'redirect', status: r.status, location: r.location, scheme: r.scheme, host: r.host, path: r.path, prefixRewrite: r.prefix_rewrite, stripQuery: r.strip_query };
  } else if (raw.weighted_clusters !== undefined) {
    const clusters = raw.weighted_clusters.map((w) => ({ name: w.name, weight: w.weight }));
    action = { kind: 'cluster', clusters, totalWeight: clusters.reduce((a, c) => a + c.weight, 0) };
  } else action = { kind: 'cluster', clusters: [{ name: raw.cluster!, weight: 1 }], totalWeight: 1 };
  return {
    name: raw.name ?? `${vhostName}/${index}`,
    action,
    prefix,
    prefixRewrite: raw.prefix_rewrite,
    regexRewrite: raw.regex_rewrite === undefined ? undefined : { re: new RegExp(raw.regex_rewrite.pattern, 'g'), substitution: raw.regex_rewrite.substitution },
    hostRewrite: raw.host_rewrite,
    autoHostRewrite: raw.auto_host_rewrite,
    timeoutMs: raw.timeout === undefined ? 0 : parseDuration(raw.timeout),
    // Unset: 60 s between two reads of the response, as nginx's proxy_read_timeout; "0s" turns it off.
    idleTimeoutMs: raw.idle_timeout === undefined ? DEFAULT_RESPONSE_IDLE_MS : parseDuration(raw.idle_timeout),
    retry: raw.retry === undefined ? undefined : compileRetry(raw.retry),
    hashOn: raw.hash_on,
    metadata: Object.freeze({ ...(raw.metadata ?? {}) }),
    chain,
    readsHeaders: headerMatchers.length > 0,
    matches: function matchRoute(p: string, query: string, headers: HeaderMap): boolean {
      if (prefix !== undefined ? !p.startsWith(prefix) : path !== undefined ? p !== path : regex !== null && !regex.test(p)) return false;
      if (methods !== null && !methods.has(headers.get(':method')!)) return false;
      for (const h of headerMatchers) if (!h.test(headers.getJoined(h.name))) return false;
      if (queryMatchers.length > 0) {
        const params = new URLSearchParams(query);
        for (const q of queryMatchers) if (!q.test(params.get(q.name) ?? undefined)) return false;
      }
      return true;
    },
  };
}

/** A virtual host: its name, its domains as configured, and its routes. */
export interface VirtualHost {
  readonly name: string;
  readonly domains: readonly string[];
  readonly routes: readonly Route[];
}

/** Makes a virtual host. Domains are exact names, "*.suffix", "prefix.*", or "*"; matching is case-insensitive. */
export function compileVirtualHost(name: string, domains: string[], routes: Route[]): VirtualHost {
  return { name, domains: domains.map((d) => d.toLowerCase()), routes };
}

/**
 * Picks the virtual host for a Host, with Envoy's precedence whatever the config order: an exact domain, then
 * the longest "*.suffix", then the longest "prefix.*", then "*". Each step tries the Host as sent, then without
 * its port.
 */
class VirtualHostIndex {
  readonly #exact = new Map<string, VirtualHost>();
  readonly #suffixes: [string, VirtualHost][] = [];
  readonly #prefixes: [string, VirtualHost][] = [];
  readonly #any: VirtualHost | undefined;
  /** Set when every request goes to one virtual host: no Host lookup at all. */
  readonly only: VirtualHost | undefined;

  constructor(vhosts: readonly VirtualHost[]) {
    let any: VirtualHost | undefined;
    for (const vh of vhosts) {
      for (const d of vh.domains) {
        if (d === '*') any ??= vh;
        else if (d.startsWith('*')) this.#suffixes.push([d.slice(1), vh]);
        else if (d.endsWith('*')) this.#prefixes.push([d.slice(0, -1), vh]);
        else if (!this.#exact.has(d)) this.#exact.set(d, vh);
      }
    }
    this.#suffixes.sort((a, b) => b[0].length - a[0].length);
    this.#prefixes.sort((a, b) => b[0].length - a[0].length);
    this.#any = any;
    this.only = vhosts.length === 1 && any !== undefined ? any : undefined;
  }

  find(authority: string): VirtualHost | undefined {
    const host = authority.toLowerCase();
    const colon = host.lastIndexOf(':');
    const bare = colon > 0 && !host.endsWith(']') ? host.slice(0, colon) : null;
    const exact = this.#exact.get(host) ?? (bare === null ? undefined : this.#exact.get(bare));
    if (exact !== undefined) return exact;
    for (const h of bare === null ? [host] : [host, bare]) {
      for (const [suffix, vh] of this.#suffixes) if (h.length > suffix.length && h.endsWith(suffix)) return vh;
    }
    for (const h of bare === null ? [host] : [host, bare]) {
      for (const [prefix, vh] of this.#prefixes) if (h.startsWith(prefix)) return vh;
    }
    return this.#any;
  }
}

/** Splits ":path" into path and query. */
export function splitPath(full: string): { path: string; query: string } {
  const q = full.indexOf('?');
  return q < 0 ? { path: full, query: '' } : { path: full.slice(0, q), query: full.slice(q + 1) };
}

/** Routes of one listener. */
export class Router {
  readonly #index: VirtualHostIndex;

  /** Some route matches on headers other than `:path`, `:authority` and `:method`. */
  readonly readsHeaders: boolean;

  constructor(vhosts: readonly VirtualHost[]) {
    this.#index = new VirtualHostIndex(vhosts);
    this.readsHeaders = vhosts.some((vh) => vh.routes.some((r) => r.readsHeaders));
  }

  /** The first route of the request's virtual host that matches it, or null. */
  match(headers: HeaderMap): Route | null {
    const full = headers.get(':path') ?? '/';
    const q = full.indexOf('?');
    const path = q < 0 ? full : full.slice(0, q);
    const query = q < 0 ? '' : full.slice(q + 1);
    const vh = this.#index.only ?? this.#index.find(headers.get(':authority') ?? '');
    if (vh === undefined) return null;
    for (const r of vh.routes) if (r.matches(path, query, headers)) return r;
    return null;
  }
}
