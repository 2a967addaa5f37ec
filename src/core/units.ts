/** Parsing of the human units that config files use: durations ("250ms", "5s", "1m") and sizes ("64KiB", "1MiB"). */

const DURATION = /^(\d+(?:\.\d+)?)(ms|s|m|h)$/;
const DURATION_MS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 };

/** The JSON Schema pattern a duration string must match. */
export const DURATION_PATTERN = '^\\d+(\\.\\d+)?(ms|s|m|h)$';

/** Returns the duration in milliseconds, or throws naming the bad value. A bare number means milliseconds. */
export function parseDuration(v: string | number): number {
  if (typeof v === 'number') return v;
  const m = DURATION.exec(v);
  if (m === null) throw new Error(`Invalid duration "${v}": expected a number and a unit (ms, s, m, h), e.g. "5s"`);
  return Math.round(Number(m[1]) * DURATION_MS[m[2]]);
}

const SIZE = /^(\d+)(B|KiB|MiB|GiB|KB|MB|GB|k|K|M|G)?$/;
const SIZE_BYTES: Record<string, number> = {
  B: 1,
  KiB: 1024,
  MiB: 1024 ** 2,
  GiB: 1024 ** 3,
  KB: 1000,
  MB: 1000 ** 2,
  GB: 1000 ** 3,
  k: 1024,
  K: 1024,
  M: 1024 ** 2,
  G: 1024 ** 3,
};

/** The JSON Schema pattern a size string must match. */
export const SIZE_PATTERN = '^\\d+(B|KiB|MiB|GiB|KB|MB|GB|k|K|M|G)?$';

/** Returns the size in bytes, or throws naming the bad value. A bare number means bytes. */
export function parseSize(v: string | number): number {
  if (typeof v === 'number') return v;
  const m = SIZE.exec(v);
  if (m === null) throw new Error(`Invalid size "${v}": expected a number and a unit (B, KiB, MiB, GiB), e.g. "1MiB"`);
  return Number(m[1]) * SIZE_BYTES[m[2] ?? 'B'];
}

/** Formats "host:port", with an IPv6 host in brackets; the inverse of `parseAddress`. */
export function formatAddress(host: string, port: number): string {
  return `${host.includes(':') ? `[${host}]` : host}:${port}`;
}

/** Splits "host:port" or "[v6]:port"; throws naming the bad value. */
export function parseAddress(v: string): { host: string; port: number } {
  const m = /^(?:\[([^\]]+)\]|([^:]+)):(\d{1,5})$/.exec(v);
  if (m === null) throw new Error(`Invalid address "${v}": expected "host:port"`);
  const port = Number(m[3]);
  if (port > 65535) throw new Error(`Invalid address "${v}": port out of range`);
  return { host: m[1] ?? m[2], port };
}
