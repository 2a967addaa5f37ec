/**
 * WASI preview1 for Proxy-Wasm modules, registered under both `wasi_snapshot_preview1` and `wasi_unstable`.
 * Every preview1 function is present so that SDK-built modules link: fd_write goes to the log, clocks, random and
 * environ are real, the rest answer as cpp-host does or ENOSYS/EBADF.
 */
import { Buffer } from 'node:buffer';
import { randomFillSync } from 'node:crypto';
import { Errno } from './abi.ts';

/** What WASI needs from the VM. */
export interface WasiHost {
  /** A view of the guest's memory, refreshed after growth. */
  bytes(): Uint8Array;
  view(): DataView;
  log(level: 'info' | 'error', message: string): void;
  readonly environment: Readonly<Record<string, string>>;
}

/** Thrown by `proc_exit`: the VM is finished, the host treats it as a trap. */
export class ProcExit extends Error {
  readonly code: number;
  constructor(code: number) {
    super(`Wasm module called proc_exit(${code})`);
    this.name = 'ProcExit';
    this.code = code;
  }
}

/** The most bytes one random_get may ask for (cpp-host's limit). */
const RANDOM_MAX = 64 * 1024;

/** Every WASI preview1 function name. */
export const WASI_FUNCTIONS = [
  'args_get', 'args_sizes_get', 'environ_get', 'environ_sizes_get', 'clock_res_get', 'clock_time_get',
  'fd_advise', 'fd_allocate', 'fd_close', 'fd_datasync', 'fd_fdstat_get', 'fd_fdstat_set_flags', 'fd_fdstat_set_rights',
  'fd_filestat_get', 'fd_filestat_set_size', 'fd_filestat_set_times', 'fd_pread', 'fd_prestat_get', 'fd_prestat_dir_name',
  'fd_pwrite', 'fd_read', 'fd_readdir', 'fd_renumber', 'fd_seek', 'fd_sync', 'fd_tell', 'fd_write',
  'path_create_directory', 'path_filestat_get', 'path_filestat_set_times', 'path_link', 'path_open', 'path_readlink',
  'path_remove_directory', 'path_rename', 'path_symlink', 'path_unlink_file', 'poll_oneoff', 'proc_exit', 'proc_raise',
  'sched_yield', 'random_get', 'sock_accept', 'sock_recv', 'sock_send', 'sock_shutdown',
] as const;

/** The WASI functions a module may call while it starts (cpp-host's list). */
export const WASI_ALLOWED_AT_START = new Set(['fd_write', 'args_sizes_get', 'args_get', 'environ_sizes_get', 'environ_get', 'fd_prestat_get', 'fd_prestat_dir_name', 'clock_time_get', 'random_get']);

