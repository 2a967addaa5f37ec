/**
 * The filter chain runner of one direction of one stream: runs header, body and trailer hooks in order,
 * holds what a stopped filter holds, buffers for `stop-and-buffer`, and resumes where a filter resumes.
 * Filter i receives body data only after its header hook continued, or while it stopped with `stop`.
 */
import { Buffer } from 'node:buffer';
import { performance } from 'node:perf_hooks';
import { advanceClock } from '../core/clock.ts';
import type { HeaderMap } from '../core/headers.ts';
import type { Filter, FilterStatus, HookResult, BodyChunk } from '../filters/contract.ts';

/** Where data goes after the last filter, and how the runner reports trouble. */
export interface PipelineSink {
  headers(headers: HeaderMap, endOfStream: boolean): void;
  data(chunk: Buffer, endOfStream: boolean): void;
  trailers(trailers: HeaderMap): void;
  /** A hook threw or rejected: the stream applies the failure policy. */
  filterFailed(index: number, error: unknown): void;
  /** Buffered data passed the limit (413 on requests, 500 on responses). */
  overflow(index: number): void;
  /** Held data grew past the limit: stop reading from the source until `unblock`. */
  block(): void;
  unblock(): void;
  /** A filter stopped iteration: it holds the stream until it resumes. */
  stopped(): void;
  /** True once the stream is finished, reset or answered locally: iteration stops at once. */
  readonly halted: boolean;
}

/** One event waiting in front of a filter: data (possibly the end) or trailers. */
interface Pending {
  data: Buffer | null;
  eos: boolean;
  trailers: HeaderMap | null;
  /** The chunk a filter stopped on: it may replace `chunk.data` until it resumes (Proxy-Wasm does, from callbacks). */
  chunk?: BodyChunk;
  /** The holding filter already saw this event: on resume it goes straight to the next filter. */
  passed?: boolean;
}

const EMPTY = Buffer.alloc(0);

/**
 * An array of n copies of v, sized exactly (a push-grown array starts with room for 17), filled by a loop
 * (Array.prototype.fill runs in a slow C++ builtin on a fresh array).
 */
export function filled<T>(n: number, v: T): T[] {
  const a = new Array<T>(n);
  for (let i = 0; i < n; i++) a[i] = v;
  return a;
}

/**
 * What a buffering filter (stop-and-buffer) is handed with each new chunk: the body so far, whose parts are joined
 * only when the filter reads `data`. A filter that waits for the end of the stream reads it once, instead of the
 * body being copied whole on every chunk (quadratic in its size).
 */
class BufferedChunk implements BodyChunk {
  /** The parts, until they were joined or the filter replaced the data; only the first `#size` bytes count. */
  #parts: Buffer[] | null;
  #size: number;
  #data: Buffer | null = null;

  constructor(parts: Buffer[], size: number) {
    this.#parts = parts;
    this.#size = size;
  }

  get data(): Buffer {
    if (this.#data === null) {
      this.#data = Buffer.concat(this.#parts!, this.#size);
      this.#parts = null;
    }
    return this.#data;
  }

  set data(data: Buffer) {
    this.#data = data;
    this.#parts = null;
  }

  /** The parts to go on buffering with: still unjoined, or the joined (or replaced) data as one part. */
  get parts(): Buffer[] {
    return this.#parts ?? [this.#data!];
  }

  get size(): number {
    return this.#parts !== null ? this.#size : this.#data!.length;
  }
}

function isPromise(r: HookResult): r is Promise<FilterStatus | void> {
  return typeof r === 'object' && r !== null;
}

