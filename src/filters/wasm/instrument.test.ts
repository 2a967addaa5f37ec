import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { instrument, FUEL_EXPORT, FUEL_HANDLER_EXPORT, FUEL_SETTER_EXPORT, START_EXPORT } from './instrument.ts';
import { watToWasm, buildCorpus } from '../../../test/wasm-corpus/build.ts';

const LOOPS = `(module
  (memory (export "memory") 1 100)
  (global $g (mut i32) (i32.const 5))
  (func (export "spin") (loop $l (br $l)))
  (func (export "count") (param i32) (result i32) (local i32)
    (block $b (loop $l
      (br_if $b (i32.eqz (local.get 0)))
      (local.set 0 (i32.sub (local.get 0) (i32.const 1)))
      (local.set 1 (i32.add (local.get 1) (i32.const 1)))
      (br $l)))
    (local.get 1))
  (func (export "glob") (result i32) (global.get $g)))`;

test('instrument() adds a fuel check at each function entry and loop header, and exports the fuel global', async () => {
  const { bytes, checks } = instrument(await watToWasm('loops.wat', LOOPS), 1 << 20);
  assert.equal(checks, 5);
  const { exports } = new WebAssembly.Instance(new WebAssembly.Module(bytes as Uint8Array<ArrayBuffer>), {}) as { exports: any };
  const fuel = exports[FUEL_EXPORT] as WebAssembly.Global;
  fuel.value = 1000;
  assert.equal(exports.count(100), 100);
  assert.equal(fuel.value, 1000 - 1 - 101, 'one step for the call, one per loop iteration');
  assert.equal(exports.glob(), 5, 'existing globals keep their index');
  fuel.value = 100_000;
  assert.throws(() => exports.spin(), WebAssembly.RuntimeError);
  assert.ok((fuel.value as number) < 0, 'an overrun leaves the fuel negative');
});

test('instrument() exports a function that sets the fuel, after the functions and types the module has', async () => {
  const wat = `(module
    (import "env" "h" (func $h (param i32) (result i32)))
    (table 2 funcref)
    (elem (i32.const 0) $last)
    (func (export "call") (result i32) (call_indirect (result i32) (i32.const 0)))
    (func $last (result i32) (i32.const 9)))`;
  for (const handler of [false, true]) {
    const { bytes } = instrument(await watToWasm('setter.wat', wat), 1 << 20, { handler });
    const { exports } = new WebAssembly.Instance(new WebAssembly.Module(bytes as Uint8Array<ArrayBuffer>), { env: { h: (x: number) => x } }) as { exports: any };
    exports[FUEL_SETTER_EXPORT](1000);
    assert.equal(exports[FUEL_EXPORT].value, 1000, 'the setter takes no fuel itself');
    assert.equal(exports.call(), 9, 'function and type indexes kept');
    assert.equal(exports[FUEL_EXPORT].value, 1000 - 2);
  }
});

test('instrument() caps the memory maximum and refuses a module that needs more at start', async () => {
  const { bytes } = instrument(await watToWasm('loops.wat', LOOPS), 4 * 65536);
  const { exports } = new WebAssembly.Instance(new WebAssembly.Module(bytes as Uint8Array<ArrayBuffer>), {}) as { exports: any };
  const memory = exports.memory as WebAssembly.Memory;
  assert.equal(memory.grow(3), 1);
  assert.throws(() => memory.grow(1), RangeError);
  const big = await watToWasm('big.wat', '(module (memory 10) (func (export "f")))');
  assert.throws(() => instrument(big, 4 * 65536), /needs 10 pages of memory at start, over the cap of 4 pages/);
});

test('instrument() turns the start section into an export the host calls after instantiation', async () => {
  const wat = '(module (global $x (export "x") (mut i32) (i32.const 0)) (func $s (global.set $x (i32.const 7))) (start $s) (func (export "f")))';
  const { bytes } = instrument(await watToWasm('start.wat', wat), 1 << 20);
  const { exports } = new WebAssembly.Instance(new WebAssembly.Module(bytes as Uint8Array<ArrayBuffer>), {}) as { exports: any };
  assert.equal(exports.x.value, 0, 'not run during instantiation');
  exports[START_EXPORT]();
  assert.equal(exports.x.value, 7);
});

