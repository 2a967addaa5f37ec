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
      if (typeof p === 'string') at += out.latin1Write(p, at);
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
      process.nextTick(flushLater, this);
    }
  }

  /** Called by the scheduled tick. */
  scheduledFlush(): void {
    this.#scheduled = false;
    this.flush();
  }
}

function flushLater(c: Coalescer): void {
  c.scheduledFlush();
}
