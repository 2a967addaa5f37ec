/**
 * The `lua` filter: Envoy Lua scripts (envoy.filters.http.lua) running unchanged in a sandboxed Lua 5.4 VM per
 * worker per script. docs/lua.md lists the API and what each item is tested by.
 */
import type { FactoryContext, Filter, FilterCallbacks, FilterDefinition, FilterFactory, FilterStatus } from '../contract.ts';
import type { HeaderMap } from '../../core/headers.ts';
import { DEFAULTS, perRouteSchema, prepare, schema, type LuaConfig, type LuaPerRoute, type PreparedLua } from './config.ts';
import { acquireScript, luaStateCount, rebuildScript, releaseScript, type ScriptSlot } from './cache.ts';
import { LuaStream, type StreamSetup } from './stream.ts';
import { SharedBridge } from './shared.ts';
import type { LuaScript, ScriptLimits } from './script.ts';
import type { Metrics } from '../../telemetry/metrics.ts';
import type { StatsSink } from './host.ts';
import { fuelUnavailableReason } from './vm.ts';

const PASS: Filter = Object.freeze({});

/** The filter of a request whose Lua state is being rebuilt after a trap: 503 at once. */
function unavailable(cb: FilterCallbacks): Filter {
  return {
    onRequestHeaders: function luaUnavailable(): FilterStatus {
      cb.sendLocalReply(503, 'lua filter unavailable', { details: 'lua_unavailable', code: 'FILTER_UNAVAILABLE' });
      return 'stop';
    },
  };
}
const shared = new SharedBridge();
let warnedNoFuel = false;

/** Metrics every Lua filter of a worker shares. */
function declareMetrics(metrics: Metrics) {
  return {
    errors: metrics.counter('weir_lua_errors_total', 'Lua handler runs that failed, by filter and reason (error, budget, memory)', ['filter', 'reason']),
    executions: metrics.counter('weir_lua_executions_total', 'Lua handler runs started, by filter', ['filter']),
    states: metrics.gauge('weir_lua_states', 'Lua states (one per script per worker) held by this worker'),
    userCounter: metrics.counter('weir_lua_script_counter_total', 'Counters scripts keep with stats():counter()', ['script', 'name']),
    userGauge: metrics.gauge('weir_lua_script_gauge', 'Gauges scripts keep with stats():gauge()', ['script', 'name']),
    userHistogram: metrics.histogram('weir_lua_script_histogram', 'Histograms scripts record with stats():histogram()', ['script', 'name']),
  };
}

function statsSink(m: ReturnType<typeof declareMetrics>, script: string): StatsSink {
  return {
    stat(kind, name, op, value) {
      if (kind === 2) {
        m.userHistogram.labels(script, name).observe(value);
        return 0;
      }
      const child = (kind === 0 ? m.userCounter : m.userGauge).labels(script, name);
      if (op === 0 && (kind === 1 || value >= 0)) child.inc(value);
      else if (op === 1) child.set(value);
      return child.value;
    },
  };
}