/** One direction's chain. */
export class Pipeline {
  /** The stream's filters in chain order; a response pipeline runs the first `length` of them in reverse. */
  readonly #chain: readonly Filter[];
  /** How many filters this direction runs. */
  readonly length: number;
  readonly #sink: PipelineSink;
  readonly #limit: number;
  #headers: HeaderMap | null = null;
  #headersEos = false;
  /** Filters [0, #headerIndex) continued on headers; #headerIndex === length once they reached the sink. */
  #headerIndex = 0;
  /** The kind of stop at #headerIndex, or null while running. */
  #stopKind: FilterStatus | null = null;
  // Per-filter state, allocated on first use: a request that no filter holds or buffers allocates none of it.
  #queues: (Pending[] | null)[] | null = null;
  #buffers: (Buffer[] | null)[] | null = null;
  #bufferSizes: number[] | null = null;
  #held: (Pending[] | null)[] | null = null;
  #heldBytes = 0;
  #blocked = false;
  /** The filter that stopped last (for resume() without index). */
  lastStopped = -1;

  readonly #timing: number[] | null;
  readonly #reversed: boolean;

  /**
   * `filters` are in chain order. A request pipeline runs them in order; a response pipeline runs the first
   * `count` of them (all by default; fewer for a local reply made by filter `count`) in reverse, so its index i
   * is chain position count - 1 - i. `timing`, when given, gets the milliseconds spent in each filter's hooks
   * added, indexed by chain position.
   */
  constructor(filters: readonly Filter[], direction: 'request' | 'response', sink: PipelineSink, bufferLimit: number, timing: number[] | null = null, count = filters.length) {
    this.#chain = filters;
    this.length = count;
    this.#timing = timing;
    this.#reversed = direction === 'response';
    this.#sink = sink;
    this.#limit = bufferLimit;
  }

