/**
 * The `env.proxy_*` host functions, as Envoy implements them (docs/wasm.md lists each with its test), plus WASI
 * under both module names and the lenient AssemblyScript and Emscripten shims. This file has the stream-facing
 * calls (maps, buffers, replies, continues, http calls); state-functions.ts has shared data, queues, metrics,
 * properties and foreign functions.
 */
import { Buffer } from 'node:buffer';
import { BufferType, MapType, Status, StreamType } from './abi.ts';
import { decodePairs, encodePairs } from './pairs.ts';
import { guestIo, stateFunctions } from './state-functions.ts';
import { headerBytes } from './properties.ts';
import { WASI_ALLOWED_AT_START, WASI_FUNCTIONS, wasiImports } from './wasi.ts';
import type { ContextState } from './context.ts';
import { VmFailure, type WasmVm } from './vm.ts';
import { HeaderMap, checkHeader } from '../../core/headers.ts';
import type { LogLevel } from '../contract.ts';

const LEVELS: LogLevel[] = ['trace', 'debug', 'info', 'warn', 'error', 'critical'];

type Fn = (...args: any[]) => number | void;

/** Builds the import object for one VM. */
export function hostImports(vm: WasmVm): WebAssembly.Imports {
  const env = envFunctions(vm);
  const guarded: Record<string, Fn> = {};
  for (const [name, fn] of Object.entries(env)) {
    guarded[name] = name === 'proxy_log' || !name.startsWith('proxy_') ? fn : startGuard(vm, name, fn);
  }
  const wasi = wasiImports({ bytes: () => vm.bytes(), view: () => vm.view(), log: (level, m) => vm.log(level, m), environment: vm.options.environment });
  for (const name of Object.keys(wasi)) if (!WASI_ALLOWED_AT_START.has(name) && name !== 'proc_exit') wasi[name] = startGuard(vm, name, wasi[name]);
  return { env: guarded, wasi_snapshot_preview1: wasi, wasi_unstable: wasi };
}

/** Names of every `env` import the host provides. */
export const ENV_FUNCTION_NAMES: ReadonlySet<string> = new Set(Object.keys(envFunctions({ options: {}, abi: '0.2.1' } as unknown as WasmVm)));

/**
 * Checks a module's imports against what the host provides; throws naming the first unknown import.
 * Done in the main thread at load time so that a bad module fails the config, not a worker.
 */
export function checkImports(module: WebAssembly.Module): void {
  for (const imp of WebAssembly.Module.imports(module)) {
    const known = imp.kind === 'function' && (imp.module === 'env' ? ENV_FUNCTION_NAMES.has(imp.name) : (imp.module === 'wasi_snapshot_preview1' || imp.module === 'wasi_unstable') && (WASI_FUNCTIONS as readonly string[]).includes(imp.name));
    if (!known) throw new Error(`Cannot load Wasm module: missing import "${imp.module}.${imp.name}" (${imp.kind}); weir provides the Proxy-Wasm env functions and WASI preview1`);
  }
  const exports = new Set(WebAssembly.Module.exports(module).map((e) => e.name));
  if (!exports.has('memory')) throw new Error('Cannot load Wasm module: it exports no memory named "memory"');
  if (!exports.has('malloc') && !exports.has('proxy_on_memory_allocate')) throw new Error('Cannot load Wasm module: it exports neither malloc nor proxy_on_memory_allocate');
}

function startGuard(vm: WasmVm, name: string, fn: Fn): Fn {
  // Fixed arity, no rest or spread: this wrapper is on every host call's path. 12 is the most any host call takes.
  return function guarded(a: any, b: any, c: any, d: any, e: any, f: any, g: any, h: any, i: any, j: any, k: any, l: any) {
    if (vm.starting) throw new VmFailure('start', `Wasm module made the restricted host call "${name}" while starting (restricted_callback)`);
    return fn(a, b, c, d, e, f, g, h, i, j, k, l);
  };
}

function streamOf(vm: WasmVm): ContextState | null {
  const ctx = vm.effective;
  return ctx !== null && ctx.callbacks !== null ? ctx : null;
}