/** Builds the per-worker factory: compiles (or reuses) every script of the filter and answers per request. */
async function factory(config: LuaConfig, ctx: FactoryContext): Promise<FilterFactory<LuaPerRoute>> {
  const prepared = ctx.prepared as PreparedLua;
  const limits: ScriptLimits = {
    instructionLimit: config.instruction_limit ?? DEFAULTS.instructionLimit,
    memoryLimitBytes: (config.memory_limit_mb ?? DEFAULTS.memoryLimitMb) * 1024 * 1024,
  };
  const m = declareMetrics(ctx.metrics);
  const errorChildren = new Map<string, { inc(): void }>();
  const executions = m.executions.labels(ctx.name);
  const held: ScriptSlot[] = [];
  const log = (level: Parameters<FactoryContext['log']>[0], message: string) => ctx.log(level, message);

  const adopt = (slot: ScriptSlot): ScriptSlot => {
    held.push(slot);
    const s = slot.current;
    // As Envoy does: a missing entry point is worth a line, once per filter and worker.
    if (!s.hasRequest) ctx.log('info', `Lua script "${s.name}" has no envoy_on_request: the request path is not hooked`);
    if (!s.hasResponse) ctx.log('info', `Lua script "${s.name}" has no envoy_on_response: the response path is not hooked`);
    const wire = (s: LuaScript) => {
      s.shared ??= shared;
      s.stats ??= statsSink(m, s.name);
    };
    wire(slot.current);
    slot.onReplace ??= wire;
    return slot;
  };

  const setup: StreamSetup = {
    filterName: ctx.name,
    failOpen: config.fail_open ?? false,
    failureStatus: config.failure_status ?? DEFAULTS.failureStatus,
    clearRouteCache: config.clear_route_cache ?? true,
    filterContext: config.filter_context,
    clusterNames: ctx.clusterNames,
    onRun: () => executions.inc(),
    onError(script, reason, message, cb) {
      let child = errorChildren.get(reason);
      if (child === undefined) {
        child = m.errors.labels(ctx.name, reason);
        errorChildren.set(reason, child);
      }
      child.inc();
      cb.failed(`Lua script "${script.name}" failed (${reason}): ${message}${reason === 'budget' ? " (the filter's instruction_limit: raise it for a script that loops over large bodies)" : ''}`);
      if (script.broken || reason === 'memory') {
        const slot = held.find((s) => s.current === script);
        // Memory the state cannot get back after a collection means a leak in its globals: start it afresh.
        if (slot !== undefined && (script.broken || script.collect() * 1024 > script.limits.memoryLimitBytes / 2)) rebuildScript(slot);
      }
    },
  };

  let defaultSlot: ScriptSlot | null = null;
  const named = new Map<string, ScriptSlot>();
  try {
    if (prepared.defaultSource !== null) defaultSlot = adopt(await acquireScript(prepared.defaultSource, limits, log));
    for (const [key, src] of Object.entries(prepared.named)) named.set(key, adopt(await acquireScript(src, limits, log)));
  } catch (err) {
    for (const slot of held) releaseScript(slot);
    throw err;
  }
  m.states.labels().set(luaStateCount());
  const noFuel = fuelUnavailableReason();
  if (noFuel !== null && !warnedNoFuel) {
    warnedNoFuel = true;
    ctx.log('warn', `Lua instruction budget falls back to the count hook (C library loops are not counted, ~0.5 µs more per request): ${noFuel}`);
  }
  const inline = new Map<string, Promise<ScriptSlot>>();
  const warned = new Set<string>();

  const routeSlot = (perRoute: LuaPerRoute): ScriptSlot | Promise<ScriptSlot> | null => {
    if (perRoute.name !== undefined) {
      const slot = named.get(perRoute.name);
      if (slot === undefined && !warned.has(perRoute.name)) {
        warned.add(perRoute.name);
        ctx.log('warn', `Lua filter "${ctx.name}" has no source_codes entry "${perRoute.name}": the route runs no script`);
      }
      return slot ?? null;
    }
    if (perRoute.source_code !== undefined) {
      const code = perRoute.source_code.inline_string ?? '';
      let p = inline.get(code);
      if (p === undefined) {
        p = acquireScript({ name: `${ctx.name}:route`, code }, limits, log).then(adopt);
        inline.set(code, p);
        p.catch(() => inline.delete(code));
      }
      return p;
    }
    return defaultSlot;
  };

  return {
    create: function createLuaStream(cb: FilterCallbacks, perRoute: LuaPerRoute | undefined): Filter {
      if (perRoute?.disabled === true) return PASS;
      const slot = perRoute === undefined ? defaultSlot : routeSlot(perRoute);
      if (slot === null) return PASS;
      if (slot instanceof Promise) return deferredStream(slot, setup, cb, perRoute?.filter_context);
      const script = slot.current;
      if (script.broken) {
        // A trapped VM answers nothing until its replacement is ready.
        rebuildScript(slot);
        return setup.failOpen ? PASS : unavailable(cb);
      }
      return new LuaStream(script, setup, cb, perRoute?.filter_context);
    },
    destroy() {
      for (const slot of held) releaseScript(slot);
      held.length = 0;
      m.states.labels().set(luaStateCount());
    },
  };
}

/** A stream whose script (a route's inline source) is still compiling: the first hook waits for it. */
function deferredStream(slot: Promise<ScriptSlot>, setup: StreamSetup, cb: FilterCallbacks, context: Record<string, unknown> | undefined): Filter {
  let inner: LuaStream | null = null;
  let destroyed = false;
  const ready = async (): Promise<LuaStream | null> => {
    if (inner !== null || destroyed) return inner;
    try {
      inner = new LuaStream((await slot).current, setup, cb, context);
    } catch (err) {
      cb.failed(`Lua route script failed to load: ${(err as Error).message}`);
      if (!setup.failOpen) cb.sendLocalReply(setup.failureStatus, 'lua filter failure', { details: 'lua_load' });
    }
    return destroyed ? null : inner;
  };
  const failed = (): FilterStatus => (setup.failOpen ? 'continue' : 'stop');
  return {
    async onRequestHeaders(headers: HeaderMap, eos: boolean) {
      const s = await ready();
      return s === null ? failed() : s.onRequestHeaders(headers, eos);
    },
    onRequestBody: (chunk, eos) => (inner === null ? 'continue' : inner.onRequestBody(chunk, eos)),
    onRequestTrailers: (t) => (inner === null ? 'continue' : inner.onRequestTrailers(t)),
    async onResponseHeaders(headers: HeaderMap, eos: boolean) {
      const s = await ready();
      return s === null ? 'continue' : s.onResponseHeaders(headers, eos);
    },
    onResponseBody: (chunk, eos) => (inner === null ? 'continue' : inner.onResponseBody(chunk, eos)),
    onResponseTrailers: (t) => (inner === null ? 'continue' : inner.onResponseTrailers(t)),
    onDestroy() {
      destroyed = true;
      inner?.onDestroy();
    },
  };
}

/** The `lua` filter definition: register it under `type: lua`. */
const lua: FilterDefinition<LuaConfig, LuaPerRoute> = {
  type: 'lua',
  schema,
  perRouteSchema,
  prepare,
  factory,
};

export default lua;
