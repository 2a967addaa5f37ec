/**
 * A small Wasm binary rewriter for the sandbox: it caps the module's memory and adds a fuel counter, so that the host
 * can stop a callback that runs too long (V8 cannot interrupt Wasm from JavaScript).
 *
 * It appends one mutable i32 global, exported as `__weir_fuel`, and inserts at every function entry and every loop
 * header: `fuel -= 1; if (fuel < 0) unreachable`. The host sets the fuel before each callback (through an appended
 * function exported as `__weir_set_fuel`) and, after a trap, tells an overrun from any other trap by the fuel being
 * negative. Function indexes do not change, so names, tables and exports stay valid.
 *
 * With `{ handler: true }` an overrun calls the host instead of trapping: a second global, exported as
 * `__weir_fuel_handler`, holds an index into table 0, and the check becomes `if (fuel < 0) call_indirect (func)
 * table0[handler]`. The host function may refill the fuel and return (execution goes on) or throw (the call unwinds
 * like a trap). While the handler global is 0 (a null slot in toolchain-built tables) an overrun still traps.
 * With `{ entries: false }` only loop headers get a check (the Lua filter meters wasmoon's interpreter that way).
 */
import { Buffer } from 'node:buffer';

/** The export name of the fuel global. */
export const FUEL_EXPORT = '__weir_fuel';

/**
 * The export name of an added function `(param i32)` that sets the fuel: a call into the module costs less than the
 * WebAssembly.Global setter, and the host sets the fuel before every callback. Absent when the module has no
 * function section or its types are not plain function types.
 */
export const FUEL_SETTER_EXPORT = '__weir_set_fuel';

/** The export name of the handler global (only with `{ handler: true }`). */
export const FUEL_HANDLER_EXPORT = '__weir_fuel_handler';

/** Options of `instrument`. */
export interface InstrumentOptions {
  /** On an overrun, call the table-0 function whose index is in the exported handler global instead of trapping. */
  handler?: boolean;
  /**
   * Check at function entries too (default). Without them only loop headers take fuel: still enough to stop any
   * endless run (recursion without a loop ends on the Wasm stack limit), for fewer checks in call-heavy code.
   */
  entries?: boolean;
}

/**
 * The export name of the module's start function. The start section is removed and its function exported instead,
 * so that the host runs it after instantiation, when the memory export is reachable from host calls.
 */
export const START_EXPORT = '__weir_start';

const PAGE = 65536;

/** Fuel for the module's start section, before the host sets a per-callback budget. */
export const START_FUEL = 500_000_000;

/** What `instrument` reports about the module. */
export interface InstrumentResult {
  bytes: Uint8Array;
  /** Loop headers and function entries that got a fuel check. */
  checks: number;
}

class Reader {
  bytes: Uint8Array;
  at: number;
  constructor(bytes: Uint8Array, at = 0) {
    this.bytes = bytes;
    this.at = at;
  }
  byte(): number {
    if (this.at >= this.bytes.length) throw new Error('unexpected end of module');
    return this.bytes[this.at++];
  }
  u32(): number {
    let result = 0;
    let shift = 0;
    for (;;) {
      const b = this.byte();
      result |= (b & 0x7f) << shift;
      if ((b & 0x80) === 0) return result >>> 0;
      shift += 7;
      if (shift > 35) throw new Error('malformed LEB128');
    }
  }
  /** Skips a signed or unsigned LEB128 of any width. */
  skipLeb(): void {
    while (this.byte() & 0x80);
  }
  skip(n: number): void {
    this.at += n;
  }
}

function leb(n: number): number[] {
  const out: number[] = [];
  do {
    let b = n & 0x7f;
    n >>>= 7;
    if (n !== 0) b |= 0x80;
    out.push(b);
  } while (n !== 0);
  return out;
}

