/**
 * The setup the cluster test files share: two real upstreams and one weir with a cluster per behaviour under
 * test, each behind a route `/<cluster>/...`. Upstream "a" misbehaves on request, by the last path segment
 * (reset, 503, 409, 500, hang, a failing health check); "b" always answers 200. A test file calls
 * `useClustersFixture()` once; the exported bindings are live once its `before` hook ran.
 */
import { before, after } from 'node:test';
import type http from 'node:http';
import { startWeir, type Weir } from '../support/weir.ts';
import { startUpstream, type Upstream } from '../support/upstream.ts';

export let a: Upstream;
export let b: Upstream;
export let weir: Weir;
/** Every request either upstream received, in arrival order (health checks left out). */
export const hits: { name: string; url: string; method: string }[] = [];
/** Responses held open by a `hold` (either upstream) or `hang` (upstream a) request, until `releaseHeld()`. */
export const held: http.ServerResponse[] = [];
/** What "a" answers on its health check path (503 until a test heals it). */
let aHealthStatus = 503;

/** Sets what "a" answers on its health check path. */
export function setHealthStatus(status: number): void {
  aHealthStatus = status;
}

function behave(name: 'a' | 'b', req: http.IncomingMessage, res: http.ServerResponse, body: Buffer): void {
  const path = req.url!.split('?')[0];
  const action = path.slice(path.lastIndexOf('/') + 1);
  if (action !== 'health') hits.push({ name, url: req.url!, method: req.method! });
  const reply = (status: number) => {
    res.writeHead(status, { 'content-type': 'text/plain', 'x-upstream': name });
    res.end(name);
  };
  if (action === 'hold') return void held.push(res);
  if (action === 'both503') return reply(503);
  if (action === 'len' || (name === 'b' && action === 'resetlen')) {
    res.writeHead(200, { 'content-type': 'text/plain', 'x-upstream': name });
    return void res.end(`${name} ${body.length} ${body.subarray(0, 8).toString()}`);
  }
  if (name === 'b') return reply(200);
  switch (action) {
    case 'reset':
    case 'resetlen':
      return void req.socket.destroy();
    case 'hang':
      return void held.push(res);
    case '503':
    case '409':
    case '500':
      return reply(Number(action));
    case 'health':
      return reply(aHealthStatus);
    default:
      return reply(200);
  }
}

/** Answers every held response with 200 "released". */
export function releaseHeld(): void {
  for (const res of held.splice(0)) {
    if (!res.destroyed) {
      res.writeHead(200, { 'content-type': 'text/plain' });
      res.end('released');
    }
  }
}

/** Registers the `before` and `after` hooks that start and stop the upstreams and weir. */
export function useClustersFixture(): void {
  before(start);
  after(stop);
}

