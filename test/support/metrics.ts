/** Reads samples out of weir's Prometheus text (admin `/metrics`) for assertions in tests. */

/**
 * The value of the sample of `name` whose labels include every pair of `labels` (summed when several match),
 * 0 when none does.
 */
export function sample(text: string, name: string, labels: Record<string, string> = {}): number {
  let total = 0;
  for (const line of text.split('\n')) {
    if (line.startsWith('#')) continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})? (\S+)$/.exec(line);
    if (m === null || m[1] !== name) continue;
    const have = new Map<string, string>();
    for (const pair of (m[3] ?? '').matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g)) have.set(pair[1], pair[2]);
    if (Object.entries(labels).every(([k, v]) => have.get(k) === v)) total += Number(m[4]);
  }
  return total;
}

/** Fetches `/metrics` from an admin base URL and returns `sample(text, name, labels)`. */
export async function metric(admin: string, name: string, labels: Record<string, string> = {}): Promise<number> {
  const res = await fetch(`${admin}/metrics`);
  return sample(await res.text(), name, labels);
}
