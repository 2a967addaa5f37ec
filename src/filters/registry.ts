/** The filter types weir knows, by their config `type`. */
import type { FilterDefinition } from './contract.ts';
import headers from './builtin/headers/index.ts';
import cors from './builtin/cors/index.ts';
import localRateLimit from './builtin/local-rate-limit/index.ts';
import moduleFilter from './builtin/module/index.ts';
import lua from './lua/index.ts';
import wasm from './wasm/index.ts';

const definitions: FilterDefinition[] = [headers, cors, localRateLimit, moduleFilter, lua, wasm];
const byType = new Map(definitions.map((d) => [d.type, d]));

/** Every registered filter definition, in a stable order. */
export function filterDefinitions(): readonly FilterDefinition[] {
  return definitions;
}

/** The definition for a config `type`, or undefined. */
export function filterDefinition(type: string): FilterDefinition | undefined {
  return byType.get(type);
}
