/**
 * Loading and compiling Wasm modules once per process (main thread). Modules are keyed by the sha256 of their bytes:
 * a module already compiled (with the same memory cap) is reused, so a reload that keeps a module's hash compiles
 * nothing. Remote modules are downloaded once into `<cache dir>/<sha256>.wasm`, verified, and reused across restarts.
 */
import { performance } from 'node:perf_hooks';
import { createHash } from 'node:crypto';
import { mkdir, readFile, rename, writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { instrument } from './instrument.ts';
import { abiVersionOf, type AbiVersion } from './abi.ts';
import { checkImports } from './host-functions.ts';

/** Where a module comes from. */
export interface ModuleSource {
  file?: string;
  url?: string;
  sha256?: string;
  /** Download timeout in milliseconds. */
  fetchTimeoutMs?: number;
}

/** A compiled module, structured-cloneable to worker threads (WebAssembly.Module clones without recompiling). */
export interface CompiledModule {
  module: WebAssembly.Module;
  sha256: string;
  abi: AbiVersion;
  /** Size of the original bytes. */
  size: number;
  /** Whether this call compiled (false: taken from the process cache). */
  compiled: boolean;
  /** Milliseconds spent loading and compiling in this call. */
  loadMs: number;
}

/** Process-wide counters of the module cache. */
export interface ModuleCacheStats {
  compilations: number;
  cacheHits: number;
  downloads: number;
  downloadFailures: number;
}

const compiled = new Map<string, Promise<{ module: WebAssembly.Module; abi: AbiVersion }>>();
const failedFetches = new Map<string, { at: number; message: string }>();
const downloads = new Map<string, Promise<Uint8Array>>();
const stats: ModuleCacheStats = { compilations: 0, cacheHits: 0, downloads: 0, downloadFailures: 0 };
const NEGATIVE_CACHE_MS = 10_000;

/** The process-wide counters; `compilations` grows only when a module with a new hash (or memory cap) is compiled. */
export function moduleCacheStats(): Readonly<ModuleCacheStats> {
  return { ...stats };
}

/** The download of a module still in progress (by sha256), if any. */
export function pendingDownload(sha256: string): Promise<Uint8Array> | undefined {
  return downloads.get(sha256.toLowerCase());
}

/** The folder of downloaded modules: `$WEIR_CACHE_DIR/wasm` or `./.cache/wasm`. */
export function wasmCacheDir(): string {
  return join(resolve(process.env.WEIR_CACHE_DIR ?? '.cache'), 'wasm');
}

/** Hex sha256 of bytes. */
export function sha256Hex(bytes: Uint8Array): string {
  return createHash('sha256').update(bytes).digest('hex');
}

/** Reads (or downloads) the module's bytes and checks `sha256` when given. Throws a message that names the source. */
export async function loadModuleBytes(source: ModuleSource, baseDir: string): Promise<{ bytes: Uint8Array; sha256: string }> {
  const expected = source.sha256?.toLowerCase();
  if (source.file !== undefined) {
    const path = resolve(baseDir, source.file);
    let bytes: Uint8Array;
    try {
      bytes = await readFile(path);
    } catch (err) {
      throw new Error(`Cannot read Wasm module "${path}": ${(err as Error).message}`);
    }
    const sha256 = sha256Hex(bytes);
    if (expected !== undefined && expected !== sha256) throw new Error(`Cannot load Wasm module "${path}": sha256 is "${sha256}", config expects "${expected}"`);
    return { bytes, sha256 };
  }
  if (source.url === undefined || expected === undefined) throw new Error('Cannot load Wasm module: give "file", or "url" with "sha256"');
  const cached = join(wasmCacheDir(), `${expected}.wasm`);
  try {
    const bytes = await readFile(cached);
    if (sha256Hex(bytes) === expected) return { bytes, sha256: expected };
  } catch {
    // Not cached yet.
  }
  const failed = failedFetches.get(source.url);
  if (failed !== undefined && Date.now() - failed.at < NEGATIVE_CACHE_MS) throw new Error(failed.message);
  let pending = downloads.get(expected);
  if (pending === undefined) {
    pending = downloadToCache(source.url, expected, cached);
    downloads.set(expected, pending);
    pending.then(
      () => downloads.delete(expected),
      () => downloads.delete(expected),
    );
  }
  // A config load waits at most fetchTimeoutMs; a slower download goes on into the cache, and the filter's prepare
  // asks for the config to be applied again when it lands.
  const timeoutMs = source.fetchTimeoutMs ?? 2_000;
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timedOut = new Promise<'timeout'>((resolve) => {
    timer = setTimeout(() => resolve('timeout'), timeoutMs);
    timer.unref();
  });
  try {
    const bytes = await Promise.race([pending, timedOut]);
    if (bytes === 'timeout') throw new Error(`Cannot download Wasm module "${source.url}" within ${timeoutMs} ms; the download goes on in the background and a later load uses it`);
    return { bytes, sha256: expected };
  } finally {
    clearTimeout(timer);
  }
}

async function downloadToCache(url: string, expected: string, cached: string): Promise<Uint8Array> {
  try {
    const bytes = await download(url, 60_000);
    const sha256 = sha256Hex(bytes);
    if (sha256 !== expected) throw new Error(`Cannot load Wasm module "${url}": sha256 is "${sha256}", config expects "${expected}"`);
    await mkdir(wasmCacheDir(), { recursive: true });
    const tmp = `${cached}.${process.pid}.tmp`;
    await writeFile(tmp, bytes);
    await rename(tmp, cached);
    stats.downloads++;
    failedFetches.delete(url);
    return bytes;
  } catch (err) {
    stats.downloadFailures++;
    const message = (err as Error).message.startsWith('Cannot') ? (err as Error).message : `Cannot download Wasm module "${url}": ${(err as Error).message}`;
    failedFetches.set(url, { at: Date.now(), message });
    throw new Error(message);
  }
}

async function download(url: string, timeoutMs: number): Promise<Uint8Array> {
  let lastError: unknown;
  for (let attempt = 0; attempt < 3; attempt++) {
    if (attempt > 0) await new Promise((r) => setTimeout(r, 200 * attempt));
    try {
      const res = await fetch(url, { signal: AbortSignal.timeout(timeoutMs) });
      if (!res.ok) throw new Error(`status ${res.status}`);
      return new Uint8Array(await res.arrayBuffer());
    } catch (err) {
      lastError = err;
    }
  }
  throw lastError;
}

/** Instruments and compiles bytes once per (sha256, memory cap) in this process; later calls share the compiled module. */
export async function compileModule(bytes: Uint8Array, sha256: string, maxMemoryBytes: number): Promise<{ module: WebAssembly.Module; abi: AbiVersion; compiled: boolean }> {
  const key = `${sha256}:${maxMemoryBytes}`;
  let entry = compiled.get(key);
  if (entry !== undefined) {
    stats.cacheHits++;
    return { ...(await entry), compiled: false };
  }
  entry = (async () => {
    const { bytes: rewritten } = instrument(bytes, maxMemoryBytes);
    const module = await WebAssembly.compile(rewritten as Uint8Array<ArrayBuffer>);
    const abi = abiVersionOf(module);
    checkImports(module);
    return { module, abi };
  })();
  compiled.set(key, entry);
  stats.compilations++;
  try {
    return { ...(await entry), compiled: true };
  } catch (err) {
    compiled.delete(key);
    throw err;
  }
}

/** Loads and compiles a module through both caches. */
export async function prepareModule(source: ModuleSource, baseDir: string, maxMemoryBytes: number): Promise<CompiledModule> {
  const started = performance.now();
  const { bytes, sha256 } = await loadModuleBytes(source, baseDir);
  const { module, abi, compiled: didCompile } = await compileModule(bytes, sha256, maxMemoryBytes);
  return { module, sha256, abi, size: bytes.length, compiled: didCompile, loadMs: performance.now() - started };
}
