/** Proxy-Wasm ABI constants (docs/wasm.md; the numbering is Envoy's and cpp-host's). */

/** `proxy_status_t` / WasmResult codes returned by host functions. */
export const Status = Object.freeze({
  OK: 0,
  NOT_FOUND: 1,
  BAD_ARGUMENT: 2,
  SERIALIZATION_FAILURE: 3,
  PARSE_FAILURE: 4,
  BAD_EXPRESSION: 5,
  INVALID_MEMORY_ACCESS: 6,
  EMPTY: 7,
  CAS_MISMATCH: 8,
  RESULT_MISMATCH: 9,
  INTERNAL_FAILURE: 10,
  BROKEN_CONNECTION: 11,
  UNIMPLEMENTED: 12,
});

/** `proxy_buffer_type_t`. */
export const BufferType = Object.freeze({
  HTTP_REQUEST_BODY: 0,
  HTTP_RESPONSE_BODY: 1,
  DOWNSTREAM_DATA: 2,
  UPSTREAM_DATA: 3,
  HTTP_CALL_RESPONSE_BODY: 4,
  GRPC_RECEIVE_BUFFER: 5,
  VM_CONFIGURATION: 6,
  PLUGIN_CONFIGURATION: 7,
  CALL_DATA: 8,
});

/** `proxy_map_type_t`. */
export const MapType = Object.freeze({
  HTTP_REQUEST_HEADERS: 0,
  HTTP_REQUEST_TRAILERS: 1,
  HTTP_RESPONSE_HEADERS: 2,
  HTTP_RESPONSE_TRAILERS: 3,
  GRPC_CALL_INITIAL_METADATA: 4,
  GRPC_CALL_TRAILING_METADATA: 5,
  HTTP_CALL_RESPONSE_HEADERS: 6,
  HTTP_CALL_RESPONSE_TRAILERS: 7,
});

/** `proxy_stream_type_t` (0.2.x). */
export const StreamType = Object.freeze({ HTTP_REQUEST: 0, HTTP_RESPONSE: 1, DOWNSTREAM: 2, UPSTREAM: 3 });

/** `proxy_metric_type_t`. */
export const MetricKind = Object.freeze({ COUNTER: 0, GAUGE: 1, HISTOGRAM: 2 });

/** WASI errno values the host returns. */
export const Errno = Object.freeze({ SUCCESS: 0, BADF: 8, FAULT: 21, INVAL: 28, NOENT: 44, NOSYS: 52, NOTSUP: 58, NOTCAPABLE: 76 });

/** ABI versions, chosen by the module's marker export. */
export type AbiVersion = '0.1.0' | '0.2.0' | '0.2.1';

/** Reads the ABI version from the module's marker export, or throws naming what is missing. */
export function abiVersionOf(module: WebAssembly.Module): AbiVersion {
  const names = new Set(WebAssembly.Module.exports(module).map((e) => e.name));
  if (names.has('proxy_abi_version_0_2_1')) return '0.2.1';
  if (names.has('proxy_abi_version_0_2_0')) return '0.2.0';
  if (names.has('proxy_abi_version_0_1_0')) return '0.1.0';
  throw new Error('Cannot load Wasm module: missing or unknown Proxy-Wasm ABI version (no proxy_abi_version_0_1_0, _0_2_0 or _0_2_1 export)');
}
