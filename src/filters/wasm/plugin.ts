/**
 * Plugins and shared VMs in one worker. Plugins with the same VM key (vm_id, code, vm_configuration and sandbox
 * limits) share one VM, as in Envoy; each plugin has its own root context in it. A VM that fails is recreated from
 * the compiled module for the next request, whatever the failure policy (beyond Envoy, where only FAIL_RELOAD
 * does); only a burst of failures (more than RELOAD_BURST a second) or a VM that fails to start backs off, and the
 * policy answers the failing request and those during a backoff.
 */
import { Buffer } from 'node:buffer';
import type { FactoryContext, FilterCallbacks } from '../contract.ts';
import type { Value } from '../../telemetry/metrics.ts';
import { sharedStore } from '../../core/shared-store.ts';
import type { ContextState, PluginInfo } from './context.ts';
import type { StreamPlugin } from './stream.ts';
import { VmFailure, WasmVm, type VmOptions } from './vm.ts';

/** How long a root context whose on_done answered false may take to call proxy_done. */
const DONE_TIMEOUT_MS = 30_000;

/** Failure policies of the `failure_policy` key. */
export type FailurePolicy = 'fail_closed' | 'fail_open' | 'fail_reload';

/** The first reload is immediate; repeated failures wait 1 s, 2 s, 4 s ... up to 30 s. */
export function reloadBackoffMs(consecutiveFailures: number): number {
  return consecutiveFailures <= 1 ? 0 : Math.min(30_000, 1000 * 2 ** (consecutiveFailures - 2));
}

/**
 * Reloads allowed per second before the backoff applies. A request that traps or overruns fails alone and the next
 * request gets a fresh VM at once (instantiating the compiled module costs milliseconds); only a burst of failures
 * (a query of death repeated) backs off, so that it cannot cost a VM per request.
 */
export const RELOAD_BURST = 10;

/** How to build a VM: the VM's options less what the worker supplies, plus the memory cap (part of the VM key). */
export type VmSpec = Omit<VmOptions, 'store' | 'host'> & { memoryLimit: number };

type Host = Pick<FactoryContext, 'metrics' | 'httpCall' | 'clusterNames' | 'log' | 'workerIndex'>;

const slots = new Map<string, VmSlot>();

function slotKey(spec: VmSpec): string {
  return JSON.stringify([spec.vmId, spec.sha256, Buffer.from(spec.vmConfiguration).toString('base64'), spec.fuel, spec.memoryLimit, spec.environment]);
}

/** One shared VM and the plugins that use it. */
class VmSlot {
  readonly key: string;
  readonly spec: VmSpec;
  host: Host;
  vm: WasmVm | null = null;
  readonly plugins = new Set<Plugin>();
  readonly #recorded = new WeakSet<WasmVm>();
  failures = 0;
  retryAt = 0;
  /** Times of the failures in the last second (ms). */
  #recentFailures: number[] = [];

  constructor(key: string, spec: VmSpec, host: Host) {
    this.key = key;
    this.spec = spec;
    this.host = host;
  }

  /** Builds a fresh VM and configures every plugin in it; throws a VmFailure if any step fails. */
  start(): WasmVm {
    const slot = this;
    const host: Host = {
      get metrics() { return slot.host.metrics; },
      get clusterNames() { return slot.host.clusterNames; },
      get workerIndex() { return slot.host.workerIndex; },
      httpCall: (c, r, o) => slot.host.httpCall(c, r, o),
      log: (l, m) => slot.host.log(l, m),
    };
    const vm = new WasmVm({ ...this.spec, store: sharedStore(), host });
    vm.onAsyncFailure = (failure, ctx) => {
      this.recordFailure(vm, failure, ctx.callbacks);
      ctx.owner?.failOutside(failure);
    };
    try {
      for (const plugin of this.plugins) plugin.configure(vm);
    } catch (err) {
      vm.dispose();
      throw err;
    }
    this.vm = vm;
    return vm;
  }

  /** Logs and counts a VM failure once, and schedules its reload. */
  recordFailure(vm: WasmVm, failure: VmFailure, callbacks: FilterCallbacks | null): void {
    if (this.#recorded.has(vm)) return;
    this.#recorded.add(vm);
    vm.failure ??= failure;
    vm.dispose();
    this.failures++;
    const now = Date.now();
    this.#recentFailures = this.#recentFailures.filter((t) => now - t < 1000);
    this.#recentFailures.push(now);
    this.retryAt = this.#recentFailures.length <= RELOAD_BURST ? 0 : now + Math.max(1000, reloadBackoffMs(this.failures));
    for (const plugin of this.plugins) plugin.countFailure(failure);
    const names = [...this.plugins].map((p) => `"${p.info.name}"`).join(', ');
    const line = `Wasm VM of filter ${names} failed (${failure.reason}): ${failure.message}`;
    if (callbacks !== null) callbacks.failed(line);
    else this.host.log('error', line);
  }

  /** The live VM, or after a failure a new one once the backoff allows; null while it is down. */
  current(): WasmVm | null {
    if (this.vm !== null && this.vm.failure === null) return this.vm;
    if (Date.now() < this.retryAt) return null;
    const old = this.vm;
    try {
      const vm = this.start();
      for (const plugin of this.plugins) plugin.countReload();
      return vm;
    } catch (err) {
      const failure = err instanceof VmFailure ? err : new VmFailure('start', (err as Error).message);
      if (old !== null) this.#recorded.delete(old);
      this.failures++;
      this.retryAt = Date.now() + reloadBackoffMs(this.failures);
      this.host.log('error', `Cannot reload Wasm VM: ${failure.message}`);
      return null;
    }
  }
}

/** One filter config in one worker: its root context in a shared VM. */
export class Plugin implements StreamPlugin {
  readonly info: PluginInfo;
  readonly failurePolicy: FailurePolicy;
  readonly allowOnHeadersStopIteration: boolean;
  readonly #slot: VmSlot;
  readonly #failures: Map<string, Value>;
  readonly #reloads: Value;
  /** The root context in the slot's current VM. */
  root: ContextState | null = null;

