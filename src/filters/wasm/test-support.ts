/** Test support: builds a wasm filter factory from a module file the way the config loader and a worker would. */
import wasm, { type WasmConfig } from './index.ts';
import { factoryContextForTest } from './harness-for-test.ts';
import type { FilterFactory } from '../contract.ts';
import type { Metrics } from '../../telemetry/metrics.ts';

/** Runs prepare (main thread) and factory (worker) for one filter config; returns the factory and its context. */
export async function buildFilterForTest(config: WasmConfig, opts: { name?: string; clusters?: Record<string, string>; metrics?: Metrics; workerIndex?: number } = {}) {
  const prepareLogs: [string, string][] = [];
  const prepared = await wasm.prepare!(config, { name: opts.name ?? 'wasm-test', baseDir: process.cwd(), path: 'listeners[0].filters[0]', log: (l, m) => void prepareLogs.push([l, m]) });
  const ctx = factoryContextForTest({ name: opts.name, prepared, clusters: opts.clusters, metrics: opts.metrics, workerIndex: opts.workerIndex });
  const factory: FilterFactory = await wasm.factory(config, ctx);
  return { factory, ctx, prepared: prepared as import('./index.ts').PreparedWasm, prepareLogs };
}

/** In a worker thread: builds the edge module's filter from a structured-cloned `prepare` result and runs one request. */
export async function buildFactoryFromPreparedForTest(prepared: unknown): Promise<string> {
  const { runForTest } = await import('./harness-for-test.ts');
  const config = { file: 'unused', configuration: 'go', vm_id: 'in-worker' };
  const factory = await wasm.factory(config, factoryContextForTest({ prepared }));
  const r = await runForTest(factory, { headers: {} });
  return `x-edge=${r.upstream?.headers.get('x-edge')}`;
}
