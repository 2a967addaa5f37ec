/**
 * The `type: wasm` filter: runs a Proxy-Wasm module (ABI 0.1.0, 0.2.0, 0.2.1) as Envoy does. `prepare` loads and
 * compiles the module once per process in the main thread; `factory` joins or starts the shared VM in each worker.
 * docs/wasm.md has the config keys and the compatibility matrix.
 */
import { Buffer } from 'node:buffer';
import type { FactoryContext, FilterDefinition, FilterFactory, PrepareContext } from '../contract.ts';
import type { AbiVersion } from './abi.ts';
import { moduleCacheStats, prepareModule, pendingDownload } from './module-cache.ts';
import { Plugin, type FailurePolicy } from './plugin.ts';
import { failedStreamFilter, wasmStream } from './stream.ts';

/** The config of one wasm filter, after validation. */
export interface WasmConfig {
  file?: string;
  url?: string;
  sha256?: string;
  root_id?: string;
  vm_id?: string;
  /** A string is passed as is; anything else as JSON. */
  configuration?: unknown;
  vm_configuration?: unknown;
  failure_policy?: FailurePolicy;
  /** WASI environment variables. */
  environment?: Record<string, string>;
  /** The VM's memory cap in MiB. */
  memory_limit_mb?: number;
  /** Steps (function entries and loop iterations) one callback may take. */
  cpu_budget?: number;
  fetch_timeout_ms?: number;
  /** Envoy ≥ 1.35: a paused header callback holds only the headers; body callbacks still arrive. */
  allow_on_headers_stop_iteration?: boolean;
}

/** What `prepare` hands to the workers: a compiled module, or why there is none. */
export type PreparedWasm =
  | { ok: true; module: WebAssembly.Module; sha256: string; abi: AbiVersion; size: number; compiled: boolean; loadMs: number; compilations: number; cacheHits: number }
  | { ok: false; error: string; compilations: number; cacheHits: number };

const DEFAULT_MEMORY_MB = 64;
const DEFAULT_CPU_BUDGET = 50_000_000;

const anyConfig = { anyOf: [{ type: 'string' }, { type: 'object' }, { type: 'array' }, { type: 'number' }, { type: 'boolean' }] };

const schema = {
  type: 'object',
  additionalProperties: false,
  properties: {
    file: { type: 'string', minLength: 1, description: 'Path of the .wasm file, relative to the config file' },
    url: { type: 'string', pattern: '^https?://', description: 'an http:// or https:// URL to download the module from (requires sha256)' },
    sha256: { type: 'string', pattern: '^[0-9a-fA-F]{64}$', description: 'the sha256 of the module as 64 hex digits' },
    root_id: { type: 'string', default: '', description: 'Selects the root context inside the module' },
    vm_id: { type: 'string', default: '', description: 'Filters with the same vm_id and code share one VM and its shared data' },
    configuration: { ...anyConfig, default: '', description: 'Plugin configuration: a string as is, anything else as JSON' },
    vm_configuration: { ...anyConfig, default: '', description: 'VM configuration passed to proxy_on_vm_start' },
    failure_policy: { enum: ['fail_closed', 'fail_open', 'fail_reload'], default: 'fail_closed' },
    environment: { type: 'object', additionalProperties: { type: 'string' }, default: {}, description: 'WASI environment variables' },
    memory_limit_mb: { type: 'integer', minimum: 1, maximum: 4096, default: DEFAULT_MEMORY_MB },
    cpu_budget: { type: 'integer', minimum: 1000, maximum: 2_000_000_000, default: DEFAULT_CPU_BUDGET, description: 'Function entries plus loop iterations allowed per callback' },
    fetch_timeout_ms: { type: 'integer', minimum: 1, default: 2_000, description: 'How long a config load waits for a download; a slower one goes on in the background and is applied when it lands' },
    allow_on_headers_stop_iteration: { type: 'boolean', default: false, description: 'A paused header callback holds only the headers (Envoy 1.35); default: headers and body' },
  },
  // A download must be verified. "file" xor "url" is checked by prepare, which can say it plainly.
  if: { required: ['url'] },
  then: { required: ['sha256'] },
};

function asBytes(value: unknown): Uint8Array {
  if (value === undefined || value === null) return new Uint8Array(0);
  return Buffer.from(typeof value === 'string' ? value : JSON.stringify(value));
}

const lastGood = new Map<string, PreparedWasm>();
/** Modules whose download will trigger a config re-apply when it lands. */
const reloadOnArrival = new Set<string>();