function mapOf(ctx: ContextState | null, type: number): HeaderMap | null {
  if (ctx === null) return null;
  switch (type) {
    case MapType.HTTP_REQUEST_HEADERS:
      return ctx.requestHeaders();
    case MapType.HTTP_RESPONSE_HEADERS:
      return ctx.responseHeaders();
    case MapType.HTTP_REQUEST_TRAILERS:
    case MapType.HTTP_RESPONSE_TRAILERS:
      return ctx.maps[type];
    case MapType.HTTP_CALL_RESPONSE_HEADERS:
      return ctx.callResponse?.headers ?? null;
    case MapType.HTTP_CALL_RESPONSE_TRAILERS:
      return ctx.callResponse?.trailers ?? null;
    default:
      return null;
  }
}

function bufferOf(ctx: ContextState | null, type: number): Uint8Array | undefined {
  if (ctx === null) return undefined;
  switch (type) {
    case BufferType.HTTP_REQUEST_BODY:
      return ctx.requestBody?.data;
    case BufferType.HTTP_RESPONSE_BODY:
      return ctx.responseBody?.data;
    case BufferType.HTTP_CALL_RESPONSE_BODY:
      return ctx.callResponse?.body;
    case BufferType.VM_CONFIGURATION:
      return ctx.vmConfiguration ?? undefined;
    case BufferType.PLUGIN_CONFIGURATION:
      return ctx.pluginConfiguration ?? undefined;
    default:
      return undefined;
  }
}

