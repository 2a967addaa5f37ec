import { test } from 'node:test';
import assert from 'node:assert/strict';
import { wasiImports, WASI_FUNCTIONS, ProcExit } from './wasi.ts';
import { Errno } from './abi.ts';

function host(environment: Record<string, string> = {}) {
  const memory = new WebAssembly.Memory({ initial: 1 });
  const logs: [string, string][] = [];
  const wasi = wasiImports({ bytes: () => new Uint8Array(memory.buffer), view: () => new DataView(memory.buffer), log: (l, m) => void logs.push([l, m]), environment });
  return { wasi, view: new DataView(memory.buffer), bytes: new Uint8Array(memory.buffer), logs };
}

test('every WASI preview1 function is present', () => {
  const { wasi } = host();
  assert.equal(WASI_FUNCTIONS.length, 46);
  for (const name of WASI_FUNCTIONS) assert.equal(typeof wasi[name], 'function', name);
  assert.equal(wasi.path_unlink_file(), Errno.NOSYS);
  assert.equal(wasi.fd_pread(), Errno.BADF);
});

test('fd_write logs one line per line, keeps a partial line for the next write, and refuses other fds', () => {
  const { wasi, view, bytes, logs } = host();
  bytes.set(Buffer.from('one\ntwo'), 100);
  view.setUint32(0, 100, true);
  view.setUint32(4, 7, true);
  assert.equal(wasi.fd_write(1, 0, 1, 8), Errno.SUCCESS);
  assert.equal(view.getUint32(8, true), 7);
  bytes.set(Buffer.from('!\n'), 100);
  view.setUint32(4, 2, true);
  wasi.fd_write(1, 0, 1, 8);
  wasi.fd_write(2, 0, 1, 8);
  assert.deepEqual(logs, [['info', 'one'], ['info', 'two!'], ['error', '!']]);
  assert.equal(wasi.fd_write(3, 0, 1, 8), Errno.BADF);
});

test('poll_oneoff fires clock subscriptions at once and answers EBADF for fd subscriptions', () => {
  const { wasi, view } = host();
  view.setBigUint64(1000, 11n, true);
  view.setUint8(1008, 0); // clock
  view.setBigUint64(1048, 22n, true);
  view.setUint8(1056, 1); // fd_read
  assert.equal(wasi.poll_oneoff(1000, 2000, 2, 3000), Errno.SUCCESS);
  assert.equal(view.getUint32(3000, true), 2);
  assert.equal(view.getBigUint64(2000, true), 11n);
  assert.equal(view.getUint16(2008, true), 0);
  assert.equal(view.getBigUint64(2032, true), 22n);
  assert.equal(view.getUint16(2040, true), Errno.BADF);
  assert.equal(view.getUint8(2042), 1);
});

test('clocks, random, environ and proc_exit', () => {
  const { wasi, view } = host({ A: '1' });
  assert.equal(wasi.clock_time_get(0, 0n, 0), Errno.SUCCESS);
  assert.ok(view.getBigUint64(0, true) > 1_600_000_000_000_000_000n);
  assert.equal(wasi.clock_time_get(2, 0n, 0), Errno.NOTSUP);
  assert.equal(wasi.random_get(0, 65 * 1024), Errno.INVAL);
  assert.equal(wasi.environ_sizes_get(0, 4), Errno.SUCCESS);
  assert.deepEqual([view.getUint32(0, true), view.getUint32(4, true)], [1, 4]);
  assert.throws(() => wasi.proc_exit(3), (e: unknown) => e instanceof ProcExit && e.code === 3);
});
