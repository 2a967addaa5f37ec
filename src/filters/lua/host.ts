/**
 * The host functions the Lua prelude calls. Each takes its arguments from the Lua stack (small integers select the
 * direction, header map or buffer; header names arrive as interned ids) and acts on the stream whose coroutine runs
 * now (`script.current`). Errors a script should see come back as a string result that the prelude raises with the
 * caller's line, so no JS exception crosses the Wasm boundary.
 */
import { Buffer } from 'node:buffer';
import { HeaderMap, validReasonPhrase } from '../../core/headers.ts';
import { T_NIL, T_NUMBER, T_STRING, T_TABLE, type LuaVm, type RawLua } from './vm.ts';
import type { LuaScript } from './script.ts';
import { WAIT_BODY, WAIT_CHUNK, WAIT_HTTP, WAIT_RESPONDED, WAIT_TRAILERS, type DirState, type LuaStream } from './stream.ts';
import { makeInfoFunctions } from './host-info.ts';
import { returnToBase } from './frames.ts';

export type { StatsSink } from './host-info.ts';

/** What host functions share: the script, its VM and helpers that read arguments and push results. */
export interface HostContext {
  readonly script: LuaScript;
  readonly vm: LuaVm;
  readonly x: RawLua;
  /** Reads argument `i` as a number. */
  num(L: number, i: number): number;
  /** Pushes an error message as the result, for the prelude to raise with the caller's line. */
  fail(L: number, message: string): number;
  /** Pushes nil as the result. */
  nil(L: number): number;
  /** The stream whose coroutine runs now; throws outside a handler. */
  stream(): LuaStream;
  /** The direction state that argument `i` selects (0 request, 1 response). */
  dirOf(L: number, i: number): DirState;
}

const MAX_NAMES = 8192;
const REQUEST_PSEUDO = [':method', ':path', ':authority', ':scheme'];
const TYPE_NAMES = ['nil', 'boolean', 'userdata', 'number', 'string', 'table', 'function', 'userdata', 'thread'];

