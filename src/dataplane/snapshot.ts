/**
 * Compiles a validated config into one immutable snapshot per worker: clusters, listeners with their routers
 * and filter chains. A reload builds a new snapshot next to the running one and swaps a reference; requests
 * keep the snapshot they started with, and a retired snapshot is disposed when its last request ends.
 */
import type { RawConfig, RawFilter, RawListener } from '../config/types.ts';
import type { FilterFactory, FactoryContext, LogLevel } from '../filters/contract.ts';
import { filterDefinition } from '../filters/registry.ts';
import { filterOwnConfig } from '../config/prepare.ts';
import type { Metrics } from '../telemetry/metrics.ts';
import { parseDuration, parseSize, parseAddress } from '../core/units.ts';
import { Cluster } from './upstream/cluster.ts';
import { compileRoute, compileVirtualHost, Router, type VirtualHost } from './router.ts';
import { ListenerRuntime, type ListenerSettings } from './listener-runtime.ts';
import { httpCall } from './http-call.ts';
import type { Logger } from '../telemetry/log.ts';

/** A filter that failed to build; `path` is its config path ("listeners[0].filters[1]"), so that its line can be told. */
export class FilterBuildError extends Error {
  readonly path: string;
  constructor(path: string, message: string, cause: unknown) {
    super(message, { cause });
    this.path = path;
  }
}

/** One filter of a chain, ready to instantiate per request. */
export interface ChainEntry {
  readonly name: string;
  readonly type: string;
  readonly factory: FilterFactory;
  /** The route's override config (`filter_overrides.<name>` without `disabled`), if any. */
  readonly perRoute: unknown;
}

/** What building a snapshot needs from its worker. */
export interface BuildContext {
  version: number;
  baseDir: string;
  workerIndex: number;
  metrics: Metrics;
  log: Logger;
  /** What each filter's `prepare` returned in the main thread, by filter path. */
  prepared: Record<string, unknown>;
  /** The running snapshot, whose unchanged clusters are kept. */
  previous: Snapshot | null;
}

/** A compiled config, per worker. */
export class Snapshot {
  readonly version: number;
  readonly config: RawConfig;
  readonly clusters = new Map<string, Cluster>();
  readonly listeners = new Map<string, ListenerRuntime>();
  readonly factories: FilterFactory[] = [];
  /** Requests in flight on this snapshot. */
  active = 0;
  #retired = false;
  #keep: Set<Cluster> = new Set();

  constructor(version: number, config: RawConfig) {
    this.version = version;
    this.config = config;
  }