async function prepare(config: WasmConfig, ctx: PrepareContext): Promise<PreparedWasm> {
  if ((config.file === undefined) === (config.url === undefined)) throw new Error('Cannot load Wasm module: give exactly one of "file" and "url"');
  const memory = (config.memory_limit_mb ?? DEFAULT_MEMORY_MB) * 1024 * 1024;
  const source = { file: config.file, url: config.url, sha256: config.sha256, fetchTimeoutMs: config.fetch_timeout_ms };
  try {
    const m = await prepareModule(source, ctx.baseDir, memory);
    const stats = moduleCacheStats();
    const prepared: PreparedWasm = { ok: true, ...m, compilations: stats.compilations, cacheHits: stats.cacheHits };
    lastGood.set(`${ctx.path}\u0000${ctx.name}`, prepared);
    if (m.compiled) ctx.log('info', `Compiled Wasm module ${m.sha256.slice(0, 12)} (${m.size} bytes, ABI ${m.abi}) in ${m.loadMs.toFixed(1)} ms`);
    return prepared;
  } catch (err) {
    // A failed download never blocks the config: the last good module (or the failure policy) serves the filter.
    if (config.url === undefined) throw err;
    const previous = lastGood.get(`${ctx.path}\u0000${ctx.name}`);
    ctx.log('error', `${(err as Error).message}; ${previous?.ok ? 'keeping the last good module' : 'the failure policy answers its requests'}`);
    const pending = config.sha256 === undefined ? undefined : pendingDownload(config.sha256);
    if (pending !== undefined && ctx.requestReload !== undefined && !reloadOnArrival.has(config.sha256!)) {
      // Start-up does not wait for a slow download: when it lands, the config is applied again and picks it up.
      reloadOnArrival.add(config.sha256!);
      const reload = ctx.requestReload;
      pending.then(
        () => reload(`Wasm module ${config.sha256!.slice(0, 12)} downloaded`),
        () => undefined,
      ).finally(() => reloadOnArrival.delete(config.sha256!));
    }
    if (previous?.ok) return previous;
    const stats = moduleCacheStats();
    return { ok: false, error: (err as Error).message, compilations: stats.compilations, cacheHits: stats.cacheHits };
  }
}

function factory(config: WasmConfig, ctx: FactoryContext): FilterFactory {
  const prepared = ctx.prepared as PreparedWasm | undefined;
  const policy = config.failure_policy ?? 'fail_closed';
  if (prepared === undefined) throw new Error(`Cannot build Wasm filter "${ctx.name}": prepare() did not run for it`);
  if (ctx.workerIndex === 0) {
    // Process-wide numbers from the main thread, published once (by worker 0) so that /metrics does not add them up.
    ctx.metrics.gauge('weir_wasm_module_compilations', 'Wasm modules compiled by this process (a reload with unchanged modules adds none)').labels().set(prepared.compilations);
    ctx.metrics.gauge('weir_wasm_module_cache_hits', 'Wasm module loads served by the compiled-module cache').labels().set(prepared.cacheHits);
  }
  if (!prepared.ok) {
    ctx.log('error', `Wasm filter "${ctx.name}" has no module (${prepared.error}); applying ${policy} to its requests`);
    return { create: (callbacks) => failedStreamFilter(policy, callbacks) };
  }
  const plugin = new Plugin(
    {
      name: ctx.name,
      rootId: config.root_id ?? '',
      vmId: config.vm_id ?? '',
      configuration: asBytes(config.configuration),
      path: ctx.path,
      log: (level, message) => ctx.log(level, message),
    },
    {
      module: prepared.module,
      abi: prepared.abi,
      sha256: prepared.sha256,
      vmId: config.vm_id ?? '',
      vmConfiguration: asBytes(config.vm_configuration),
      environment: config.environment ?? {},
      fuel: config.cpu_budget ?? DEFAULT_CPU_BUDGET,
      memoryLimit: (config.memory_limit_mb ?? DEFAULT_MEMORY_MB) * 1024 * 1024,
    },
    policy,
    ctx,
    { allowOnHeadersStopIteration: config.allow_on_headers_stop_iteration ?? false },
  );
  return {
    create: function createWasmStream(callbacks) {
      const vm = plugin.vm();
      if (vm === null || plugin.root === null) return failedStreamFilter(policy, callbacks);
      return wasmStream(plugin, vm, plugin.root, callbacks);
    },
    destroy: function destroyWasmPlugin() {
      plugin.destroy();
    },
  };
}

/** The wasm filter definition, registered under `type: wasm`. */
const wasm: FilterDefinition<WasmConfig> = { type: 'wasm', schema, prepare, factory };
export default wasm;
