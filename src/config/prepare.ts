/**
 * Runs each filter's `prepare` in the main thread, once per config load: the place for work shared by all
 * workers (reading scripts, fetching and compiling Wasm). Returns the results by filter path, or the problems.
 */
import type { RawConfig, RawFilter } from './types.ts';
import { filterDefinition } from '../filters/registry.ts';
import type { LogLevel } from '../filters/contract.ts';

/** Every filter of a config with its path, listener filters first, then route filters. */
export function filtersOf(config: RawConfig): { path: string; filter: RawFilter }[] {
  const out: { path: string; filter: RawFilter }[] = [];
  config.listeners.forEach((l, li) => {
    l.filters.forEach((f, fi) => out.push({ path: `listeners[${li}].filters[${fi}]`, filter: f }));
    const routes = (rs: NonNullable<typeof l.routes>, base: string) =>
      rs.forEach((r, ri) => r.filters?.forEach((f, fi) => out.push({ path: `${base}[${ri}].filters[${fi}]`, filter: f })));
    if (l.routes) routes(l.routes, `listeners[${li}].routes`);
    l.virtual_hosts?.forEach((vh, vi) => routes(vh.routes, `listeners[${li}].virtual_hosts[${vi}].routes`));
  });
  return out;
}

/** A filter entry's own keys: everything but `name`, `type` and `disabled`, which the chain itself reads. */
export function filterOwnConfig(f: RawFilter): Record<string, unknown> {
  const { name: _n, type: _t, disabled: _d, ...own } = f;
  return own;
}

/** Prepares every filter; resolves with the results, or rejects with every problem found. */
export async function prepareFilters(
  config: RawConfig,
  baseDir: string,
  log: (level: LogLevel, filter: string, message: string) => void,
  requestReload?: (reason: string) => void,
): Promise<{ prepared: Record<string, unknown>; problems: { path: string; message: string }[] }> {
  const prepared: Record<string, unknown> = {};
  const problems: { path: string; message: string }[] = [];
  await Promise.all(
    filtersOf(config).map(async ({ path, filter }) => {
      const def = filterDefinition(filter.type);
      if (def?.prepare === undefined || filter.disabled) return;
      try {
        prepared[path] = await def.prepare(filterOwnConfig(filter), { name: filter.name, baseDir, path, log: (level, m) => log(level, filter.name, m), requestReload });
      } catch (err) {
        problems.push({ path, message: `filter "${filter.name}": ${(err as Error).message}` });
      }
    }),
  );
  return { prepared, problems };
}
