/**
 * Builds the Proxy-Wasm test corpus from the sources beside this file, on demand, into `.cache/wasm-corpus/`
 * (gitignored), keyed by a hash of each source and its compiler's version, so later runs reuse the binaries.
 * - as/filters.as: AssemblyScript filters built with @solo-io/proxy-runtime 0.1.8 and assemblyscript 0.14 (npm).
 * - wat/*.wat: hand-written edge cases compiled in-process with wabt (npm).
 * - big: the edge module padded to about 1 MiB, generated here, for the cold-start measurement.
 * Run directly (`npx node test/wasm-corpus/build.ts`) to build everything and print the paths.
 */
import { createHash } from 'node:crypto';
import { execFile } from 'node:child_process';
import { mkdir, readFile, rename, rm, stat, writeFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

const here = dirname(fileURLToPath(import.meta.url));
const root = resolve(here, '../..');
const outDir = join(root, '.cache', 'wasm-corpus');
const require = createRequire(import.meta.url);

/** Paths of the built corpus modules. */
export interface Corpus {
  /** The AssemblyScript module with one root context per behaviour (root ids in as/filters.ts). */
  as: string;
  edge: string;
  abi010: string;
  wasi: string;
  unknownImport: string;
  noAbiMarker: string;
  noMalloc: string;
  restrictedStart: string;
  hostcalls: string;
  /** Reads one header and adds one: the benchmark filter. */
  headerRw: string;
  /** on_done answers false; proxy_done comes from a later tick. */
  lateDone: string;
  /** Sends an http call from proxy_on_log and logs "answered" when its answer comes. */
  calloutAfterEnd: string;
  /** About 1 MiB: the edge module plus padding functions and data. */
  big: string;
  /** Host calls whose values matrix.test.ts checks (log level, time, sizes, gRPC, metrics, foreign, shims). */
  matrix: string;
  /** ABI 0.1.0: the proxy_clear_route_cache hostcall. */
  clearRouteCache010: string;
  /** Logs stream properties (sizes, flags, code details, connection id) in each phase. */
  properties: string;
}

async function exists(path: string): Promise<boolean> {
  try {
    await stat(path);
    return true;
  } catch {
    return false;
  }
}

async function writeAtomic(path: string, bytes: Uint8Array): Promise<void> {
  const tmp = `${path}.${process.pid}.${Math.random().toString(36).slice(2)}.tmp`;
  await writeFile(tmp, bytes);
  await rename(tmp, path);
}

function hash(...parts: (string | Uint8Array)[]): string {
  const h = createHash('sha256');
  for (const p of parts) h.update(p);
  return h.digest('hex').slice(0, 16);
}

async function buildAs(): Promise<string> {
  // The source is not named .ts so that tsc leaves it alone; asc wants .ts, so it compiles a copy.
  const source = join(here, 'as', 'filters.as');
  const asVersion = require('assemblyscript/package.json').version as string;
  const sdkVersion = require('@solo-io/proxy-runtime/package.json').version as string;
  const out = join(outDir, `as-filters-${hash(await readFile(source), asVersion, sdkVersion)}.wasm`);
  if (await exists(out)) return out;
  const tmp = `${out}.${process.pid}.tmp.wasm`;
  const copy = join(outDir, `as-filters-${process.pid}.ts`);
  await writeFile(copy, await readFile(source));
  const asc = join(dirname(require.resolve('assemblyscript/package.json')), 'bin', 'asc');
  try {
    await promisify(execFile)(process.execPath, [asc, copy, '-b', tmp, '--use', 'abort=abort_proc_exit', '--optimize'], { cwd: root });
  } finally {
    await rm(copy, { force: true });
  }
  await rename(tmp, out);
  return out;
}

let wabtPromise: Promise<any> | undefined;

/** Compiles WAT text with wabt. */
export async function watToWasm(name: string, text: string): Promise<Uint8Array> {
  wabtPromise ??= require('wabt')();
  const wabt = await wabtPromise;
  const parsed = wabt.parseWat(name, text, { mutable_globals: true, bulk_memory: true, sign_extension: true, multi_value: true, reference_types: true, tail_call: true, exceptions: true });
  try {
    return parsed.toBinary({}).buffer;
  } finally {
    parsed.destroy();
  }
}

async function buildWat(file: string, transform: (text: string) => string = (t) => t, suffix = ''): Promise<string> {
  const text = transform(await readFile(join(here, 'wat', file), 'utf8'));
  const out = join(outDir, `${file.replace(/\.wat$/, '')}${suffix}-${hash(text)}.wasm`);
  if (await exists(out)) return out;
  await writeAtomic(out, await watToWasm(file, text));
  return out;
}

/** The edge module grown to about 1 MiB with padding functions and a data segment. */
function padToOneMiB(text: string): string {
  const functions: string[] = [];
  for (let i = 0; i < 4000; i++) {
    functions.push(`(func $pad${i} (param i32) (result i32) (i32.add (i32.mul (local.get 0) (i32.const ${i + 3})) (i32.xor (local.get 0) (i32.const ${i * 7919}))))`);
  }
  const data = Buffer.alloc(970 * 1024);
  for (let i = 0; i < data.length; i++) data[i] = (i * 2654435761) >>> 24;
  const escaped = [...data].map((b) => '\\' + b.toString(16).padStart(2, '0')).join('');
  const body = `${functions.join('\n')}\n(data (i32.const 262144) "${escaped}")\n`;
  return text.replace('(memory (export "memory") 2)', '(memory (export "memory") 20)').replace(/\)\s*$/, `\n${body})`);
}

let built: Promise<Corpus> | undefined;

/** Builds (or finds in the cache) every corpus module. */
export function buildCorpus(): Promise<Corpus> {
  built ??= (async () => {
    await mkdir(outDir, { recursive: true });
    const [as, edge, abi010, wasi, unknownImport, noAbiMarker, noMalloc, restrictedStart, hostcalls, headerRw, lateDone, big, matrix, clearRouteCache010, calloutAfterEnd, properties] = await Promise.all([
      buildAs(),
      buildWat('edge.wat'),
      buildWat('abi-0-1-0.wat'),
      buildWat('wasi.wat'),
      buildWat('unknown-import.wat'),
      buildWat('no-abi-marker.wat'),
      buildWat('no-malloc.wat'),
      buildWat('restricted-start.wat'),
      buildWat('hostcalls.wat'),
      buildWat('header-rw.wat'),
      buildWat('late-done.wat'),
      buildWat('edge.wat', padToOneMiB, '-big'),
      buildWat('matrix.wat'),
      buildWat('clear-route-cache-0-1-0.wat'),
      buildWat('callout-after-end.wat'),
      buildWat('properties.wat'),
    ]);
    return { as, edge, abi010, wasi, unknownImport, noAbiMarker, noMalloc, restrictedStart, hostcalls, headerRw, lateDone, big, matrix, clearRouteCache010, calloutAfterEnd, properties };
  })();
  return built;
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const corpus = await buildCorpus();
  for (const [name, path] of Object.entries(corpus)) console.log(`${name}\t${(await stat(path)).size}\t${path}`);
}
