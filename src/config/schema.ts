/**
 * The JSON Schema of weir's config file, with every filter type's schema folded in.
 * `weir schema` prints it; docs/configuration.md describes the same keys.
 */
import type { JsonSchema, FilterDefinition } from '../filters/contract.ts';
import { DURATION_PATTERN, SIZE_PATTERN } from '../core/units.ts';
import { TOKEN } from '../core/headers.ts';

const ADDRESS_PATTERN = '^(\\[[0-9a-fA-F:.]+\\]|[^:\\s]+):\\d{1,5}$';
const PATH_PATTERN = '^/';
const NAME_PATTERN = '^[A-Za-z0-9_.:-]+$';
// Also '|', '~', '+' and '@': Istio names clusters "outbound|8181||auth.local", and scripts pass those names.
const CLUSTER_NAME_PATTERN = '^[A-Za-z0-9_.:|~+@-]+$';
/** An HTTP field name: the token HeaderMap checks names with. */
const HEADER_NAME_PATTERN = TOKEN.source;
/** A field value that cannot break the head: no CR, LF or NUL. */
const HEADER_VALUE_PATTERN = '^[^\\r\\n\\x00]*$';
/** What goes into a URL or a Host: no whitespace and no control characters. */
const URL_PART_PATTERN = '^[^\\s\\x00-\\x1f\\x7f]*$';
const SCHEME_PATTERN = '^[A-Za-z][A-Za-z0-9+.-]*$';

/**
 * What a value that fails each pattern should look like, for error messages: a key's `description` documents the
 * key (the cluster's `timeout` is "Default route timeout for this cluster"), which is no answer to a bad value.
 */
export const PATTERN_EXPECTS: ReadonlyMap<string, string> = new Map([
  [DURATION_PATTERN, 'a duration such as "250ms", "5s" or "1m"'],
  [SIZE_PATTERN, 'a size such as "64KiB" or "1MiB"'],
  [ADDRESS_PATTERN, '"host:port"'],
  [PATH_PATTERN, 'a path starting with "/"'],
  ['^[A-Z]+$', 'an upper-case method name such as "GET"'],
  [NAME_PATTERN, 'a name of letters, digits, "_", ".", ":" and "-"'],
  [CLUSTER_NAME_PATTERN, 'a name of letters, digits, "_", ".", ":", "|", "~", "+", "@" and "-"'],
  [HEADER_NAME_PATTERN, 'an HTTP header name (letters, digits and !#$%&\'*+-.^_`|~, no spaces)'],
  [HEADER_VALUE_PATTERN, 'a header value without CR, LF or NUL'],
  [URL_PART_PATTERN, 'text without spaces or control characters'],
  [SCHEME_PATTERN, 'a URL scheme such as "https"'],
]);

/** A header name and a header value, as schema pieces (exported for the filters' own schemas). */
export const headerName = { type: 'string', pattern: HEADER_NAME_PATTERN, description: PATTERN_EXPECTS.get(HEADER_NAME_PATTERN) };
export const headerValue = { type: 'string', pattern: HEADER_VALUE_PATTERN, description: PATTERN_EXPECTS.get(HEADER_VALUE_PATTERN) };
const urlPart = { type: 'string', pattern: URL_PART_PATTERN, description: PATTERN_EXPECTS.get(URL_PART_PATTERN) };

const duration = { type: ['string', 'number'], pattern: DURATION_PATTERN, minimum: 0, description: PATTERN_EXPECTS.get(DURATION_PATTERN) };
const size = { type: ['string', 'integer'], pattern: SIZE_PATTERN, minimum: 0, description: PATTERN_EXPECTS.get(SIZE_PATTERN) };
const address = { type: 'string', pattern: ADDRESS_PATTERN, description: PATTERN_EXPECTS.get(ADDRESS_PATTERN) };
const pathValue = { type: 'string', pattern: PATH_PATTERN, description: PATTERN_EXPECTS.get(PATH_PATTERN) };
const stringMap = { type: 'object', additionalProperties: { type: 'string' } };
const strings = { type: 'array', items: { type: 'string' } };

const stringMatcher = {
  type: 'object',
  additionalProperties: false,
  required: ['name'],
  properties: {
    name: { type: 'string', minLength: 1 },
    exact: { type: 'string' },
    prefix: { type: 'string' },
    regex: { type: 'string' },
    present: { type: 'boolean' },
    invert: { type: 'boolean', default: false },
  },
};

const hashOn = {
  type: 'object',
  additionalProperties: false,
  minProperties: 1,
  maxProperties: 1,
  properties: { header: { type: 'string' }, cookie: { type: 'string' }, source_ip: { const: true } },
};

