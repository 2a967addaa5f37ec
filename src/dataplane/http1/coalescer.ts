/**
 * Collects the small writes one exchange makes in one tick (a head, a body chunk, a chunk terminator) and sends
 * them to the socket as one write: one syscall per message instead of three, which is most of the codec's cost.
 */
import { Buffer } from 'node:buffer';
import process from 'node:process';
import type { Socket } from 'node:net';
import { enterEvent, leaveEvent } from '../../core/clock.ts';

/** Above this many pending bytes the coalescer writes at once instead of copying more. */
const FLUSH_AT = 16 * 1024;

/** The write request object of Node's stream handles (what net.Socket creates for every write). */
interface WriteReq {
  handle: Handle;
  oncomplete: (this: WriteReq, status: number) => void;
  buffer: string | Buffer | (string | Buffer)[] | null;
  owner: Coalescer | null;
}

interface Handle {
  writeBuffer(req: WriteReq, data: Buffer): number;
  writeLatin1String(req: WriteReq, data: string): number;
  /** `chunks` alternates data and its encoding ('latin1' for strings, 'buffer'). */
  writev(req: WriteReq, chunks: (string | Buffer)[], allBuffers: boolean): number;
}

interface StreamWrapBinding {
  WriteWrap: new () => WriteReq;
  /** Where a handle write leaves its result: bytes at `kBytesWritten`, 1 at `kLastWriteWasAsync` if it went async. */
  streamBaseState: Int32Array;
  kBytesWritten: number;
  kLastWriteWasAsync: number;
}

const binding = (process as unknown as { binding(name: string): StreamWrapBinding }).binding('stream_wrap');
const { WriteWrap, streamBaseState } = binding;
const kBytesWritten = binding.kBytesWritten;
const kLastWriteWasAsync = binding.kLastWriteWasAsync;

/** A write coalescer bound to one socket. */
export class Coalescer {
  readonly #socket: Socket;
  /** What is queued: the first #count entries (the array is reused; setting an array's length is a runtime call). */
  #parts: (string | Buffer | null)[] = [];
  #count = 0;
  #bytes = 0;
  #scheduled = false;
  /** A write request kept for the next write; every write that completes at once reuses it. */
  #req: WriteReq | null = null;
  /** Bytes of a handle write still in progress (the kernel did not take them all at once). */
  #inflight = 0;
  /** `writable` said false because of `#inflight`: the socket gets a 'drain' once that write completes. */
  #needDrain = false;
  /** See the constructor; null: a failed write destroys the socket. */
  readonly #onWriteError: (() => void) | null;
  /** A write failed and `#onWriteError` was called: everything written from now on is dropped. */
  #broken = false;
  /**
   * The last queued part when it has room left (see `bytesWithRoom`): its first `#roomAt` bytes are filled, and
   * small writes that fit go into the rest instead of into parts of their own; null otherwise.
   */
  #room: Buffer | null = null;
  #roomAt = 0;

  /**
   * With `onWriteError`, the coalescer alone writes to the socket: what is written while a write is in flight waits
   * in its queue for that write to complete (instead of going through `socket.write`), and a failed write calls
   * `onWriteError` instead of destroying the socket, whose reads go on (a response may be waiting in them).
   */
  constructor(socket: Socket, onWriteError: (() => void) | null = null) {
    this.#socket = socket;
    this.#onWriteError = onWriteError;
  }

  /** True once a write failed (with `onWriteError`): nothing more goes out. */
  get broken(): boolean {
    return this.#broken;
  }