function envFunctions(vm: WasmVm): Record<string, Fn> {
  const opts = vm.options;
  const v01 = vm.abi === '0.1.0';
  const io = guestIo(vm);
  const { str, ok, u32, u64 } = io;
  const hstr = (ptr: number, len: number): string | null => vm.readHeaderString(ptr, len);
  const resume = (direction: 'request' | 'response'): number => {
    const ctx = streamOf(vm);
    if (ctx === null) return Status.BAD_ARGUMENT;
    if (direction === 'request') ctx.resumeRequest = true;
    else ctx.resumeResponse = true;
    vm.touched.add(ctx);
    return Status.OK;
  };
  /** The map of `type` if the effective context may change it, else null (BAD_ARGUMENT). */
  const writableMap = (type: number): HeaderMap | null => {
    const map = mapOf(vm.effective, type);
    return map === null || type >= MapType.HTTP_CALL_RESPONSE_HEADERS || vm.effective!.logPhase ? null : map;
  };
  /** Called once a map changed. */
  const changed = (type: number): number => {
    // Envoy clears the route cache whenever a Wasm filter changes the request headers.
    if (type === MapType.HTTP_REQUEST_HEADERS) vm.effective!.callbacks?.clearRouteCache();
    return Status.OK;
  };
  /** One change to a map (no closure per call: this is on every header write). */
  const changeMap = (type: number, change: 'add' | 'replace' | 'remove', key: string, value: string): number => {
    const map = writableMap(type);
    if (map === null) return Status.BAD_ARGUMENT;
    try {
      if (change === 'add') map.add(key, value);
      else if (change === 'replace') map.set(key, value);
      else map.remove(key);
    } catch {
      return Status.BAD_ARGUMENT;
    }
    return changed(type);
  };

  return {
    proxy_log(level: number, ptr: number, size: number): number {
      if (level < 0 || level > 5) return Status.BAD_ARGUMENT;
      const message = str(ptr, size);
      if (message === null) return Status.INVALID_MEMORY_ACCESS;
      vm.log(LEVELS[level], message);
      return Status.OK;
    },
    proxy_get_log_level: (ptr: number) => u32(ptr, 2),
    proxy_get_current_time_nanoseconds: (ptr: number) => u64(ptr, BigInt(Date.now()) * 1_000_000n),
    proxy_set_tick_period_milliseconds(ms: number): number {
      const root = vm.effective === null ? undefined : vm.context(vm.effective.rootId);
      if (root === undefined) return Status.BAD_ARGUMENT;
      vm.setTick(root, ms >>> 0);
      return Status.OK;
    },
    proxy_get_configuration(ptrPtr: number, sizePtr: number): number {
      const ctx = vm.effective;
      const config = ctx?.vmConfiguration ?? ctx?.pluginConfiguration ?? null;
      return ok(vm.writeResult(ptrPtr, sizePtr, config));
    },
    proxy_get_buffer_bytes(type: number, start: number, max: number, ptrPtr: number, sizePtr: number): number {
      if (type < 0 || type > BufferType.CALL_DATA) return Status.BAD_ARGUMENT;
      // proxy-wasm-cpp-host adds start and max in 64 bits, so 32-bit arguments never overflow: the slice is clamped.
      start >>>= 0;
      max >>>= 0;
      const buf = bufferOf(vm.effective, type);
      if (buf === undefined) return Status.NOT_FOUND;
      return ok(vm.writeResult(ptrPtr, sizePtr, buf.subarray(Math.min(start, buf.length), Math.min(buf.length, start + max))));
    },
    proxy_get_buffer_status(type: number, lengthPtr: number, flagsPtr: number): number {
      if (type < 0 || type > BufferType.CALL_DATA) return Status.BAD_ARGUMENT;
      const buf = bufferOf(vm.effective, type);
      if (buf === undefined) return Status.NOT_FOUND;
      const r = u32(lengthPtr, buf.length);
      return r === Status.OK ? u32(flagsPtr, 0) : r;
    },
    proxy_set_buffer_bytes(type: number, start: number, size: number, dataPtr: number, dataSize: number): number {
      const ctx = vm.effective;
      // Configuration and call-response buffers are immutable; the only mutable buffers are the bodies.
      if (type !== BufferType.HTTP_REQUEST_BODY && type !== BufferType.HTTP_RESPONSE_BODY) return Status.BAD_ARGUMENT;
      const chunk = type === BufferType.HTTP_REQUEST_BODY ? ctx?.requestBody : ctx?.responseBody;
      if (chunk == null) return Status.NOT_FOUND;
      const data = vm.read(dataPtr, dataSize);
      if (data === null) return Status.INVALID_MEMORY_ACCESS;
      start >>>= 0;
      size >>>= 0;
      const old = chunk.data;
      if (start === 0) chunk.data = Buffer.concat([data, old.subarray(Math.min(size, old.length))]);
      else if (start >= old.length) chunk.data = Buffer.concat([old, data]);
      else return Status.BAD_ARGUMENT;
      return Status.OK;
    },
    proxy_get_header_map_pairs(type: number, ptrPtr: number, sizePtr: number): number {
      if (type < 0 || type > MapType.HTTP_CALL_RESPONSE_TRAILERS) return Status.BAD_ARGUMENT;
      const map = mapOf(vm.effective, type);
      return ok(vm.writeResult(ptrPtr, sizePtr, map === null ? null : encodePairs([...map])));
    },
    proxy_set_header_map_pairs(type: number, ptr: number, size: number): number {
      const bytes = vm.read(ptr, size);
      if (bytes === null) return Status.INVALID_MEMORY_ACCESS;
      const pairs = decodePairs(bytes);
      if (pairs === undefined) return Status.BAD_ARGUMENT;
      const map = writableMap(type);
      if (map === null || map.frozen) return Status.BAD_ARGUMENT;
      // Every pair is checked before the map changes: a refused call leaves the headers as they were.
      try {
        for (const [k, v] of pairs) checkHeader(k.toLowerCase(), v);
      } catch {
        return Status.BAD_ARGUMENT;
      }
      map.clear();
      for (const [k, v] of pairs) map.add(k, v);
      return changed(type);
    },
    proxy_get_header_map_size(type: number, sizePtr: number): number {
      const map = mapOf(vm.effective, type);
      if (map === null) return Status.BAD_ARGUMENT;
      return u32(sizePtr, headerBytes(map));
    },
    proxy_get_header_map_value(type: number, kPtr: number, kSize: number, vPtrPtr: number, vSizePtr: number): number {
      const key = hstr(kPtr, kSize);
      if (key === null) return Status.INVALID_MEMORY_ACCESS;
      const map = mapOf(vm.effective, type);
      if (map === null && !vm.effective?.logPhase) return Status.BAD_ARGUMENT;
      const value = map?.get(key.toLowerCase());
      if (value === undefined) return v01 ? ok(vm.writeResult(vPtrPtr, vSizePtr, null)) : Status.NOT_FOUND;
      return ok(vm.writeStringResult(vPtrPtr, vSizePtr, value, 'latin1'));
    },
    proxy_add_header_map_value(type: number, kPtr: number, kSize: number, vPtr: number, vSize: number): number {
      const key = hstr(kPtr, kSize);
      const value = hstr(vPtr, vSize);
      if (key === null || value === null) return Status.INVALID_MEMORY_ACCESS;
      return changeMap(type, 'add', key, value);
    },
    proxy_replace_header_map_value(type: number, kPtr: number, kSize: number, vPtr: number, vSize: number): number {
      const key = hstr(kPtr, kSize);
      const value = hstr(vPtr, vSize);
      if (key === null || value === null) return Status.INVALID_MEMORY_ACCESS;
      return changeMap(type, 'replace', key, value);
    },
    proxy_remove_header_map_value(type: number, kPtr: number, kSize: number): number {
      const key = hstr(kPtr, kSize);
      if (key === null) return Status.INVALID_MEMORY_ACCESS;
      return changeMap(type, 'remove', key, '');
    },
    proxy_continue_request: () => resume('request'),
    proxy_continue_response: () => resume('response'),
    proxy_clear_route_cache(): number {
      streamOf(vm)?.callbacks?.clearRouteCache();
      return Status.OK;
    },
    proxy_continue_stream(type: number): number {
      if (type === StreamType.HTTP_REQUEST) return resume('request');
      if (type === StreamType.HTTP_RESPONSE) return resume('response');
      // DOWNSTREAM continues reading a TCP connection in Envoy; on an HTTP stream it is a no-op that succeeds.
      if (type === StreamType.DOWNSTREAM) return Status.OK;
      return type > StreamType.UPSTREAM ? Status.BAD_ARGUMENT : Status.UNIMPLEMENTED;
    },
    proxy_close_stream(type: number): number {
      if (type > StreamType.UPSTREAM) return Status.BAD_ARGUMENT;
      const ctx = streamOf(vm);
      if (ctx === null) return Status.BAD_ARGUMENT;
      ctx.deferredClose = true;
      vm.touched.add(ctx);
      return Status.OK;
    },
    proxy_send_local_response(status: number, dPtr: number, dSize: number, bPtr: number, bSize: number, hPtr: number, hSize: number, grpc: number): number {
      const ctx = streamOf(vm);
      if (ctx === null) return Status.BAD_ARGUMENT;
      const details = str(dPtr, dSize);
      const body = vm.read(bPtr, bSize);
      const headerBytes = vm.read(hPtr, hSize);
      if (details === null || body === null || headerBytes === null) return Status.INVALID_MEMORY_ACCESS;
      const headers = decodePairs(headerBytes);
      if (headers === undefined) return Status.BAD_ARGUMENT;
      ctx.deferredReply = { status: status >>> 0, body: Buffer.from(body), headers, details, grpcStatus: grpc | 0 };
      vm.touched.add(ctx);
      return Status.OK;
    },
    proxy_get_status(codePtr: number, msgPtrPtr: number, msgSizePtr: number): number {
      const r = u32(codePtr, vm.lastStatus.code);
      if (r !== Status.OK) return r;
      return ok(vm.writeResult(msgPtrPtr, msgSizePtr, vm.lastStatus.message === '' ? null : Buffer.from(vm.lastStatus.message)));
    },
    proxy_http_call(uPtr: number, uSize: number, hPtr: number, hSize: number, bPtr: number, bSize: number, tPtr: number, tSize: number, timeout: number, tokenPtr: number): number {
      const cluster = str(uPtr, uSize);
      const hBytes = vm.read(hPtr, hSize);
      const body = vm.read(bPtr, bSize);
      const tBytes = vm.read(tPtr, tSize);
      if (cluster === null || hBytes === null || body === null || tBytes === null) return Status.INVALID_MEMORY_ACCESS;
      const headers = decodePairs(hBytes);
      const trailers = decodePairs(tBytes);
      if (headers === undefined || trailers === undefined) return Status.BAD_ARGUMENT;
      if (!opts.host.clusterNames.has(cluster)) return Status.BAD_ARGUMENT;
      let map: HeaderMap;
      let trailerMap: HeaderMap | undefined;
      try {
        map = HeaderMap.fromPairs(headers);
        trailerMap = trailers.length > 0 ? HeaderMap.fromPairs(trailers) : undefined;
      } catch {
        return Status.BAD_ARGUMENT;
      }
      if (!map.has(':method') || !map.has(':path') || !map.has(':authority')) return Status.BAD_ARGUMENT;
      const caller = vm.effective;
      if (caller === null || !vm.inBounds(tokenPtr, 4)) return Status.BAD_ARGUMENT;
      const token = vm.nextToken++;
      vm.view().setUint32(tokenPtr, token, true);
      vm.startHttpCall(caller, token, cluster, {
        headers: map,
        body: body.length > 0 ? Buffer.from(body) : undefined,
        trailers: trailerMap,
      }, timeout >>> 0);
      return Status.OK;
    },
    proxy_grpc_call: () => Status.PARSE_FAILURE,
    proxy_grpc_stream: () => Status.PARSE_FAILURE,
    proxy_grpc_send(token: number, mPtr: number, mSize: number): number {
      if (!vm.inBounds(mPtr, mSize)) return Status.INVALID_MEMORY_ACCESS;
      // Envoy: odd tokens are calls (sending on one is BAD_ARGUMENT), even tokens streams; none can exist here.
      return (token & 1) === 1 ? Status.BAD_ARGUMENT : Status.NOT_FOUND;
    },
    proxy_grpc_cancel: () => Status.NOT_FOUND,
    proxy_grpc_close: () => Status.NOT_FOUND,
    proxy_set_effective_context(id: number): number {
      const ctx = vm.context(id >>> 0);
      if (ctx === undefined || ctx.deleted) return Status.BAD_ARGUMENT;
      vm.effective = ctx;
      return Status.OK;
    },
    proxy_done(): number {
      // Only a root context whose on_done answered false is waiting for this (cpp-host: NOT_FOUND otherwise).
      const finish = vm.effective?.onProxyDone;
      if (!finish) return Status.NOT_FOUND;
      vm.effective!.onProxyDone = null;
      queueMicrotask(finish);
      return Status.OK;
    },
    ...stateFunctions(vm, io),
    envoy_resolve_dns: () => Status.UNIMPLEMENTED,
    pthread_equal: (a: number, b: number) => (a === b ? 1 : 0),
    emscripten_notify_memory_growth: () => undefined,
    abort(msgPtr: number, filePtr: number, line: number, column: number): void {
      throw new VmFailure('trap', `Wasm module aborted at ${asString(vm, filePtr) ?? '?'}:${line}:${column}: ${asString(vm, msgPtr) ?? ''}`);
    },
    seed: () => Date.now(),
    trace(msgPtr: number, n: number, ...values: number[]): void {
      vm.log('trace', `${asString(vm, msgPtr) ?? ''} ${values.slice(0, n).join(' ')}`.trim());
    },
  };
}

/** Reads an AssemblyScript string (UTF-16, length in bytes at ptr - 4); undefined when out of bounds. */
function asString(vm: WasmVm, ptr: number): string | undefined {
  if (ptr === 0 || !vm.inBounds(ptr - 4, 4)) return undefined;
  const len = vm.view().getUint32(ptr - 4, true);
  const bytes = vm.read(ptr, Math.min(len, 4096));
  return bytes === null ? undefined : Buffer.from(bytes).toString('utf16le');
}