const retry = {
  type: 'object',
  additionalProperties: false,
  properties: {
    retry_on: {
      type: 'array',
      items: { enum: ['connect-failure', 'reset', '5xx', 'gateway-error', 'retriable-status-codes'] },
      default: ['connect-failure', 'reset'],
    },
    num_retries: { type: 'integer', minimum: 0, maximum: 10, default: 1 },
    retriable_status_codes: { type: 'array', items: { type: 'integer', minimum: 100, maximum: 599 }, default: [] },
    retry_non_idempotent: { type: 'boolean', default: false },
    per_try_timeout: duration,
    backoff_base: { ...duration, default: '25ms' },
    backoff_max: { ...duration, default: '250ms' },
    budget_percent: { type: 'number', minimum: 0, maximum: 100, default: 20 },
    min_retry_concurrency: { type: 'integer', minimum: 0, default: 3 },
  },
};

function routeSchema(filterItem: JsonSchema): JsonSchema {
  return {
    type: 'object',
    additionalProperties: false,
    required: ['match'],
    properties: {
      name: { type: 'string' },
      match: {
        type: 'object',
        additionalProperties: false,
        properties: {
          prefix: pathValue,
          path: pathValue,
          regex: { type: 'string' },
          methods: { type: 'array', items: { type: 'string', pattern: '^[A-Z]+$' } },
          headers: { type: 'array', items: { ...stringMatcher, properties: { ...stringMatcher.properties, name: headerName } } },
          query: { type: 'array', items: stringMatcher },
        },
      },
      cluster: { type: 'string' },
      weighted_clusters: {
        type: 'array',
        minItems: 1,
        items: {
          type: 'object',
          additionalProperties: false,
          required: ['name', 'weight'],
          properties: { name: { type: 'string' }, weight: { type: 'integer', minimum: 0 } },
        },
      },
      direct_response: {
        type: 'object',
        additionalProperties: false,
        required: ['status'],
        properties: {
          status: { type: 'integer', minimum: 200, maximum: 599 },
          body: { type: 'string' },
          headers: { type: 'object', propertyNames: headerName, additionalProperties: headerValue },
        },
      },
      redirect: {
        type: 'object',
        additionalProperties: false,
        properties: {
          location: urlPart,
          scheme: { type: 'string', pattern: SCHEME_PATTERN },
          host: urlPart,
          path: urlPart,
          prefix_rewrite: urlPart,
          status: { enum: [301, 302, 303, 307, 308], default: 301 },
          strip_query: { type: 'boolean', default: false },
        },
      },
      prefix_rewrite: { type: 'string' },
      regex_rewrite: {
        type: 'object',
        additionalProperties: false,
        required: ['pattern', 'substitution'],
        properties: { pattern: { type: 'string' }, substitution: { type: 'string' } },
      },
      host_rewrite: { ...urlPart, minLength: 1 },
      auto_host_rewrite: { type: 'boolean', default: false },
      timeout: duration,
      idle_timeout: duration,
      retry,
      hash_on: hashOn,
      metadata: { type: 'object' },
      filters: { type: 'array', items: filterItem, description: 'Filters added for this route, after the listener chain' },
      filter_overrides: {
        type: 'object',
        description: 'Per-route config of the listener filters by name; `{ disabled: true }` turns one off',
        additionalProperties: { type: 'object' },
      },
    },
    oneOf: [
      { required: ['cluster'] },
      { required: ['weighted_clusters'] },
      { required: ['direct_response'] },
      { required: ['redirect'] },
    ],
  };
}