  /** The filter at pipeline index i. */
  #filter(i: number): Filter {
    return this.#chain[this.#reversed ? this.length - 1 - i : i];
  }

  /** The pipeline index of chain position `position`, or -1 when this direction does not run that filter. */
  indexOf(position: number): number {
    if (position < 0 || position >= this.length) return -1;
    return this.#reversed ? this.length - 1 - position : position;
  }

  #heldAt(i: number): Pending[] | null {
    return this.#held === null ? null : this.#held[i];
  }

  #setHeld(i: number, list: Pending[] | null): void {
    if (this.#held === null) {
      if (list === null) return;
      this.#held = filled(this.length, null);
    }
    this.#held[i] = list;
  }

  #bufferAt(i: number): Buffer[] | null {
    return this.#buffers === null ? null : this.#buffers[i];
  }

  #setBuffer(i: number, parts: Buffer[] | null, size: number): void {
    if (this.#buffers === null) {
      if (parts === null) return;
      this.#buffers = filled(this.length, null);
      this.#bufferSizes = filled(this.length, 0);
    }
    this.#buffers[i] = parts;
    this.#bufferSizes![i] = size;
  }

  /** True once the headers went past every filter. */
  get headersPassed(): boolean {
    return this.#headerIndex >= this.length && this.#stopKind === null;
  }

  /** Once true: no filter of this direction looks at its body or trailers any more. */
  #bodyBlind = false;

  /**
   * True when body data or trailers fed now would reach the sink untouched and kept nowhere: the headers went past
   * every filter, nothing is held, and no filter of this direction looks at bodies or trailers (it has no such
   * hooks, or `skipsBody` says it is done with them). `data` and `trailers` then go to the sink without calling a
   * hook, and the caller may hand a lent chunk (valid only during the call) to the sink itself, without a copy.
   */
  get bodyPassesThrough(): boolean {
    if (!this.headersPassed || this.#heldBytes !== 0 || this.#sinkQueue !== null) return false;
    if (this.#bodyBlind) return true;
    const direction = this.#reversed ? 'response' : 'request';
    for (let i = 0; i < this.length; i++) {
      const f = this.#filter(i);
      const looks = this.#reversed
        ? f.onResponseBody !== undefined || f.onResponseTrailers !== undefined
        : f.onRequestBody !== undefined || f.onRequestTrailers !== undefined;
      if (looks && (f.skipsBody === undefined || !f.skipsBody(direction))) return false;
    }
    this.#bodyBlind = true;
    return true;
  }

  /** Calls a hook, adding the time it took to the stream's per-filter timings. */
  #timed<A, B>(i: number, hook: (a: A, b: B) => HookResult, filter: Filter, a: A, b: B): HookResult {
    const timing = this.#timing;
    if (timing === null) return hook.call(filter, a, b);
    const t0 = performance.now();
    try {
      return hook.call(filter, a, b);
    } finally {
      const t1 = performance.now();
      timing[this.#reversed ? this.length - 1 - i : i] += t1 - t0;
      // The event's later timestamps (the upstream attempt, say) come after the filter's work.
      advanceClock(t1);
    }
  }

  #stopped(i: number): void {
    this.lastStopped = i;
    this.#sink.stopped();
  }

  /** Starts the direction with its headers. */
  headers(headers: HeaderMap, endOfStream: boolean): void {
    this.#headers = headers;
    this.#headersEos = endOfStream;
    this.#runHeaders(0);
  }

  /** Feeds body data at the head of the chain (straight to the sink while `bodyPassesThrough`). */
  data(chunk: Buffer, endOfStream: boolean): void {
    if (this.bodyPassesThrough) this.#sink.data(chunk, endOfStream);
    else this.#push(0, { data: chunk, eos: endOfStream, trailers: null });
  }

  /** Feeds trailers (which end the stream) at the head of the chain (straight to the sink while `bodyPassesThrough`). */
  trailers(trailers: HeaderMap): void {
    if (this.bodyPassesThrough) this.#sink.trailers(trailers);
    else this.#push(0, { data: null, eos: true, trailers });
  }

  /** Resumes filter `index` (or the one that stopped last) after a `stop`. */
  resume(index = this.lastStopped): void {
    if (index < 0 || this.#sink.halted) return;
    if (this.#headerIndex === index && this.#stopKind !== null) {
      // Held headers go on first; a body the filter held meanwhile follows them.
      this.#stopKind = null;
      this.#runHeaders(index + 1);
      if (this.#sink.halted) return;
    }
    this.#release(index);
  }

  #runHeaders(from: number): void {
    const n = this.length;
    const headers = this.#headers!;
    const sink = this.#sink;
    for (let i = from; i < n; i++) {
      this.#headerIndex = i;
      const filter = this.#filter(i);
      // Named loads (not filter[name]): the hooks of every filter class go through one fast inline-cache path.
      const hook = this.#reversed ? filter.onResponseHeaders : filter.onRequestHeaders;
      if (hook === undefined) continue;
      let r: HookResult;
      try {
        r = this.#timed(i, hook, filter, headers, this.#headersEos);
      } catch (err) {
        sink.filterFailed(i, err);
        return;
      }
      if (sink.halted) return;
      if (r === undefined || r === 'continue') continue;
      if (isPromise(r)) {
        // A header hook still at work sees no body: a body hook returning continue must not let the
        // request past a check that has not finished (an async auth filter, say).
        this.#stopKind = 'stop-all';
        this.#stopped(i);
        this.#await(i, r, true);
        return;
      }
      this.#stopKind = r === 'stop-all' ? 'stop-all' : 'stop';
      this.#stopped(i);
      // A filter that stops on headers may still see the body (Envoy's StopIteration): deliver what waits.
      if (this.#stopKind === 'stop') this.#drainQueue(i);
      return;
    }
    this.#headerIndex = n;
    this.#stopKind = null;
    sink.headers(headers, this.#headersEos);
    if (sink.halted) return;
    if (this.#queues !== null) for (let i = 0; i < n && !sink.halted; i++) this.#drainQueue(i);
    this.#drainQueue(n);
  }

  #await(i: number, p: Promise<FilterStatus | void>, onHeaders: boolean): void {
    p.then(
      (status) => {
        if (this.#sink.halted) return;
        if (status === undefined || status === 'continue') {
          if (onHeaders) this.resume(i);
          else this.#release(i);
        }
      },
      (err) => {
        if (!this.#sink.halted) this.#sink.filterFailed(i, err);
      },
    );
  }

  #canReceive(i: number): boolean {
    if (i < this.#headerIndex) return true;
    if (i === this.#headerIndex) return this.#stopKind === 'stop' || (this.#stopKind === null && i >= this.length);
    return false;
  }

  #drainQueue(i: number): void {
    const atSink = i === this.length;
    const q = atSink ? this.#sinkQueue : this.#queues === null ? null : this.#queues[i];
    if (q === null || q.length === 0) return;
    if (atSink) this.#sinkQueue = null;
    else this.#queues![i] = null;
    for (const p of q) this.#unhold(p);
    for (const p of q) {
      if (this.#sink.halted) return;
      if (atSink) this.#forward(i, p);
      else this.#push(i, p);
    }
  }

  #sinkQueue: Pending[] | null = null;

  #push(from: number, p: Pending): void {
    const n = this.length;
    const sink = this.#sink;
    for (let i = from; i < n; i++) {
      if (sink.halted) return;
      const held = this.#heldAt(i);
      if (held !== null || !this.#canReceive(i)) {
        let list: Pending[];
        if (held !== null && this.#canReceive(i)) list = held;
        else {
          const queues = (this.#queues ??= filled(n, null));
          list = queues[i] ??= [];
        }
        list.push(p);
        this.#hold(p);
        return;
      }
      const filter = this.#filter(i);
      if (p.trailers !== null) {
        // Trailers end the stream. A filter that was buffering gets its whole body first; if it still wants to
        // buffer (it waits for the end of the stream), the body stays with it until its trailers hook answers.
        let whole: Pending | null = null;
        if (this.#bufferAt(i) !== null) {
          const chunk = this.#takeBuffer(i);
          const r = this.#callBody(i, chunk, false);
          if (r === null) return;
          whole = { data: chunk.data, eos: false, trailers: null, chunk, passed: true };
          if (r === 'stop') {
            this.#stopped(i);
            this.#setHeld(i, [whole, p]);
            this.#hold(whole);
            return;
          }
          if (r === 'continue') {
            if (!this.#continueHeldHeaders(i)) return;
            this.#forward(i + 1, { data: chunk.data, eos: false, trailers: null });
            whole = null;
          }
        }
        const hook = this.#reversed ? filter.onResponseTrailers : filter.onRequestTrailers;
        let r: HookResult;
        try {
          r = hook === undefined ? 'continue' : this.#timed(i, hook as (a: unknown, b?: unknown) => HookResult, filter, p.trailers, undefined);
        } catch (err) {
          sink.filterFailed(i, err);
          return;
        }
        if (sink.halted) return;
        if (r !== undefined && r !== 'continue') {
          this.#stopped(i);
          const t: Pending = { data: null, eos: true, trailers: p.trailers, passed: true };
          this.#setHeld(i, whole === null ? [t] : [whole, t]);
          if (whole !== null) this.#hold(whole);
          if (isPromise(r)) this.#await(i, r, false);
          return;
        }
        if (!this.#continueHeldHeaders(i)) return;
        if (whole !== null) this.#forward(i + 1, { data: whole.chunk!.data, eos: false, trailers: null });
        continue;
      }
      const hook = this.#reversed ? filter.onResponseBody : filter.onRequestBody;
      if (hook === undefined) continue;
      let chunk: BodyChunk;
      const parts = this.#bufferAt(i);
      if (parts !== null) {
        parts.push(p.data!);
        const size = (this.#bufferSizes![i] += p.data!.length);
        if (size > this.#limit) {
          sink.overflow(i);
          return;
        }
        chunk = new BufferedChunk(parts, size);
      } else chunk = { data: p.data! };
      const r = this.#callBody(i, chunk, p.eos);
      if (r === null) return;
      if (r === 'continue') {
        this.#setBuffer(i, null, 0);
        p = { data: chunk.data, eos: p.eos, trailers: null };
        if (!this.#continueHeldHeaders(i)) return;
        continue;
      }
      if (r === 'stop-and-buffer' && !p.eos) {
        if (chunk instanceof BufferedChunk) this.#setBuffer(i, chunk.parts, chunk.size);
        else this.#setBuffer(i, [chunk.data], chunk.data.length);
        if (this.#bufferSizes![i] > this.#limit) sink.overflow(i);
        return;
      }
      // 'stop' (or buffering at the end of the stream): hold everything until the filter resumes.
      this.#setBuffer(i, null, 0);
      this.#stopped(i);
      const stopped: Pending = { data: chunk.data, eos: p.eos, trailers: null, chunk };
      this.#setHeld(i, [stopped]);
      this.#hold(stopped);
      return;
    }
    this.#forward(n, p);
  }

  /**
   * Continuing the body or trailers of a filter that held the headers continues the headers too (as in Envoy).
   * Returns false when the stream halted meanwhile.
   */
  #continueHeldHeaders(i: number): boolean {
    if (i !== this.#headerIndex || this.#stopKind === null) return true;
    this.#stopKind = null;
    this.#runHeaders(i + 1);
    return !this.#sink.halted;
  }

  /** Calls a body hook; returns its status, or null when the stream halted or the hook failed. */
  #callBody(i: number, chunk: BodyChunk, eos: boolean): FilterStatus | null {
    const f = this.#filter(i);
    const hook = this.#reversed ? f.onResponseBody : f.onRequestBody;
    if (hook === undefined) return 'continue';
    let r: HookResult;
    try {
      r = this.#timed(i, hook, f, chunk, eos);
    } catch (err) {
      this.#sink.filterFailed(i, err);
      return null;
    }
    if (this.#sink.halted) return null;
    if (r === undefined) return 'continue';
    if (isPromise(r)) {
      this.#await(i, r, false);
      return 'stop';
    }
    return r;
  }

  #takeBuffer(i: number): BodyChunk {
    const data = Buffer.concat(this.#bufferAt(i)!, this.#bufferSizes![i]);
    this.#setBuffer(i, null, 0);
    return { data };
  }

  #forward(i: number, p: Pending): void {
    if (i < this.length) {
      this.#push(i, p);
      return;
    }
    if (!this.headersPassed) {
      (this.#sinkQueue ??= []).push(p);
      this.#hold(p);
      return;
    }
    if (p.trailers !== null) this.#sink.trailers(p.trailers);
    else this.#sink.data(p.data ?? EMPTY, p.eos);
  }

  /**
   * Releases what filter i holds after it resumed: the event it stopped on goes to the next filter;
   * events that arrived while it was stopped go through filter i again, which may stop once more.
   */
  #release(i: number): void {
    const held = this.#heldAt(i);
    if (held === null) return;
    this.#held![i] = null;
    for (const p of held) this.#unhold(p);
    for (let k = 0; k < held.length; k++) {
      if (this.#sink.halted) return;
      const p = held[k];
      if (p.chunk !== undefined) p.data = p.chunk.data;
      // The event the filter stopped on (and what it had already seen) goes on; later ones pass through it again.
      if (k === 0 || p.passed) this.#forward(i + 1, p);
      else {
        this.#push(i, p);
        const again = this.#heldAt(i);
        if (again !== null) {
          // It stopped again: what remains stays behind, in order.
          for (const q of held.slice(k + 1)) {
            again.push(q);
            this.#hold(q);
          }
          return;
        }
      }
    }
  }

  #hold(p: Pending): void {
    if (p.data === null) return;
    this.#heldBytes += p.data.length;
    if (!this.#blocked && this.#heldBytes > this.#limit) {
      this.#blocked = true;
      this.#sink.block();
    }
  }

  #unhold(p: Pending): void {
    if (p.data === null) return;
    this.#heldBytes -= p.data.length;
    if (this.#blocked && this.#heldBytes <= this.#limit / 2) {
      this.#blocked = false;
      this.#sink.unblock();
    }
  }
}