  /** Called by a stream when it ends. */
  release(): void {
    if (--this.active === 0 && this.#retired) this.#dispose();
  }

  /** Marks the snapshot replaced; `keep` are clusters the new snapshot took over. Disposes once idle. */
  retire(keep: Set<Cluster>): void {
    this.#retired = true;
    this.#keep = keep;
    if (this.active === 0) this.#dispose();
  }

  /** Releases what a build made before it failed. */
  abandon(previous: Snapshot | null): void {
    const keep = new Set(previous?.clusters.values() ?? []);
    this.#keep = keep;
    this.#dispose();
  }

  #dispose(): void {
    for (const c of this.clusters.values()) if (!this.#keep.has(c)) c.close();
    for (const f of this.factories) {
      try {
        f.destroy?.();
      } catch {
        // A filter that fails to clean up must not stop the others.
      }
    }
  }
}

/** Builds the snapshot for one worker. Throws with a message naming the config path on failure. */
export async function buildSnapshot(config: RawConfig, ctx: BuildContext): Promise<Snapshot> {
  const snap = new Snapshot(ctx.version, config);
  try {
    for (const raw of config.clusters) {
      const prev = ctx.previous?.clusters.get(raw.name);
      if (prev !== undefined && prev.configKey === JSON.stringify(raw)) {
        snap.clusters.set(raw.name, prev);
        continue;
      }
      const cluster = new Cluster(raw, ctx.metrics, (level, message) => ctx.log.pino[level]({ cluster: raw.name }, message));
      snap.clusters.set(raw.name, cluster);
      await cluster.start();
    }
    for (let li = 0; li < config.listeners.length; li++) {
      const l = config.listeners[li];
      snap.listeners.set(l.name, await buildListener(snap, l, `listeners[${li}]`, ctx));
    }
  } catch (err) {
    snap.abandon(ctx.previous);
    throw err;
  }
  return snap;
}

async function makeFactory(snap: Snapshot, f: RawFilter, path: string, ctx: BuildContext): Promise<FilterFactory> {
  const def = filterDefinition(f.type)!;
  const log = (level: LogLevel, message: string) => ctx.log.filter(level, f.name, message);
  const fctx: FactoryContext = {
    name: f.name,
    baseDir: ctx.baseDir,
    path,
    workerIndex: ctx.workerIndex,
    prepared: ctx.prepared[path],
    log,
    metrics: ctx.metrics,
    httpCall: (cluster, request, options) => httpCall(snap, cluster, request, options),
    clusterNames: new Set(snap.config.clusters.map((c) => c.name)),
  };
  try {
    const factory = await def.factory(filterOwnConfig(f), fctx);
    snap.factories.push(factory);
    return factory;
  } catch (err) {
    throw new FilterBuildError(path, `${path} (filter "${f.name}"): ${(err as Error).message}`, err);
  }
}

async function buildListener(snap: Snapshot, l: RawListener, path: string, ctx: BuildContext): Promise<ListenerRuntime> {
  const listenerFilters: { raw: RawFilter; factory: FilterFactory }[] = [];
  for (let i = 0; i < l.filters.length; i++) {
    const f = l.filters[i];
    if (f.disabled) continue;
    listenerFilters.push({ raw: f, factory: await makeFactory(snap, f, `${path}.filters[${i}]`, ctx) });
  }
  const defaultChain: ChainEntry[] = listenerFilters.map(({ raw, factory }) => ({ name: raw.name, type: raw.type, factory, perRoute: undefined }));
  const compileRoutes = async (routes: NonNullable<RawListener['routes']>, routesPath: string, vhost: string) => {
    const out = [];
    for (let ri = 0; ri < routes.length; ri++) {
      const r = routes[ri];
      const chain: ChainEntry[] = [];
      for (const { raw, factory } of listenerFilters) {
        const override = r.filter_overrides?.[raw.name];
        if (override?.disabled === true) continue;
        let perRoute: unknown;
        if (override !== undefined) {
          const { disabled: _d, ...rest } = override;
          if (Object.keys(rest).length > 0) perRoute = Object.freeze(rest);
        }
        chain.push({ name: raw.name, type: raw.type, factory, perRoute });
      }
      for (let fi = 0; fi < (r.filters ?? []).length; fi++) {
        const f = r.filters![fi];
        if (f.disabled) continue;
        const factory = await makeFactory(snap, f, `${routesPath}[${ri}].filters[${fi}]`, ctx);
        chain.push({ name: f.name, type: f.type, factory, perRoute: undefined });
      }
      out.push(compileRoute(r, ri, vhost, chain));
    }
    return out;
  };
  const vhosts: VirtualHost[] = [];
  if (l.routes !== undefined) vhosts.push(compileVirtualHost('default', ['*'], await compileRoutes(l.routes, `${path}.routes`, l.name)));
  for (let vi = 0; vi < (l.virtual_hosts ?? []).length; vi++) {
    const vh = l.virtual_hosts![vi];
    vhosts.push(compileVirtualHost(vh.name, vh.domains, await compileRoutes(vh.routes, `${path}.virtual_hosts[${vi}].routes`, vh.name)));
  }
  const { host, port } = parseAddress(l.address);
  const settings: ListenerSettings = {
    bufferLimit: parseSize(l.buffer_limit),
    maxHeaderSize: parseSize(l.max_request_headers_size),
    maxUriSize: parseSize(l.max_uri_size),
    headerTimeoutMs: parseDuration(l.request_header_timeout),
    idleTimeoutMs: parseDuration(l.idle_timeout),
    streamIdleTimeoutMs: parseDuration(l.stream_idle_timeout),
    generateRequestId: l.generate_request_id,
    preserveHost: l.preserve_host,
    normalizePath: l.normalize_path,
    mergeSlashes: l.merge_slashes,
    xffTrustedHops: l.xff_trusted_hops,
  };
  return new ListenerRuntime({ name: l.name, host, port, settings, router: new Router(vhosts), defaultChain, snapshot: snap, metrics: ctx.metrics, log: ctx.log });
}
