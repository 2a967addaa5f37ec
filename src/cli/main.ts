/** The `weir` command line: run, validate, schema. */
import fs from 'node:fs';
import path from 'node:path';
import { parseArgs, type ParseArgsOptionsConfig } from 'node:util';
import { parseConfig, formatProblems, locateProblems } from '../config/parse.ts';
import type { RawConfig } from '../config/types.ts';
import { configSchema } from '../config/schema.ts';
import { watchConfigFile } from '../config/watch-config-file.ts';
import { filterDefinitions } from '../filters/registry.ts';

const USAGE = `Usage:
  weir run <config> [--workers N]   run the proxy (N defaults to the number of cores)
  weir validate <config>            check a config file; exits 1 on any problem
  weir schema                       print the config file's JSON Schema
  weir --version                    print weir's version
`;

/** parseArgs, with a bad option answered as a usage error (exit 2) instead of a stack trace. */
function parseOptions(command: string, args: string[], options: ParseArgsOptionsConfig): ReturnType<typeof parseArgs> | null {
  try {
    return parseArgs({ args, allowPositionals: true, options });
  } catch (err) {
    process.stderr.write(`weir ${command}: ${(err as Error).message.split('. ')[0]}\n${USAGE}`);
    return null;
  }
}

async function run(args: string[]): Promise<number> {
  const parsed = parseOptions('run', args, { workers: { type: 'string', short: 'w' } });
  if (parsed === null) return 2;
  const { values, positionals } = parsed;
  const file = positionals[0];
  if (file === undefined) {
    process.stderr.write(USAGE);
    return 2;
  }
  const workers = values.workers === undefined ? 0 : Number(values.workers);
  if (!Number.isInteger(workers) || workers < 0) {
    process.stderr.write(`Invalid --workers "${values.workers}": expected a whole number (0 means one per core)\n`);
    return 2;
  }
  const { Supervisor } = await import('../supervisor/supervisor.ts');
  const { startAdmin } = await import('../admin/admin-server.ts');
  const sup = new Supervisor(file, workers);
  try {
    await sup.start();
  } catch (err) {
    process.stderr.write(`weir: cannot start:\n${(err as Error).message}\n`);
    // Worker threads may already run: leave at once rather than wait for them.
    process.exit(1);
  }
  const admin = await startAdmin(sup, sup.config!.admin.address).catch((err: Error) => {
    process.stderr.write(`weir: cannot start: ${err.message}\n`);
    return null;
  });
  if (admin === null) process.exit(1);
  sup.adminBound = admin.address;
  process.on('SIGHUP', () => void sup.reload().catch((err: Error) => sup.log.pino.error({ err }, 'Reload failed')));
  let stopWatching: (() => void) | null = null;
  if (sup.config!.watch) {
    stopWatching = watchConfigFile(
      sup.file,
      () => void sup.reload().catch((err: Error) => sup.log.pino.error({ err }, 'Reload failed')),
      (err) => sup.log.pino.error({ err }, `Stopped watching "${sup.file}" (watch: true): ${err.message}; SIGHUP and the admin API still reload`),
    );
  }
  let stopping = false;
  const stop = async (signal: string) => {
    if (stopping) return;
    stopping = true;
    sup.log.pino.info({ signal }, 'Draining before exit');
    stopWatching?.();
    admin.server.close();
    await sup.shutdown();
    sup.log.pino.info('Stopped');
    process.exit(0);
  };
  process.on('SIGTERM', () => void stop('SIGTERM'));
  process.on('SIGINT', () => void stop('SIGINT'));
  sup.log.pino.info({ admin: admin.address, listeners: sup.addresses, workers: sup.workerCount, version: sup.version }, 'weir is ready');
  return -1;
}