/** Builds the host function table for one script's Lua state: header maps, bodies, respond and httpCall here, the rest in host-info.ts. */
export function makeHostFunctions(script: LuaScript): Record<string, (L: number) => number> {
  const vm = script.vm;
  const x = vm.x;
  const names = script.names;
  const ids = script.nameIds;

  const num = (L: number, i: number): number => x.lua_tonumberx(L, i, 0);
  const fail = (L: number, message: string): number => {
    vm.pushString(L, message);
    return 1;
  };
  const stream = () => {
    const s = script.current;
    if (s === null) throw new Error('this API is only available inside envoy_on_request or envoy_on_response');
    return s;
  };
  const nil = (L: number): number => {
    x.lua_pushnil(L);
    return 1;
  };
  const outside = (L: number): number => {
    vm.pushString(L, 'object used outside of proper scope');
    return x.lua_error(L);
  };
  const dirOf = (L: number, i: number): DirState => {
    const s = stream();
    return num(L, i) === 0 ? s.req : s.resp;
  };

  /** The key of the table entry lua_next left at -2, as latin1 (a number key is read from a copy: converting the key itself would break lua_next). */
  const tableKey = (L: number): string | undefined => {
    const t = x.lua_type(L, -2);
    if (t === T_STRING) return vm.readLatin1(L, -2);
    if (t !== T_NUMBER) return undefined;
    return String(x.lua_tonumberx(L, -2, 0));
  };
  /** The string or number at the top as header text (numbers as LuaJIT prints them: 5, not 5.0). */
  const scalar = (L: number, t: number): string => (t === T_STRING ? vm.readLatin1(L, -1)! : luajitNumber(x.lua_tonumberx(L, -1, 0)));
  const typeName = (t: number): string => TYPE_NAMES[t] ?? 'userdata';
  /**
   * Reads the header table at stack index `index` as Envoy's buildHeadersFromTable does: every entry is added with
   * its name lower-cased, a value is a string or a number, a table value adds one entry per element. `:status` is
   * handed back apart. Returns the error text to raise for anything else.
   */
  const headerTable = (L: number, index: number, what: string): { map: HeaderMap; status: string | undefined } | string => {
    const map = new HeaderMap();
    let status: string | undefined;
    x.lua_pushnil(L);
    try {
      while (x.lua_next(L, index) !== 0) {
        const name = tableKey(L);
        if (name === undefined) return `${what} header names must be strings, got ${typeName(x.lua_type(L, -2))}`;
        const key = name.toLowerCase();
        const t = x.lua_type(L, -1);
        if (t === T_STRING || t === T_NUMBER) {
          if (key === ':status') status = scalar(L, t);
          else map.add(key, scalar(L, t));
        } else if (t === T_TABLE && key !== ':status') {
          if (x.lua_checkstack(L, 2) === 0) return `Lua stack overflow while reading ${what} headers`;
          x.lua_pushnil(L);
          while (x.lua_next(L, -2) !== 0) {
            const et = x.lua_type(L, -1);
            if (et !== T_STRING && et !== T_NUMBER) return `${what} header "${key}" must hold strings, got ${typeName(et)}`;
            map.add(key, scalar(L, et));
            x.lua_settop(L, -2);
          }
        } else return `${what} header "${key}" must be a string, a number or a table of them, got ${typeName(t)}`;
        x.lua_settop(L, -2);
      }
    } catch (err) {
      return (err as Error).message;
    }
    return { map, status };
  };

  const ctx: HostContext = { script, vm, x, num, fail, nil, stream, dirOf };
  const fns: Record<string, (L: number) => number> = {
    intern(L) {
      const raw = vm.readLatin1(L, 1) ?? '';
      const name = raw.toLowerCase();
      let id = ids.get(name);
      if (id === undefined) {
        if (names.length >= MAX_NAMES) {
          names[0] = name;
          id = 0;
        } else {
          id = names.length;
          names.push(name);
          ids.set(name, id);
        }
      }
      x.lua_pushnumber(L, id);
      return 1;
    },

    hget(L) {
      const s = script.current;
      if (s === null) return outside(L);
      const key = num(L, 1);
      const map = s.map(key & 7);
      if (map === null) return nil(L);
      const name = names[key >>> 3];
      const list = map.list;
      let out: string | undefined;
      for (let i = 0; i < list.length; i += 2) {
        if (list[i] === name) out = out === undefined ? list[i + 1] : out + ',' + list[i + 1];
      }
      if (out === undefined) return nil(L);
      vm.pushLatin1(L, out);
      return 1;
    },

    hat(L) {
      const map = stream().map(num(L, 1));
      if (map === null) return nil(L);
      const name = names[num(L, 2)];
      let idx = num(L, 3);
      if (!(idx >= 0)) return nil(L);
      const list = map.list;
      for (let i = 0; i < list.length; i += 2) {
        if (list[i] === name && idx-- === 0) {
          vm.pushLatin1(L, list[i + 1]);
          return 1;
        }
      }
      return nil(L);
    },

    hnum(L) {
      const map = stream().map(num(L, 1));
      let n = 0;
      if (map !== null) {
        const name = names[num(L, 2)];
        const list = map.list;
        for (let i = 0; i < list.length; i += 2) if (list[i] === name) n++;
      }
      vm.pushNumber(L, n);
      return 1;
    },

    hmut(L) {
      const s = script.current;
      if (s === null) return outside(L);
      const op = num(L, 1);
      // true: the value is not a string; the prelude converts it (or raises) and calls again.
      if (op !== 2 && x.lua_type(L, 3) !== T_STRING) {
        x.lua_pushboolean(L, 1);
        return 1;
      }
      const key = num(L, 2);
      const w = key & 7;
      const map = s.map(w);
      if (map === null || w === 4) return fail(L, 'header map can no longer be modified');
      if ((s.iterating & (1 << w)) !== 0) return fail(L, 'header map cannot be modified while iterating');
      if (w < 2 && (w === 0 ? s.req : s.resp).continued) return fail(L, 'header map can no longer be modified');
      if (map.frozen) return fail(L, 'header map can no longer be modified');
      const name = names[key >>> 3];
      try {
        if (op === 0) map.add(name, vm.readLatin1(L, 3)!);
        else if (op === 1) map.set(name, vm.readLatin1(L, 3)!);
        else map.remove(name);
      } catch (err) {
        return fail(L, (err as Error).message);
      }
      if (w === 0) s.req.mutated = true;
      return 0;
    },

    hentry(L) {
      const s = stream();
      const w = num(L, 1);
      const map = s.map(w);
      const i = num(L, 2) * 2;
      if (map === null || i >= map.list.length) {
        s.iterating &= ~(1 << w);
        return nil(L);
      }
      s.iterating |= 1 << w;
      vm.pushLatin1(L, map.list[i]);
      vm.pushLatin1(L, map.list[i + 1]);
      return 2;
    },

    hreason(L) {
      const s = stream();
      const w = num(L, 1);
      if (w === 1 && (s.resp.continued || s.map(1)?.frozen !== false)) return fail(L, 'header map can no longer be modified');
      const phrase = vm.readLatin1(L, 2)!;
      // A CR or LF would split the response.
      if (!validReasonPhrase(phrase)) return fail(L, 'invalid reason phrase: only tab, space and visible characters are allowed');
      // On request headers it does nothing, as in Envoy (a request has no status line).
      if (w === 1) s.setReason(phrase);
      return 0;
    },

    body(L) {
      const d = dirOf(L, 1);
      if (d.streaming) return fail(L, 'cannot call body() after body streaming has started');
      d.bodyRequested = true;
      if (d.body !== null) x.lua_pushnumber(L, 0);
      else if (d.ended) x.lua_pushnumber(L, 1);
      else {
        d.wait = WAIT_BODY;
        x.lua_pushnumber(L, 2);
      }
      return 1;
    },

    chunks(L) {
      const d = dirOf(L, 1);
      if (d.bodyRequested || d.streaming) return fail(L, 'cannot call bodyChunks after body processing has begun');
      d.streaming = true;
      if (d.last !== null) {
        d.chunk = d.last;
        d.chunkTaken = false;
      }
      return 0;
    },

    nextchunk(L) {
      const d = dirOf(L, 1);
      let r = 2;
      if (d.chunk !== null && !d.chunkTaken) {
        d.chunkTaken = true;
        r = 0;
      } else if (d.ended) r = 1;
      else d.wait = WAIT_CHUNK;
      x.lua_pushnumber(L, r);
      return 1;
    },

    trailers(L) {
      const d = dirOf(L, 1);
      let r = 2;
      if (d.trailers !== null) r = 0;
      else if (d.ended) r = 1;
      else d.wait = WAIT_TRAILERS;
      x.lua_pushnumber(L, r);
      return 1;
    },

    blen(L) {
      const b = stream().buffer(num(L, 1));
      vm.pushNumber(L, b === null ? 0 : b.data.length);
      return 1;
    },

    bget(L) {
      const b = stream().buffer(num(L, 1));
      const i = num(L, 2);
      const n = num(L, 3);
      vm.pushBytes(L, b === null ? Buffer.alloc(0) : b.data.subarray(i, i + n));
      return 1;
    },

    bset(L) {
      const s = stream();
      const which = num(L, 1);
      const data = vm.readBytes(L, 2) ?? Buffer.alloc(0);
      s.setBuffer(which, data);
      vm.pushNumber(L, data.length);
      return 1;
    },

    respond(L) {
      const d = dirOf(L, 1);
      if (d.continued) return fail(L, 'respond() cannot be called if headers have been continued');
      const read = headerTable(L, 2, 'respond()');
      if (typeof read === 'string') return fail(L, read);
      const map = read.map;
      const status = read.status === undefined ? Number.NaN : Number(read.status);
      if (!Number.isInteger(status) || status < 200 || status > 599) return fail(L, ':status must be between 200 and 599');
      const body = x.lua_type(L, 3) === T_STRING ? vm.readBytes(L, 3) : undefined;
      d.reply = { status, headers: map, body };
      d.wait = WAIT_RESPONDED;
      // true: the frames above return once respond() does (frames.ts), so the run ends without a yield.
      if (script.earlyReturn && L === script.runningL && returnToBase(vm, L)) {
        script.earlyReturns++;
        x.lua_pushboolean(L, 1);
        return 1;
      }
      return 0;
    },

    httpcall(L) {
      const s = stream();
      const d = dirOf(L, 1);
      const cluster = x.lua_type(L, 2) === T_STRING ? vm.readString(L, 2)! : '';
      if (!s.setup.clusterNames.has(cluster)) return fail(L, 'http call cluster invalid. Must be configured');
      if (x.lua_type(L, 3) !== T_TABLE) return fail(L, "http call headers must include ':path', ':method', and ':authority'");
      const read = headerTable(L, 3, 'httpCall()');
      if (typeof read === 'string') return fail(L, read);
      if (read.status !== undefined) return fail(L, "http call headers must not include ':status'");
      const table = read.map;
      if (!table.has(':path') || !table.has(':method') || !table.has(':authority')) {
        return fail(L, "http call headers must include ':path', ':method', and ':authority'");
      }
      // The pseudo-headers go first, as on a request.
      const headers = new HeaderMap();
      for (const k of REQUEST_PSEUDO) {
        const v = table.get(k);
        if (v !== undefined) headers.add(k, v);
      }
      const list = table.list;
      for (let i = 0; i < list.length; i += 2) if (!REQUEST_PSEUDO.includes(list[i])) headers.add(list[i], list[i + 1]);
      const bodyType = x.lua_type(L, 4);
      const body = bodyType === T_STRING ? vm.readBytes(L, 4) : bodyType === T_NUMBER ? Buffer.from(luajitNumber(x.lua_tonumberx(L, 4, 0))) : undefined;
      if (body !== undefined) headers.set('content-length', String(body.length));
      let timeoutMs = 0;
      let asynchronous = false;
      let duplicates = false;
      let sendXff = true;
      const t5 = x.lua_type(L, 5);
      if (t5 === T_TABLE) {
        const o = vm.readValue(L, 5) as Record<string, unknown>;
        if (o.timeout_ms !== undefined) timeoutMs = Number(o.timeout_ms);
        asynchronous = o.asynchronous === true;
        duplicates = o.return_duplicate_headers === true;
        if (o.send_xff === false) sendXff = false;
      } else {
        if (t5 !== T_NIL) timeoutMs = num(L, 5);
        const t6 = x.lua_type(L, 6);
        if (t6 !== T_NIL) {
          const flag = x.lua_type(L, 6) === 1 ? (x.lua_toboolean(L, 6) ? 'true' : 'false') : vm.readString(L, 6);
          if (flag !== 'true' && flag !== 'false') return fail(L, "http call asynchronous flag must be 'true', 'false', or empty");
          asynchronous = flag === 'true';
        }
      }
      if (!(timeoutMs >= 0)) return fail(L, 'http call timeout must be >= 0');
      const promise = s.cb.httpCall(cluster, { headers, body }, { timeoutMs, sendXff });
      if (asynchronous) {
        promise.catch(() => undefined);
        x.lua_pushnumber(L, 0);
        return 1;
      }
      d.wait = WAIT_HTTP;
      s.awaitCall(d, promise, duplicates);
      x.lua_pushnumber(L, 2);
      return 1;
    },

    ...makeInfoFunctions(ctx),
  };

  // A JS exception must not unwind through Wasm frames: turn it into a Lua error raised at the caller. The per-request
  // header functions guard themselves, so that their calls stay monomorphic.
  for (const [name, fn] of Object.entries(fns)) {
    if (name === 'hget' || name === 'hmut' || name === 'intern') continue;
    fns[name] = function guardedHostFunction(L: number): number {
      try {
        return fn(L);
      } catch (err) {
        if (typeof err === 'number') throw err; // Emscripten's longjmp: a Lua error already on its way
        // A trap or the fuel running out for good: the VM stopped mid-way and cannot raise a Lua error.
        if (err instanceof WebAssembly.RuntimeError || (err as Error)?.name === 'FuelExhausted') throw err;
        vm.pushString(L, err instanceof Error ? err.message : String(err));
        return x.lua_error(L);
      }
    };
  }
  return fns;
}

/**
 * A number as LuaJIT (Envoy's Lua) prints it: C's "%.14g" (5, 0.3, 1e+15, 1e-05, inf, nan), where Lua 5.4 writes
 * integral floats as "5.0" and integers with all their digits.
 */
export function luajitNumber(n: number): string {
  if (Number.isInteger(n) && Math.abs(n) < 1e14) return Object.is(n, -0) ? '-0' : String(n);
  if (!Number.isFinite(n)) return Number.isNaN(n) ? 'nan' : n > 0 ? 'inf' : '-inf';
  const [mantissa, e] = n.toExponential(13).split('e');
  const exp = Number(e);
  const trim = (digits: string) => (digits.includes('.') ? digits.replace(/\.?0+$/, '') : digits);
  if (exp < -4 || exp >= 14) return `${trim(mantissa)}e${exp < 0 ? '-' : '+'}${String(Math.abs(exp)).padStart(2, '0')}`;
  return trim(n.toFixed(13 - exp));
}
