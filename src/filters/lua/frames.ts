/**
 * Ends a handler run at a `respond()` without a yield. In Lua 5.4 every yield from C is a longjmp, which this Lua
 * build (Emscripten, JavaScript-based setjmp) turns into a JavaScript exception thrown through the Wasm frames, and
 * the suspended coroutine must then be reset (another protected call) before reuse: about 3.5 µs per local reply on
 * the proxy. Instead, when every frame between the prelude's `respond` and the coroutine's first function is a plain
 * Lua call, those frames are set to resume at their function's final RETURN instruction: when the prelude returns,
 * each returns in turn (closing its upvalues and `<close>` variables as that RETURN does), no code after the call runs,
 * and `lua_resume` comes back with LUA_OK, so the coroutine goes back to the pool clean. Any other shape (a C function
 * or metamethod in between, a debug hook, a coroutine the script made) keeps the yield.
 *
 * This reads and writes the VM's `lua_State` and `CallInfo` in Wasm memory, so the offsets below belong to the Lua 5.4
 * build wasmoon ships. `probeFrames` checks them once per process in a throwaway VM, read-only first and then with one
 * real early return; if any check fails, `returnToBase` is never used.
 */
import { Buffer } from 'node:buffer';
import { LUA_OK, LuaVm, REGISTRY } from './vm.ts';

// lua_State (wasm32): CommonHeader (6 bytes), status, allowhook, nci (2), top (4), l_G, ci, stack_last, stack,
// openupval, tbclist, gclist, twups, errorJmp, base_ci (36 bytes), hook, errfunc, nCcalls, oldpc, basehookcount,
// hookcount, hookmask.
const L_CI = 20;
const L_BASE_CI = 52;
const L_HOOKMASK = 112;
// CallInfo: func, top, previous, next, u.l.savedpc, u.l.trap, u.l.nextraargs, u2, nresults (short), callstatus (ushort).
const CI_FUNC = 0;
const CI_PREVIOUS = 8;
const CI_SAVEDPC = 16;
const CI_CALLSTATUS = 34;
const CIST_C = 1 << 1;
const CIST_FRESH = 1 << 2;
const CIST_HOOKED = 1 << 3;
const CIST_FIN = 1 << 7;
// A TValue's tag byte follows its 8-byte value; LClosure.p; Proto.sizecode, linedefined, lastlinedefined, code.
const TV_TT = 8;
const TAG_LUA_CLOSURE = 0x46;
const TAG_LIGHT_C_FUNCTION = 0x16;
const CL_PROTO = 12;
const P_SIZECODE = 20;
const P_LINEDEFINED = 40;
const P_LASTLINEDEFINED = 44;
const P_CODE = 52;
const OP_CALL = 68;
const OP_RETURN = 70;
const OP_RETURN1 = 72;
/** Deeper call chains keep the yield (each frame costs a few reads). */
const MAX_FRAMES = 64;

function i32(u8: Uint8Array, p: number): number {
  return u8[p] | (u8[p + 1] << 8) | (u8[p + 2] << 16) | (u8[p + 3] << 24);
}

function u16(u8: Uint8Array, p: number): number {
  return u8[p] | (u8[p + 1] << 8);
}

function setI32(u8: Uint8Array, p: number, v: number): void {
  u8[p] = v & 0xff;
  u8[p + 1] = (v >>> 8) & 0xff;
  u8[p + 2] = (v >>> 16) & 0xff;
  u8[p + 3] = (v >>> 24) & 0xff;
}

/** The address of the final instruction of a Lua frame's function when it is a RETURN, else 0. */
function finalReturn(u8: Uint8Array, ci: number): number {
  const func = i32(u8, ci + CI_FUNC);
  if (u8[func + TV_TT] !== TAG_LUA_CLOSURE) return 0;
  const proto = i32(u8, i32(u8, func) + CL_PROTO);
  const size = i32(u8, proto + P_SIZECODE);
  if (size <= 0) return 0;
  const last = i32(u8, proto + P_CODE) + (size - 1) * 4;
  const op = u8[last] & 0x7f;
  return op >= OP_RETURN && op <= OP_RETURN1 ? last : 0;
}

/**
 * Called from a host function running on thread `L` (which must be the coroutine of the run, with its first function
 * at the bottom): makes every Lua frame below the host function's caller return as soon as control gets back to it.
 * The caller of the host function is left alone: it must return by itself. Returns false, having changed nothing,
 * when the frames are not all plain Lua calls; then the caller yields as before.
 */
