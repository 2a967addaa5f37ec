/**
 * Config of the `lua` filter: weir's short form (`source` or `file`) and Envoy's shape (`default_source_code`,
 * `source_codes`, `inline_code`), the sandbox limits and the failure policy; and the per-route override (Envoy's
 * LuaPerRoute). `prepare` reads script files in the main thread so that workers only compile.
 */
import { syntaxError } from './script.ts';
import { readFile } from 'node:fs/promises';
import { resolve } from 'node:path';
import type { JsonSchema, PrepareContext } from '../contract.ts';

/** An Envoy DataSource: inline text or a file. */
export interface DataSource {
  inline_string?: string;
  filename?: string;
}

/** The filter's config after validation (defaults applied by the schema). */
export interface LuaConfig {
  source?: string;
  file?: string;
  inline_code?: string;
  default_source_code?: DataSource;
  source_codes?: Record<string, DataSource>;
  stat_prefix?: string;
  clear_route_cache?: boolean;
  filter_context?: Record<string, unknown>;
  fail_open?: boolean;
  failure_status?: number;
  instruction_limit?: number;
  memory_limit_mb?: number;
}

/** A route's override. */
export interface LuaPerRoute {
  disabled?: boolean;
  name?: string;
  source_code?: DataSource;
  filter_context?: Record<string, unknown>;
}

/** One script ready to compile: its text and the name that errors and logs show. */
export interface PreparedSource {
  name: string;
  code: string;
}

/** What `prepare` hands to the workers. */
export interface PreparedLua {
  /** The script every route runs unless it overrides; null when only named scripts exist. */
  defaultSource: PreparedSource | null;
  named: Record<string, PreparedSource>;
}

/** Defaults of the sandbox and failure keys. */
export const DEFAULTS = Object.freeze({
  instructionLimit: 5_000_000,
  memoryLimitMb: 64,
  failureStatus: 500,
});

const dataSource: JsonSchema = {
  type: 'object',
  additionalProperties: false,
  properties: {
    inline_string: { type: 'string', description: 'The script text.' },
    filename: { type: 'string', minLength: 1, description: 'A script file, relative to the config file.' },
  },
  minProperties: 1,
  maxProperties: 1,
};

/** JSON Schema of the filter's keys. */
export const schema: JsonSchema = {
  type: 'object',
  additionalProperties: false,
  properties: {
    source: { type: 'string', description: 'The script text (weir form).' },
    file: { type: 'string', minLength: 1, description: 'A script file, relative to the config file (weir form).' },
    inline_code: { type: 'string', description: "Envoy's deprecated inline default script." },
    default_source_code: { ...dataSource, description: 'The script every route runs unless it overrides it (Envoy form).' },
    source_codes: {
      type: 'object',
      additionalProperties: dataSource,
      description: 'Named scripts; a route selects one with its `name` override.',
    },
    stat_prefix: { type: 'string', description: 'Accepted for Envoy compatibility; metrics carry the filter name.' },
    clear_route_cache: { type: 'boolean', default: true, description: 'Re-match the route when a script changed request headers.' },
    filter_context: { type: 'object', description: 'Returned by handle:filterContext() unless the route sets its own.' },
    fail_open: { type: 'boolean', default: false, description: 'On a script error, limit or trap, pass the request on instead of a local reply.' },
    failure_status: { type: 'integer', minimum: 400, maximum: 599, default: DEFAULTS.failureStatus, description: 'Status of the local reply when a script fails.' },
    instruction_limit: {
      type: 'integer',
      anyOf: [{ const: 0 }, { minimum: 1000 }],
      default: DEFAULTS.instructionLimit,
      description: 'Fuel of one run of a handler between two yields: Wasm loop iterations of the Lua VM and its C library (about one per Lua instruction, plus the loops of library functions); 0 turns the limit off for trusted scripts.',
    },
    memory_limit_mb: {
      type: 'integer',
      minimum: 1,
      maximum: 2000,
      default: DEFAULTS.memoryLimitMb,
      description: 'MiB the memory of one Lua state may grow beyond its initial 16 MiB.',
    },
  },
};

/** JSON Schema of a route's override (Envoy's LuaPerRoute): exactly one of disabled, name, source_code. */
export const perRouteSchema: JsonSchema = {
  type: 'object',
  additionalProperties: false,
  properties: {
    disabled: { const: true, description: 'Turns the filter off for this route.' },
    name: { type: 'string', minLength: 1, description: 'Runs this entry of `source_codes` instead of the default.' },
    source_code: {
      type: 'object',
      additionalProperties: false,
      required: ['inline_string'],
      properties: { inline_string: { type: 'string' } },
      description: 'A script of its own for this route.',
    },
    filter_context: { type: 'object', description: 'Returned by handle:filterContext().' },
  },
  oneOf: [{ required: ['disabled'] }, { required: ['name'] }, { required: ['source_code'] }],
};

async function readSource(ds: DataSource, baseDir: string, name: string): Promise<PreparedSource> {
  if (ds.inline_string !== undefined) return { name, code: ds.inline_string };
  const path = resolve(baseDir, ds.filename!);
  try {
    return { name: ds.filename!, code: await readFile(path, 'utf8') };
  } catch (err) {
    throw new Error(`Cannot read Lua script "${path}": ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
  }
}

/** Checks that the filter names one default script at most and reads the script files. */
export async function prepare(config: LuaConfig, ctx: PrepareContext): Promise<PreparedLua> {
  const given = (['source', 'file', 'inline_code', 'default_source_code'] as const).filter((k) => config[k] !== undefined);
  if (given.length > 1) throw new Error(`Lua filter "${ctx.name}" sets ${given.map((k) => `"${k}"`).join(' and ')}: choose one`);
  const named: Record<string, PreparedSource> = {};
  for (const [key, ds] of Object.entries(config.source_codes ?? {})) named[key] = await readSource(ds, ctx.baseDir, key);
  if (given.length === 0 && Object.keys(named).length === 0) {
    throw new Error(`Lua filter "${ctx.name}" has no script: set "source", "file", "default_source_code" or "source_codes"`);
  }
  let defaultSource: PreparedSource | null = null;
  if (config.source !== undefined || config.inline_code !== undefined) {
    defaultSource = { name: ctx.name, code: (config.source ?? config.inline_code)! };
  } else if (config.file !== undefined) defaultSource = await readSource({ filename: config.file }, ctx.baseDir, ctx.name);
  else if (config.default_source_code !== undefined) defaultSource = await readSource(config.default_source_code, ctx.baseDir, ctx.name);
  for (const src of [defaultSource, ...Object.values(named)]) {
    if (src === null) continue;
    const error = await syntaxError(src.name, src.code);
    if (error !== null) throw new Error(`Cannot compile Lua script "${src.name}": ${error}`);
  }
  return { defaultSource, named };
}
