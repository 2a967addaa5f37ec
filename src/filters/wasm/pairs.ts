/**
 * The Proxy-Wasm map serialization: u32 count, count × (u32 key length, u32 value length), then NUL-terminated keys
 * and values. The maps are header maps, whose strings hold one byte per character (latin1, as the HTTP codec decodes
 * them): the guest sees the bytes on the wire, as with Envoy.
 */
import { Buffer } from 'node:buffer';

/** Serializes `[name, value]` pairs; an empty list gives an empty buffer. */
export function encodePairs(pairs: readonly (readonly [string, string])[]): Uint8Array {
  if (pairs.length === 0) return new Uint8Array(0);
  const encoded = pairs.map(([k, v]) => [Buffer.from(k, 'latin1'), Buffer.from(v, 'latin1')] as const);
  let size = 4 + encoded.length * 8;
  for (const [k, v] of encoded) size += k.length + v.length + 2;
  const out = Buffer.alloc(size);
  out.writeUInt32LE(encoded.length, 0);
  let at = 4;
  for (const [k, v] of encoded) {
    out.writeUInt32LE(k.length, at);
    out.writeUInt32LE(v.length, at + 4);
    at += 8;
  }
  for (const [k, v] of encoded) {
    k.copy(out, at);
    at += k.length + 1;
    v.copy(out, at);
    at += v.length + 1;
  }
  return out;
}

/** Parses serialized pairs; returns undefined when the bytes are malformed. */
export function decodePairs(bytes: Uint8Array): [string, string][] | undefined {
  if (bytes.length === 0) return [];
  if (bytes.length < 4) return undefined;
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const buf = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const count = view.getUint32(0, true);
  if (4 + count * 8 > bytes.length) return undefined;
  const out: [string, string][] = [];
  let at = 4 + count * 8;
  for (let i = 0; i < count; i++) {
    const kLen = view.getUint32(4 + i * 8, true);
    const vLen = view.getUint32(8 + i * 8, true);
    if (at + kLen + vLen + 2 > bytes.length) return undefined;
    const k = buf.toString('latin1', at, at + kLen);
    at += kLen + 1;
    const v = buf.toString('latin1', at, at + vLen);
    at += vLen + 1;
    out.push([k, v]);
  }
  return out;
}
