/**
 * An ordered multi-map of HTTP headers with lower-case names, the one header type every filter sees.
 *
 * Requests carry the pseudo-headers `:method`, `:path`, `:authority` and `:scheme` first, responses `:status`,
 * as Envoy's header maps do, so Lua and Proxy-Wasm filters see what they see on Envoy. The codec turns them
 * back into a request or status line when it writes the message.
 */
/**
 * The lines of a received head that a map was made from without reading them (a usual response head, which the codec
 * can forward as it came): the map reads them on first need. Until then `add` keeps what it appends apart, and the
 * codec writes the unread lines as bytes with the added ones after them.
 */
export interface UnreadLines {
  /** The lines as a list (pseudo-headers first, lower-case names), as the map would have been made at once. */
  read(): string[];
  /** How many entries `read` would give. */
  count(): number;
}

/**
 * Names whose lines the codec writes itself or leaves out (framing, hop-by-hop, Date) and pseudo-headers: adding
 * one to a map whose lines are unread reads them first, so the head goes through the map path.
 */
function framingName(name: string): boolean {
  return name.charCodeAt(0) === 58 || name === 'content-length' || name === 'date' || isHopByHop(name);
}

export class HeaderMap {
  #list: string[] | null;
  /** The lines not read yet (then `#list` is null), and what `add` appended meanwhile. */
  #unread: UnreadLines | null = null;
  #added: string[] | null = null;
  /**
   * True when `list` was written directly (not through `add`, `set`, `remove`), so the codec must check every
   * name and value before writing them. The methods check what they write, so a map changed only through them
   * is written without a second look.
   */
  unchecked = false;
  /** Set once the map has been passed on; later mutations throw (Envoy's "can no longer be modified"). */
  frozen = false;

  constructor(list: string[] = []) {
    this.#list = list;
  }

  /** A map of lines read only when something needs them (see `UnreadLines`). */
  static unread(lines: UnreadLines): HeaderMap {
    const h = new HeaderMap();
    h.#list = null;
    h.#unread = lines;
    h.#added = [];
    return h;
  }

  /** Names and values interleaved: `[name0, value0, name1, value1, ...]`; names are lower-case. */
  get list(): string[] {
    return this.#list ?? this.#read();
  }

  set list(list: string[]) {
    this.#list = list;
    this.#unread = null;
    this.#added = null;
  }

  /** The lines not read yet, or null once the map has its list. */
  get unreadLines(): UnreadLines | null {
    return this.#unread;
  }

  /** What `add` appended while the lines were unread (names and values interleaved); empty once they were read. */
  get added(): readonly string[] {
    return this.#added ?? NONE;
  }

  #read(): string[] {
    const list = this.#unread!.read();
    const added = this.#added!;
    for (let i = 0; i < added.length; i++) list.push(added[i]);
    this.list = list;
    return list;
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

