/**
 * One Lua state running one script on one worker: it loads the sandboxed prelude and the script (top-level code runs
 * once, as on Envoy), then runs `envoy_on_request`/`envoy_on_response` in pooled coroutines with an instruction
 * budget per run.
 *
 * The budget is the Wasm fuel of the VM's instance (vm.ts): each run (each lua_resume) starts with `instructionLimit`
 * units, one per loop iteration of the interpreter and its C library (about one per Lua instruction, since the
 * interpreter's dispatch is a loop). Running out goes in two steps:
 * 1. soft: the fuel handler arms Lua's count hook (count 1) on the run's coroutine and gives the run some grace fuel
 *    (GRACE_FUEL at most); at the next Lua instruction of that coroutine the hook raises "<script>:<line>:
 *    instruction limit of N exceeded", and keeps raising at every instruction, so pcall cannot swallow it. The state
 *    stays usable.
 * 2. hard: if that fuel runs out too (a C loop such as a pathological pattern match, or a coroutine the script made),
 *    the handler throws, which unwinds the Wasm stack like a trap. The interpreter stopped mid-way, so the state is
 *    marked broken and the owner recycles it; requests suspended on it are failed.
 * Without fuel (an uninstrumentable module), the count hook alone runs the budget, as before: every #step instructions.
 */
import { Buffer } from 'node:buffer';
import { readFileSync } from 'node:fs';
import { LuaVm, LUA_ERRMEM, LUA_OK, LUA_YIELD, MAX_FUEL, REGISTRY } from './vm.ts';
import { makeHostFunctions } from './host.ts';
import { probeFrames } from './frames.ts';
import type { LuaStream } from './stream.ts';
import type { LogLevel } from '../contract.ts';

const PRELUDE = readFileSync(new URL('./prelude.lua', import.meta.url));
const SANDBOX = readFileSync(new URL('./sandbox.lua', import.meta.url));

/** Limits of one Lua state. */
export interface ScriptLimits {
  /**
   * Fuel of one run of a handler (between two yields): Wasm loop iterations of the VM, about one per Lua instruction
   * plus the loops of C library functions; 0: no limit. (Lua VM instructions when the count hook stands in for fuel.)
   */
  instructionLimit: number;
  /** Bytes the state's memory may grow beyond its initial 16 MiB. */
  memoryLimitBytes: number;
}

/** A coroutine: its thread pointer and the registry reference that keeps it alive. */
export interface Coroutine {
  readonly L: number;
  readonly ref: number;
}

/** How a run of a handler ended. */
export type RunResult =
  | { readonly kind: 'done' }
  | { readonly kind: 'yield' }
  | { readonly kind: 'error'; readonly reason: 'error' | 'budget' | 'memory'; readonly message: string };

const DONE: RunResult = Object.freeze({ kind: 'done' });
const RECYCLED: RunResult = Object.freeze({ kind: 'error', reason: 'error', message: 'the Lua state was recycled after a trap' });
const YIELD: RunResult = Object.freeze({ kind: 'yield' });
const MAX_POOLED = 64;

/** Thrown by the fuel handler when a run used up its grace fuel too: unwinds the Wasm stack like a trap. */
class FuelExhausted extends Error {
  name = 'FuelExhausted';
}

/** Size of the lua_Debug scratch area: currentline at +24, short_src at +44 (60 bytes). */
const AR_SIZE = 128;
/** Fuel a run gets after its budget ran out, to reach a Lua instruction where the hook can raise (at most the budget). */
const GRACE_FUEL = 1_000_000;
/**
 * Fuel for the host's own calls into the VM between runs (pushing values, a full collection, a metamethod that a
 * global lookup triggers): refilled once after a run's leftover is used up; running out again unwinds.
 */
const HOST_FUEL = 100_000_000;
/** Fuel for reading where a stopped run was (the state may be inconsistent after an unwind). */
const PROBE_FUEL = 100_000;

/** A compiled script in its own Lua state. */
export class LuaScript {
  readonly name: string;
  readonly vm: LuaVm;
  readonly limits: ScriptLimits;
  /** Whether the script defines `envoy_on_request` / `envoy_on_response`. */
  hasRequest = false;
  hasResponse = false;
  /** The stream whose coroutine runs now; host functions act on it. */
  current: LuaStream | null = null;
  /** Whether respond() may end a run by returning through its frames (frames.ts) instead of yielding. */
  earlyReturn = false;
  /** How many respond() calls ended their run that way (tests read it). */
  earlyReturns = 0;