async function validate(args: string[]): Promise<number> {
  const parsed = parseOptions('validate', args, {});
  if (parsed === null) return 2;
  const file = parsed.positionals[0];
  if (file === undefined || parsed.positionals.length > 1) {
    if (file !== undefined) process.stderr.write(`weir validate: one config file, not ${parsed.positionals.length} ("${parsed.positionals.slice(1).join('", "')}" too)\n`);
    process.stderr.write(USAGE);
    return 2;
  }
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (err) {
    process.stderr.write(`weir: cannot read "${file}": ${(err as Error).message}\n`);
    return 1;
  }
  const r = parseConfig(text);
  if (!r.ok) {
    process.stderr.write(formatProblems(file, r.problems) + '\n');
    process.stderr.write(`${r.problems.length} problem${r.problems.length === 1 ? '' : 's'} found\n`);
    return 1;
  }
  // What `run` would load before any worker starts: script files, Wasm modules (compiled and checked).
  const { prepareFilters } = await import('../config/prepare.ts');
  const baseDir = path.dirname(path.resolve(file));
  const { prepared, problems } = await prepareFilters(r.config, baseDir, () => {});
  // Then what each worker does with them: build every filter once (a Lua script's top-level code runs here), all
  // but those whose preparation failed, so that every problem is found at once.
  const failed = new Set(problems.map((p) => p.path));
  problems.push(...(await buildFilters(r.config, baseDir, prepared, failed)));
  if (problems.length > 0) {
    process.stderr.write(formatProblems(file, locateProblems(problems, r.locate)) + '\n');
    process.stderr.write(`${problems.length} problem${problems.length === 1 ? '' : 's'} found\n`);
    return 1;
  }
  process.stdout.write(`${file}: valid (${r.config.listeners.length} listener(s), ${r.config.clusters.length} cluster(s))\n`);
  return 0;
}

/** Builds every enabled filter as a worker would, then destroys it; returns the failures by filter path. */
async function buildFilters(config: RawConfig, baseDir: string, prepared: Record<string, unknown>, skip: ReadonlySet<string>): Promise<{ path: string; message: string }[]> {
  const { filtersOf, filterOwnConfig } = await import('../config/prepare.ts');
  const { filterDefinition } = await import('../filters/registry.ts');
  const { Metrics } = await import('../telemetry/metrics.ts');
  const clusterNames = new Set(config.clusters.map((c) => c.name));
  const problems: { path: string; message: string }[] = [];
  for (const { path: at, filter } of filtersOf(config)) {
    const def = filterDefinition(filter.type);
    if (def === undefined || filter.disabled || skip.has(at)) continue;
    try {
      const factory = await def.factory(filterOwnConfig(filter), {
        name: filter.name, baseDir, path: at, workerIndex: 0, prepared: prepared[at], log: () => {}, metrics: new Metrics(), clusterNames,
        httpCall: () => Promise.reject(new Error('no requests are sent while validating')),
      });
      factory.destroy?.();
    } catch (err) {
      problems.push({ path: at, message: `filter "${filter.name}": ${(err as Error).message}` });
    }
  }
  return problems;
}

/** Runs the command line; resolves with the exit code, or -1 when the process keeps running. */
export async function main(argv: string[]): Promise<number> {
  // `weir schema | head` closes the pipe early: that is not an error.
  process.stdout.on('error', (err: NodeJS.ErrnoException) => {
    if (err.code === 'EPIPE') process.exit(0);
    throw err;
  });
  const [command, ...rest] = argv;
  switch (command) {
    case 'run':
      return run(rest);
    case 'validate':
      return validate(rest);
    case '-v':
    case '--version':
    case 'version': {
      const pkg = JSON.parse(fs.readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string };
      process.stdout.write(`weir ${pkg.version} (Node.js ${process.versions.node})\n`);
      return 0;
    }
    case 'schema':
      process.stdout.write(JSON.stringify(configSchema(filterDefinitions()), null, 2) + '\n');
      return 0;
    case undefined:
    case '-h':
    case '--help':
    case 'help':
      process.stdout.write(USAGE);
      return command === undefined ? 2 : 0;
    default:
      process.stderr.write(`weir: unknown command "${command}"\n${USAGE}`);
      return 2;
  }
}
