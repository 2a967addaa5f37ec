/**
 * A key-value store and message queues in one SharedArrayBuffer, seen by every worker thread of the process:
 * Proxy-Wasm shared data and shared queues (namespaced by vm_id) and Lua `weir.shared` (namespaced by dict name).
 *
 * The main thread creates the store once (`createSharedStore`) and hands `store.buffer` to each worker, which calls
 * `attachSharedStore(buffer)`. Every operation takes one process-wide lock (a word of the buffer, Atomics-based), so
 * each call is atomic across threads. Keys are namespaced: `(ns, key)` never collides with the same key in another ns.
 * Values are bytes. Every write stamps the entry with a fresh cas number (never 0); `set` with `cas` writes only if the
 * entry still carries that number. Memory is fixed at creation: a write that does not fit answers `'no-memory'`.
 *
 * Layout (32-bit words): a header, one doorbell word per attached thread, the queue table, the entry slots (open
 * addressing, linear probing), a float64 expiry per slot, a free-block bitmap, then the arena of 32-byte blocks.
 */
import { performance } from 'node:perf_hooks';

const BLOCK = 32;
const DOORBELLS = 64;
const MAX_QUEUES = 1024;
const SLOT_WORDS = 6; // state, hash, first block, key length, value length, cas
const MAGIC = 0x77656972; // "weir"

const H_LOCK = 0;
const H_CAS = 1;
const H_USED = 2;
const H_TOMBS = 3;
const H_SLOTS = 4;
const H_BLOCKS = 5;
const H_USED_BLOCKS = 6;
const H_NEXT_FIT = 7;
const H_ATTACH = 8;
const H_QUEUES = 9;
const H_MAGIC = 10;
const HEADER_WORDS = 16;
const BELLS_AT = HEADER_WORDS;
const QUEUES_AT = BELLS_AT + DOORBELLS;
const QUEUE_WORDS = 3; // head, tail, owner doorbell
const SLOTS_AT = QUEUES_AT + MAX_QUEUES * QUEUE_WORDS;

const EMPTY = 0;
const USED = 1;
const TOMB = 2;

const QUEUE_NAMES = '\u0000queues';
const QUEUE_ITEMS = '\u0000queue-items';

const encoder = new TextEncoder();

/** Options of `createSharedStore`. */
export interface SharedStoreOptions {
  /** Bytes for keys and values (default 8 MiB); each entry takes its key and value rounded up to 32-byte blocks. */
  memoryBytes?: number;
  /** Most entries at once (default 65536), queue items included. */
  maxEntries?: number;
  /** The clock for TTLs, in milliseconds since the epoch (default `Date.now`); the same in every thread. */
  now?: () => number;
  /** How long a thread waits for the lock before it takes it over from a holder presumed dead (default 1000 ms). */
  lockTimeoutMs?: number;
}

/** One stored value and the cas number of the write that stored it. */
export interface SharedEntry {
  value: Uint8Array;
  cas: number;
}

/** Occupancy figures for metrics and messages. */
export interface SharedStoreStats {
  entries: number;
  usedBytes: number;
  capacityBytes: number;
}

interface Layout {
  slots: number;
  blocks: number;
  expiryAt: number; // byte offset of the float64 expiry array
  bitmapAt: number; // word offset
  arenaAt: number; // byte offset
  totalBytes: number;
}

function layoutFor(slots: number, blocks: number): Layout {
  const slotEnd = (SLOTS_AT + slots * SLOT_WORDS) * 4;
  const expiryAt = Math.ceil(slotEnd / 8) * 8;
  const bitmapAt = (expiryAt + slots * 8) / 4;
  const arenaAt = (bitmapAt + Math.ceil(blocks / 32)) * 4;
  return { slots, blocks, expiryAt, bitmapAt, arenaAt, totalBytes: arenaAt + blocks * BLOCK };
}

function fnv1a(bytes: Uint8Array): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < bytes.length; i++) h = Math.imul(h ^ bytes[i], 0x01000193);
  return h | 0;
}

