/**
 * One Lua 5.4 virtual machine: a private instance of wasmoon's Wasm build, driven through the raw exports of the
 * Wasm module (the `lua_*` C API) rather than wasmoon's convenience layer, which converts every value on every call.
 *
 * Each VM has its own Wasm linear memory, so its memory cap costs nothing per allocation: the instance may grow its
 * memory only up to `memoryLimitBytes` beyond its initial size; past that `malloc` fails and Lua raises
 * "not enough memory" in the script that asked.
 *
 * The module is compiled once per process after src/filters/wasm/instrument.ts added a fuel counter to it: every
 * loop iteration of the interpreter and of the C library (string.rep, table.move, pattern matching, the garbage
 * collector...) takes one unit, and running out calls `onFuelOut` of the VM (script.ts turns that into the
 * instruction budget). Function entries are not metered: they would double the checks on the request path, and
 * code without loops cannot run long (recursion ends at Lua's C-call limit or the Wasm stack). If the module cannot
 * be instrumented, it is compiled as it is and `fuel` is null: script.ts then falls back to Lua's count hook. VMs of
 * scripts without a limit (`fuel: false`) use the module as it is, compiled once too, and pay nothing for the budget.
 */
import { Buffer } from 'node:buffer';
import { LuaWasm } from 'wasmoon';
import { instrument, FUEL_EXPORT, FUEL_HANDLER_EXPORT, FUEL_SETTER_EXPORT } from '../wasm/instrument.ts';

/** `LUA_REGISTRYINDEX` of this build (LUAI_MAXSTACK = 1e6). */
export const REGISTRY = -1001000;
/** Thread statuses returned by `lua_resume` and `lua_pcallk`. */
export const LUA_OK = 0;
export const LUA_YIELD = 1;
export const LUA_ERRRUN = 2;
export const LUA_ERRMEM = 4;
/** Lua type tags. */
export const T_NIL = 0;
export const T_BOOLEAN = 1;
export const T_NUMBER = 3;
export const T_STRING = 4;
export const T_TABLE = 5;
const MASK_COUNT = 8;

/** The raw C API exports this binding calls; every pointer and `lua_State*` is a number. */
export interface RawLua {
  memory: WebAssembly.Memory;
  malloc(n: number): number;
  free(p: number): void;
  luaL_newstate(): number;
  luaL_openlibs(L: number): void;
  luaL_loadbufferx(L: number, buf: number, len: number, name: number, mode: number): number;
  luaL_ref(L: number, t: number): number;
  luaL_unref(L: number, t: number, ref: number): void;
  lua_close(L: number): void;
  lua_newthread(L: number): number;
  lua_resetthread(L: number): number;
  lua_gettop(L: number): number;
  lua_settop(L: number, idx: number): void;
  lua_pushvalue(L: number, idx: number): void;
  lua_type(L: number, idx: number): number;
  lua_tonumberx(L: number, idx: number, isnum: number): number;
  lua_toboolean(L: number, idx: number): number;
  lua_tolstring(L: number, idx: number, len: number): number;
  lua_rawlen(L: number, idx: number): bigint | number;
  lua_pushnil(L: number): void;
  lua_pushnumber(L: number, n: number): void;
  lua_pushinteger(L: number, n: bigint): void;
  lua_pushlstring(L: number, s: number, len: number): number;
  lua_pushcclosure(L: number, fn: number, n: number): void;
  lua_pushboolean(L: number, b: number): void;
  lua_rawgeti(L: number, idx: number, n: bigint): number;
  lua_rawseti(L: number, idx: number, n: bigint): void;
  lua_rawset(L: number, idx: number): void;
  lua_getglobal(L: number, name: number): number;
  lua_createtable(L: number, narr: number, nrec: number): void;
  lua_next(L: number, idx: number): number;
  lua_pcallk(L: number, nargs: number, nresults: number, errfunc: number, ctx: number, k: number): number;
  lua_resume(L: number, from: number, narg: number, nres: number): number;
  lua_status(L: number): number;
  lua_error(L: number): number;
  lua_sethook(L: number, fn: number, mask: number, count: number): void;
  lua_getinfo(L: number, what: number, ar: number): number;
  lua_getstack(L: number, level: number, ar: number): number;
  lua_isinteger(L: number, idx: number): number;
  lua_xmove(from: number, to: number, n: number): void;
  lua_checkstack(L: number, n: number): number;
  lua_topointer(L: number, idx: number): number;
}

