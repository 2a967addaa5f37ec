/**
 * Collects the small writes one exchange makes in one tick (a head, a body chunk, a chunk terminator) and sends
 * them to the socket as one write: one syscall per message instead of three, which is most of the codec's cost.
 */
import type { Socket } from 'node:net';

/** Above this many pending bytes the coalescer writes at once instead of copying more. */
const FLUSH_AT = 16 * 1024;

/** A write coalescer bound to one socket. */
export class Coalescer {
  readonly #socket: Socket;
  #parts: (string | Buffer)[] = [];
  #bytes = 0;
  #scheduled = false;

  constructor(socket: Socket) {
    this.#socket = socket;
  }

  /** Queues latin1 text (heads, chunk sizes). */
  text(s: string): void {
    this.#parts.push(s);
    this.#bytes += s.length;
    this.#after();
  }

  /** Queues bytes. Large buffers go out at once, after whatever is queued, without a copy. */
  bytes(b: Buffer): void {
    if (b.length >= FLUSH_AT) {
      this.flush();
      this.#socket.write(b);
      return;
    }
    this.#parts.push(b);
    this.#bytes += b.length;
    this.#after();
  }

  /** True while the socket and the queue stay under the socket's high-water mark. */
  get writable(): boolean {
    const s = this.#socket;
    return !s.destroyed && s.writableLength + this.#bytes < s.writableHighWaterMark;
  }

  /** Writes everything queued now. */
  flush(): void {
    const parts = this.#parts;
    if (parts.length === 0) return;
    const s = this.#socket;
    const total = this.#bytes;
    this.#parts = [];
    this.#bytes = 0;
    if (s.destroyed) return;
    if (parts.length === 1) {
      const p = parts[0];
      if (typeof p === 'string') s.write(p, 'latin1');
      else s.write(p);
      return;
    }
    const out = Buffer.allocUnsafe(total);
    let at = 0;
    for (const p of parts) {
      if (typeof p === 'string') at += out.write(p, at, 'latin1');
      else at += p.copy(out, at);
    }
    s.write(out);
  }

  /** Drops what is queued (the socket is being destroyed). */
  discard(): void {
    this.#parts = [];
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
      if (ioDepth === 0 && !tickScheduled) {
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

/** Coalescers with queued bytes, written together at the end of the I/O callback or tick that queued them. */
let dirty: Coalescer[] = [];
let ioDepth = 0;
let tickScheduled = false;

function flushDirty(): void {
  tickScheduled = false;
  while (dirty.length > 0) {
    const list = dirty;
    dirty = [];
    for (const c of list) c.scheduledFlush();
  }
}

/**
 * Brackets a socket read handler: what the handler queues on any connection (a proxied response queued on the
 * downstream socket while handling an upstream read) is written once the outermost handler returns, in the same
 * callback, without a nextTick per write. Every `ioEnter()` must be followed by one `ioExit()` (use try/finally).
 */
export function ioEnter(): void {
  ioDepth++;
}

/** Ends what `ioEnter` began; the outermost exit writes every queued batch. */
export function ioExit(): void {
  if (--ioDepth === 0 && dirty.length > 0) flushDirty();
}
