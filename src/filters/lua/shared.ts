/**
 * `weir.shared`: dictionaries that every worker sees, in the spirit of OpenResty's `ngx.shared.DICT`, on top of the
 * process-wide shared store. Each dictionary is a namespace `lua:<name>` of the store.
 *
 * Values keep their Lua type: numbers are stored as decimal text (so `incr` works on them and counters from all
 * workers add up), strings with a 0x01 prefix byte, booleans as 0x02 + "0"/"1". TTLs are in seconds, as in OpenResty.
 */
import { sharedStore, type SharedStore } from '../../core/shared-store.ts';
import { T_BOOLEAN, T_NIL, T_NUMBER, T_STRING, type LuaVm } from './vm.ts';

const TAG_STRING = 0x01;
const TAG_BOOLEAN = 0x02;
const encoder = new TextEncoder();

/** Serves the `H.shared(op, ns, key, ...)` host call. */
export class SharedBridge {
  readonly #store: () => SharedStore;

  /** `store` defaults to this thread's shared store (attached by the worker, or a private one in tests). */
  constructor(store: () => SharedStore = sharedStore) {
    this.#store = store;
  }

  /**
   * Runs one operation with arguments on the Lua stack: op (0 get, 1 set, 2 add, 3 incr, 4 delete), dictionary,
   * key, then the operation's own arguments. Pushes OpenResty-style results and returns their count.
   */
  call(L: number, vm: LuaVm): number {
    const x = vm.x;
    const op = x.lua_tonumberx(L, 1, 0);
    const ns = 'lua:' + vm.readString(L, 2)!;
    const key = vm.readString(L, 3)!;
    const store = this.#store();
    switch (op) {
      case 0: {
        const e = store.get(ns, key);
        if (e === undefined) {
          x.lua_pushnil(L);
          return 1;
        }
        const v = e.value;
        if (v.length > 0 && v[0] === TAG_STRING) vm.pushBytes(L, v.subarray(1));
        else if (v.length > 0 && v[0] === TAG_BOOLEAN) x.lua_pushboolean(L, v[1] === 0x31 ? 1 : 0);
        else vm.pushNumber(L, Number(new TextDecoder().decode(v)));
        return 1;
      }
      case 1:
      case 2: {
        const value = encode(L, vm, 4);
        if (value === undefined) return pushFalse(L, vm, 'bad value type');
        if (value === null) {
          if (op === 2) return pushFalse(L, vm, 'bad value type');
          store.delete(ns, key);
          x.lua_pushboolean(L, 1);
          return 1;
        }
        const ttlMs = ttl(L, vm, 5);
        const r = op === 1 ? store.set(ns, key, value, { ttlMs }) : store.add(ns, key, value, { ttlMs });
        if (r === 'ok') {
          x.lua_pushboolean(L, 1);
          return 1;
        }
        return pushFalse(L, vm, r === 'exists' ? 'exists' : 'no memory');
      }
      case 3: {
        if (x.lua_type(L, 4) !== T_NUMBER) return pushFalse(L, vm, 'value is not a number', true);
        const delta = x.lua_tonumberx(L, 4, 0);
        const init = x.lua_type(L, 5) === T_NUMBER ? x.lua_tonumberx(L, 5, 0) : undefined;
        const r = store.incr(ns, key, delta, { init, ttlMs: ttl(L, vm, 6) });
        if (typeof r === 'number') {
          vm.pushNumber(L, r);
          return 1;
        }
        return pushFalse(L, vm, r === 'not-found' ? 'not found' : r === 'not-a-number' ? 'not a number' : 'no memory', true);
      }
      case 4:
        x.lua_pushboolean(L, store.delete(ns, key) ? 1 : 0);
        return 1;
      default:
        return 0;
    }
  }
}

/** The stored form of the value at `idx`; null for nil (set deletes), undefined for types that cannot be stored. */
function encode(L: number, vm: LuaVm, idx: number): Uint8Array | null | undefined {
  const t = vm.x.lua_type(L, idx);
  if (t === T_NUMBER) return encoder.encode(String(vm.x.lua_tonumberx(L, idx, 0)));
  if (t === T_BOOLEAN) return Uint8Array.of(TAG_BOOLEAN, vm.x.lua_toboolean(L, idx) ? 0x31 : 0x30);
  if (t === T_STRING) {
    const b = vm.readBytes(L, idx)!;
    const out = new Uint8Array(b.length + 1);
    out[0] = TAG_STRING;
    out.set(b, 1);
    return out;
  }
  if (t === T_NIL) return null;
  return undefined;
}

function ttl(L: number, vm: LuaVm, idx: number): number | undefined {
  if (vm.x.lua_type(L, idx) !== T_NUMBER) return undefined;
  const s = vm.x.lua_tonumberx(L, idx, 0);
  return s > 0 ? Math.max(1, Math.round(s * 1000)) : undefined;
}

function pushFalse(L: number, vm: LuaVm, message: string, nil = false): number {
  if (nil) vm.x.lua_pushnil(L);
  else vm.x.lua_pushboolean(L, 0);
  vm.pushString(L, message);
  return 2;
}