  /** Appends a value; the name is lower-cased. Throws on a name or value that could not be written safely. */
  add(name: string, value: string): void {
    this.#check();
    name = name.toLowerCase();
    checkHeader(name, value);
    if (this.#list === null && !framingName(name)) this.#added!.push(name, value);
    else this.list.push(name, value);
  }

  /** Replaces every value of `name` with one value, keeping the first position, or appends it. */
  set(name: string, value: string): void {
    this.#check();
    name = name.toLowerCase();
    checkHeader(name, value);
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
    return removed;
  }

  /** Removes every entry. */
  clear(): void {
    this.#check();
    this.list = [];
  }

  /** The number of entries, repeated names counted once per value. */
  get size(): number {
    if (this.#list === null) return this.#unread!.count() + (this.#added!.length >> 1);
    return this.#list.length >> 1;
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

  /** Makes a header map from a plain object; array values become repeated entries. Throws as `add` does. */
  static from(obj: Record<string, string | number | readonly (string | number)[]>): HeaderMap {
    const h = new HeaderMap();
    for (const [k, v] of Object.entries(obj)) for (const x of Array.isArray(v) ? v : [v]) h.add(k, String(x));
    return h;
  }

  /** Makes a header map from `[name, value]` pairs. Throws as `add` does. */
  static fromPairs(pairs: readonly (readonly [string, string])[]): HeaderMap {
    const h = new HeaderMap();
    for (const [k, v] of pairs) h.add(k, v);
    return h;
  }

  #check(): void {
    if (this.frozen) throw new Error('header map can no longer be modified');
  }
}

const NONE: readonly string[] = Object.freeze([]);

/** An HTTP token (RFC 9110 section 5.6.2): what a header name is (the config schema uses the same pattern). */
export const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;
/** True when `v` holds a character that would end a header line or the head: CR, LF or NUL (a loop: values are short). */
function hasLineBreak(v: string): boolean {
  for (let i = 0; i < v.length; i++) {
    const c = v.charCodeAt(i);
    if (c <= 13 && (c === 13 || c === 10 || c === 0)) return true;
  }
  return false;
}
/** The request line is split on spaces, so `:path` may hold no whitespace or control characters either. */
const BAD_PATH = /[\x00-\x20\x7f]/;

/** Names that passed the token check; the same few names come back on every request. */
const VALID_NAMES = new Set<string>();

/** A status code as the status line carries it: three digits (RFC 9110 section 15). */
const STATUS = /^[1-9][0-9][0-9]$/;

/**
 * Throws when a header could not be written without breaking the message (header injection, response splitting):
 * a name that is not an HTTP token, a value with CR, LF or NUL, a `:method` that is not a token, a `:path` with
 * whitespace or a `:status` that is not three digits.
 */
export function checkHeader(name: string, value: string): void {
  if (name.charCodeAt(0) === 58 /* : */) {
    const bad = name === ':method' ? !TOKEN.test(value) : name === ':path' ? BAD_PATH.test(value) : name === ':status' ? !STATUS.test(value) : hasLineBreak(value);
    if (bad) {
      throw new Error(`invalid value for ${name}: ${JSON.stringify(value)}`);
    }
    return;
  }
  if (!VALID_NAMES.has(name)) {
    if (!TOKEN.test(name)) throw new Error(`invalid header name ${JSON.stringify(name)}`);
    if (VALID_NAMES.size < 1024) VALID_NAMES.add(name);
  }
  if (hasLineBreak(value)) throw new Error(`invalid value for header "${name}": it contains CR, LF or NUL`);
}

/** Checks every entry of a map whose list was written directly (see `HeaderMap.unchecked`). */
export function checkHeaders(headers: HeaderMap): void {
  const list = headers.list;
  for (let i = 0; i < list.length; i += 2) checkHeader(list[i], list[i + 1]);
  headers.unchecked = false;
}

/**
 * Headers that apply to one connection only and are never forwarded (RFC 9110 section 7.6.1). Not `Trailer`: it
 * announces the trailer fields end to end (RFC 9110 section 6.6.2), as RFC 2616 did not say.
 */
export const HOP_BY_HOP: ReadonlySet<string> = new Set([
  'connection',
  'keep-alive',
  'proxy-connection',
  'transfer-encoding',
  'te',
  'upgrade',
  'proxy-authenticate',
  'proxy-authorization',
]);

/**
 * Whether a lower-case name is in HOP_BY_HOP, by its length first: the codec asks for every header of every head, and
 * a Set lookup hashes each name the parser made anew.
 */
export function isHopByHop(name: string): boolean {
  switch (name.length) {
    case 2: return name === 'te';
    case 7: return name === 'upgrade';
    case 10: return name === 'connection' || name === 'keep-alive';
    case 16: return name === 'proxy-connection';
    case 17: return name === 'transfer-encoding';
    case 18: return name === 'proxy-authenticate';
    case 19: return name === 'proxy-authorization';
    default: return false;
  }
}

/** Whether a response with this status has no body, whatever its headers say (RFC 9110 sections 6.4.1, 15.3.5, 15.4.5). */
export function bodilessStatus(status: number): boolean {
  return status < 200 || status === 204 || status === 304;
}

/**
 * The length a Content-Length value declares, or -1 when it declares none weir can frame by: not a plain decimal
 * number (a filter may have set anything), or above 2^53 - 1.
 */
export function contentLengthOf(value: string | undefined): number {
  if (value === undefined) return -1;
  const v = value.trim();
  if (v.length === 0) return -1;
  // 1*DIGIT (RFC 9110 section 8.6): leading zeros are allowed, so only the significant digits are bounded.
  let first = -1;
  for (let i = 0; i < v.length; i++) {
    const c = v.charCodeAt(i);
    if (c < 48 || c > 57) return -1;
    if (first < 0 && c !== 48) first = i;
  }
  if (first < 0) return 0;
  if (v.length - first > 16) return -1;
  const n = Number(v.slice(first));
  return Number.isSafeInteger(n) ? n : -1;
}

/** True when a reason phrase can go on a status line: tab, space, visible and obs-text bytes only (RFC 9112 §4). */
export function validReasonPhrase(phrase: string): boolean {
  return !/[\x00-\x08\x0a-\x1f\x7f]|[^\x00-\xff]/.test(phrase);
}