/** Builds the WASI import object for one VM. */
export function wasiImports(host: WasiHost): Record<string, (...args: any[]) => number | void> {
  const environ = Object.entries(host.environment).map(([k, v]) => Buffer.from(`${k}=${v}\0`));
  const pending = { 1: '', 2: '' } as Record<number, string>;
  const real: Record<string, (...args: any[]) => number | void> = {
    fd_write(fd: number, iovs: number, iovsLen: number, nwrittenPtr: number): number {
      if (fd !== 1 && fd !== 2) return Errno.BADF;
      const view = host.view();
      const bytes = host.bytes();
      let text = '';
      let written = 0;
      for (let i = 0; i < iovsLen; i++) {
        const ptr = view.getUint32(iovs + i * 8, true);
        const len = view.getUint32(iovs + i * 8 + 4, true);
        text += Buffer.from(bytes.subarray(ptr, ptr + len)).toString();
        written += len;
      }
      view.setUint32(nwrittenPtr, written, true);
      // One log line per line of output; a trailing newline is dropped as cpp-host does.
      const lines = (pending[fd] + text).split('\n');
      pending[fd] = lines.pop() ?? '';
      for (const line of lines) host.log(fd === 1 ? 'info' : 'error', line);
      if (pending[fd].length > 4096) {
        host.log(fd === 1 ? 'info' : 'error', pending[fd]);
        pending[fd] = '';
      }
      return Errno.SUCCESS;
    },
    fd_read: () => Errno.NOSYS,
    fd_seek: () => Errno.SUCCESS,
    fd_close: () => Errno.SUCCESS,
    fd_fdstat_get(fd: number, statPtr: number): number {
      if (fd !== 1 && fd !== 2) return Errno.BADF;
      const view = host.view();
      for (let i = 0; i < 24; i += 4) view.setUint32(statPtr + i, 0, true);
      view.setUint8(statPtr, 4); // filetype: character device
      view.setBigUint64(statPtr + 8, 64n, true); // rights_base: FD_WRITE
      return Errno.SUCCESS;
    },
    fd_prestat_get: () => Errno.BADF,
    fd_prestat_dir_name: () => Errno.NOSYS,
    path_open: () => Errno.NOENT,
    environ_sizes_get(countPtr: number, sizePtr: number): number {
      const view = host.view();
      view.setUint32(countPtr, environ.length, true);
      view.setUint32(sizePtr, environ.reduce((n, b) => n + b.length, 0), true);
      return Errno.SUCCESS;
    },
    environ_get(environPtr: number, bufPtr: number): number {
      const view = host.view();
      const bytes = host.bytes();
      let at = bufPtr;
      environ.forEach((entry, i) => {
        view.setUint32(environPtr + i * 4, at, true);
        bytes.set(entry, at);
        at += entry.length;
      });
      return Errno.SUCCESS;
    },
    args_sizes_get(countPtr: number, sizePtr: number): number {
      const view = host.view();
      view.setUint32(countPtr, 0, true);
      view.setUint32(sizePtr, 0, true);
      return Errno.SUCCESS;
    },
    args_get: () => Errno.SUCCESS,
    clock_time_get(id: number, _precision: bigint, timePtr: number): number {
      let ns: bigint;
      if (id === 0) ns = BigInt(Date.now()) * 1_000_000n;
      else if (id === 1) ns = process.hrtime.bigint();
      else return Errno.NOTSUP;
      host.view().setBigUint64(timePtr, ns, true);
      return Errno.SUCCESS;
    },
    clock_res_get(id: number, resPtr: number): number {
      if (id !== 0 && id !== 1) return Errno.NOTSUP;
      host.view().setBigUint64(resPtr, id === 0 ? 1_000_000n : 1n, true);
      return Errno.SUCCESS;
    },
    random_get(buf: number, len: number): number {
      if (len > RANDOM_MAX) return Errno.INVAL;
      randomFillSync(host.bytes(), buf, len);
      return Errno.SUCCESS;
    },
    sched_yield: () => Errno.SUCCESS,
    /**
     * Clock subscriptions fire at once (a callback may not block its worker); fd subscriptions answer EBADF.
     * Go and Rust runtimes call this to sleep, and treat ENOSYS as fatal.
     */
    poll_oneoff(inPtr: number, outPtr: number, count: number, neventsPtr: number): number {
      if (count === 0) return Errno.INVAL;
      const view = host.view();
      for (let i = 0; i < count; i++) {
        const sub = inPtr + i * 48;
        const ev = outPtr + i * 32;
        const tag = view.getUint8(sub + 8);
        view.setBigUint64(ev, view.getBigUint64(sub, true), true);
        view.setUint16(ev + 8, tag === 0 ? Errno.SUCCESS : Errno.BADF, true);
        view.setUint8(ev + 10, tag);
        for (let b = 11; b < 32; b++) view.setUint8(ev + b, 0);
      }
      view.setUint32(neventsPtr, count, true);
      return Errno.SUCCESS;
    },
    proc_exit(code: number): void {
      throw new ProcExit(code);
    },
  };
  const out: Record<string, (...args: any[]) => number | void> = {};
  for (const name of WASI_FUNCTIONS) {
    out[name] = real[name] ?? (name.startsWith('fd_') ? () => Errno.BADF : () => Errno.NOSYS);
  }
  return out;
}