/** How deep tables may nest when they cross between Lua and JS (metadata, respond headers); deeper is an error. */
export const MAX_TABLE_DEPTH = 16;

/** Options of a VM. */
export interface LuaVmOptions {
  /** How many bytes the Wasm memory may grow beyond its initial 16 MiB. */
  memoryLimitBytes: number;
  /** Run on the fuel-instrumented module (default); false: the module as wasmoon ships it (no budget at all). */
  fuel?: boolean;
}

/** The largest fuel value (the fuel global is an i32): what the host runs with outside a handler run. */
export const MAX_FUEL = 0x7fffffff;
/** The memory maximum of wasmoon's module (2 GiB); instrumenting keeps it, the per-VM cap is `memoryLimitBytes`. */
const MODULE_MAX_MEMORY = 2 ** 31;

/** The compiled module, instrumented (true) or not (false). */
const compiled = new Map<boolean, Promise<WebAssembly.Module>>();
let instantiating: Promise<unknown> = Promise.resolve();
/** Why the compiled module has no fuel counter (the count hook budgets scripts then); null when it has one. */
let noFuelReason: string | null = null;

/** Null when Lua VMs run on fuel; otherwise why they cannot (and the count hook is used). */
export function fuelUnavailableReason(): string | null {
  return noFuelReason;
}

async function compileLua(source: unknown): Promise<WebAssembly.Module> {
  if (source instanceof WebAssembly.Module) {
    noFuelReason = 'wasmoon handed over an already compiled module, which cannot be instrumented';
    return source;
  }
  const bytes = source instanceof ArrayBuffer ? new Uint8Array(source) : (source as Uint8Array);
  try {
    const { bytes: rewritten } = instrument(bytes, MODULE_MAX_MEMORY, { handler: true, entries: false });
    return await WebAssembly.compile(rewritten as Uint8Array<ArrayBuffer>);
  } catch (err) {
    noFuelReason = `the Lua Wasm module could not be instrumented: ${(err as Error).message}`;
    return WebAssembly.compile(bytes as Uint8Array<ArrayBuffer>);
  }
}

/**
 * Instantiates wasmoon's Emscripten glue with three changes made at the one place where it hands its imports to
 * `WebAssembly.instantiate`: the compiled module (with or without fuel) is reused across VMs, `emscripten_resize_heap` refuses to
 * grow past the VM's cap, and `invoke_vii` (the setjmp trampoline of every protected call) skips the glue's checks. wasmoon offers no option for either, so the patch is scoped to this call and serialised.
 */
async function instantiate(limitBytes: number, fuel: boolean): Promise<{ wasm: LuaWasm; raw: Record<string, any> }> {
  const run = instantiating.then(async () => {
    const original = WebAssembly.instantiate;
    let exports: Record<string, any> | undefined;
    (WebAssembly as any).instantiate = async function patchedInstantiate(source: any, imports: any) {
      const env = imports?.env;
      if (env === undefined || typeof env.emscripten_resize_heap !== 'function' || typeof env.invoke_vii !== 'function') {
        return original.call(WebAssembly, source, imports);
      }
      const grow = env.emscripten_resize_heap;
      let cap = 0;
      let raw: Record<string, any> | undefined;
      const table: ((a: number, b: number) => void)[] = [];
      // Lua's protected calls (every lua_resume and pcall) go through invoke_vii. The glue's version calls
      // stackSave through an asserting wrapper and re-reads the function table on every call; this one does not.
      env.invoke_vii = function fastInvokeVii(index: number, a: number, b: number): void {
        const ex = raw!;
        const sp = ex.stackSave();
        try {
          let fn = table[index];
          if (fn === undefined) fn = table[index] = (ex.__indirect_function_table as WebAssembly.Table).get(index);
          fn(a, b);
        } catch (err) {
          ex.stackRestore(sp);
          if (err !== (err as number) + 0) throw err; // a longjmp (Lua error or yield) throws a number
          ex.setThrew(1, 0);
        }
      };
      env.emscripten_resize_heap = function cappedResizeHeap(requested: number): number | boolean {
        return requested >>> 0 > cap ? 0 : grow(requested);
      };
      let pending = compiled.get(fuel);
      if (pending === undefined) {
        pending = fuel ? compileLua(source) : source instanceof WebAssembly.Module ? Promise.resolve(source) : WebAssembly.compile(source);
        compiled.set(fuel, pending);
      }
      const module = await pending;
      const instance = await original.call(WebAssembly, module, imports);
      exports = (instance as unknown as WebAssembly.Instance).exports as Record<string, any>;
      raw = exports;
      cap = (exports.memory as WebAssembly.Memory).buffer.byteLength + limitBytes;
      return { module, instance };
    };
    try {
      const wasm = await LuaWasm.initialize();
      if (exports === undefined) throw new Error('Cannot start a Lua VM: wasmoon did not instantiate through WebAssembly.instantiate');
      return { wasm, raw: exports };
    } finally {
      (WebAssembly as any).instantiate = original;
    }
  });
  instantiating = run.catch(() => undefined);
  return run;
}