/** Builds the whole config schema, with each registered filter type's own keys. */
export function configSchema(filters: readonly FilterDefinition[]): JsonSchema {
  const types = filters.map((f) => f.type);
  const filterItem: JsonSchema = {
    type: 'object',
    required: ['name', 'type'],
    properties: {
      name: { type: 'string', pattern: NAME_PATTERN },
      type: { enum: types },
      disabled: { type: 'boolean', default: false },
    },
    allOf: filters.map((f) => ({
      if: { properties: { type: { const: f.type } }, required: ['type'] },
      then: {
        type: 'object',
        additionalProperties: false,
        ...(f.schema as object),
        properties: {
          name: true,
          type: true,
          disabled: true,
          ...((f.schema.properties as object | undefined) ?? {}),
        },
      },
    })),
  };
  const route = routeSchema(filterItem);
  return {
    $schema: 'http://json-schema.org/draft-07/schema#',
    $id: 'https://weir.dev/schema/config.json',
    title: 'weir configuration',
    type: 'object',
    additionalProperties: false,
    required: ['listeners'],
    properties: {
      admin: {
        type: 'object',
        additionalProperties: false,
        properties: { address: { ...address, default: '127.0.0.1:9901' } },
        default: {},
      },
      access_log: {
        description: '"stdout" (default), "off", or a file path',
        type: 'string',
        default: 'stdout',
      },
      log_level: { enum: ['trace', 'debug', 'info', 'warn', 'error', 'fatal'], default: 'info' },
      watch: { type: 'boolean', default: false, description: 'Reload when the config file changes' },
      drain_timeout: { ...duration, default: '15s' },
      listeners: {
        type: 'array',
        items: {
          type: 'object',
          additionalProperties: false,
          required: ['name', 'address'],
          properties: {
            name: { type: 'string', pattern: NAME_PATTERN },
            address,
            filters: { type: 'array', items: filterItem, default: [] },
            routes: { type: 'array', items: route },
            virtual_hosts: {
              type: 'array',
              items: {
                type: 'object',
                additionalProperties: false,
                required: ['name', 'domains', 'routes'],
                properties: {
                  name: { type: 'string' },
                  domains: { type: 'array', minItems: 1, items: { type: 'string' } },
                  routes: { type: 'array', items: route },
                },
              },
            },
            buffer_limit: { ...size, default: '1MiB' },
            max_request_headers_size: { ...size, default: '60KiB' },
            max_uri_size: { ...size, default: '8KiB' },
            request_header_timeout: { ...duration, default: '10s' },
            idle_timeout: { ...duration, default: '60s' },
            stream_idle_timeout: { ...duration, default: '5m', description: 'A stream a filter holds with nothing happening for this long gets 408 (0s: no limit)' },
            generate_request_id: { type: 'boolean', default: true },
            preserve_host: { type: 'boolean', default: true },
            normalize_path: { type: 'boolean', default: true, description: 'Remove dot segments and decode unreserved %XX in the request path before routing (as Envoy normalize_path)' },
            merge_slashes: { type: 'boolean', default: false, description: 'Collapse runs of "/" in the request path before routing (as Envoy merge_slashes)' },
            xff_trusted_hops: { type: 'integer', minimum: 0, default: 0 },
          },
        },
      },
      clusters: {
        type: 'array',
        default: [],
        items: {
          type: 'object',
          additionalProperties: false,
          required: ['name', 'endpoints'],
          properties: {
            name: { type: 'string', pattern: CLUSTER_NAME_PATTERN },
            endpoints: {
              type: 'array',
              items: {
                oneOf: [
                  address,
                  {
                    type: 'object',
                    additionalProperties: false,
                    required: ['address'],
                    properties: { address, weight: { type: 'integer', minimum: 1, default: 1 } },
                  },
                ],
              },
            },
            lb: { enum: ['round_robin', 'least_request', 'random', 'ring_hash'], default: 'round_robin' },
            hash_on: hashOn,
            connect_timeout: { ...duration, default: '5s' },
            timeout: { ...duration, default: '15s', description: 'Default route timeout for this cluster' },
            idle_timeout: { ...duration, default: '60s', description: 'Pooled connections idle longer are closed' },
            max_idle_connections: { type: 'integer', minimum: 0, default: 128 },
            dns_refresh: { ...duration, default: '30s' },
            retry,
            health_check: {
              type: 'object',
              additionalProperties: false,
              required: ['path'],
              properties: {
                path: pathValue,
                host: { type: 'string' },
                interval: { ...duration, default: '5s' },
                timeout: { ...duration, default: '1s' },
                healthy_threshold: { type: 'integer', minimum: 1, default: 2 },
                unhealthy_threshold: { type: 'integer', minimum: 1, default: 3 },
                expected_statuses: { type: 'array', items: { type: 'integer', minimum: 100, maximum: 599 } },
              },
            },
            outlier_detection: {
              type: 'object',
              additionalProperties: false,
              properties: {
                consecutive_5xx: { type: 'integer', minimum: 0, default: 5 },
                consecutive_gateway_failure: { type: 'integer', minimum: 0, default: 5 },
                base_ejection_time: { ...duration, default: '30s' },
                max_ejection_time: { ...duration, default: '300s' },
                max_ejection_percent: { type: 'integer', minimum: 0, maximum: 100, default: 10 },
                interval: { ...duration, default: '10s' },
              },
            },
            circuit_breakers: {
              type: 'object',
              additionalProperties: false,
              properties: {
                max_connections: { type: 'integer', minimum: 1, default: 1024 },
                max_pending_requests: { type: 'integer', minimum: 0, default: 1024 },
                max_requests: { type: 'integer', minimum: 1, default: 1024 },
                max_retries: { type: 'integer', minimum: 0, default: 3 },
              },
            },
          },
        },
      },
    },
  };
}

export { duration as durationSchema, size as sizeSchema, stringMap as stringMapSchema, strings as stringsSchema };