function sleb(n: number): number[] {
  const out: number[] = [];
  for (;;) {
    const b = n & 0x7f;
    n >>= 7;
    if ((n === 0 && (b & 0x40) === 0) || (n === -1 && (b & 0x40) !== 0)) {
      out.push(b);
      return out;
    }
    out.push(b | 0x80);
  }
}

/** Collects byte chunks without spreading large arrays (which would overflow the stack). */
class Bytes {
  readonly parts: Uint8Array[] = [];
  length = 0;
  add(b: Uint8Array | number[]): this {
    const u = b instanceof Uint8Array ? b : Uint8Array.from(b);
    this.parts.push(u);
    this.length += u.length;
    return this;
  }
  concat(): Uint8Array {
    return Buffer.concat(this.parts);
  }
}

function section(id: number, body: Uint8Array | number[]): Uint8Array {
  const b = body instanceof Uint8Array ? body : Uint8Array.from(body);
  return new Bytes().add([id, ...leb(b.length)]).add(b).concat();
}

/** Rewrites a module: memory capped at `maxMemoryBytes`, fuel checks added. Throws with a clear message if it cannot. */
export function instrument(input: Uint8Array, maxMemoryBytes: number, options: InstrumentOptions = {}): InstrumentResult {
  const withHandler = options.handler === true;
  let hasTable = false;
  const r = new Reader(input);
  if (input.length < 8 || input[0] !== 0 || input[1] !== 0x61 || input[2] !== 0x73 || input[3] !== 0x6d) {
    throw new Error('Cannot instrument Wasm module: not a Wasm binary');
  }
  r.at = 8;
  const maxPages = Math.max(1, Math.floor(maxMemoryBytes / PAGE));
  const sections: { id: number; start: number; end: number }[] = [];
  while (r.at < input.length) {
    const id = r.byte();
    const size = r.u32();
    sections.push({ id, start: r.at, end: r.at + size });
    r.at += size;
  }
  let importedGlobals = 0;
  let importedFunctions = 0;
  let definedGlobals = 0;
  for (const s of sections) {
    if (s.id === 2) {
      const ir = new Reader(input, s.start);
      for (let n = ir.u32(); n > 0; n--) {
        ir.skip(ir.u32());
        ir.skip(ir.u32());
        const kind = ir.byte();
        if (kind === 0) {
          ir.u32();
          importedFunctions++;
        }
        else if (kind === 1) {
          ir.byte();
          skipLimits(ir);
        } else if (kind === 2) {
          const flags = ir.byte();
          const min = ir.u32();
          if (flags & 1) ir.u32();
          if (min > maxPages) throw new Error(`Cannot load Wasm module: it imports a memory of ${min} pages, over the cap of ${maxPages}`);
        } else if (kind === 3) {
          ir.byte();
          ir.byte();
          importedGlobals++;
        } else if (kind === 4) {
          ir.byte();
          ir.u32();
        } else throw new Error(`Cannot instrument Wasm module: unknown import kind ${kind}`);
      }
    } else if (s.id === 6) definedGlobals = new Reader(input, s.start).u32();
    else if (s.id === 4) hasTable = true;
  }
  const fuelIndex = importedGlobals + definedGlobals;
  const handlerIndex = fuelIndex + 1;
  const typeSection = sections.find((s) => s.id === 1);
  if (withHandler && (!hasTable || typeSection === undefined)) throw new Error('Cannot instrument Wasm module: a fuel handler needs a table and a type section');
  // The handler's type, `(func)`, is appended to the type section, so existing type indexes do not change.
  const handlerType = withHandler ? countFuncTypes(input.subarray(typeSection!.start, typeSection!.end)) : 0;
  const functionSection = sections.find((s) => s.id === 3);
  const codeSection = sections.find((s) => s.id === 10);
  // The setter's type, `(func (param i32))`, goes after the handler's; the setter itself after the last function.
  let setterType = -1;
  if (typeSection !== undefined && functionSection !== undefined && codeSection !== undefined) {
    try {
      setterType = countFuncTypes(input.subarray(typeSection.start, typeSection.end)) + (withHandler ? 1 : 0);
    } catch {
      // A type section with other than plain function types: no setter, the host sets the global.
    }
  }
  const withSetter = setterType >= 0;
  const setterIndex = withSetter ? importedFunctions + new Reader(input, functionSection!.start).u32() : -1;
  const startSection = sections.find((s) => s.id === 8);
  const startFunction = startSection === undefined ? -1 : new Reader(input, startSection.start).u32();
  const onOverrun = withHandler ? [0x23, ...leb(handlerIndex), 0x11, ...leb(handlerType), 0x00] : [0x00];
  const check = [0x23, ...leb(fuelIndex), 0x41, 0x01, 0x6b, 0x24, ...leb(fuelIndex), 0x23, ...leb(fuelIndex), 0x41, 0x00, 0x48, 0x04, 0x40, ...onOverrun, 0x0b];
  // The start section runs before the host can set the fuel, so the global starts with a budget for start-up.
  const fuelGlobal = [0x7f, 0x01, 0x41, ...sleb(START_FUEL), 0x0b, ...(withHandler ? [0x7f, 0x01, 0x41, 0x00, 0x0b] : [])];
  const addedGlobals = withHandler ? 2 : 1;
  const out = new Bytes().add([0, 0x61, 0x73, 0x6d, 1, 0, 0, 0]);
  let checks = 0;
  let wroteGlobal = false;
  const appendGlobalSection = (): void => {
    if (!wroteGlobal) out.add(section(6, [addedGlobals, ...fuelGlobal]));
    wroteGlobal = true;
  };
  // Section order: type 1, import 2, function 3, table 4, memory 5, tag 13, global 6, export 7, ...
  const order = (id: number): number => (id === 13 ? 5.5 : id === 12 ? 9.5 : id);
  for (const s of sections) {
    const body = input.subarray(s.start, s.end);
    if (s.id !== 0 && order(s.id) > 6 && !wroteGlobal) appendGlobalSection();
    if (s.id === 5) out.add(section(5, capMemory(body, maxPages)));
    else if (s.id === 1 && (withHandler || withSetter)) {
      const tr = new Reader(body);
      const n = tr.u32();
      const types = new Bytes().add(leb(n + (withHandler ? 1 : 0) + (withSetter ? 1 : 0))).add(body.subarray(tr.at));
      if (withHandler) types.add([0x60, 0x00, 0x00]);
      if (withSetter) types.add([0x60, 0x01, 0x7f, 0x00]);
      out.add(section(1, types.concat()));
    } else if (s.id === 3 && withSetter) {
      const fr = new Reader(body);
      const n = fr.u32();
      out.add(section(3, new Bytes().add(leb(n + 1)).add(body.subarray(fr.at)).add(leb(setterType)).concat()));
    } else if (s.id === 6) {
      const gr = new Reader(body);
      const n = gr.u32();
      out.add(section(6, new Bytes().add(leb(n + addedGlobals)).add(body.subarray(gr.at)).add(fuelGlobal).concat()));
      wroteGlobal = true;
    } else if (s.id === 7) {
      const er = new Reader(body);
      const n = er.u32();
      const name = [...Buffer.from(FUEL_EXPORT)];
      const entries = new Bytes().add(leb(n + (startFunction >= 0 ? 2 : 1) + (withHandler ? 1 : 0) + (withSetter ? 1 : 0))).add(body.subarray(er.at)).add([...leb(name.length), ...name, 0x03, ...leb(fuelIndex)]);
      if (withHandler) {
        const handler = [...Buffer.from(FUEL_HANDLER_EXPORT)];
        entries.add([...leb(handler.length), ...handler, 0x03, ...leb(handlerIndex)]);
      }
      if (withSetter) {
        const setter = [...Buffer.from(FUEL_SETTER_EXPORT)];
        entries.add([...leb(setter.length), ...setter, 0x00, ...leb(setterIndex)]);
      }
      if (startFunction >= 0) {
        const start = [...Buffer.from(START_EXPORT)];
        entries.add([...leb(start.length), ...start, 0x00, ...leb(startFunction)]);
      }
      out.add(section(7, entries.concat()));
    } else if (s.id === 8) {
      // Dropped: exported as START_EXPORT above.
    } else if (s.id === 10) {
      // The setter (no locals; local.get 0, global.set fuel) takes no fuel itself.
      const setter = withSetter ? [0x00, 0x20, 0x00, 0x24, ...leb(fuelIndex), 0x0b] : null;
      const result = rewriteCode(body, check, options.entries !== false, setter);
      checks += result.checks;
      out.add(section(10, result.bytes));
    } else out.add(section(s.id, body));
  }
  if (!sections.some((s) => s.id === 7)) throw new Error('Cannot load Wasm module: it exports nothing, so it has no Proxy-Wasm callbacks');
  return { bytes: out.concat(), checks };
}

