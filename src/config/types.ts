/** The shape of a validated config file, defaults filled in (durations and sizes still as written). */

/** A duration as written: "5s" or milliseconds. */
export type DurationText = string | number;
/** A size as written: "1MiB" or bytes. */
export type SizeText = string | number;

/** A header or query matcher. */
export interface RawStringMatcher {
  name: string;
  exact?: string;
  prefix?: string;
  regex?: string;
  present?: boolean;
  invert: boolean;
}

/** Where a ring hash key comes from. */
export interface RawHashOn {
  header?: string;
  cookie?: string;
  source_ip?: true;
}

/** Retry settings of a route or cluster. */
export interface RawRetry {
  retry_on: ('connect-failure' | 'reset' | '5xx' | 'gateway-error' | 'retriable-status-codes')[];
  num_retries: number;
  retriable_status_codes: number[];
  retry_non_idempotent: boolean;
  per_try_timeout?: DurationText;
  backoff_base: DurationText;
  backoff_max: DurationText;
  budget_percent: number;
  min_retry_concurrency: number;
}

/** A filter entry: name, type and the type's own keys. */
export interface RawFilter {
  name: string;
  type: string;
  disabled: boolean;
  [key: string]: unknown;
}

/** One route. */
export interface RawRoute {
  name?: string;
  match: {
    prefix?: string;
    path?: string;
    regex?: string;
    methods?: string[];
    headers?: RawStringMatcher[];
    query?: RawStringMatcher[];
  };
  cluster?: string;
  weighted_clusters?: { name: string; weight: number }[];
  direct_response?: { status: number; body?: string; headers?: Record<string, string> };
  redirect?: {
    location?: string;
    scheme?: string;
    host?: string;
    path?: string;
    prefix_rewrite?: string;
    status: 301 | 302 | 303 | 307 | 308;
    strip_query: boolean;
  };
  prefix_rewrite?: string;
  regex_rewrite?: { pattern: string; substitution: string };
  host_rewrite?: string;
  auto_host_rewrite: boolean;
  timeout?: DurationText;
  idle_timeout?: DurationText;
  retry?: RawRetry;
  hash_on?: RawHashOn;
  metadata?: Record<string, unknown>;
  filters?: RawFilter[];
  filter_overrides?: Record<string, Record<string, unknown>>;
}

/** One listener. */
export interface RawListener {
  name: string;
  address: string;
  filters: RawFilter[];
  routes?: RawRoute[];
  virtual_hosts?: { name: string; domains: string[]; routes: RawRoute[] }[];
  buffer_limit: SizeText;
  max_request_headers_size: SizeText;
  max_uri_size: SizeText;
  request_header_timeout: DurationText;
  idle_timeout: DurationText;
  stream_idle_timeout: DurationText;
  generate_request_id: boolean;
  preserve_host: boolean;
  normalize_path: boolean;
  merge_slashes: boolean;
  xff_trusted_hops: number;
}

/** One cluster. */
export interface RawCluster {
  name: string;
  endpoints: (string | { address: string; weight: number })[];
  lb: 'round_robin' | 'least_request' | 'random' | 'ring_hash';
  hash_on?: RawHashOn;
  connect_timeout: DurationText;
  timeout: DurationText;
  idle_timeout: DurationText;
  max_idle_connections: number;
  dns_refresh: DurationText;
  retry?: RawRetry;
  health_check?: {
    path: string;
    host?: string;
    interval: DurationText;
    timeout: DurationText;
    healthy_threshold: number;
    unhealthy_threshold: number;
    expected_statuses?: number[];
  };
  outlier_detection?: {
    consecutive_5xx: number;
    consecutive_gateway_failure: number;
    base_ejection_time: DurationText;
    max_ejection_time: DurationText;
    max_ejection_percent: number;
    interval: DurationText;
  };
  circuit_breakers?: {
    max_connections: number;
    max_pending_requests: number;
    max_requests: number;
    max_retries: number;
  };
}

/** The whole validated config file. */
export interface RawConfig {
  admin: { address: string };
  access_log: string;
  log_level: 'trace' | 'debug' | 'info' | 'warn' | 'error' | 'fatal';
  watch: boolean;
  drain_timeout: DurationText;
  listeners: RawListener[];
  clusters: RawCluster[];
}