  /** Joins (or creates) the VM for `spec` and configures this plugin in it; throws if the module rejects it. */
  constructor(info: PluginInfo, spec: VmSpec, policy: FailurePolicy, host: Host, opts: { allowOnHeadersStopIteration?: boolean } = {}) {
    this.info = info;
    this.failurePolicy = policy;
    this.allowOnHeadersStopIteration = opts.allowOnHeadersStopIteration ?? false;
    const failures = host.metrics.counter('weir_wasm_vm_failures_total', 'Wasm VM failures (trap, CPU budget, proc_exit, start), by filter', ['filter', 'reason']);
    this.#failures = new Map((['trap', 'cpu-budget', 'exit', 'start'] as const).map((r) => [r, failures.labels(info.name, r)]));
    this.#reloads = host.metrics.counter('weir_wasm_vm_reloads_total', 'Wasm VMs recreated after a failure, by filter', ['filter']).labels(info.name);
    const key = slotKey(spec);
    let slot = slots.get(key);
    if (slot === undefined) {
      slot = new VmSlot(key, spec, host);
      slots.set(key, slot);
    }
    slot.host = host;
    this.#slot = slot;
    slot.plugins.add(this);
    try {
      if (slot.vm === null || slot.vm.failure !== null) slot.start();
      else this.configure(slot.vm);
    } catch (err) {
      this.#leave();
      throw err;
    }
  }

  /** Creates this plugin's root context in `vm`: on_context_create, on_vm_start (first root only), on_configure. */
  configure(vm: WasmVm): void {
    const root = vm.newContext(this.info, null, null);
    vm.call(root, 'proxy_on_context_create', [root.id, 0]);
    if (!vm.vmStarted) {
      root.vmConfiguration = this.#slot.spec.vmConfiguration;
      const started = vm.call(root, 'proxy_on_vm_start', [root.id, root.vmConfiguration.length], 1);
      root.vmConfiguration = null;
      if (started === 0) throw new VmFailure('start', 'Wasm module refused to start: proxy_on_vm_start returned false');
      vm.vmStarted = true;
    }
    root.pluginConfiguration = this.info.configuration;
    const configured = vm.call(root, 'proxy_on_configure', [root.id, this.info.configuration.length], 1);
    root.pluginConfiguration = null;
    if (configured === 0) throw new VmFailure('start', `Wasm module rejected the configuration of filter "${this.info.name}": proxy_on_configure returned false`);
    this.root = root;
  }

  /** The VM to run the next request on, or null when it is down (the failure policy then answers). */
  vm(): WasmVm | null {
    return this.#slot.current();
  }

  vmFailed(vm: WasmVm, failure: VmFailure, callbacks: FilterCallbacks | null): void {
    this.#slot.recordFailure(vm, failure, callbacks);
  }

  streamSucceeded(vm: WasmVm): void {
    if (vm === this.#slot.vm) this.#slot.failures = 0;
  }

  /** Counts a failure under its reason. */
  countFailure(failure: VmFailure): void {
    this.#failures.get(failure.reason)?.inc();
  }

  /** Counts a VM recreated for this plugin. */
  countReload(): void {
    this.#reloads.inc();
  }

  /**
   * Removes this plugin's root context: on_done, then on_delete, at once or, when on_done answers false, once the
   * plugin calls proxy_done (at most DONE_TIMEOUT_MS later), as Envoy does; the last plugin of a VM disposes of it.
   */
  destroy(): void {
    const vm = this.#slot.vm;
    const root = this.root;
    if (vm === null || root === null || vm.failure !== null || vm.context(root.id) !== root) return this.#leave();
    try {
      vm.setTick(root, 0);
      if (vm.call(root, 'proxy_on_done', [root.id], 1) === 0) {
        const timer = setTimeout(() => this.#finishRoot(vm, root), DONE_TIMEOUT_MS);
        timer.unref();
        root.onProxyDone = () => {
          clearTimeout(timer);
          this.#finishRoot(vm, root);
        };
        return;
      }
    } catch (err) {
      if (!(err instanceof VmFailure)) throw err;
    }
    this.#finishRoot(vm, root);
  }

  #finishRoot(vm: WasmVm, root: ContextState): void {
    if (root.deleted) return;
    root.onProxyDone = null;
    if (vm.failure === null) {
      try {
        vm.setTick(root, 0);
        vm.call(root, 'proxy_on_delete', [root.id]);
      } catch (err) {
        if (!(err instanceof VmFailure)) throw err;
      }
    }
    root.deleted = true;
    vm.deleteContext(root);
    this.#leave();
  }

  #leave(): void {
    const slot = this.#slot;
    slot.plugins.delete(this);
    if (slot.plugins.size === 0) {
      slot.vm?.dispose();
      slots.delete(slot.key);
    }
  }
}