/** Counts the entries of a type section made of plain function types only (the handler's type index is that count). */
function countFuncTypes(body: Uint8Array): number {
  const r = new Reader(body);
  const n = r.u32();
  for (let i = 0; i < n; i++) {
    if (r.byte() !== 0x60) throw new Error('Cannot instrument Wasm module with a fuel handler: its type section has non-function types');
    for (let lists = 0; lists < 2; lists++) {
      for (let k = r.u32(); k > 0; k--) {
        const t = r.byte();
        if (t === 0x63 || t === 0x64) r.skipLeb();
      }
    }
  }
  return n;
}

function skipLimits(r: Reader): void {
  const flags = r.byte();
  r.u32();
  if (flags & 1) r.u32();
}

function capMemory(body: Uint8Array, maxPages: number): number[] {
  const r = new Reader(body);
  const n = r.u32();
  const out = [...leb(n)];
  for (let i = 0; i < n; i++) {
    const flags = r.byte();
    const min = r.u32();
    const max = flags & 1 ? r.u32() : Infinity;
    if (flags & 4) throw new Error('Cannot load Wasm module: 64-bit memories are not supported');
    if (min > maxPages) throw new Error(`Cannot load Wasm module: it needs ${min} pages of memory at start, over the cap of ${maxPages} pages (${maxPages * 64} KiB)`);
    out.push(flags | 1, ...leb(min), ...leb(Math.min(max, maxPages)));
  }
  return out;
}

