/** What the in-process filter micro-benchmarks (lua-micro.ts, wasm-micro.ts) share: inputs, callbacks, the CPU clock. */
import { HeaderMap } from '../src/core/headers.ts';
import type { FilterCallbacks, StreamInfo } from '../src/filters/contract.ts';

/** Filter callbacks that do nothing; `onReply` counts local replies. */
export function idleCallbacks(onReply: () => void = () => {}): FilterCallbacks {
  const info = { routeMetadata: {}, dynamicMetadata: new Map(), filterState: new Map() } as unknown as StreamInfo;
  return {
    info, requestHeaders: null, responseHeaders: null,
    resume() {}, sendLocalReply: onReply, reset() {}, httpCall: () => Promise.reject(new Error('none')),
    clearRouteCache() {}, setUpstreamOverrideHost() {}, log() {}, failed() {},
  };
}

/** The request head wrk sends, as the codec hands it to the chain. */
export function requestHeaders(): HeaderMap {
  return new HeaderMap([':method', 'GET', ':path', '/api/items?id=7', ':authority', 'example.com', ':scheme', 'http',
    'user-agent', 'wrk/4.2', 'accept', '*/*', 'x-request-id', 'a5b0c2d4-0000-4000-8000-000000000000']);
}

/** The nginx upstream's response head. */
export function responseHeaders(): HeaderMap {
  return new HeaderMap([':status', '200', 'content-type', 'text/plain', 'content-length', '12']);
}

/** CPU µs (user + system) per call of `run`, over `n` calls. */
export function cpu(run: () => void, n: number): number {
  const t0 = process.cpuUsage();
  for (let i = 0; i < n; i++) run();
  const t = process.cpuUsage(t0);
  return (t.user + t.system) / n;
}

/** Warms both loops up, then measures `withFilter − passthrough` five times; prints the median with its spread. */
export function report(label: string, withFilter: () => void, passthrough: () => void, iterations: number): void {
  cpu(withFilter, iterations / 4);
  cpu(passthrough, iterations / 4);
  const results: number[] = [];
  for (let round = 0; round < 5; round++) results.push(cpu(withFilter, iterations) - cpu(passthrough, iterations));
  results.sort((a, b) => a - b);
  console.log(
    `${label}: ${results[2].toFixed(3)} µs CPU per request over passthrough ` +
      `(median of 5 × ${iterations}; min ${results[0].toFixed(3)}, max ${results[4].toFixed(3)})`,
  );
}