  /** The thread of the run in progress (0 between runs): host functions tell it from a coroutine the script made. */
  get runningL(): number {
    return this.#running === null ? 0 : this.#running.L;
  }
  /** Interned lower-case header names; index 0 is a scratch slot for names past the cap. */
  readonly names: string[] = [''];
  readonly nameIds = new Map<string, number>();
  /** Imported public keys by handle string. */
  readonly keys = new Map<string, import('node:crypto').KeyObject>();
  /** Set when the state cannot run any more (a Wasm trap); the owner replaces it. Set it with `markBroken`. */
  broken = false;
  /** Streams that suspended a coroutine on this state (body, trailers, httpCall) and were not destroyed yet. */
  readonly suspended = new Set<import('./stream.ts').LuaStream>();
  /** Streams that started a handler on this state and were not destroyed yet. */
  inFlight = 0;
  /** No new streams will use this state: close it when the last one in flight ends. */
  retired = false;
  /** Log sink for code that runs outside a stream (top-level code). */
  log: (level: LogLevel, message: string) => void;
  /** The bridge to weir.shared; set by the factory. */
  shared: import('./shared.ts').SharedBridge | null = null;
  /** Counter/gauge/histogram access for `stats()`. */
  stats: import('./host.ts').StatsSink | null = null;

  readonly #runRef: bigint;
  readonly #collectRef: bigint;
  readonly #hook: number;
  readonly #pool: Coroutine[] = [];
  #budgetHit = false;
  /** Instructions counted in the current run, in steps of #step (every coroutine the run touches adds to it). */
  #used = 0;
  readonly #step: number;
  /** Whether the VM runs on fuel (else the count hook alone keeps the budget). */
  readonly #fuel: boolean;
  /** Fuel given to each run, and the grace after it. */
  readonly #budget: number;
  readonly #grace: number;
  /** The coroutine of the run in progress, for the fuel handler and `runningL`. */
  #running: Coroutine | null = null;
  /** 0: within the budget; 1: out of fuel once, count hook armed on #armed; 2: out of grace fuel, unwinding. */
  #stage = 0;
  #armed = 0;
  #probing = false;
  /** The host fuel was refilled since the last run. */
  #refilled = false;

  private constructor(name: string, vm: LuaVm, limits: ScriptLimits, log: (level: LogLevel, message: string) => void) {
    this.name = name;
    this.vm = vm;
    this.limits = limits;
    this.log = log;
    this.#fuel = vm.fuel !== null;
    this.#step = this.#fuel ? 0 : Math.min(limits.instructionLimit, 10_000);
    this.#budget = limits.instructionLimit === 0 ? MAX_FUEL : Math.min(limits.instructionLimit, MAX_FUEL);
    this.#grace = Math.min(this.#budget, GRACE_FUEL);
    const { x, L } = vm;
    this.#hook = vm.addHook(this.#onBudget);
    if (this.#fuel) vm.onFuelOut = this.#onFuelOut;
    const host = makeHostFunctions(this);
    x.lua_createtable(L, 0, Object.keys(host).length);
    for (const [fname, fn] of Object.entries(host)) {
      vm.pushString(L, fname);
      x.lua_pushcclosure(L, vm.addFunction(fn), 0);
      x.lua_rawset(L, -3);
    }
    const hostRef = BigInt(x.luaL_ref(L, REGISTRY));
    // prelude.lua builds the API and returns run() and collect(); sandbox.lua then adds the shims and closes the doors.
    for (const [chunk, name, results] of [[PRELUDE, 'weir-prelude', 2], [SANDBOX, 'weir-sandbox', 0]] as const) {
      if (this.#load(chunk, name) !== LUA_OK) throw new Error(`Cannot load the Lua ${name}: ${vm.readString(L, -1)}`);
      x.lua_rawgeti(L, REGISTRY, hostRef);
      if (x.lua_pcallk(L, 1, results, 0, 0, 0) !== LUA_OK) throw new Error(`Cannot run the Lua ${name}: ${vm.readString(L, -1)}`);
    }
    x.luaL_unref(L, REGISTRY, Number(hostRef));
    this.#collectRef = BigInt(x.luaL_ref(L, REGISTRY));
    this.#runRef = BigInt(x.luaL_ref(L, REGISTRY));

  }

  /**
   * Creates the state, loads `source` as a text chunk named `name` and runs its top-level code within the budget.
   * Throws with Lua's message (which names the script and line) when the script does not compile or its top level fails.
   */
  static async create(name: string, source: string, limits: ScriptLimits, log: (level: LogLevel, message: string) => void): Promise<LuaScript> {
    const earlyReturn = (await probeFrames()) === null;
    const vm = await LuaVm.create({ memoryLimitBytes: limits.memoryLimitBytes, fuel: limits.instructionLimit !== 0 });
    try {
      const script = new LuaScript(name, vm, limits, log);
      script.earlyReturn = earlyReturn;
      script.#init(source);
      return script;
    } catch (err) {
      vm.close();
      throw err;
    }
  }

  #load(source: Uint8Array | string, chunkName: string): number {
    return loadChunk(this.vm, source, chunkName);
  }

  #init(source: string): void {
    const { vm } = this;
    const { x, L } = vm;
    if (this.#load(source, this.name) !== LUA_OK) {
      throw new Error(`Cannot compile Lua script "${this.name}": ${vm.readString(L, -1)}`);
    }
    const co = this.#thread();
    x.lua_xmove(L, co.L, 1);
    const r = this.#resume(co, 0);
    if (r.kind !== 'done') {
      const why = r.kind === 'error' ? r.message : 'script performed an unexpected yield';
      throw new Error(`Cannot run the top-level code of Lua script "${this.name}": ${why}`);
    }
    this.release(co);
    this.hasRequest = x.lua_getglobal(L, vm.cstring('envoy_on_request')) === 6;
    this.hasResponse = x.lua_getglobal(L, vm.cstring('envoy_on_response')) === 6;
    x.lua_settop(L, 0);
  }

