import assert from 'node:assert/strict';
import { once } from 'node:events';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, test } from 'node:test';
import { Metrics } from '../../telemetry/metrics.ts';
import { Endpoint } from './endpoint.ts';
import { HealthChecker, healthCheckMetrics, type HealthCheckConfig, type HealthCheckResult } from './health-check.ts';

const servers: http.Server[] = [];
const seen: { path?: string; host?: string; agent?: string }[] = [];
let healthy: string;
let sick: string;
let hanging: string;
let closed: string;
let toggling: string;
let togglingStatus = 200;

async function listen(handler: http.RequestListener): Promise<string> {
  const server = http.createServer(handler);
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  servers.push(server);
  return `127.0.0.1:${(server.address() as AddressInfo).port}`;
}

before(async () => {
  healthy = await listen((req, res) => {
    seen.push({ path: req.url, host: req.headers.host, agent: req.headers['user-agent'] });
    res.writeHead(req.url === '/healthz' ? 200 : 404).end('ok');
  });
  sick = await listen((_req, res) => res.writeHead(503).end('down'));
  hanging = await listen(() => {});
  toggling = await listen((_req, res) => res.writeHead(togglingStatus).end());
  const gone = http.createServer();
  gone.listen(0, '127.0.0.1');
  await once(gone, 'listening');
  closed = `127.0.0.1:${(gone.address() as AddressInfo).port}`;
  gone.close();
  await once(gone, 'close');
});

after(() => {
  for (const s of servers) s.closeAllConnections(), s.close();
});

const CONFIG: HealthCheckConfig = { path: '/healthz', interval: 10, timeout: 1_000, healthy_threshold: 2, unhealthy_threshold: 2 };

test('check() succeeds on an expected status and sends the path, the Host and the user agent', async () => {
  const ep = new Endpoint(healthy);
  const hc = new HealthChecker([ep], { ...CONFIG, host: 'api.internal' });
  assert.deepEqual(await hc.check(ep), { ok: true, status: 200 });
  assert.deepEqual(seen.at(-1), { path: '/healthz', host: 'api.internal', agent: 'weir-health-check' });
  await new HealthChecker([ep], CONFIG).check(ep);
  assert.equal(seen.at(-1)?.host, healthy, 'the endpoint address is the default Host');
});

test('check() fails on an unexpected status, a refused connection and a timeout, saying why', async () => {
  const hc = new HealthChecker([], { ...CONFIG, timeout: 50 });
  assert.deepEqual(await hc.check(new Endpoint(sick)), { ok: false, status: 503, reason: 'status 503' });
  assert.deepEqual(await hc.check(new Endpoint(closed)), { ok: false, reason: 'ECONNREFUSED' });
  assert.deepEqual(await hc.check(new Endpoint(hanging)), { ok: false, reason: 'timeout' });
});

test('check() takes expected_statuses from the config', async () => {
  const hc = new HealthChecker([], { ...CONFIG, expected_statuses: [200, 503] });
  assert.equal((await hc.check(new Endpoint(sick))).ok, true);
  const strict = new HealthChecker([], { ...CONFIG, path: '/other' });
  assert.deepEqual(await strict.check(new Endpoint(healthy)), { ok: false, status: 404, reason: 'status 404' });
});

test('health checks mark an endpoint unhealthy only after unhealthy_threshold failures in a row', async () => {
  const eps = [new Endpoint(healthy), new Endpoint(sick), new Endpoint(closed)];
  const changes: [string, boolean, HealthCheckResult][] = [];
  const metrics = healthCheckMetrics(new Metrics(), 'api');
  const hc = new HealthChecker(eps, { ...CONFIG, unhealthy_threshold: 3 }, { metrics, onChange: (ep, h, r) => changes.push([ep.address, h, r]) });
  await hc.checkAll();
  await hc.checkAll();
  assert.deepEqual(eps.map((e) => e.healthy), [true, true, true]);
  await hc.checkAll();
  assert.deepEqual(eps.map((e) => e.healthy), [true, false, false]);
  // Checks run in parallel, so the two changes may come in either order.
  assert.deepEqual(
    new Map(changes.map(([address, h, r]) => [address, [h, r]])),
    new Map<string, [boolean, HealthCheckResult]>([
      [sick, [false, { ok: false, status: 503, reason: 'status 503' }]],
      [closed, [false, { ok: false, reason: 'ECONNREFUSED' }]],
    ]),
  );
  assert.equal(metrics.success.value, 3);
  assert.equal(metrics.failure.value, 6);
  assert.equal(metrics.becameUnhealthy.value, 2);
  assert.deepEqual([eps[1].stats.healthCheckFailures, eps[0].stats.healthCheckSuccesses], [3, 3]);
});

test('health checks mark an endpoint healthy again after healthy_threshold successes in a row', async () => {
  const ep = new Endpoint(toggling);
  const changes: boolean[] = [];
  const hc = new HealthChecker([ep], { ...CONFIG, healthy_threshold: 2, unhealthy_threshold: 1 }, { onChange: (_e, h) => changes.push(h) });
  togglingStatus = 500;
  await hc.checkAll();
  assert.equal(ep.healthy, false);
  togglingStatus = 200;
  await hc.checkAll();
  assert.equal(ep.healthy, false, 'one success is not enough');
  togglingStatus = 500;
  await hc.checkAll();
  togglingStatus = 200;
  await hc.checkAll();
  assert.equal(ep.healthy, false, 'the failure in between restarted the count');
  await hc.checkAll();
  assert.equal(ep.healthy, true);
  assert.deepEqual(changes, [false, true]);
});

test('start() checks on its own every interval until stop()', async () => {
  const eps = [new Endpoint(healthy), new Endpoint(sick)];
  let resolveChange!: (address: string) => void;
  const changed = new Promise<string>((r) => (resolveChange = r));
  const hc = new HealthChecker(eps, CONFIG, { onChange: (ep) => resolveChange(ep.address) });
  hc.start();
  hc.start();
  assert.equal(await changed, sick);
  hc.stop();
  assert.equal(eps[1].healthy, false);
  assert.equal(eps[0].healthy, true);
});

test('stop() aborts a check in flight and ignores its result', async () => {
  const ep = new Endpoint(hanging);
  const changes: boolean[] = [];
  const hc = new HealthChecker([ep], { ...CONFIG, unhealthy_threshold: 1, timeout: 60_000 }, { onChange: (_e, h) => changes.push(h) });
  const round = hc.checkAll();
  await new Promise((r) => setImmediate(r));
  hc.stop();
  await round;
  assert.equal(ep.healthy, true);
  assert.deepEqual(changes, []);
});
