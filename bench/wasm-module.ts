import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/** Compiles bench/wasm/NAME.wat into a .wasm file in a temporary folder with wabt and returns its path; rejects with the reason when it cannot. */
export async function buildWasmModule(name: string): Promise<string> {
  const watPath = new URL(`./wasm/${name}.wat`, import.meta.url);
  let wabtInit: () => Promise<{ parseWat(filename: string, text: string): { toBinary(options: object): { buffer: Uint8Array }; destroy(): void } }>;
  try {
    wabtInit = (await import('wabt')).default;
  } catch (error) {
    throw new Error(`Cannot build "${name}.wat": the wabt dev dependency is missing (${(error as Error).message})`);
  }
  const wabt = await wabtInit();
  const module = wabt.parseWat(`${name}.wat`, readFileSync(watPath, 'utf8'));
  try {
    const path = join(mkdtempSync(join(tmpdir(), 'weir-bench-wasm-')), `${name}.wasm`);
    writeFileSync(path, module.toBinary({}).buffer);
    return path;
  } finally {
    module.destroy();
  }
}