/** One Lua state in its own Wasm instance, with helpers to move strings and plain values across. */
export class LuaVm {
  /** The main thread. */
  readonly L: number;
  readonly x: RawLua;
  readonly #wasm: LuaWasm;
  #u8: Uint8Array;
  #buf: Buffer;
  /** A reused scratch area in Wasm memory for strings going into Lua. */
  #scratch = 0;
  #scratchSize = 0;
  /** Holds a `size_t` written by `lua_tolstring`. */
  readonly #lenPtr: number;
  /** Holds the result count written by `lua_resume`. */
  readonly nresPtr: number;
  #closed = false;
  readonly #decoder = new TextDecoder();
  /** The fuel counter of this instance; null when the module is not instrumented. */
  readonly fuel: WebAssembly.Global | null;
  /** Sets the fuel: the module's exported setter (a call into Wasm costs less than the Global's setter), or the Global. */
  readonly setFuel: (n: number) => void;
  /**
   * Called from inside the Wasm code when the fuel goes below zero. It may refill `fuel` and return (execution goes
   * on) or throw (the call unwinds to the host like a trap). It must refill before it calls into the VM.
   */
  onFuelOut: () => void = () => {
    this.setFuel(MAX_FUEL);
  };

  private constructor(wasm: LuaWasm, raw: Record<string, any>) {
    this.#wasm = wasm;
    this.x = raw as unknown as RawLua;
    this.fuel = (raw[FUEL_EXPORT] as WebAssembly.Global | undefined) ?? null;
    const fuel = this.fuel;
    this.setFuel = (raw[FUEL_SETTER_EXPORT] as ((n: number) => void) | undefined) ?? function setFuelGlobal(n: number): void {
      fuel!.value = n;
    };
    if (this.fuel !== null) {
      this.setFuel(MAX_FUEL);
      (raw[FUEL_HANDLER_EXPORT] as WebAssembly.Global).value = wasm.module.addFunction(() => this.onFuelOut(), 'v');
    }
    this.#u8 = new Uint8Array(this.x.memory.buffer);
    this.#buf = Buffer.from(this.x.memory.buffer);
    this.#lenPtr = this.x.malloc(16);
    this.nresPtr = this.#lenPtr + 8;
    this.#ensureScratch(4096);
    this.L = this.x.luaL_newstate();
    if (this.L === 0) throw new Error('Cannot create a Lua state: out of memory');
    this.x.luaL_openlibs(this.L);
  }

  /** Creates a VM with the standard libraries open; the caller sandboxes it. */
  static async create(options: LuaVmOptions): Promise<LuaVm> {
    const { wasm, raw } = await instantiate(options.memoryLimitBytes, options.fuel ?? true);
    return new LuaVm(wasm, raw);
  }

  /** Registers a JS function as a Lua C function (`int f(lua_State*)`); returns its table index. */
  addFunction(fn: (L: number) => number): number {
    return this.#wasm.module.addFunction(fn, 'ii');
  }

  /** Registers a count hook (`void f(lua_State*, lua_Debug*)`). */
  addHook(fn: (L: number, ar: number) => void): number {
    return this.#wasm.module.addFunction(fn, 'vii');
  }

  /** Arms the instruction budget of thread `L`: the hook runs after `count` more VM instructions. */
  setBudget(L: number, hook: number, count: number): void {
    this.x.lua_sethook(L, hook, MASK_COUNT, count);
  }

