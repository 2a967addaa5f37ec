/** Per-route schemas of filters whose `filter_overrides` entry is merged over the filter's own config. */
import type { JsonSchema } from './contract.ts';

/**
 * The filter's keys without their defaults: validating an override then fills in nothing, so the merge
 * `{ ...config, ...override }` changes only the keys the route names (a default would silently replace the
 * listener's value, e.g. a rate limit's interval or status).
 */
export function mergedOverrideSchema(properties: Record<string, JsonSchema>): JsonSchema {
  const out: Record<string, JsonSchema> = {};
  for (const [key, schema] of Object.entries(properties)) {
    const { default: _default, ...rest } = schema as Record<string, unknown>;
    out[key] = rest as JsonSchema;
  }
  return { properties: out };
}
