/**
 * Header names and values read from guest memory, with a small cache of the strings last read at each address.
 * Modules pass the names they get and add (and often the values) from constant data, so the same bytes come back at
 * the same address request after request: comparing them with the cached string costs less than decoding a new one,
 * allocates nothing, and hands the header map the same string each time.
 */

/** Longer strings are decoded each time: comparing costs a loop step per byte. */
const MAX_CACHED = 48;
const SLOTS = 128;

/** Decodes latin1 strings out of guest memory (one byte per character, as the HTTP codec decodes headers). */
export class HeaderStrings {
  // Every slot starts as the empty string at address 0, which is what those bytes decode to.
  readonly #ptrs = new Uint32Array(SLOTS);
  readonly #strings: string[] = new Array(SLOTS).fill('');

  /** The string of the `len` bytes at `ptr` of `buf`; the caller has checked the range. */
  read(buf: Buffer, ptr: number, len: number): string {
    if (len > MAX_CACHED) return buf.toString('latin1', ptr, ptr + len);
    const slot = (ptr ^ len) & (SLOTS - 1);
    const cached = this.#strings[slot];
    if (this.#ptrs[slot] === ptr && cached.length === len && sameBytes(buf, ptr, cached)) return cached;
    const s = buf.toString('latin1', ptr, ptr + len);
    this.#ptrs[slot] = ptr;
    this.#strings[slot] = s;
    return s;
  }
}

function sameBytes(buf: Buffer, ptr: number, s: string): boolean {
  for (let i = 0; i < s.length; i++) if (buf[ptr + i] !== s.charCodeAt(i)) return false;
  return true;
}
