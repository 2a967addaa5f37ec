/**
 * Gives the main thread's start-up garbage back to the system. Parsing and validating a config (yaml, the schema
 * compiler, type stripping of the modules loaded) leaves about 40 MiB of garbage in the main thread's heap, which
 * then allocates so little that V8 collects and shrinks it only minutes later: RSS fell by that much at load, long
 * after start (BENCHMARKS.md, the 5-minute soak). One memory-reducing full collection after a config was applied
 * returns it at once; it takes about 15 ms of the main thread, which carries no requests.
 */
import v8 from 'node:v8';
import vm from 'node:vm';

type GcFunction = (options?: { type: 'major'; execution: 'sync'; flavor: 'last-resort' }) => void;

let gc: GcFunction | null = null;

/** Runs V8's memory-reducing full collection (the one it runs on a low-memory notification) on this thread. */
export function releaseMemory(): void {
  if (gc === null) {
    // The gc() function exists only in contexts created after the flag is set.
    v8.setFlagsFromString('--expose-gc');
    gc = vm.runInNewContext('gc') as GcFunction;
  }
  gc({ type: 'major', execution: 'sync', flavor: 'last-resort' });
}