  /** Whether writes wait in the queue for the write in flight (see the constructor). */
  get #holding(): boolean {
    return this.#onWriteError !== null && this.#inflight > 0;
  }

  /** Queues latin1 text (heads, chunk sizes). */
  text(s: string): void {
    if (this.#broken) return;
    if (this.#room !== null && this.#intoRoom(s)) return;
    this.#parts[this.#count++] = s;
    this.#bytes += s.length;
    this.#after();
  }

  /** Queues bytes. Large buffers go out at once, after whatever is queued, without a copy. */
  bytes(b: Buffer): void {
    if (this.#broken) return;
    if (b.length >= FLUSH_AT) {
      this.#flushWith(b);
      return;
    }
    if (this.#room !== null && this.#intoRoom(b)) return;
    this.#parts[this.#count++] = b;
    this.#bytes += b.length;
    this.#after();
  }

  /**
   * Queues `b`, whose first `used` bytes are filled, and keeps the rest as room: the small writes that follow while
   * nothing else is queued after it (the body of a response whose head this is) are copied into it, and it goes out
   * as one buffer, without a buffer of their own nor a copy of the whole at the flush.
   */
  bytesWithRoom(b: Buffer, used: number): void {
    if (this.#broken) return;
    if (this.#room !== null) this.#closeRoom();
    this.#parts[this.#count++] = b;
    this.#bytes += used;
    this.#room = b;
    this.#roomAt = used;
    this.#after();
  }

  /** Copies `data` (latin1 text or bytes) into the room if it fits, else ends the room; returns whether it did. */
  #intoRoom(data: string | Buffer): boolean {
    const room = this.#room!;
    if (this.#roomAt + data.length > room.length) {
      this.#closeRoom();
      return false;
    }
    this.#roomAt += typeof data === 'string' ? room.write(data, this.#roomAt, 'latin1') : data.copy(room, this.#roomAt);
    this.#bytes += data.length;
    return true;
  }

  /** The part with room becomes what was filled of it, and later writes queue after it. */
  #closeRoom(): void {
    const room = this.#room!;
    this.#room = null;
    if (this.#roomAt < room.length) this.#parts[this.#count - 1] = room.subarray(0, this.#roomAt);
  }

  /**
   * Sends bytes that are valid only during this call (a view of a read buffer that its owner reuses): small ones
   * are copied into the queue, larger ones written now. A write the kernel does not take at once keeps them, and
   * then `takeLentKept()` tells the owner to read into another buffer.
   */
  lent(b: Buffer): void {
    if (this.#broken) return;
    if (b.length < LENT_COPY_BELOW || this.#holding) {
      if (this.#room !== null && this.#intoRoom(b)) return;
      this.bytes(Buffer.from(b));
      return;
    }
    this.#flushWith(b);
    const s = this.#socket;
    if (this.#inflight > 0 || s.writableLength > 0) lentKept = true;
  }

  /**
   * Writes what is queued and then `b`: in one system call (a gathered write) when the handle can take it
   * directly, so that a response head and a large body chunk go out together.
   */
  #flushWith(b: Buffer): void {
    if (this.#room !== null) this.#closeRoom();
    if (this.#holding) {
      this.#parts[this.#count++] = b;
      this.#bytes += b.length;
      return;
    }
    const n = this.#count;
    const s = this.#socket;
    const h = this.#directHandle();
    if (n === 0 || h === null) {
      this.flush();
      if (!s.destroyed) this.#write(b);
      return;
    }
    this.#count = 0;
    this.#bytes = 0;
    this.#writeGathered(h, n, b);
  }

  /** Writes the first `n` queued parts, and `extra` after them, in one gathered write (writev) on handle `h`. */
  #writeGathered(h: Handle, n: number, extra: Buffer | null): void {
    const parts = this.#parts;
    const chunks = new Array<string | Buffer>(extra === null ? 2 * n : 2 * n + 2);
    for (let i = 0; i < n; i++) {
      const p = parts[i]!;
      parts[i] = null;
      chunks[2 * i] = p;
      chunks[2 * i + 1] = typeof p === 'string' ? 'latin1' : 'buffer';
    }
    if (extra !== null) {
      chunks[2 * n] = extra;
      chunks[2 * n + 1] = 'buffer';
    }
    const req = this.#request(h);
    this.#dispatched(req, h.writev(req, chunks, false), chunks);
  }

  /** True while the socket and the queue stay under the socket's high-water mark. */
  get writable(): boolean {
    const s = this.#socket;
    if (s.destroyed || this.#broken) return false;
    if (s.writableLength + this.#inflight + this.#bytes < s.writableHighWaterMark) return true;
    if (this.#inflight > 0) this.#needDrain = true;
    return false;
  }

  /** Writes everything queued now. */
  flush(): void {
    const n = this.#count;
    if (n === 0 || this.#holding) return;
    if (this.#room !== null) this.#closeRoom();
    const parts = this.#parts;
    const s = this.#socket;
    const total = this.#bytes;
    this.#bytes = 0;
    this.#count = 0;
    if (s.destroyed) {
      parts.fill(null, 0, n);
      return;
    }
    if (n === 1) {
      const p = parts[0]!;
      parts[0] = null;
      this.#write(p);
      return;
    }
    if (total >= FLUSH_AT) {
      // Large parts (what waited for a write in flight) go out gathered rather than copied together.
      const h = this.#directHandle();
      if (h !== null) {
        this.#writeGathered(h, n, null);
        return;
      }
    }
    const out = Buffer.allocUnsafe(total);
    let at = 0;
    for (let i = 0; i < n; i++) {
      const p = parts[i]!;
      parts[i] = null;
      if (typeof p === 'string') at += out.write(p, at, 'latin1');
      else at += p.copy(out, at);
    }
    this.#write(out);
  }

  /**
   * Writes to the socket's handle directly when nothing else is queued on it, as net.Socket's own write would,
   * without its per-write request object, bookkeeping and nextTick. Otherwise (something queued, corked, ended,
   * connecting) it goes through `socket.write`; libuv keeps the two in order. Bytes written directly are not
   * counted in `socket.bytesWritten`.
   */
  #write(data: string | Buffer): void {
    const s = this.#socket;
    const h = this.#directHandle();
    if (h === null) {
      if (typeof data === 'string') s.write(data, 'latin1');
      else s.write(data);
      return;
    }
    const req = this.#request(h);
    this.#dispatched(req, typeof data === 'string' ? h.writeLatin1String(req, data) : h.writeBuffer(req, data), data);
  }

  /** The socket's handle when a write may go to it directly (nothing queued, corked, ended or connecting), else null. */
  #directHandle(): Handle | null {
    const s = this.#socket;
    const h = (s as unknown as { _handle: Handle | null })._handle;
    if (h === null || this.#inflight > 0 || s.writableLength > 0 || s.writableCorked > 0 || s.writableEnded || s.connecting) return null;
    return h;
  }

  /** The reusable write request, bound to handle `h`. */
  #request(h: Handle): WriteReq {
    let req = this.#req;
    if (req === null || req.handle !== h) {
      req = new WriteWrap();
      req.handle = h;
      req.oncomplete = Coalescer.#onWriteComplete;
      req.owner = this;
      req.buffer = null;
      this.#req = req;
    }
    return req;
  }

  /** After a handle write returned `err`: a failure destroys the socket; a write left in flight keeps `data` and its request. */
  #dispatched(req: WriteReq, err: number, data: string | Buffer | (string | Buffer)[]): void {
    if (err !== 0) {
      this.#failed();
      return;
    }
    if (streamBaseState[kLastWriteWasAsync] !== 0) {
      // The kernel took part of it; the rest goes when the socket can take it. This request is busy until then.
      req.buffer = data;
      this.#inflight = streamBaseState[kBytesWritten];
      this.#req = null;
    }
  }

  static #onWriteComplete = function onWriteComplete(this: WriteReq, status: number): void {
    const c = this.owner!;
    this.owner = null;
    this.buffer = null;
    c.#inflight = 0;
    const s = c.#socket;
    if (status < 0) {
      c.#failed();
      return;
    }
    // What waited for this write (see the constructor) goes now.
    if (c.#count > 0 && c.#onWriteError !== null) c.flush();
    if (c.#needDrain) {
      c.#needDrain = false;
      if (c.writable && !s.writableNeedDrain) s.emit('drain');
    }
  };

  /** A write failed: the socket is destroyed, or (with `onWriteError`) nothing more is written and the owner is told. */
  #failed(): void {
    const onWriteError = this.#onWriteError;
    if (onWriteError === null) {
      this.#socket.destroy();
      return;
    }
    if (this.#broken) return;
    this.#broken = true;
    this.discard();
    onWriteError();
  }

  /** Drops what is queued (the socket is being destroyed). */
  discard(): void {
    this.#room = null;
    this.#parts.fill(null, 0, this.#count);
    this.#count = 0;
    this.#bytes = 0;
  }

  #after(): void {
    if (this.#bytes >= FLUSH_AT) {
      this.flush();
      return;
    }
    if (!this.#scheduled) {
      this.#scheduled = true;
      dirty.push(this);
      if (ioDepth === 0 && !tickScheduled && !immediateScheduled) {
        tickScheduled = true;
        process.nextTick(flushDirty);
      }
    }
  }

  /** Called when the batch this coalescer joined is written. */
  scheduledFlush(): void {
    this.#scheduled = false;
    this.flush();
  }
}

/** Lent bytes below this size are copied (from Buffer's shared pool: no allocation of their own) rather than written at once. */
const LENT_COPY_BELOW = 4096;

/** A write kept bytes it was lent since `takeLentKept` was last called. */
let lentKept = false;

/**
 * Whether a write kept bytes lent to `Coalescer.lent` since the last call: their buffer must not be read into
 * again. Reads are handled one at a time, so the answer belongs to the read handled last.
 */
export function takeLentKept(): boolean {
  const kept = lentKept;
  lentKept = false;
  return kept;
}

/** Coalescers with queued bytes, written together after this turn's I/O callbacks (or at the end of the tick that queued them outside one). */
let dirty: Coalescer[] = [];
let ioDepth = 0;
let tickScheduled = false;

/** The list `flushDirty` walks while new entries go to `dirty` (two arrays swapped, none allocated per batch). */
let flushing: Coalescer[] = [];

function flushDirty(): void {
  tickScheduled = false;
  while (dirty.length > 0) {
    const list = dirty;
    dirty = flushing;
    flushing = list;
    for (let i = 0; i < list.length; i++) list[i].scheduledFlush();
    list.length = 0;
  }
}

/**
 * Brackets a socket read handler: what the handler queues on any connection (a proxied response queued on the
 * downstream socket while handling an upstream read, a request head queued on an upstream socket) is written after
 * every I/O callback of this event-loop turn ran, in one `setImmediate`, not at the end of each callback. Under load
 * one turn delivers reads from many connections; writing their answers together wakes the peers (clients, upstreams)
 * once per turn rather than once per read, and the kernel's wake-ups were the largest part of weir's system time
 * (measured: passthrough 25.1 -> 22.4 us CPU per request, 39k -> 45k req/s, p99 3.5 -> 2.5 ms, medians of 7).
 * The delay is the rest of the turn's callbacks. With at most one downstream exchange in progress there is nothing to
 * batch, and the writes go out at the end of the callback as before. Every `ioEnter()` must be followed by one `ioExit()` (try/finally).
 */
export function ioEnter(): void {
  // The outermost enter is one I/O event for the clock too: its timestamps share one reading.
  if (ioDepth++ === 0) enterEvent();
}

/** Ends what `ioEnter` began; the outermost exit writes every queued batch, now or after the turn's other I/O callbacks. */
export function ioExit(): void {
  if (--ioDepth !== 0) return;
  leaveEvent();
  if (dirty.length === 0) return;
  // A lone exchange has nothing to share a turn with: waiting would only add the setImmediate's delay
  // (measured with wrk -c1: p50 +6 us, -8 % req/s).
  if (exchanges <= 1) flushDirty();
  else if (!immediateScheduled) {
    immediateScheduled = true;
    setImmediate(flushAfterIo);
  }
}

/** Downstream exchanges in progress in this thread (request head read, response not finished). */
let exchanges = 0;

/** Counts a downstream exchange that began (called by the server connection). */
export function exchangeOpened(): void {
  exchanges++;
}

/** Counts a downstream exchange that ended, was aborted or became a tunnel. */
export function exchangeClosed(): void {
  if (exchanges > 0) exchanges--;
}

/** A flush is waiting for the check phase of this turn. */
let immediateScheduled = false;

function flushAfterIo(): void {
  immediateScheduled = false;
  flushDirty();
}
