/**
 * An ordered multi-map of HTTP headers with lower-case names, the one header type every filter sees.
 *
 * Requests carry the pseudo-headers `:method`, `:path`, `:authority` and `:scheme` first, responses `:status`,
 * as Envoy's header maps do, so Lua and Proxy-Wasm filters see what they see on Envoy. The codec turns them
 * back into a request or status line when it writes the message.
 */
export class HeaderMap {
  /** Names and values interleaved: `[name0, value0, name1, value1, ...]`; names are lower-case. */
  list: string[];
  /** Set by every mutation, so that the codec can forward untouched headers without rebuilding them. */
  modified = false;
  /** Set once the map has been passed on; later mutations throw (Envoy's "can no longer be modified"). */
  frozen = false;

  constructor(list: string[] = []) {
    this.list = list;
  }

  /** Returns the first value of `name` (lower-case), or undefined. */
  get(name: string): string | undefined {
    const list = this.list;
    for (let i = 0; i < list.length; i += 2) if (list[i] === name) return list[i + 1];
    return undefined;
  }

  /** Returns every value of `name` joined with "," as Envoy's Lua `get` does, or undefined. */
  getJoined(name: string): string | undefined {
    let out: string | undefined;
    const list = this.list;
    for (let i = 0; i < list.length; i += 2) {
      if (list[i] === name) out = out === undefined ? list[i + 1] : out + ',' + list[i + 1];
    }
    return out;
  }

  /** Returns every value of `name` in order. */
  getAll(name: string): string[] {
    const out: string[] = [];
    const list = this.list;
    for (let i = 0; i < list.length; i += 2) if (list[i] === name) out.push(list[i + 1]);
    return out;
  }

  /** Reports whether `name` is present. */
  has(name: string): boolean {
    return this.get(name) !== undefined;
  }

  /** Appends a value; the name is lower-cased. */
  add(name: string, value: string): void {
    this.#check();
    this.list.push(name.toLowerCase(), value);
    this.modified = true;
  }

  /** Replaces every value of `name` with one value, keeping the first position, or appends it. */
  set(name: string, value: string): void {
    this.#check();
    name = name.toLowerCase();
    const list = this.list;
    let found = -1;
    for (let i = 0; i < list.length; i += 2) {
      if (list[i] !== name) continue;
      if (found < 0) {
        found = i;
        list[i + 1] = value;
      } else {
        list.splice(i, 2);
        i -= 2;
      }
    }
    if (found < 0) list.push(name, value);
    this.modified = true;
  }

  /** Removes every value of `name`; returns how many were removed. */
  remove(name: string): number {
    this.#check();
    name = name.toLowerCase();
    const list = this.list;
    let removed = 0;
    for (let i = list.length - 2; i >= 0; i -= 2) {
      if (list[i] === name) {
        list.splice(i, 2);
        removed++;
      }
    }
    if (removed > 0) this.modified = true;
    return removed;
  }

  /** Removes every entry. */
  clear(): void {
    this.#check();
    this.list = [];
    this.modified = true;
  }

  /** The number of entries, repeated names counted once per value. */
  get size(): number {
    return this.list.length >> 1;
  }

  /** Iterates `[name, value]` pairs in order. */
  *[Symbol.iterator](): IterableIterator<[string, string]> {
    const list = this.list;
    for (let i = 0; i < list.length; i += 2) yield [list[i], list[i + 1]];
  }

  /** A plain object view; repeated names become arrays. For logs, JSON and tests. */
  toObject(): Record<string, string | string[]> {
    const out: Record<string, string | string[]> = {};
    const list = this.list;
    for (let i = 0; i < list.length; i += 2) {
      const prev = out[list[i]];
      if (prev === undefined) out[list[i]] = list[i + 1];
      else if (Array.isArray(prev)) prev.push(list[i + 1]);
      else out[list[i]] = [prev, list[i + 1]];
    }
    return out;
  }

  /** Makes a header map from a plain object; array values become repeated entries. */
  static from(obj: Record<string, string | number | readonly (string | number)[]>): HeaderMap {
    const list: string[] = [];
    for (const [k, v] of Object.entries(obj)) {
      if (Array.isArray(v)) for (const x of v) list.push(k.toLowerCase(), String(x));
      else list.push(k.toLowerCase(), String(v));
    }
    return new HeaderMap(list);
  }

  #check(): void {
    if (this.frozen) throw new Error('header map can no longer be modified');
  }
}

/** Headers that apply to one connection only and are never forwarded (RFC 9110 section 7.6.1). */
export const HOP_BY_HOP = new Set([
  'connection',
  'keep-alive',
  'proxy-connection',
  'transfer-encoding',
  'te',
  'trailer',
  'upgrade',
  'proxy-authenticate',
  'proxy-authorization',
]);