export function returnToBase(vm: LuaVm, L: number): boolean {
  const u8 = vm.u8();
  if (i32(u8, L + L_HOOKMASK) !== 0) return false;
  const host = i32(u8, L + L_CI);
  if ((u16(u8, host + CI_CALLSTATUS) & CIST_C) === 0) return false;
  const caller = i32(u8, host + CI_PREVIOUS);
  const base = L + L_BASE_CI;
  if (caller === base || (u16(u8, caller + CI_CALLSTATUS) & (CIST_C | CIST_FRESH)) !== 0) return false;
  const frames: number[] = [];
  const targets: number[] = [];
  for (let ci = i32(u8, caller + CI_PREVIOUS); ci !== base; ci = i32(u8, ci + CI_PREVIOUS)) {
    if (ci === 0 || frames.length >= MAX_FRAMES) return false;
    const status = u16(u8, ci + CI_CALLSTATUS);
    if ((status & (CIST_C | CIST_HOOKED | CIST_FIN)) !== 0) return false;
    // Only the first function of the coroutine was called from C; any other fresh frame is a metamethod or a
    // function a C function called, whose C caller would go on after it.
    const bottom = i32(u8, ci + CI_PREVIOUS) === base;
    if (((status & CIST_FRESH) !== 0) !== bottom) return false;
    if ((i32(u8, i32(u8, ci + CI_SAVEDPC) - 4) & 0x7f) !== OP_CALL) return false;
    const target = finalReturn(u8, ci);
    if (target === 0) return false;
    frames.push(ci);
    targets.push(target);
  }
  if (frames.length === 0) return false;
  for (let i = 0; i < frames.length; i++) setI32(u8, frames[i] + CI_SAVEDPC, targets[i]);
  return true;
}

const PROBE_SOURCE = `local probe = ...
local function inner()
  local r = probe()
  return r
end
local function outer()
  inner()
  return 1
end
return outer
`;

let probed: Promise<string | null> | null = null;

/**
 * Checks once per process, in a throwaway VM, that the offsets `returnToBase` uses match this Lua build: the frames
 * of a known call chain, their functions' line numbers and opcodes, then one early return for real. Resolves to null
 * when they do, else to what did not match.
 */
export function probeFrames(): Promise<string | null> {
  probed ??= runProbe().catch((err: Error) => `the probe failed: ${err.message}`);
  return probed;
}

async function runProbe(): Promise<string | null> {
  const vm = await LuaVm.create({ memoryLimitBytes: 16 * 1024 * 1024, fuel: false });
  try {
    const { x, L } = vm;
    let problem: string | null = 'the probe function was not called';
    const probe = vm.addFunction((T: number): number => {
      problem = checkLayout(vm, T);
      if (problem === null && !returnToBase(vm, T)) problem = 'returnToBase refused the probe chain';
      x.lua_pushnumber(T, 7);
      return 1;
    });
    const name = vm.cstring('=weir-frames-probe');
    const src = Buffer.from(PROBE_SOURCE);
    const p = x.malloc(src.length);
    vm.u8().set(src, p);
    const loaded = x.luaL_loadbufferx(L, p, src.length, name, 0);
    x.free(p);
    if (loaded !== LUA_OK) return `the probe chunk did not load: ${vm.readString(L, -1)}`;
    x.lua_pushcclosure(L, probe, 0);
    if (x.lua_pcallk(L, 1, 1, 0, 0, 0) !== LUA_OK) return `the probe chunk failed: ${vm.readString(L, -1)}`;
    const T = x.lua_newthread(L);
    x.luaL_ref(L, REGISTRY);
    x.lua_xmove(L, T, 1);
    const st = x.lua_resume(T, L, 0, vm.nresPtr);
    if (problem !== null) return problem;
    if (st !== LUA_OK) return `the probe coroutine ended with status ${st}`;
    const u8 = vm.u8();
    const nres = i32(u8, vm.nresPtr);
    // Without the early return, outer() would have returned 1.
    if (nres !== 0) return `the probe returned ${nres} values after an early return, not 0`;
    return null;
  } finally {
    vm.close();
  }
}

/**
 * The read-only checks of the probe that `returnToBase` does not make itself: the C frame's function, the line numbers
 * of the two Lua functions (which place the Proto offsets), and where the first frame sits. `returnToBase`, run next,
 * checks the call status bits, the CALL before each saved pc and the final RETURN, before it writes anything.
 */
function checkLayout(vm: LuaVm, T: number): string | null {
  const u8 = vm.u8();
  const host = i32(u8, T + L_CI);
  if (u8[i32(u8, host + CI_FUNC) + TV_TT] !== TAG_LIGHT_C_FUNCTION) return 'the running frame is not the probe C function';
  const inner = i32(u8, host + CI_PREVIOUS);
  const outer = i32(u8, inner + CI_PREVIOUS);
  for (const [ci, first, last] of [[inner, 2, 5], [outer, 6, 9]] as const) {
    const func = i32(u8, ci + CI_FUNC);
    if (u8[func + TV_TT] !== TAG_LUA_CLOSURE) return 'a Lua frame does not hold a Lua closure';
    const proto = i32(u8, i32(u8, func) + CL_PROTO);
    if (i32(u8, proto + P_LINEDEFINED) !== first || i32(u8, proto + P_LASTLINEDEFINED) !== last) return 'the line numbers of a function do not match';
  }
  if (i32(u8, outer + CI_PREVIOUS) !== T + L_BASE_CI) return 'the first frame does not follow base_ci';
  return null;
}
