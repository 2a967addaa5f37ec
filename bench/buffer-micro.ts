/**
 * Micro-benchmark of body buffering in the chain: a 5 MiB body fed in 64 KiB chunks through a Pipeline whose one
 * filter answers `stop-and-buffer` until the end of the stream (what a Lua `body()` or a Proxy-Wasm filter waiting
 * for end_of_stream does). Prints ms per body; nothing here is asserted.
 * Run: npx node bench/buffer-micro.ts [checkout]   (another checkout's src, to compare builds)
 */
import path from 'node:path';
import { pathToFileURL } from 'node:url';

const root = pathToFileURL(path.resolve(process.argv[2] ?? path.join(import.meta.dirname, '..')) + '/').href;
const { Pipeline } = (await import(new URL('src/dataplane/chain.ts', root).href)) as typeof import('../src/dataplane/chain.ts');
const { HeaderMap } = (await import(new URL('src/core/headers.ts', root).href)) as typeof import('../src/core/headers.ts');

const CHUNK = Buffer.alloc(64 * 1024, 1);
const CHUNKS = 80;
const BODIES = 20;
const sink = {
  headers() {},
  data() {},
  trailers() {},
  filterFailed(_i: number, e: unknown) {
    throw e;
  },
  overflow() {
    throw new Error('over the buffer limit');
  },
  block() {},
  unblock() {},
  stopped() {},
  halted: false,
};
const buffering = { onRequestBody: (_c: unknown, eos: boolean) => (eos ? 'continue' : 'stop-and-buffer') } as const;

for (let round = 0; round < 3; round++) {
  const t0 = process.hrtime.bigint();
  for (let b = 0; b < BODIES; b++) {
    const p = new Pipeline([buffering], 'request', sink, 16 * 1024 * 1024);
    p.headers(new HeaderMap([':path', '/']), false);
    for (let i = 1; i < CHUNKS; i++) p.data(CHUNK, false);
    p.data(CHUNK, true);
  }
  const ms = Number(process.hrtime.bigint() - t0) / 1e6 / BODIES;
  console.log(`round ${round + 1}: ${ms.toFixed(2)} ms per 5 MiB body (${CHUNKS} chunks of 64 KiB, one buffering filter)`);
}