function rewriteCode(body: Uint8Array, checkCode: number[], entries: boolean, extra: number[] | null): { bytes: Uint8Array; checks: number } {
  const r = new Reader(body);
  const count = r.u32();
  const check = Uint8Array.from(checkCode);
  const out = new Bytes().add(leb(count + (extra === null ? 0 : 1)));
  let checks = 0;
  // A function's pieces are views of the input and the one check array: nothing is copied until the final concat.
  const pieces: Uint8Array[] = [];
  for (let f = 0; f < count; f++) {
    const size = r.u32();
    const end = r.at + size;
    const start = r.at;
    for (let groups = r.u32(); groups > 0; groups--) {
      r.u32();
      r.byte();
    }
    pieces.length = 0;
    let length = 0;
    pieces.push(body.subarray(start, r.at));
    length += r.at - start;
    if (entries) {
      pieces.push(check);
      length += check.length;
      checks++;
    }
    let copied = r.at;
    while (r.at < end) {
      const op = r.byte();
      if (op === 0x03) {
        skipBlockType(r);
        pieces.push(body.subarray(copied, r.at), check);
        length += r.at - copied + check.length;
        copied = r.at;
        checks++;
      } else skipImmediates(r, op);
    }
    if (r.at !== end) throw new Error(`Cannot instrument Wasm module: function ${f} has a malformed body`);
    pieces.push(body.subarray(copied, end));
    length += end - copied;
    out.add(leb(length));
    for (const piece of pieces) out.add(piece);
  }
  if (extra !== null) out.add(leb(extra.length)).add(extra);
  return { bytes: out.concat(), checks };
}