  #thread(): Coroutine {
    const pooled = this.#pool.pop();
    if (pooled !== undefined) return pooled;
    const { x, L } = this.vm;
    const co = x.lua_newthread(L);
    const ref = x.luaL_ref(L, REGISTRY);
    return { L: co, ref };
  }

  /** Takes a coroutine from the pool (or makes one) for `start`. */
  coroutine(): Coroutine {
    if (this.broken) throw new Error('the Lua state was recycled');
    return this.#thread();
  }

  /**
   * Marks the state as unusable after a trap: the owner replaces it, and the streams suspended on it fail (on the next
   * microtask, outside the run that broke it) instead of waiting for a resume that cannot happen.
   */
  markBroken(): void {
    if (this.broken) return;
    this.broken = true;
    // From now on any call into the VM unwinds at its first fuel check (see #onFuelOut).
    if (this.#fuel) this.vm.setFuel(-1);
    if (this.suspended.size === 0) return;
    queueMicrotask(() => {
      for (const stream of this.suspended) stream.abandon();
      this.suspended.clear();
    });
  }

  /** Starts a handler (`dir` 0: request, 1: response) for `stream` in coroutine `co`; returns how the run ended. */
  start(stream: LuaStream, co: Coroutine, dir: 0 | 1): RunResult {
    const { x } = this.vm;
    if (this.broken) return RECYCLED;
    try {
      x.lua_rawgeti(co.L, REGISTRY, this.#runRef);
      x.lua_pushnumber(co.L, stream.id);
      x.lua_pushnumber(co.L, dir);
    } catch (err) {
      this.markBroken();
      return { kind: 'error', reason: 'error', message: `the Lua VM failed: ${(err as Error).message}` };
    }
    this.current = stream;
    return this.#resume(co, 2);
  }

  /** Resumes a suspended coroutine with the `nargs` values already pushed on its stack. */
  resume(stream: LuaStream, co: Coroutine, nargs: number): RunResult {
    if (this.broken) return RECYCLED;
    this.current = stream;
    return this.#resume(co, nargs);
  }

  #resume(co: Coroutine, nargs: number): RunResult {
    const { vm } = this;
    const { x } = vm;
    this.#budgetHit = false;
    this.#used = 0;
    this.#running = co;
    if (this.#fuel) {
      this.#stage = 0;
      this.#refilled = false;
      vm.setFuel(this.#budget);
    } else if (this.#step > 0) vm.setBudget(co.L, this.#hook, this.#step);
    let st: number;
    try {
      st = x.lua_resume(co.L, vm.L, nargs, vm.nresPtr);
    } catch (err) {
      const overrun = this.#fuel && this.#stage === 2;
      this.#running = null;
      this.markBroken();
      this.current = null;
      if (overrun) return { kind: 'error', reason: 'budget', message: `${this.#where(co.L)}instruction limit of ${this.limits.instructionLimit} exceeded (in a C function or a nested coroutine; the Lua state is recycled)` };
      return { kind: 'error', reason: 'error', message: `the Lua VM failed: ${(err as Error).message}` };
    }
    this.current = null;
    this.#running = null;
    if (this.#fuel) {
      // What fuel is left stays: host calls before the next run refill it in #onFuelOut should they use it up.
      if (this.#armed !== 0) {
        vm.setFuel(HOST_FUEL);
        x.lua_sethook(this.#armed, 0, 0, 0);
        this.#armed = 0;
      }
    }
    if (st === LUA_OK) {
      const u8 = vm.u8();
      const p = vm.nresPtr;
      if ((u8[p] | u8[p + 1] | u8[p + 2] | u8[p + 3]) !== 0) x.lua_settop(co.L, 0);
      return DONE;
    }
    if (st === LUA_YIELD) {
      x.lua_settop(co.L, 0);
      return YIELD;
    }
    const message = vm.readString(co.L, -1) ?? '(error object is not a string)';
    const reason = st === LUA_ERRMEM ? 'memory' : this.#budgetHit ? 'budget' : 'error';
    return { kind: 'error', reason, message };
  }

  /** Returns a coroutine whose run just ended normally (its stack is empty) to the pool. */
  recycle(co: Coroutine): void {
    if (this.#pool.length < MAX_POOLED) this.#pool.push(co);
    else this.vm.x.luaL_unref(this.vm.L, REGISTRY, co.ref);
  }

  /**
   * Returns a coroutine its stream is done with to the pool. One that is suspended (after respond(), or on a stream
   * that went away) or that failed is reset first (lua_resetthread, which runs pending __close handlers): cheaper than
   * making a new one for the next request.
   */
  release(co: Coroutine): void {
    const { x, L } = this.vm;
    if (this.broken) return;
    if (this.#pool.length >= MAX_POOLED) {
      x.luaL_unref(L, REGISTRY, co.ref);
      return;
    }
    if (x.lua_status(co.L) !== LUA_OK || x.lua_gettop(co.L) !== 0) {
      let st: number;
      try {
        st = x.lua_resetthread(co.L);
      } catch {
        // A __close handler ran out of fuel or the VM trapped: the state cannot be trusted any more.
        this.markBroken();
        return;
      }
      if (st !== LUA_OK) {
        x.lua_settop(co.L, 0);
        x.luaL_unref(L, REGISTRY, co.ref);
        return;
      }
    }
    this.#pool.push(co);
  }

  /**
   * The fuel handler (see the top of this file): called inside the Wasm code when the fuel goes below zero.
   */
  readonly #onFuelOut = (): void => {
    const vm = this.vm;
    if (this.#probing || this.broken) throw new FuelExhausted(this.broken ? 'the Lua state was recycled' : 'probe out of fuel');
    const co = this.#running;
    if (co === null) {
      // Host calls between runs: refill once, so that Lua code they trigger cannot run forever either.
      if (this.#refilled) throw new FuelExhausted(`Lua code run outside a handler (a metamethod?) used more than ${HOST_FUEL} units of fuel`);
      this.#refilled = true;
      vm.setFuel(HOST_FUEL);
      return;
    }
    if (this.#stage === 0) {
      this.#stage = 1;
      this.#budgetHit = true;
      vm.setFuel(this.#grace);
      this.#armed = co.L;
      vm.setBudget(co.L, this.#hook, 1);
      return;
    }
    // The fuel stays negative: any further Wasm call of this run lands here again and unwinds too.
    this.#stage = 2;
    throw new FuelExhausted(`instruction limit of ${this.limits.instructionLimit} exceeded`);
  };

  /** "<source>:<line>: " of the innermost Lua frame of `L` after an unwind, read with a little fuel; '' if unknown. */
  #where(L: number): string {
    const vm = this.vm;
    const { x } = vm;
    let ar = 0;
    this.#probing = true;
    vm.setFuel(PROBE_FUEL);
    try {
      ar = x.malloc(AR_SIZE);
      if (ar === 0) return '';
      const what = vm.cstring('Sl');
      for (let level = 0; level < 8 && x.lua_getstack(L, level, ar) !== 0; level++) {
        if (x.lua_getinfo(L, what, ar) === 0) break;
        const u8 = vm.u8();
        const line = u8[ar + 24] | (u8[ar + 25] << 8) | (u8[ar + 26] << 16) | (u8[ar + 27] << 24);
        if (line <= 0) continue;
        let src = '';
        for (let i = ar + 44; i < ar + 104 && u8[i] !== 0; i++) src += String.fromCharCode(u8[i]);
        return `${src}:${line}: `;
      }
      return '';
    } catch {
      return '';
    } finally {
      this.#probing = false;
      vm.setFuel(-1);
    }
  }

  /**
   * The count hook: runs every #step instructions of any coroutine of this state (coroutines a script creates inherit
   * it), so the limit covers all the Lua code a run executes, whichever thread runs it.
   */
  readonly #onBudget = (L: number, ar: number): void => {
    const { vm } = this;
    // On fuel, the hook is armed only once the fuel ran out: raise at once.
    this.#used += this.#step;
    if (!this.#fuel && this.#used < this.limits.instructionLimit) return;
    this.#budgetHit = true;
    // From now on every instruction of this run raises, so that a script catching the error with pcall cannot
    // go on (the next resume re-arms the full budget).
    vm.setBudget(L, this.#hook, 1);
    let where = '';
    if (vm.x.lua_getinfo(L, vm.cstring('Sl'), ar) !== 0) {
      const u8 = vm.u8();
      const line = u8[ar + 24] | (u8[ar + 25] << 8) | (u8[ar + 26] << 16) | (u8[ar + 27] << 24);
      let src = '';
      for (let i = ar + 44; i < ar + 104 && u8[i] !== 0; i++) src += String.fromCharCode(u8[i]);
      where = `${src}:${line}: `;
    }
    vm.pushString(L, `${where}instruction limit of ${this.limits.instructionLimit} exceeded`);
    vm.x.lua_error(L);
  };

  /** Runs a full garbage collection; returns the Lua heap in KiB. */
  collect(): number {
    const { x, L } = this.vm;
    x.lua_rawgeti(L, REGISTRY, this.#collectRef);
    if (x.lua_pcallk(L, 0, 1, 0, 0, 0) !== LUA_OK) {
      x.lua_settop(L, 0);
      return -1;
    }
    const kb = x.lua_tonumberx(L, -1, 0);
    x.lua_settop(L, 0);
    return kb;
  }

  /** Marks a stream as using this state. */
  enter(): void {
    this.inFlight++;
  }

  /** Marks a stream as done with this state; the last one out of a retired state closes it. */
  leave(): void {
    this.inFlight--;
    if (this.retired && this.inFlight === 0) this.close();
  }

  /** Stops handing the state to new streams; closes it now if none is in flight. */
  retire(): void {
    this.retired = true;
    if (this.inFlight === 0) this.close();
  }

  /** Closes the state. */
  close(): void {
    this.vm.close();
  }
}

/** Loads a text chunk (never bytecode) named "@<chunkName>" onto the VM's stack; returns the Lua status. */
function loadChunk(vm: LuaVm, source: Uint8Array | string, chunkName: string): number {
  const bytes = typeof source === 'string' ? Buffer.from(source) : source;
  const name = Buffer.from('@' + chunkName + '\0');
  const p = vm.x.malloc(bytes.length + 1);
  const namePtr = vm.x.malloc(name.length + 2);
  try {
    vm.u8().set(bytes, p);
    vm.u8().set(name, namePtr);
    vm.u8().set([0x74, 0], namePtr + name.length); // mode "t": text chunks only
    return vm.x.luaL_loadbufferx(vm.L, p, bytes.length, namePtr, namePtr + name.length);
  } finally {
    vm.x.free(p);
    vm.x.free(namePtr);
  }
}

/**
 * Compiles `source` without running it, in a throwaway VM: returns the syntax error ("name:line: message"), or
 * null. The main thread calls this when a config loads, so that `weir validate` and a reload report a broken
 * script before any worker builds it.
 */
export async function syntaxError(name: string, source: string): Promise<string | null> {
  const vm = await LuaVm.create({ memoryLimitBytes: 64 * 1024 * 1024, fuel: false });
  try {
    return loadChunk(vm, source, name) === LUA_OK ? null : vm.readString(vm.L, -1) ?? 'syntax error';
  } finally {
    vm.close();
  }
}
