/**
 * One Proxy-Wasm VM in one worker thread: an instance of a compiled module, its contexts, and the machinery every
 * callback goes through (effective context, fuel, failure). Host functions live in host-functions.ts.
 */
import { Buffer } from 'node:buffer';
import { MetricKind, Status, type AbiVersion } from './abi.ts';
import { ContextState, type PluginInfo } from './context.ts';
import { FUEL_EXPORT, FUEL_SETTER_EXPORT, START_EXPORT } from './instrument.ts';
import { HeaderStrings } from './header-strings.ts';
import { hostImports } from './host-functions.ts';
import { ProcExit } from './wasi.ts';
import type { FactoryContext, FilterCallbacks, HttpCallRequest, LogLevel } from '../contract.ts';
import type { Distribution, Value } from '../../telemetry/metrics.ts';
import type { SharedStore } from '../../core/shared-store.ts';

/** What a VM needs from its worker. */
export interface VmOptions {
  module: WebAssembly.Module;
  abi: AbiVersion;
  sha256: string;
  vmId: string;
  vmConfiguration: Uint8Array;
  environment: Readonly<Record<string, string>>;
  /** Fuel per callback: function entries plus loop iterations. */
  fuel: number;
  store: SharedStore;
  /** The worker's factory context of the first filter that built this VM (metrics, logs, root http calls, clusters). */
  host: Pick<FactoryContext, 'metrics' | 'httpCall' | 'clusterNames' | 'log' | 'workerIndex'>;
}

/** Why a VM stopped: a trap, a fuel overrun, proc_exit, or a start or configure failure. */
/** Metric kinds by `proxy_metric_type_t`, for names. */
const KIND_NAMES = ['counter', 'gauge', 'histogram'];

/** The longest delay Node's timers take. */
const MAX_TIMER_MS = 2 ** 31 - 1;

export class VmFailure extends Error {
  readonly reason: 'trap' | 'cpu-budget' | 'exit' | 'start';
  constructor(reason: VmFailure['reason'], message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'VmFailure';
    this.reason = reason;
  }
}

/** A metric defined by the module. */
export interface ModuleMetric {
  kind: number;
  child: Value | Distribution;
}

/** A callback exported by the module; every Proxy-Wasm callback takes i32 parameters only. */
export type Callback = (...args: number[]) => unknown;

/** The stream callbacks a module exports, looked up once per VM; null for one it does not export. */
export interface StreamExports {
  readonly contextCreate: Callback | null;
  readonly requestHeaders: Callback | null;
  readonly requestBody: Callback | null;
  readonly requestTrailers: Callback | null;
  readonly responseHeaders: Callback | null;
  readonly responseBody: Callback | null;
  readonly responseTrailers: Callback | null;
  readonly done: Callback | null;
  readonly log: Callback | null;
  readonly delete: Callback | null;
}

/** A running VM. Long-lived: one per (vm_id, code, vm_configuration) per worker, shared by its plugins. */
export class WasmVm {
  readonly options: VmOptions;
  readonly abi: AbiVersion;
  /** Root contexts by id: few and long-lived. */
  readonly #roots = new Map<number, ContextState>();
  /**
   * Live stream contexts by slot, a slot reused once its stream is deleted. Not a Map: a Map rehashes as streams come
   * and go, and its discarded tables keep the contexts that were live then (and with them their requests' headers,
   * buffers and stream objects) until a full GC, so that most request objects were promoted to the old generation.
   */
  readonly #streams: (ContextState | null)[] = [];
  readonly #freeSlots: number[] = [];
  /** The context that host calls act on during the current VM call. */
  effective: ContextState | null = null;
  /** Contexts whose deferred actions must be applied after the current top-level call. */
  readonly touched = new Set<ContextState>();
  /** The last callout status read by `proxy_get_status`. */
  lastStatus = { code: 0, message: '' };
  readonly metrics: ModuleMetric[] = [];
  readonly tickTimers = new Map<number, ReturnType<typeof setInterval>>();
  readonly httpCalls = new Map<number, ContextState>();
  nextToken = 1;
  /** True while the module starts: only a few host calls are allowed. */
  starting = true;
  failure: VmFailure | null = null;
  vmStarted = false;
  #nextContextId = 1;
  #depth = 0;
  readonly #instance: WebAssembly.Instance;
  readonly #exports: Record<string, any>;
  readonly #fuel: WebAssembly.Global | undefined;
  readonly #fuelSetter: ((fuel: number) => void) | undefined;
  readonly #memory: WebAssembly.Memory;
  #bytes: Uint8Array;
  #buf: Buffer;
  #view: DataView;
  readonly #headerStrings = new HeaderStrings();
  /** The stream callbacks the module exports. */
  readonly streamExports: StreamExports;

