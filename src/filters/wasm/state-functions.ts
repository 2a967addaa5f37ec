/**
 * Host functions for state beyond one stream: shared data and queues (the process-wide shared store), metrics,
 * properties and foreign functions. Part of the import object built by host-functions.ts.
 */
import { Buffer } from 'node:buffer';
import { deflateSync, inflateSync } from 'node:zlib';
import { MetricKind, Status } from './abi.ts';
import { getProperty } from './properties.ts';
import type { WasmVm } from './vm.ts';

const ENVOY_FOREIGN = new Set(['declare_property', 'set_envoy_filter_state', 'expr_create', 'expr_evaluate', 'expr_delete', 'verify_signature', 'sign']);

/** The namespace of a VM's shared data and queues in the shared store. */
export function sharedNamespace(vmId: string): string {
  return `wasm:${vmId}`;
}

/** Reads and writes of guest memory that answer a Proxy-Wasm status. */
export interface GuestIo {
  str(ptr: number, len: number): string | null;
  /** OK when a result was written, else INVALID_MEMORY_ACCESS. */
  ok(written: boolean): number;
  u32(ptr: number, value: number): number;
  u64(ptr: number, value: bigint): number;
}

/** Builds the memory helpers of one VM. */
export function guestIo(vm: WasmVm): GuestIo {
  return {
    str: (p, n) => vm.readString(p, n),
    ok: (written) => (written ? Status.OK : Status.INVALID_MEMORY_ACCESS),
    u32(ptr, value) {
      if (!vm.inBounds(ptr, 4)) return Status.INVALID_MEMORY_ACCESS;
      vm.view().setUint32(ptr, value >>> 0, true);
      return Status.OK;
    },
    u64(ptr, value) {
      if (!vm.inBounds(ptr, 8)) return Status.INVALID_MEMORY_ACCESS;
      vm.view().setBigUint64(ptr, BigInt.asUintN(64, value), true);
      return Status.OK;
    },
  };
}