/** Creates a store in a new SharedArrayBuffer; call once in the main thread and pass `.buffer` to every worker. */
export function createSharedStore(options: SharedStoreOptions = {}): SharedStore {
  const memoryBytes = options.memoryBytes ?? 8 * 1024 * 1024;
  const maxEntries = options.maxEntries ?? 65536;
  if (!(memoryBytes >= BLOCK) || !(maxEntries >= 1)) throw new Error(`Cannot create shared store: memoryBytes "${memoryBytes}" and maxEntries "${maxEntries}" must be positive`);
  const slots = Math.ceil(maxEntries / 0.75) + 1;
  const layout = layoutFor(slots, Math.ceil(memoryBytes / BLOCK));
  const buffer = new SharedArrayBuffer(layout.totalBytes);
  const words = new Int32Array(buffer);
  words[H_SLOTS] = layout.slots;
  words[H_BLOCKS] = layout.blocks;
  words[H_CAS] = 0;
  words[H_MAGIC] = MAGIC;
  return new SharedStore(buffer, options.now ?? Date.now, options);
}

let threadDefault: SharedStore | undefined;

/** Attaches to a store created in another thread; the result also becomes this thread's `sharedStore()`. */
export function attachSharedStore(buffer: SharedArrayBuffer, options: { now?: () => number; lockTimeoutMs?: number } = {}): SharedStore {
  threadDefault = new SharedStore(buffer, options.now ?? Date.now, options);
  return threadDefault;
}

/** This thread's store: the one attached last, or (outside a weir worker, e.g. in tests) a private one made on first use. */
export function sharedStore(): SharedStore {
  threadDefault ??= createSharedStore();
  return threadDefault;
}

/** A view of a shared store from one thread. Build it with `createSharedStore` or `attachSharedStore`. */
export class SharedStore {
  /** The SharedArrayBuffer to hand to other threads. */
  readonly buffer: SharedArrayBuffer;
  readonly #i32: Int32Array;
  readonly #u8: Uint8Array;
  readonly #expiry: Float64Array;
  readonly #layout: Layout;
  readonly #now: () => number;
  readonly #bell: number;
  /** This view's lock owner id (never 0). */
  readonly #owner: number;
  readonly #lockTimeoutMs: number;
  readonly #listeners = new Map<number, { seen: number; listener: (queue: number) => void }>();
  #watching = false;

  constructor(buffer: SharedArrayBuffer, now: () => number, options: { lockTimeoutMs?: number } = {}) {
    const words = new Int32Array(buffer);
    if (words[H_MAGIC] !== MAGIC) throw new Error('Cannot attach shared store: the buffer was not made by createSharedStore');
    this.buffer = buffer;
    this.#i32 = words;
    this.#u8 = new Uint8Array(buffer);
    this.#layout = layoutFor(words[H_SLOTS], words[H_BLOCKS]);
    this.#expiry = new Float64Array(buffer, this.#layout.expiryAt, this.#layout.slots);
    this.#now = now;
    const attached = Atomics.add(words, H_ATTACH, 1);
    this.#bell = BELLS_AT + (attached % DOORBELLS);
    this.#owner = attached + 1;
    this.#lockTimeoutMs = options.lockTimeoutMs ?? 1000;
  }

