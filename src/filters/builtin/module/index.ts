/**
 * The `module` filter: a TypeScript or JavaScript file named in the config, loaded with `import()`.
 * The file's default export is either a `Filter` factory function `(callbacks, config, perRoute) => Filter`
 * or an object `{ create(callbacks, config, perRoute) }`, with optional `init(config, context)` run once per worker.
 */
import path from 'node:path';
import { spawnSync } from 'node:child_process';
import { pathToFileURL } from 'node:url';
import type { FilterDefinition, Filter, FilterCallbacks, FactoryContext } from '../../contract.ts';

/** The config of a `module` filter. */
export interface ModuleConfig {
  file: string;
  config?: unknown;
}

/** What a module file exports as default. */
export type ModuleExport =
  | ((callbacks: FilterCallbacks, config: unknown, perRoute: unknown) => Filter)
  | {
      init?(config: unknown, context: FactoryContext): void | Promise<void>;
      create(callbacks: FilterCallbacks, config: unknown, perRoute: unknown): Filter;
      destroy?(): void;
    };

const definition: FilterDefinition<ModuleConfig, Record<string, unknown>> = {
  type: 'module',
  schema: {
    required: ['file'],
    properties: {
      file: { type: 'string', minLength: 1, description: 'Path of a .ts, .js or .mjs file, relative to the config file' },
      config: { description: 'Passed to the module as its config' },
    },
  },
  perRouteSchema: { properties: { config: {} } },
  async factory(config, ctx) {
    const file = path.resolve(ctx.baseDir, config.file);
    // A query string per load makes a reload pick up a changed file instead of the cached module.
    const { mtimeMs } = await import('node:fs').then((fs) => fs.promises.stat(file)).catch(() => {
      throw new Error(`Cannot load module filter "${ctx.name}": file "${file}" not found`);
    });
    let mod: { default?: ModuleExport };
    try {
      mod = (await import(`${pathToFileURL(file).href}?v=${mtimeMs}`)) as { default?: ModuleExport };
    } catch (err) {
      if (!(err instanceof SyntaxError)) throw err;
      throw new Error(`Cannot load module filter "${ctx.name}": ${syntaxErrorPlace(file, err)}: ${err.message}`);
    }
    const exp = mod.default;
    if (typeof exp !== 'function' && (typeof exp !== 'object' || exp === null || typeof exp.create !== 'function')) {
      throw new Error(`Cannot load module filter "${ctx.name}": "${file}" must export default a function or an object with create()`);
    }
    if (typeof exp === 'object' && exp.init !== undefined) await exp.init(config.config, ctx);
    const create = typeof exp === 'function' ? exp : exp.create.bind(exp);
    return {
      create: function createModuleFilter(callbacks, perRoute) {
        return create(callbacks, config.config, perRoute?.config);
      },
      destroy: typeof exp === 'object' && exp.destroy ? () => exp.destroy!() : undefined,
    };
  },
};

export default definition;

/**
 * "file:line" of a syntax error in a module file. Node writes the place of a JavaScript syntax error only when it is
 * uncaught, not in the error: `node --check` finds it (run only when loading already failed). A TypeScript error
 * from type stripping has it at the start of its stack.
 */
function syntaxErrorPlace(file: string, err: SyntaxError): string {
  const escaped = file.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
  const place = new RegExp(`^${escaped}:(\\d+)$`, 'm');
  let line = place.exec(err.stack ?? '')?.[1];
  if (line === undefined) {
    const check = spawnSync(process.execPath, ['--check', file], { encoding: 'utf8', timeout: 10_000 });
    line = place.exec(check.stderr ?? '')?.[1];
  }
  return line === undefined ? file : `${file}:${line}`;
}