test('instrument() handles a 1 MiB module and an SDK-built module', async () => {
  const corpus = await buildCorpus();
  for (const file of [corpus.big, corpus.as]) {
    const { bytes, checks } = instrument(await readFile(file), 64 << 20);
    assert.ok(checks > 100, `${checks} checks`);
    const names = WebAssembly.Module.exports(new WebAssembly.Module(bytes as Uint8Array<ArrayBuffer>)).map((e) => e.name);
    assert.ok(names.includes(FUEL_EXPORT));
    assert.ok(names.includes(FUEL_SETTER_EXPORT));
  }
});

test('instrument() walks bulk memory, reference types, tail calls, multi-value blocks and exceptions', async () => {
  const wat = `(module
    (type $pair (func (result i32 i32)))
    (memory (export "memory") 1)
    (table 2 funcref)
    (tag $e (param i32))
    (elem (i32.const 0) $f)
    (func $f (result i32) (i32.const 7))
    (func (export "run") (result i32) (local funcref)
      (memory.fill (i32.const 0) (i32.const 1) (i32.const 8))
      (memory.copy (i32.const 8) (i32.const 0) (i32.const 8))
      (local.set 0 (table.get (i32.const 0)))
      (drop (ref.is_null (local.get 0)))
      (drop (i32.extend8_s (i32.const 255)))
      (block $b (type $pair) (i32.const 1) (i32.const 2))
      drop
      drop
      (drop (try (result i32) (do (throw $e (i32.const 3))) (catch $e)))
      (i32.add (call_indirect (result i32) (i32.const 0)) (i32.load8_u (i32.const 9))))
    (func (export "tail") (result i32) (return_call $f)))`;
  const bin = await watToWasm('features.wat', wat);
  const { bytes, checks } = instrument(bin, 1 << 20);
  assert.equal(checks, 3);
  const { exports } = new WebAssembly.Instance(new WebAssembly.Module(bytes as Uint8Array<ArrayBuffer>), {}) as { exports: any };
  exports[FUEL_EXPORT].value = 1000;
  assert.equal(exports.run(), 8);
  assert.equal(exports.tail(), 7);
});

test('instrument() with a handler calls the table function in the handler global on an overrun instead of trapping', async () => {
  const wat = `(module
    (type $ii (func (param i32) (result i32)))
    (import "env" "onFuel" (func $h))
    (table 2 funcref)
    (elem (i32.const 1) $h)
    (func (export "count") (param i32) (result i32) (local i32)
      (block $b (loop $l
        (br_if $b (i32.eqz (local.get 0)))
        (local.set 0 (i32.sub (local.get 0) (i32.const 1)))
        (local.set 1 (i32.add (local.get 1) (i32.const 1)))
        (br $l)))
      (local.get 1)))`;
  const { bytes } = instrument(await watToWasm('handler.wat', wat), 1 << 20, { handler: true });
  let calls = 0;
  let exports: any;
  const onFuel = () => {
    calls++;
    if (calls > 2) throw new Error('stop');
    exports[FUEL_EXPORT].value = 10;
  };
  ({ exports } = new WebAssembly.Instance(new WebAssembly.Module(bytes as Uint8Array<ArrayBuffer>), { env: { onFuel } }) as { exports: any });
  exports[FUEL_EXPORT].value = 100;
  assert.throws(() => exports.count(1000), WebAssembly.RuntimeError, 'a null handler slot (0) traps');
  exports[FUEL_HANDLER_EXPORT].value = 1;
  exports[FUEL_EXPORT].value = 100;
  assert.equal(exports.count(105), 105, 'the handler refilled the fuel and the loop went on');
  assert.equal(calls, 1);
  exports[FUEL_EXPORT].value = 5;
  assert.throws(() => exports.count(1000), /stop/, 'a handler that throws unwinds the call');
  assert.equal(calls, 3);
});

test('instrument() with { entries: false } checks loop headers only', async () => {
  const { bytes, checks } = instrument(await watToWasm('loops.wat', LOOPS), 1 << 20, { entries: false });
  assert.equal(checks, 2);
  const { exports } = new WebAssembly.Instance(new WebAssembly.Module(bytes as Uint8Array<ArrayBuffer>), {}) as { exports: any };
  const fuel = exports[FUEL_EXPORT] as WebAssembly.Global;
  fuel.value = 1000;
  assert.equal(exports.count(100), 100);
  assert.equal(fuel.value, 1000 - 101, 'one step per loop iteration, none for the call');
  fuel.value = 100_000;
  assert.throws(() => exports.spin(), WebAssembly.RuntimeError);
});