  /** The current view of Wasm memory (memory growth replaces the underlying buffer). */
  u8(): Uint8Array {
    if (this.#u8.byteLength === 0) this.#refresh();
    return this.#u8;
  }

  #bytes(): Buffer {
    if (this.#buf.byteLength === 0 || this.#u8.byteLength === 0) this.#refresh();
    return this.#buf;
  }

  #refresh(): void {
    this.#u8 = new Uint8Array(this.x.memory.buffer);
    this.#buf = Buffer.from(this.x.memory.buffer);
  }

  #ensureScratch(n: number): number {
    if (n > this.#scratchSize) {
      if (this.#scratch !== 0) this.x.free(this.#scratch);
      const size = Math.max(n, this.#scratchSize * 2, 4096);
      this.#scratch = this.x.malloc(size);
      if (this.#scratch === 0) throw new Error('Cannot allocate a string buffer in the Lua VM: out of memory');
      this.#scratchSize = size;
    }
    return this.#scratch;
  }

  /** Pushes a number as a Lua integer when it is one (so `tostring` prints "6", not "6.0"), else as a float. */
  pushNumber(L: number, n: number): void {
    if (Number.isSafeInteger(n)) this.x.lua_pushinteger(L, BigInt(n));
    else this.x.lua_pushnumber(L, n);
  }

  /** Pushes a JS string whose characters are bytes (latin1: header names and values) without allocating in JS. */
  pushLatin1(L: number, s: string): void {
    const n = s.length;
    const p = this.#ensureScratch(n);
    if (n <= 64) {
      const u8 = this.u8();
      for (let i = 0; i < n; i++) u8[p + i] = s.charCodeAt(i);
    } else this.#bytes().write(s, p, 'latin1');
    this.x.lua_pushlstring(L, p, n);
  }

  /** Pushes a JS string encoded as UTF-8. */
  pushString(L: number, s: string): void {
    const max = s.length * 3;
    const p = this.#ensureScratch(max);
    const n = this.#bytes().write(s, p, 'utf8');
    this.x.lua_pushlstring(L, p, n);
  }

  /** Pushes bytes. */
  pushBytes(L: number, b: Uint8Array): void {
    const p = this.#ensureScratch(b.length);
    this.u8().set(b, p);
    this.x.lua_pushlstring(L, p, b.length);
  }

  /** Pushes a C string for the API calls that take one (field names, chunk names); returns its pointer. */
  cstring(s: string): number {
    const p = this.#ensureScratch(s.length * 3 + 1);
    const n = this.#bytes().write(s, p, 'utf8');
    this.u8()[p + n] = 0;
    return p;
  }

  /** Reads the string (or number) at `idx` as latin1 characters; undefined for other types. */
  readLatin1(L: number, idx: number): string | undefined {
    const p = this.x.lua_tolstring(L, idx, this.#lenPtr);
    if (p === 0) return undefined;
    const n = this.#len();
    const u8 = this.u8();
    if (n <= 24) {
      let s = '';
      for (let i = 0; i < n; i++) s += String.fromCharCode(u8[p + i]);
      return s;
    }
    return this.#bytes().toString('latin1', p, p + n);
  }

  /** Reads the string (or number) at `idx` decoded as UTF-8; undefined for other types. */
  readString(L: number, idx: number): string | undefined {
    const p = this.x.lua_tolstring(L, idx, this.#lenPtr);
    if (p === 0) return undefined;
    const n = this.#len();
    return this.#decoder.decode(this.u8().subarray(p, p + n));
  }

  /** Copies the bytes of the string at `idx` into a new Buffer; undefined for other types. */
  readBytes(L: number, idx: number): Buffer | undefined {
    const p = this.x.lua_tolstring(L, idx, this.#lenPtr);
    if (p === 0) return undefined;
    const n = this.#len();
    const out = Buffer.allocUnsafe(n);
    this.#bytes().copy(out, 0, p, p + n);
    return out;
  }

  #len(): number {
    const u8 = this.u8();
    const q = this.#lenPtr;
    return (u8[q] | (u8[q + 1] << 8) | (u8[q + 2] << 16) | (u8[q + 3] << 24)) >>> 0;
  }

  /**
   * Converts the Lua value at `idx` into plain JS data (tables become arrays or objects). Throws an Error for a
   * table that contains itself or nests deeper than MAX_TABLE_DEPTH: every level needs Lua stack room, and a host
   * function that outgrows its stack corrupts the VM.
   */
  readValue(L: number, idx: number, depth = 0, seen: number[] = []): unknown {
    const x = this.x;
    switch (x.lua_type(L, idx)) {
      case T_NIL:
        return null;
      case T_BOOLEAN:
        return x.lua_toboolean(L, idx) !== 0;
      case T_NUMBER:
        return x.lua_tonumberx(L, idx, 0);
      case T_STRING:
        return this.readString(L, idx);
      case T_TABLE: {
        if (depth >= MAX_TABLE_DEPTH) throw new Error(`table nests deeper than ${MAX_TABLE_DEPTH} levels`);
        const abs = idx < 0 && idx > REGISTRY ? x.lua_gettop(L) + idx + 1 : idx;
        const ptr = x.lua_topointer(L, abs);
        if (seen.includes(ptr)) throw new Error('table contains itself (a cycle)');
        if (x.lua_checkstack(L, 4) === 0) throw new Error('Lua stack overflow while reading a table');
        seen.push(ptr);
        const n = Number(x.lua_rawlen(L, abs));
        const obj: Record<string, unknown> = {};
        let keys = 0;
        let arrayLike = true;
        x.lua_pushnil(L);
        while (x.lua_next(L, abs) !== 0) {
          const kt = x.lua_type(L, -2);
          let key: string;
          if (kt === T_NUMBER) {
            const k = x.lua_tonumberx(L, -2, 0);
            if (!(Number.isInteger(k) && k >= 1 && k <= n)) arrayLike = false;
            key = String(k);
          } else {
            arrayLike = false;
            key = kt === T_STRING ? this.readString(L, -2)! : String(x.lua_type(L, -2));
          }
          try {
            obj[key] = this.readValue(L, -1, depth + 1, seen);
          } catch (err) {
            x.lua_settop(L, -3);
            seen.pop();
            throw err;
          }
          keys++;
          x.lua_settop(L, -2);
        }
        seen.pop();
        if (keys > 0 && arrayLike && keys === n) {
          const arr: unknown[] = [];
          for (let i = 1; i <= n; i++) arr.push(obj[String(i)]);
          return arr;
        }
        return obj;
      }
      default:
        return null;
    }
  }

  /**
   * Pushes plain JS data: null/undefined → nil, arrays → sequences, objects → tables, Buffers → strings. Data nested
   * deeper than MAX_TABLE_DEPTH (or a JS object that contains itself) is cut off with nil there.
   */
  pushValue(L: number, v: unknown, depth = 0): void {
    const x = this.x;
    if (typeof v === 'object' && v !== null && !(v instanceof Uint8Array) && (depth >= MAX_TABLE_DEPTH || x.lua_checkstack(L, 4) === 0)) {
      x.lua_pushnil(L);
      return;
    }
    if (v === null || v === undefined) x.lua_pushnil(L);
    else if (typeof v === 'string') this.pushString(L, v);
    else if (typeof v === 'number') this.pushNumber(L, v);
    else if (typeof v === 'boolean') x.lua_pushboolean(L, v ? 1 : 0);
    else if (typeof v === 'bigint') x.lua_pushnumber(L, Number(v));
    else if (v instanceof Uint8Array) this.pushBytes(L, v);
    else if (Array.isArray(v)) {
      x.lua_createtable(L, v.length, 0);
      for (let i = 0; i < v.length; i++) {
        this.pushValue(L, v[i], depth + 1);
        x.lua_rawseti(L, -2, BigInt(i + 1));
      }
    } else if (v instanceof Map) {
      x.lua_createtable(L, 0, v.size);
      for (const [k, val] of v) {
        this.pushString(L, String(k));
        this.pushValue(L, val, depth + 1);
        x.lua_rawset(L, -3);
      }
    } else if (typeof v === 'object') {
      const entries = Object.entries(v as object);
      x.lua_createtable(L, 0, entries.length);
      for (const [k, val] of entries) {
        this.pushString(L, k);
        this.pushValue(L, val, depth + 1);
        x.lua_rawset(L, -3);
      }
    } else x.lua_pushnil(L);
  }

  /** Whether `close` ran. */
  get closed(): boolean {
    return this.#closed;
  }

  /** Size of the Wasm memory in bytes. */
  get memoryBytes(): number {
    return this.x.memory.buffer.byteLength;
  }

  /** Closes the Lua state; the Wasm instance goes with the last reference to this object. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    try {
      this.x.lua_close(this.L);
    } catch {
      // A VM that aborted cannot be closed; dropping it frees its memory.
    }
  }
}