async function start(): Promise<void> {
  a = await startUpstream((req, res, body) => behave('a', req, res, body));
  b = await startUpstream((req, res, body) => behave('b', req, res, body));
  const gone = await startUpstream();
  const refused = gone.address;
  await gone.close();
  const both = `[${a.address}, ${b.address}]`;
  const route = (prefix: string, cluster: string, extra = '') =>
    `      - match: { prefix: /${prefix}/ }\n        cluster: ${cluster}\n${extra}`;
  weir = await startWeir(`
listeners:
  - name: edge
    address: 127.0.0.1:0
    routes:
${route('rr', 'rr')}${route('lr', 'lr')}${route('hash', 'hash')}${route('retry', 'retry')}${route('retry5xx', 'retry5xx')}${route('gateway', 'gateway')}${route('codes', 'codes')}${route('pertry', 'pertry')}${route('breaker', 'breaker')}${route('hc', 'hc')}${route('outlier', 'outlier')}${route('shortejection', 'shortejection')}${route('share', 'share')}${route('dns', 'dns')}${route('connfail', 'connfail')}${route('gw', 'gw')}${route('random', 'random')}${route('nobudget', 'nobudget')}${route('retrypost', 'retrypost')}${route('deadline', 'deadline', '        timeout: 500ms\n')}${route('cookie', 'cookie')}${route('srcip', 'srcip')}${route('pending', 'pending')}
      - match: { prefix: /split/ }
        weighted_clusters: [{ name: only-a, weight: 3 }, { name: only-b, weight: 1 }]
      - match: { prefix: /never-b/ }
        weighted_clusters: [{ name: only-a, weight: 1 }, { name: only-b, weight: 0 }]
clusters:
  - name: rr
    endpoints: ${both}
  - name: lr
    lb: least_request
    endpoints: ${both}
  - name: hash
    lb: ring_hash
    hash_on: { header: x-user }
    endpoints: ${both}
  - name: only-a
    endpoints: [${a.address}]
  - name: only-b
    endpoints: [${b.address}]
  - name: retry
    endpoints: ${both}
  - name: gateway
    endpoints: ${both}
    retry: { retry_on: [gateway-error] }
  - name: retry5xx
    endpoints: ${both}
    retry: { retry_on: [5xx] }
  - name: codes
    endpoints: ${both}
    retry: { retry_on: [retriable-status-codes], retriable_status_codes: [409] }
  - name: pertry
    endpoints: ${both}
    retry: { per_try_timeout: 300ms }
  - name: breaker
    endpoints: [${b.address}]
    circuit_breakers: { max_requests: 1 }
  - name: hc
    endpoints: ${both}
    health_check: { path: /hc/health, interval: 100ms, timeout: 1s, unhealthy_threshold: 1, healthy_threshold: 1 }
  - name: outlier
    endpoints: ${both}
    outlier_detection: { consecutive_5xx: 3, max_ejection_percent: 50, base_ejection_time: 60s }
  - name: share
    endpoints: ${both}
    outlier_detection: { consecutive_5xx: 2, max_ejection_percent: 50, base_ejection_time: 60s }
  - name: shortejection
    endpoints: ${both}
    outlier_detection: { consecutive_5xx: 2, max_ejection_percent: 50, base_ejection_time: 300ms, interval: 100ms }
  - name: dns
    endpoints: [localhost:${b.port}]
  - name: retrypost
    endpoints: ${both}
    retry: { retry_on: [reset], retry_non_idempotent: true }
  - name: nobudget
    endpoints: ${both}
    retry: { retry_on: [5xx], budget_percent: 0, min_retry_concurrency: 0 }
  - name: deadline
    endpoints: ${both}
    retry: { per_try_timeout: 300ms }
  - name: random
    lb: random
    endpoints: ${both}
  - name: cookie
    lb: ring_hash
    hash_on: { cookie: session }
    endpoints: ${both}
  - name: srcip
    lb: ring_hash
    hash_on: { source_ip: true }
    endpoints: ${both}
  - name: pending
    endpoints: [${b.address}]
    circuit_breakers: { max_connections: 1, max_pending_requests: 1 }
  - name: connfail
    endpoints: [${refused}, ${b.address}]
  - name: gw
    endpoints: [${refused}, ${b.address}]
    outlier_detection: { consecutive_gateway_failure: 2, consecutive_5xx: 0, max_ejection_percent: 50, base_ejection_time: 60s }
`);
}

async function stop(): Promise<void> {
  await weir?.stop();
  releaseHeld();
  await a?.close();
  await b?.close();
}

/** Sends a request through the `edge` listener; resolves with status, body and the upstream that answered. */
export async function send(path: string, init: RequestInit = {}): Promise<{ status: number; body: string; upstream: string | null }> {
  const res = await fetch(`${weir.url('edge')}${path}`, init);
  return { status: res.status, body: await res.text(), upstream: res.headers.get('x-upstream') };
}

/** The access log line of the request to `path` (waits for it). */
export function accessLine(path: string): Promise<Record<string, any>> {
  return weir.waitForLine((l) => l.msg === 'access' && l.path === path);
}

/** The upstreams ("a", "b") that received a request for `url`, in order. */
export function hitsFor(url: string): string[] {
  return hits.filter((h) => h.url === url).map((h) => h.name);
}

/** Polls `cond` every 25 ms until it holds; rejects naming `what` after `timeoutMs`. */
export async function waitFor(what: string, cond: () => Promise<boolean> | boolean, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await cond())) {
    if (Date.now() > deadline) throw new Error(`Timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

/** The endpoints of `cluster` as the admin `/clusters` page shows them (worker 0). */
export async function endpointsOf(cluster: string): Promise<Record<string, any>[]> {
  const body = await (await fetch(`${weir.admin}/clusters`)).json();
  return body.workers[0].clusters.find((c: { name: string }) => c.name === cluster).endpoints;
}