function skipBlockType(r: Reader): void {
  const b = r.bytes[r.at];
  if (b === 0x40 || (b >= 0x6f && b <= 0x7f) || b === 0x70 || b === 0x6f) r.at++;
  else r.skipLeb();
}

function skipMemarg(r: Reader): void {
  const align = r.u32();
  if (align & 0x40) r.u32();
  r.skipLeb();
}

function skipImmediates(r: Reader, op: number): void {
  if (op === 0x02 || op === 0x04 || op === 0x06) return skipBlockType(r);
  if (op === 0x0c || op === 0x0d || (op >= 0x20 && op <= 0x26) || op === 0x10 || op === 0x12 || op === 0xd2) return void r.u32();
  // Typed function references: call_ref, return_call_ref (type index), br_on_null, br_on_non_null (label).
  if (op === 0x14 || op === 0x15 || op === 0xd5 || op === 0xd6) return void r.u32();
  if (op === 0x1f) {
    // try_table: block type, then catch clauses (catch and catch_ref name a tag and a label, catch_all only a label).
    skipBlockType(r);
    for (let n = r.u32(); n > 0; n--) {
      const kind = r.byte();
      if (kind === 0 || kind === 1) r.u32();
      r.u32();
    }
    return;
  }
  if (op === 0x07 || op === 0x08 || op === 0x09 || op === 0x18) return void r.u32();
  if (op === 0x11 || op === 0x13) {
    r.u32();
    r.u32();
    return;
  }
  if (op === 0x0e) {
    for (let n = r.u32(); n > 0; n--) r.u32();
    r.u32();
    return;
  }
  if (op === 0x1c) {
    for (let n = r.u32(); n > 0; n--) r.byte();
    return;
  }
  if (op >= 0x28 && op <= 0x3e) return skipMemarg(r);
  if (op === 0x3f || op === 0x40) return void r.u32();
  if (op === 0x41 || op === 0x42) return r.skipLeb();
  if (op === 0x43) return r.skip(4);
  if (op === 0x44) return r.skip(8);
  if (op === 0xd0) return void r.byte();
  if (op === 0xfc) return skipMisc(r, r.u32());
  if (op === 0xfd) return skipSimd(r, r.u32());
  if (op === 0xfe) {
    const sub = r.u32();
    if (sub === 0x03) r.byte();
    else skipMemarg(r);
    return;
  }
  const noImmediate = op <= 0x01 || op === 0x05 || op === 0x0a || op === 0x0b || op === 0x0f || op === 0x19 || op === 0x1a || op === 0x1b || (op >= 0x45 && op <= 0xc4) || op === 0xd1 || op === 0xd3 || op === 0xd4;
  if (!noImmediate) throw new Error(`Cannot instrument Wasm module: unknown opcode 0x${op.toString(16)}`);
}

function skipMisc(r: Reader, sub: number): void {
  if (sub <= 7) return;
  if (sub === 8 || sub === 12 || sub === 14) {
    r.u32();
    r.u32();
  } else if (sub === 9 || sub === 13 || sub === 11 || (sub >= 15 && sub <= 17)) r.u32();
  else if (sub === 10) {
    r.u32();
    r.u32();
  } else throw new Error(`Cannot instrument Wasm module: unknown opcode 0xfc ${sub}`);
}

function skipSimd(r: Reader, sub: number): void {
  if (sub <= 11 || sub === 92 || sub === 93) return skipMemarg(r);
  if (sub === 12 || sub === 13) return r.skip(16);
  if (sub >= 21 && sub <= 34) return r.skip(1);
  if (sub >= 84 && sub <= 91) {
    skipMemarg(r);
    r.skip(1);
  }
}