/** The shared-data, queue, metric, property and foreign-function host calls of one VM. */
export function stateFunctions(vm: WasmVm, io: GuestIo): Record<string, (...args: any[]) => number> {
  const opts = vm.options;
  const { str, ok, u32, u64 } = io;
  const metric = (id: number): (typeof vm.metrics)[number] | undefined => vm.metrics[id >>> 2];
  return {
    proxy_get_shared_data(kPtr: number, kSize: number, vPtrPtr: number, vSizePtr: number, casPtr: number): number {
      const key = str(kPtr, kSize);
      if (key === null) return Status.INVALID_MEMORY_ACCESS;
      const entry = opts.store.get(sharedNamespace(opts.vmId), key);
      if (entry === undefined) return Status.NOT_FOUND;
      const r = u32(casPtr, entry.cas);
      return r === Status.OK ? ok(vm.writeResult(vPtrPtr, vSizePtr, entry.value)) : r;
    },
    proxy_set_shared_data(kPtr: number, kSize: number, vPtr: number, vSize: number, cas: number): number {
      const key = str(kPtr, kSize);
      const value = vm.read(vPtr, vSize);
      if (key === null || value === null) return Status.INVALID_MEMORY_ACCESS;
      const ns = sharedNamespace(opts.vmId);
      let r: string = opts.store.set(ns, key, value, { cas: cas >>> 0 });
      // Envoy writes an absent key whatever the cas; the store refuses, so retry as an add.
      if (r === 'cas-mismatch' && opts.store.get(ns, key) === undefined) r = opts.store.add(ns, key, value) === 'exists' ? 'cas-mismatch' : 'ok';
      if (r === 'ok') return Status.OK;
      if (r === 'cas-mismatch') return Status.CAS_MISMATCH;
      vm.log('error', `Cannot set shared data "${key}" of vm_id "${opts.vmId}": the shared store is full`);
      return Status.INTERNAL_FAILURE;
    },
    proxy_register_shared_queue(nPtr: number, nSize: number, tokenPtr: number): number {
      const name = str(nPtr, nSize);
      if (name === null) return Status.INVALID_MEMORY_ACCESS;
      const root = vm.effective === null ? undefined : vm.context(vm.effective.rootId);
      if (root === undefined) return Status.BAD_ARGUMENT;
      const id = opts.store.registerQueue(sharedNamespace(opts.vmId), name, (queue) => vm.queueReady(root, queue));
      if (id === 'no-memory') return Status.INTERNAL_FAILURE;
      return u32(tokenPtr, id);
    },
    proxy_resolve_shared_queue(vPtr: number, vSize: number, nPtr: number, nSize: number, tokenPtr: number): number {
      const vmId = str(vPtr, vSize);
      const name = str(nPtr, nSize);
      if (vmId === null || name === null) return Status.INVALID_MEMORY_ACCESS;
      const id = opts.store.resolveQueue(sharedNamespace(vmId === '' ? opts.vmId : vmId), name);
      return id === undefined ? Status.NOT_FOUND : u32(tokenPtr, id);
    },
    proxy_enqueue_shared_queue(token: number, ptr: number, size: number): number {
      const data = vm.read(ptr, size);
      if (data === null) return Status.INVALID_MEMORY_ACCESS;
      const r = opts.store.enqueue(token >>> 0, data);
      return r === 'ok' ? Status.OK : r === 'not-found' ? Status.NOT_FOUND : Status.INTERNAL_FAILURE;
    },
    proxy_dequeue_shared_queue(token: number, ptrPtr: number, sizePtr: number): number {
      const r = opts.store.dequeue(token >>> 0);
      if (r === 'empty') return Status.EMPTY;
      if (r === 'not-found') return Status.NOT_FOUND;
      return ok(vm.writeResult(ptrPtr, sizePtr, r));
    },
    proxy_define_metric(type: number, nPtr: number, nSize: number, idPtr: number): number {
      if (type < 0 || type > MetricKind.HISTOGRAM) return Status.BAD_ARGUMENT;
      const name = str(nPtr, nSize);
      if (name === null) return Status.INVALID_MEMORY_ACCESS;
      const id = vm.defineMetric(type, name);
      return id < 0 ? Status.BAD_ARGUMENT : u32(idPtr, id);
    },
    proxy_increment_metric(id: number, delta: bigint): number {
      const m = metric(id);
      if (m === undefined) return Status.NOT_FOUND;
      const d = Number(delta);
      if (m.kind === MetricKind.HISTOGRAM || (m.kind === MetricKind.COUNTER && d <= 0)) return Status.BAD_ARGUMENT;
      (m.child as { inc(n: number): void }).inc(d);
      return Status.OK;
    },
    proxy_record_metric(id: number, value: bigint): number {
      const m = metric(id);
      if (m === undefined) return Status.NOT_FOUND;
      const v = Number(BigInt.asUintN(64, value));
      if (m.kind === MetricKind.COUNTER) (m.child as { inc(n: number): void }).inc(v);
      else if (m.kind === MetricKind.GAUGE) (m.child as { set(n: number): void }).set(v);
      else (m.child as { observe(n: number): void }).observe(v);
      return Status.OK;
    },
    proxy_get_metric(id: number, resultPtr: number): number {
      const m = metric(id);
      if (m === undefined) return Status.NOT_FOUND;
      if (m.kind === MetricKind.HISTOGRAM) return Status.BAD_ARGUMENT;
      return u64(resultPtr, BigInt(Math.trunc((m.child as { value: number }).value)));
    },
    proxy_get_property(pPtr: number, pSize: number, vPtrPtr: number, vSizePtr: number): number {
      const path = vm.read(pPtr, pSize);
      if (path === null) return Status.INVALID_MEMORY_ACCESS;
      const segments = Buffer.from(path).toString().split('\0');
      if (segments.length > 1 && segments[segments.length - 1] === '') segments.pop();
      const value = getProperty(vm, vm.effective, segments);
      if (value === undefined) return Status.NOT_FOUND;
      return ok(vm.writeResult(vPtrPtr, vSizePtr, value));
    },
    proxy_set_property(pPtr: number, pSize: number, vPtr: number, vSize: number): number {
      const path = vm.readString(pPtr, pSize);
      const value = vm.read(vPtr, vSize);
      if (path === null || value === null) return Status.INVALID_MEMORY_ACCESS;
      const key = 'wasm.' + path.replace(/\0$/, '').split('\0').join('.');
      const cb = vm.effective?.callbacks;
      if (cb) cb.info.filterState.set(key, Buffer.from(value));
      else vm.rootProperties.set(key, value);
      return Status.OK;
    },
    proxy_call_foreign_function(nPtr: number, nSize: number, aPtr: number, aSize: number, rPtrPtr: number, rSizePtr: number): number {
      const name = str(nPtr, nSize);
      const args = vm.read(aPtr, aSize);
      if (name === null || args === null) return Status.INVALID_MEMORY_ACCESS;
      try {
        if (name === 'clear_route_cache') {
          vm.effective?.callbacks?.clearRouteCache();
          return ok(vm.writeResult(rPtrPtr, rSizePtr, null));
        }
        if (name === 'compress') return ok(vm.writeResult(rPtrPtr, rSizePtr, deflateSync(args)));
        if (name === 'uncompress') return ok(vm.writeResult(rPtrPtr, rSizePtr, inflateSync(args)));
      } catch {
        return Status.SERIALIZATION_FAILURE;
      }
      return ENVOY_FOREIGN.has(name) ? Status.UNIMPLEMENTED : Status.NOT_FOUND;
    },
  };
}
