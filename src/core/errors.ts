/** Where a failure came from. */
export type ErrorSource = 'downstream' | 'upstream' | 'internal' | 'filter' | 'config';

/** One entry of the error catalogue: a stable code, its HTTP status, its access-log flag and whether a retry may help. */
export interface ErrorKind {
  readonly code: string;
  readonly source: ErrorSource;
  readonly status: number;
  /** Envoy-style response flag written to the access log. */
  readonly flag: string;
  readonly retryable: boolean;
  /** The short body of the local reply. */
  readonly body: string;
}

function kind(code: string, source: ErrorSource, status: number, flag: string, retryable: boolean, body: string): ErrorKind {
  return Object.freeze({ code, source, status, flag, retryable, body });
}

/** Every error code weir answers with; docs/errors.md lists the same table. */
export const ERRORS = Object.freeze({
  NO_ROUTE: kind('NO_ROUTE', 'downstream', 404, 'NR', false, 'no route matched'),
  NO_HEALTHY_UPSTREAM: kind('NO_HEALTHY_UPSTREAM', 'upstream', 503, 'UH', false, 'no healthy upstream'),
  UPSTREAM_CONNECT_FAILURE: kind('UPSTREAM_CONNECT_FAILURE', 'upstream', 503, 'UF', true, 'upstream connect error'),
  UPSTREAM_OVERFLOW: kind('UPSTREAM_OVERFLOW', 'upstream', 503, 'UO', false, 'upstream overflow'),
  UPSTREAM_TIMEOUT: kind('UPSTREAM_TIMEOUT', 'upstream', 504, 'UT', true, 'upstream request timeout'),
  UPSTREAM_RESET: kind('UPSTREAM_RESET', 'upstream', 502, 'UR', true, 'upstream connection reset'),
  UPSTREAM_PROTOCOL_ERROR: kind('UPSTREAM_PROTOCOL_ERROR', 'upstream', 502, 'UPE', true, 'invalid upstream response'),
  RETRY_LIMIT_EXCEEDED: kind('RETRY_LIMIT_EXCEEDED', 'upstream', 503, 'URX', false, 'upstream retry limit exceeded'),
  DOWNSTREAM_PROTOCOL_ERROR: kind('DOWNSTREAM_PROTOCOL_ERROR', 'downstream', 400, 'DPE', false, 'bad request'),
  HEADERS_TOO_LARGE: kind('HEADERS_TOO_LARGE', 'downstream', 431, 'DPE', false, 'request header fields too large'),
  URI_TOO_LONG: kind('URI_TOO_LONG', 'downstream', 414, 'DPE', false, 'uri too long'),
  NOT_IMPLEMENTED: kind('NOT_IMPLEMENTED', 'downstream', 501, 'DPE', false, 'not implemented'),
  HTTP_VERSION_NOT_SUPPORTED: kind('HTTP_VERSION_NOT_SUPPORTED', 'downstream', 505, 'DPE', false, 'http version not supported'),
  REQUEST_TIMEOUT: kind('REQUEST_TIMEOUT', 'downstream', 408, 'DT', false, 'request timeout'),
  STREAM_IDLE_TIMEOUT: kind('STREAM_IDLE_TIMEOUT', 'filter', 408, 'SI', false, 'stream timeout'),
  DOWNSTREAM_RESET: kind('DOWNSTREAM_RESET', 'downstream', 0, 'DC', false, ''),
  REQUEST_BODY_TOO_LARGE: kind('REQUEST_BODY_TOO_LARGE', 'downstream', 413, 'DPE', false, 'payload too large'),
  RESPONSE_BODY_TOO_LARGE: kind('RESPONSE_BODY_TOO_LARGE', 'internal', 500, 'LR', false, 'response body too large'),
  RATE_LIMITED: kind('RATE_LIMITED', 'filter', 429, 'RL', false, 'local_rate_limited'),
  FILTER_FAILURE: kind('FILTER_FAILURE', 'filter', 500, 'FF', false, 'filter failure'),
  FILTER_UNAVAILABLE: kind('FILTER_UNAVAILABLE', 'filter', 503, 'FF', false, 'filter unavailable'),
  INTERNAL: kind('INTERNAL', 'internal', 500, 'LR', false, 'internal error'),
});

/**
 * Envoy's bit (`1 << CoreResponseFlag`) for each response flag above that Envoy also has, as the Proxy-Wasm property
 * `response.flags` reports them. FF (a filter failed) is weir's own and has no bit.
 */
export const ENVOY_FLAG_BITS: Readonly<Record<string, number>> = Object.freeze({
  UH: 0x2, UT: 0x4, LR: 0x8, UR: 0x10, UF: 0x20, UO: 0x80, NR: 0x100, RL: 0x800, DC: 0x4000, URX: 0x8000,
  SI: 0x10000, DPE: 0x40000, DT: 0x400000, UPE: 0x800000,
});

/** A catalogued error key. */
export type ErrorCode = keyof typeof ERRORS;

/** The one error type of the data plane: carries its catalogue entry and a message for logs. */
export class ProxyError extends Error {
  readonly kind: ErrorKind;

  constructor(code: ErrorCode, message?: string, options?: { cause?: unknown }) {
    super(message ?? ERRORS[code].body, options);
    this.kind = ERRORS[code];
    this.name = 'ProxyError';
  }

  /** The stable code, e.g. "UPSTREAM_TIMEOUT". */
  get code(): string {
    return this.kind.code;
  }
}