  constructor(options: VmOptions) {
    this.options = options;
    this.abi = options.abi;
    const imports = hostImports(this);
    for (const imp of WebAssembly.Module.imports(options.module)) {
      const provided = (imports as any)[imp.module]?.[imp.name];
      if (provided === undefined) throw new VmFailure('start', `Cannot load Wasm module: missing import "${imp.module}.${imp.name}" (${imp.kind})`);
    }
    try {
      this.#instance = new WebAssembly.Instance(options.module, imports);
    } catch (err) {
      throw this.#asFailure(err, 'start');
    }
    this.#exports = this.#instance.exports as Record<string, any>;
    this.#fuel = this.#exports[FUEL_EXPORT];
    this.#fuelSetter = this.#exports[FUEL_SETTER_EXPORT];
    this.streamExports = {
      contextCreate: this.#callback('proxy_on_context_create'),
      requestHeaders: this.#callback('proxy_on_request_headers'),
      requestBody: this.#callback('proxy_on_request_body'),
      requestTrailers: this.#callback('proxy_on_request_trailers'),
      responseHeaders: this.#callback('proxy_on_response_headers'),
      responseBody: this.#callback('proxy_on_response_body'),
      responseTrailers: this.#callback('proxy_on_response_trailers'),
      done: this.#callback('proxy_on_done'),
      log: this.#callback('proxy_on_log'),
      delete: this.#callback('proxy_on_delete'),
    };
    const memory = this.#exports.memory;
    if (!(memory instanceof WebAssembly.Memory)) throw new VmFailure('start', 'Cannot load Wasm module: it exports no memory named "memory"');
    this.#memory = memory;
    this.#bytes = new Uint8Array(memory.buffer);
    this.#buf = Buffer.from(memory.buffer);
    this.#view = new DataView(memory.buffer);
    if (typeof this.#exports.proxy_on_memory_allocate !== 'function' && typeof this.#exports.malloc !== 'function') {
      throw new VmFailure('start', 'Cannot load Wasm module: it exports neither malloc nor proxy_on_memory_allocate');
    }
    try {
      this.#setFuel();
      if (typeof this.#exports[START_EXPORT] === 'function') this.#exports[START_EXPORT]();
      if (typeof this.#exports._initialize === 'function') {
        this.#exports._initialize();
        if (typeof this.#exports.main === 'function') this.#exports.main(0, 0);
      } else if (typeof this.#exports._start === 'function') this.#exports._start();
    } catch (err) {
      throw this.#asFailure(err, 'start');
    } finally {
      this.starting = false;
    }
  }

  /** Logs a line: with the stream's callbacks when a stream context is effective, else through the worker. */
  log(level: LogLevel, message: string): void {
    const ctx = this.effective;
    if (ctx?.callbacks) ctx.callbacks.log(level, message);
    else if (ctx) ctx.plugin.log(level, message);
    else this.options.host.log(level, message);
  }

  /** The guest memory as bytes (refreshed after the memory grew). */
  bytes(): Uint8Array {
    // Growth detaches the old buffer (length 0); checking that avoids the memory.buffer getter on every call.
    if (this.#bytes.byteLength === 0) {
      this.#bytes = new Uint8Array(this.#memory.buffer);
      this.#buf = Buffer.from(this.#memory.buffer);
      this.#view = new DataView(this.#memory.buffer);
    }
    return this.#bytes;
  }

  /** The guest memory as a DataView. */
  view(): DataView {
    this.bytes();
    return this.#view;
  }

  /** Copies `len` bytes at `ptr` out of the guest; null when the range is outside memory. */
  read(ptr: number, len: number): Uint8Array | null {
    const bytes = this.bytes();
    ptr >>>= 0;
    len >>>= 0;
    if (ptr + len > bytes.length) return null;
    return bytes.slice(ptr, ptr + len);
  }

  /** Reads a UTF-8 string (no copy of the bytes); null when outside memory. */
  readString(ptr: number, len: number): string | null {
    const bytes = this.bytes();
    ptr >>>= 0;
    len >>>= 0;
    if (ptr + len > bytes.length) return null;
    return this.#buf.toString('utf8', ptr, ptr + len);
  }

  /**
   * Reads a header name or value: header strings hold one byte per character (latin1, as the HTTP codec decodes
   * them), so the guest sees and writes the bytes that are on the wire, as with Envoy. Null when outside memory.
   */
  readHeaderString(ptr: number, len: number): string | null {
    const bytes = this.bytes();
    ptr >>>= 0;
    len >>>= 0;
    if (ptr + len > bytes.length) return null;
    return this.#headerStrings.read(this.#buf, ptr, len);
  }

  /** Like `writeResult` for a string, encoded straight into guest memory (`latin1` for header strings). */
  writeStringResult(ptrPtr: number, sizePtr: number, value: string, encoding: 'utf8' | 'latin1' = 'utf8'): boolean {
    if (!this.inBounds(ptrPtr, 4) || !this.inBounds(sizePtr, 4)) return false;
    const latin1 = encoding === 'latin1';
    const size = latin1 ? value.length : Buffer.byteLength(value, encoding);
    let ptr = 0;
    if (size > 0) {
      ptr = this.allocate(size);
      if (ptr === 0 || !this.inBounds(ptr, size)) return false;
      const bytes = this.bytes();
      // A short header value is copied here rather than by Buffer#write, whose call costs more than the loop.
      if (latin1 && size <= 64) for (let i = 0; i < size; i++) bytes[ptr + i] = value.charCodeAt(i);
      else this.#buf.write(value, ptr, size, encoding);
    }
    const view = this.view();
    view.setUint32(ptrPtr, ptr, true);
    view.setUint32(sizePtr, size, true);
    return true;
  }

  /** Whether `[ptr, ptr+len)` is inside memory. */
  inBounds(ptr: number, len: number): boolean {
    return (ptr >>> 0) + (len >>> 0) <= this.bytes().length;
  }

  /**
   * Copies data into memory allocated by the guest and writes its address and size at `ptrPtr` and `sizePtr`
   * (0 and 0 for empty data, as cpp-host does). False when allocation or the pointers are invalid.
   */
  writeResult(ptrPtr: number, sizePtr: number, data: Uint8Array | null): boolean {
    if (!this.inBounds(ptrPtr, 4) || !this.inBounds(sizePtr, 4)) return false;
    let ptr = 0;
    const size = data === null ? 0 : data.length;
    if (size > 0) {
      ptr = this.allocate(size);
      if (ptr === 0 || !this.inBounds(ptr, size)) return false;
      this.bytes().set(data!, ptr);
    }
    const view = this.view();
    view.setUint32(ptrPtr, ptr, true);
    view.setUint32(sizePtr, size, true);
    return true;
  }

  /** Allocates exactly `size` bytes in the guest (proxy_on_memory_allocate preferred, then malloc); 0 on failure. */
  allocate(size: number): number {
    const fn = this.#exports.proxy_on_memory_allocate ?? this.#exports.malloc;
    return fn(size) >>> 0;
  }

  /** Creates a context: the root context of a plugin (no callbacks), or a stream context of a root. */
  newContext(plugin: PluginInfo, rootId: number | null, callbacks: FilterCallbacks | null): ContextState {
    const id = this.#nextContextId++;
    const ctx = new ContextState({ id, rootId: rootId ?? id, plugin, callbacks });
    if (rootId === null) this.#roots.set(id, ctx);
    else {
      ctx.slot = this.#freeSlots.pop() ?? this.#streams.length;
      this.#streams[ctx.slot] = ctx;
    }
    return ctx;
  }

  /** The live (not deleted) context with `id`, or undefined. */
  context(id: number): ContextState | undefined {
    const root = this.#roots.get(id);
    if (root !== undefined) return root;
    // A scan: only proxy_set_effective_context looks streams up by id, and live streams are few per worker.
    for (const ctx of this.#streams) if (ctx !== null && ctx.id === id) return ctx;
    return undefined;
  }

  /** Forgets a context once it is deleted; its id no longer resolves. */
  deleteContext(ctx: ContextState): void {
    if (ctx.slot < 0) {
      this.#roots.delete(ctx.id);
    } else if (this.#streams[ctx.slot] === ctx) {
      this.#streams[ctx.slot] = null;
      this.#freeSlots.push(ctx.slot);
    }
  }

  /**
   * Calls an exported callback with `ctx` as the effective context and a fresh fuel budget. A missing export returns
   * `fallback`. A trap, overrun or proc_exit marks the VM failed and throws the VmFailure.
   */
  call(ctx: ContextState, name: string, args: readonly number[], fallback = 0): number {
    if (this.failure !== null) throw this.failure;
    const fn = this.#callback(name);
    if (fn === null) return fallback;
    return this.invoke(ctx, fn, args[0], args[1], args[2], args[3], args[4]);
  }

  /**
   * Calls `fn`, an exported callback, as `call` does: the stream path's variant, without a lookup by name or an array
   * of arguments. Positional like the callback's parameters (at most five); those it does not declare are ignored.
   */
  invoke(ctx: ContextState, fn: Callback, a = 0, b = 0, c = 0, d = 0, e = 0): number {
    if (this.failure !== null) throw this.failure;
    const outer = this.#depth === 0;
    const saved = this.effective;
    this.effective = ctx;
    if (outer) this.#setFuel();
    this.#depth++;
    try {
      const result = fn(a, b, c, d, e);
      return typeof result === 'number' ? result >>> 0 : 0;
    } catch (err) {
      this.failure = this.#asFailure(err, 'trap');
      throw this.failure;
    } finally {
      this.#depth--;
      this.effective = saved;
      if (outer && this.touched.size > 0) this.#flushTouched(ctx);
    }
  }

  #callback(name: string): Callback | null {
    const fn = this.#exports[name];
    return typeof fn === 'function' ? fn : null;
  }

  /** Called when a VM call made outside stream hooks (timer, queue, http call response) fails. */
  onAsyncFailure: (failure: VmFailure, ctx: ContextState) => void = () => {};
  /** Properties set by root contexts (streams keep theirs in filter state). */
  readonly rootProperties = new Map<string, Uint8Array>();

  /** Sets (or with 0 clears) the tick timer of a root context. */
  setTick(root: ContextState, ms: number): void {
    const old = this.tickTimers.get(root.id);
    if (old !== undefined) clearInterval(old);
    this.tickTimers.delete(root.id);
    if (ms === 0) return;
    // Node's timers take at most 2^31 - 1 ms (about 24.8 days) and fire at once past it: a longer period is counted
    // in steps of that size.
    const step = Math.min(ms, MAX_TIMER_MS);
    let elapsed = 0;
    const timer = setInterval(() => {
      if (this.failure !== null || root.deleted) return clearInterval(timer);
      elapsed += step;
      if (elapsed < ms) return;
      elapsed = 0;
      this.#callOutside(root, 'proxy_on_tick', [root.id]);
    }, step);
    timer.unref();
    this.tickTimers.set(root.id, timer);
  }

  /** Sends an http call for `caller`; its response is delivered to the root id with `caller` effective, as Envoy does. */
  startHttpCall(caller: ContextState, token: number, cluster: string, request: HttpCallRequest, timeoutMs: number): void {
    const cb = caller.callbacks;
    const options = { timeoutMs };
    const pending = cb !== null ? cb.httpCall(cluster, request, options) : this.options.host.httpCall(cluster, request, options);
    this.httpCalls.set(token, caller);
    pending.then((res) => {
      if (!this.httpCalls.delete(token)) return;
      // The call belongs to the root context, as in Envoy: when the stream that made it has ended, the answer still
      // comes, through the root, so that the SDK forgets the token (its map of pending calls would grow otherwise).
      const target = caller.deleted ? this.#roots.get(caller.rootId) : caller;
      if (target === undefined || target.deleted) return;
      if (this.failure !== null) return target.owner?.failOutside(this.failure);
      const failed = res.failure !== undefined;
      // Envoy says "reset" for every failure (a timeout, a refused connection), and so does weir.
      this.lastStatus = failed ? { code: Status.BROKEN_CONNECTION, message: 'reset' } : { code: Status.OK, message: '' };
      target.callResponse = failed ? null : res;
      const counts = failed ? [0, 0, 0] : [Math.max(1, res.headers.size), res.body.length, res.trailers?.size ?? 0];
      try {
        this.#callOutside(target, 'proxy_on_http_call_response', [caller.rootId, token, ...counts]);
      } finally {
        target.callResponse = null;
      }
    });
  }

  /** Delivers one `proxy_on_queue_ready` to the root context that registered the queue. */
  queueReady(root: ContextState, queue: number): void {
    if (this.failure !== null || root.deleted) return;
    this.#callOutside(root, 'proxy_on_queue_ready', [root.id, queue]);
  }

  /** Declares a module metric in the worker's registry; returns its id, or -1 if the name is taken by another kind. */
  defineMetric(kind: number, name: string): number {
    const metricName = 'wasmcustom_' + name.replace(/[^a-zA-Z0-9_:]/g, '_');
    const help = `Proxy-Wasm metric "${name}"`;
    const registry = this.options.host.metrics;
    const make = (n: string): Value | Distribution =>
      kind === MetricKind.COUNTER ? registry.counter(n, help).labels() : kind === MetricKind.GAUGE ? registry.gauge(n, help).labels() : registry.histogram(n, help).labels();
    let child: Value | Distribution;
    try {
      child = make(metricName);
    } catch {
      // Envoy keeps counters, gauges and histograms apart, so a module may use one name for two kinds; Prometheus
      // cannot: the second kind gets its kind as a suffix (wasmcustom_<name>_gauge).
      try {
        child = make(`${metricName}_${KIND_NAMES[kind]}`);
      } catch {
        return -1;
      }
    }
    const existing = this.metrics.findIndex((m) => m.child === child);
    if (existing >= 0) return (existing << 2) | kind;
    this.metrics.push({ kind, child });
    return ((this.metrics.length - 1) << 2) | kind;
  }

  #callOutside(ctx: ContextState, name: string, args: number[]): void {
    try {
      this.call(ctx, name, args);
    } catch (err) {
      if (!(err instanceof VmFailure)) throw err;
      this.onAsyncFailure(err, ctx);
    }
  }

  /** Stops timers and forgets pending calls; the VM is no longer used. */
  dispose(): void {
    for (const t of this.tickTimers.values()) clearInterval(t);
    this.tickTimers.clear();
    this.httpCalls.clear();
  }

  #flushTouched(current: ContextState): void {
    const list = [...this.touched];
    this.touched.clear();
    for (const c of list) {
      if (c === current && c.inHook) continue;
      if (c.inHook) continue;
      c.flushDeferred();
    }
  }

  #setFuel(): void {
    if (this.#fuelSetter !== undefined) this.#fuelSetter(this.options.fuel);
    else if (this.#fuel !== undefined) this.#fuel.value = this.options.fuel;
  }

  #asFailure(err: unknown, fallback: VmFailure['reason']): VmFailure {
    if (err instanceof VmFailure) return err;
    if (err instanceof ProcExit) return new VmFailure('exit', err.message, { cause: err });
    const overrun = this.#fuel !== undefined && (this.#fuel.value as number) < 0;
    if (overrun) return new VmFailure('cpu-budget', `Wasm callback exceeded its CPU budget of ${this.options.fuel} steps`, { cause: err });
    const message = err instanceof Error ? err.message : String(err);
    return new VmFailure(err instanceof WebAssembly.RuntimeError || err instanceof RangeError ? 'trap' : fallback, `Wasm module trapped: ${message}`, { cause: err });
  }
}
