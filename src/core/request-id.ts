/** Request ids: random (version 4) UUIDs, as Envoy generates for x-request-id, made with one allocation each. */
import { Buffer } from 'node:buffer';
import { randomFillSync } from 'node:crypto';

const HEX = Buffer.from('0123456789abcdef', 'latin1');
const pool = Buffer.allocUnsafe(16 * 256);
let offset = pool.length;
const out = Buffer.allocUnsafe(36);

/** Returns a new random UUID string, e.g. "3b241101-e2bb-4255-8caf-4136c566a962". */
export function requestId(): string {
  if (offset === pool.length) {
    randomFillSync(pool);
    offset = 0;
  }
  const b = pool;
  const at = offset;
  offset += 16;
  b[at + 6] = (b[at + 6] & 0x0f) | 0x40; // version 4
  b[at + 8] = (b[at + 8] & 0x3f) | 0x80; // variant 10xx
  let o = 0;
  for (let i = 0; i < 16; i++) {
    if (i === 4 || i === 6 || i === 8 || i === 10) out[o++] = 0x2d; // '-'
    const v = b[at + i];
    out[o++] = HEX[v >> 4];
    out[o++] = HEX[v & 15];
  }
  return out.toString('latin1', 0, 36);
}