  /** Returns a copy of the value and its cas number, or undefined when the key is absent or expired. */
  get(ns: string, key: string): SharedEntry | undefined {
    const k = this.#key(ns, key);
    return this.#locked(() => {
      const slot = this.#find(k).found;
      if (slot < 0) return undefined;
      return { value: this.#value(slot), cas: this.#i32[this.#slot(slot) + 5] >>> 0 };
    });
  }

  /** Writes a value; with `cas` only if the entry's cas still matches (an absent entry never matches a non-zero cas). */
  set(ns: string, key: string, value: Uint8Array, opts: { cas?: number; ttlMs?: number } = {}): 'ok' | 'cas-mismatch' | 'no-memory' {
    const k = this.#key(ns, key);
    return this.#locked(() => {
      const at = this.#find(k);
      if (opts.cas !== undefined && opts.cas !== 0) {
        if (at.found < 0 || this.#i32[this.#slot(at.found) + 5] >>> 0 !== opts.cas >>> 0) return 'cas-mismatch';
      }
      return this.#write(k, at, value, opts.ttlMs);
    });
  }

  /** Writes a value only if the key is absent (or expired). */
  add(ns: string, key: string, value: Uint8Array, opts: { ttlMs?: number } = {}): 'ok' | 'exists' | 'no-memory' {
    const k = this.#key(ns, key);
    return this.#locked(() => {
      const at = this.#find(k);
      if (at.found >= 0) return 'exists';
      return this.#write(k, at, value, opts.ttlMs);
    });
  }

  /**
   * Adds `delta` to a number stored as its decimal text and returns the new number. An absent key starts from
   * `init` (with `ttlMs`) when given, else answers 'not-found'; a value that is not a decimal number answers 'not-a-number'.
   * An existing entry keeps its TTL.
   */
  incr(ns: string, key: string, delta: number, opts: { init?: number; ttlMs?: number } = {}): number | 'not-a-number' | 'not-found' | 'no-memory' {
    const k = this.#key(ns, key);
    return this.#locked(() => {
      const at = this.#find(k);
      let base: number;
      let ttlMs: number | undefined;
      if (at.found < 0) {
        if (opts.init === undefined) return 'not-found';
        base = opts.init;
        ttlMs = opts.ttlMs;
      } else {
        const text = new TextDecoder().decode(this.#value(at.found)).trim();
        base = text === '' ? NaN : Number(text);
        if (Number.isNaN(base)) return 'not-a-number';
        const expires = this.#expiry[at.found];
        ttlMs = expires === 0 ? undefined : Math.max(1, expires - this.#now());
      }
      const next = base + delta;
      const r = this.#write(k, at, encoder.encode(String(next)), ttlMs);
      return r === 'ok' ? next : r;
    });
  }

  /** Removes a key; true when it was present. */
  delete(ns: string, key: string): boolean {
    const k = this.#key(ns, key);
    return this.#locked(() => {
      const slot = this.#find(k).found;
      if (slot < 0) return false;
      this.#remove(slot);
      return true;
    });
  }

  /** Milliseconds until the key expires: 0 when it never does, undefined when it is absent. */
  ttl(ns: string, key: string): number | undefined {
    const k = this.#key(ns, key);
    return this.#locked(() => {
      const slot = this.#find(k).found;
      if (slot < 0) return undefined;
      const expires = this.#expiry[slot];
      return expires === 0 ? 0 : Math.max(1, expires - this.#now());
    });
  }

  /** Up to `max` keys of a namespace (default all), in no particular order; expired keys are skipped. */
  keys(ns: string, max = Infinity): string[] {
    const prefix = encoder.encode(ns + '\u0000');
    return this.#locked(() => {
      const out: string[] = [];
      const now = this.#now();
      const decoder = new TextDecoder();
      for (let s = 0; s < this.#layout.slots && out.length < max; s++) {
        const w = this.#slot(s);
        if (this.#i32[w] !== USED) continue;
        const expires = this.#expiry[s];
        if (expires !== 0 && expires <= now) continue;
        const start = this.#layout.arenaAt + this.#i32[w + 2] * BLOCK;
        const keyLen = this.#i32[w + 3];
        if (keyLen < prefix.length) continue;
        let match = true;
        for (let i = 0; i < prefix.length && match; i++) match = this.#u8[start + i] === prefix[i];
        if (match) out.push(decoder.decode(this.#u8.slice(start + prefix.length, start + keyLen)));
      }
      return out;
    });
  }

  /** Removes every key of a namespace; returns how many were removed. */
  clear(ns: string): number {
    let n = 0;
    for (const key of this.keys(ns)) if (this.delete(ns, key)) n++;
    return n;
  }

  /** Current occupancy. */
  stats(): SharedStoreStats {
    const w = this.#i32;
    return { entries: Atomics.load(w, H_USED), usedBytes: Atomics.load(w, H_USED_BLOCKS) * BLOCK, capacityBytes: this.#layout.blocks * BLOCK };
  }

  /**
   * Creates or opens the queue `(ns, name)` and returns its id (≥ 1), or 'no-memory'. With `onReady`, this thread
   * becomes the queue's one registrant (the last registration wins, as in Envoy): `onReady(id)` runs once per
   * enqueued item, asynchronously, on this thread, whichever thread enqueued it.
   */
  registerQueue(ns: string, name: string, onReady?: (queue: number) => void): number | 'no-memory' {
    const id = this.#locked(() => {
      const k = this.#key(QUEUE_NAMES, ns + '\u0000' + name);
      const at = this.#find(k);
      let queue: number;
      if (at.found >= 0) queue = new DataView(this.#value(at.found).buffer).getUint32(0, true);
      else {
        if (this.#i32[H_QUEUES] >= MAX_QUEUES) return 'no-memory' as const;
        queue = ++this.#i32[H_QUEUES];
        const bytes = new Uint8Array(4);
        new DataView(bytes.buffer).setUint32(0, queue, true);
        if (this.#write(k, at, bytes, undefined) !== 'ok') {
          this.#i32[H_QUEUES]--;
          return 'no-memory' as const;
        }
      }
      if (onReady !== undefined) Atomics.store(this.#i32, this.#queueWord(queue) + 2, this.#bell);
      return queue;
    });
    if (id !== 'no-memory' && onReady !== undefined) {
      this.#listeners.set(id, { seen: Atomics.load(this.#i32, this.#queueWord(id) + 1), listener: onReady });
      this.#watch();
    }
    return id;
  }

  /** Finds the queue `(ns, name)`; undefined when nobody created it. */
  resolveQueue(ns: string, name: string): number | undefined {
    const entry = this.get(QUEUE_NAMES, ns + '\u0000' + name);
    return entry === undefined ? undefined : new DataView(entry.value.buffer).getUint32(0, true);
  }

  /** Appends an item to a queue and rings its registrant. */
  enqueue(queue: number, value: Uint8Array): 'ok' | 'not-found' | 'no-memory' {
    if (!this.#queueExists(queue)) return 'not-found';
    const w = this.#queueWord(queue);
    const r = this.#locked(() => {
      const tail = this.#i32[w + 1];
      const k = this.#key(QUEUE_ITEMS, `${queue}:${tail}`);
      const written = this.#write(k, this.#find(k), value, undefined);
      if (written === 'ok') Atomics.store(this.#i32, w + 1, tail + 1);
      return written;
    });
    if (r === 'ok') {
      const bell = Atomics.load(this.#i32, w + 2);
      if (bell !== 0) {
        Atomics.add(this.#i32, bell, 1);
        Atomics.notify(this.#i32, bell);
      }
    }
    return r;
  }

  /** Takes the oldest item of a queue: its bytes, 'empty', or 'not-found' for an unknown queue. */
  dequeue(queue: number): Uint8Array | 'empty' | 'not-found' {
    if (!this.#queueExists(queue)) return 'not-found';
    const w = this.#queueWord(queue);
    return this.#locked(() => {
      const head = this.#i32[w];
      if (head === this.#i32[w + 1]) return 'empty' as const;
      const k = this.#key(QUEUE_ITEMS, `${queue}:${head}`);
      const slot = this.#find(k).found;
      this.#i32[w] = head + 1;
      if (slot < 0) return new Uint8Array(0);
      const value = this.#value(slot);
      this.#remove(slot);
      return value;
    });
  }

  /** Stops delivering queue notifications to this thread (pending waits end without effect). */
  close(): void {
    this.#watching = false;
    this.#listeners.clear();
  }

  #queueExists(queue: number): boolean {
    return Number.isInteger(queue) && queue >= 1 && queue <= Atomics.load(this.#i32, H_QUEUES);
  }

  #queueWord(queue: number): number {
    return QUEUES_AT + (queue - 1) * QUEUE_WORDS;
  }

  #watch(): void {
    if (this.#watching) return;
    this.#watching = true;
    const wait = (): void => {
      if (!this.#watching) return;
      const seen = Atomics.load(this.#i32, this.#bell);
      this.#deliver();
      const r = Atomics.waitAsync(this.#i32, this.#bell, seen);
      if (r.async) r.value.then(wait);
      else setImmediate(wait);
    };
    wait();
  }

  #deliver(): void {
    for (const [queue, entry] of this.#listeners) {
      const tail = Atomics.load(this.#i32, this.#queueWord(queue) + 1);
      const owner = Atomics.load(this.#i32, this.#queueWord(queue) + 2);
      if (owner !== this.#bell) continue;
      while (entry.seen !== tail) {
        entry.seen++;
        entry.listener(queue);
      }
    }
  }

  #key(ns: string, key: string): Uint8Array {
    return encoder.encode(ns + '\u0000' + key);
  }

  #locked<T>(fn: () => T): T {
    const w = this.#i32;
    const me = this.#owner;
    let spins = 0;
    let waitingSince = 0;
    for (;;) {
      const holder = Atomics.compareExchange(w, H_LOCK, 0, me);
      if (holder === 0) break;
      if (++spins <= 64) continue;
      // Operations take microseconds; a lock held this long belongs to a thread that died inside one
      // (e.g. a terminated worker). Take it over rather than hang every thread of the process.
      if (waitingSince === 0) waitingSince = performance.now();
      else if (performance.now() - waitingSince > this.#lockTimeoutMs && Atomics.compareExchange(w, H_LOCK, holder, me) === holder) break;
      Atomics.wait(w, H_LOCK, holder, 1);
    }
    try {
      return fn();
    } finally {
      Atomics.compareExchange(w, H_LOCK, me, 0);
      Atomics.notify(w, H_LOCK, 1);
    }
  }

  #slot(s: number): number {
    return SLOTS_AT + s * SLOT_WORDS;
  }

  #value(slot: number): Uint8Array {
    const w = this.#slot(slot);
    const start = this.#layout.arenaAt + this.#i32[w + 2] * BLOCK + this.#i32[w + 3];
    return this.#u8.slice(start, start + this.#i32[w + 4]);
  }

  /** Finds a live key (removing it if expired) and the slot where it would be inserted. */
  #find(k: Uint8Array): { found: number; free: number; hash: number } {
    const hash = fnv1a(k);
    const slots = this.#layout.slots;
    const w = this.#i32;
    let s = (hash >>> 0) % slots;
    let free = -1;
    for (let n = 0; n < slots; n++, s = s + 1 === slots ? 0 : s + 1) {
      const at = this.#slot(s);
      const state = w[at];
      if (state === EMPTY) return { found: -1, free: free < 0 ? s : free, hash };
      if (state === TOMB) {
        if (free < 0) free = s;
        continue;
      }
      if (w[at + 1] !== hash || w[at + 3] !== k.length) continue;
      const start = this.#layout.arenaAt + w[at + 2] * BLOCK;
      let same = true;
      for (let i = 0; i < k.length && same; i++) same = this.#u8[start + i] === k[i];
      if (!same) continue;
      const expires = this.#expiry[s];
      if (expires !== 0 && expires <= this.#now()) {
        this.#remove(s);
        return { found: -1, free: free < 0 ? s : free, hash };
      }
      return { found: s, free: s, hash };
    }
    return { found: -1, free, hash };
  }

  #write(k: Uint8Array, at: { found: number; free: number; hash: number }, value: Uint8Array, ttlMs: number | undefined): 'ok' | 'no-memory' {
    const w = this.#i32;
    const need = Math.max(1, Math.ceil((k.length + value.length) / BLOCK));
    let block: number;
    if (at.found >= 0) {
      const old = this.#slot(at.found);
      const had = Math.max(1, Math.ceil((w[old + 3] + w[old + 4]) / BLOCK));
      if (had === need) block = w[old + 2];
      else {
        // Free first so that the entry's own blocks count; put them back if the new size does not fit.
        const oldBlock = w[old + 2];
        this.#free(oldBlock, had);
        block = this.#alloc(need);
        if (block < 0) {
          this.#mark(oldBlock, had);
          return 'no-memory';
        }
      }
    } else {
      if (w[H_USED] + 1 > Math.floor(this.#layout.slots * 0.75) || at.free < 0) {
        this.#purgeExpired();
        if (w[H_USED] + 1 > Math.floor(this.#layout.slots * 0.75)) return 'no-memory';
        at = this.#find(k);
      }
      block = this.#alloc(need);
      if (block < 0) {
        this.#purgeExpired();
        at = this.#find(k);
        block = this.#alloc(need);
        if (block < 0) return 'no-memory';
      }
      if (w[this.#slot(at.free)] === TOMB) w[H_TOMBS]--;
      w[H_USED]++;
    }
    const s = at.found >= 0 ? at.found : at.free;
    const slot = this.#slot(s);
    const start = this.#layout.arenaAt + block * BLOCK;
    this.#u8.set(k, start);
    this.#u8.set(value, start + k.length);
    let cas = (w[H_CAS] + 1) | 0;
    if (cas === 0) cas = 1;
    w[H_CAS] = cas;
    w[slot] = USED;
    w[slot + 1] = at.hash;
    w[slot + 2] = block;
    w[slot + 3] = k.length;
    w[slot + 4] = value.length;
    w[slot + 5] = cas;
    this.#expiry[s] = ttlMs !== undefined && ttlMs > 0 ? this.#now() + ttlMs : 0;
    if (w[H_TOMBS] > this.#layout.slots / 4) this.#rebuild();
    return 'ok';
  }

  #remove(s: number): void {
    const w = this.#i32;
    const slot = this.#slot(s);
    this.#free(w[slot + 2], Math.max(1, Math.ceil((w[slot + 3] + w[slot + 4]) / BLOCK)));
    w[slot] = TOMB;
    w[H_USED]--;
    w[H_TOMBS]++;
  }

  #purgeExpired(): void {
    const now = this.#now();
    for (let s = 0; s < this.#layout.slots; s++) {
      if (this.#i32[this.#slot(s)] !== USED) continue;
      const expires = this.#expiry[s];
      if (expires !== 0 && expires <= now) this.#remove(s);
    }
    this.#rebuild();
  }

  /** Re-inserts every live slot so that tombstones stop lengthening probe chains. */
  #rebuild(): void {
    const w = this.#i32;
    const live: number[][] = [];
    const expiries: number[] = [];
    for (let s = 0; s < this.#layout.slots; s++) {
      const at = this.#slot(s);
      if (w[at] === USED) {
        live.push(Array.from(w.subarray(at, at + SLOT_WORDS)));
        expiries.push(this.#expiry[s]);
      }
      w.fill(0, at, at + SLOT_WORDS);
    }
    w[H_TOMBS] = 0;
    for (let i = 0; i < live.length; i++) {
      let s = (live[i][1] >>> 0) % this.#layout.slots;
      while (w[this.#slot(s)] !== EMPTY) s = (s + 1) % this.#layout.slots;
      w.set(live[i], this.#slot(s));
      this.#expiry[s] = expiries[i];
    }
  }

  /** First-fit search of `n` contiguous free blocks from the next-fit hint; -1 when none. */
  #alloc(n: number): number {
    const w = this.#i32;
    const blocks = this.#layout.blocks;
    const bm = this.#layout.bitmapAt;
    const hint = w[H_NEXT_FIT] % blocks;
    // From the hint to the end, then from the start (over the hint, so that a run across it is found too).
    for (const [from, to] of [[hint, blocks], [0, blocks]]) {
      let run = 0;
      for (let b = from; b < to; b++) {
        if ((b & 31) === 0 && run === 0 && w[bm + (b >>> 5)] === -1) {
          b += 31;
          continue;
        }
        if (w[bm + (b >>> 5)] & (1 << (b & 31))) run = 0;
        else if (++run === n) {
          const first = b - n + 1;
          for (let i = first; i <= b; i++) w[bm + (i >>> 5)] |= 1 << (i & 31);
          w[H_USED_BLOCKS] += n;
          w[H_NEXT_FIT] = b + 1;
          return first;
        }
      }
    }
    return -1;
  }

  #mark(first: number, n: number): void {
    const w = this.#i32;
    const bm = this.#layout.bitmapAt;
    for (let i = first; i < first + n; i++) w[bm + (i >>> 5)] |= 1 << (i & 31);
    w[H_USED_BLOCKS] += n;
  }

  #free(first: number, n: number): void {
    const w = this.#i32;
    const bm = this.#layout.bitmapAt;
    for (let i = first; i < first + n; i++) w[bm + (i >>> 5)] &= ~(1 << (i & 31));
    w[H_USED_BLOCKS] -= n;
  }
}
