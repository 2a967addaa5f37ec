/**
 * Large bodies checked byte for byte without storing them: a fixed random pattern, repeated, sent as slices of one
 * buffer and compared on arrival.
 */
import { randomBytes } from 'node:crypto';
import { Readable } from 'node:stream';

/** An odd period, so the pattern shifts against every chunk boundary on the way. */
export const PATTERN = randomBytes(1024 * 1024 + 7);

/** A stream of `total` bytes: PATTERN repeated, as slices of the one buffer (nothing allocated per chunk). */
export function patternSource(total: number): Readable {
  let sent = 0;
  return new Readable({
    highWaterMark: 64 * 1024,
    read() {
      if (sent >= total) return void this.push(null);
      const off = sent % PATTERN.length;
      const n = Math.min(64 * 1024, PATTERN.length - off, total - sent);
      sent += n;
      this.push(PATTERN.subarray(off, off + n));
    },
  });
}

/** Checks arriving bytes against the pattern; `bytes` counts them, `bad` counts chunks that differ. */
export function patternChecker(): { bytes: number; bad: number; check(chunk: Buffer): void } {
  const st = {
    bytes: 0,
    bad: 0,
    check(chunk: Buffer) {
      let i = 0;
      while (i < chunk.length) {
        const off = st.bytes % PATTERN.length;
        const n = Math.min(chunk.length - i, PATTERN.length - off);
        if (chunk.compare(PATTERN, off, off + n, i, i + n) !== 0) st.bad++;
        st.bytes += n;
        i += n;
      }
    },
  };
  return st;
}
