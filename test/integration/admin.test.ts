import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { startWeir, type Weir } from '../support/weir.ts';
import { startUpstream, type Upstream } from '../support/upstream.ts';

let up: Upstream;
let weir: Weir;

before(async () => {
  up = await startUpstream((_q, res) => res.end('ok'));
  weir = await startWeir(
    `
access_log: ./access.log
listeners:
  - name: edge
    address: 127.0.0.1:0
    routes:
      - name: all
        match: { prefix: / }
        cluster: up
clusters:
  - name: up
    endpoints: [${up.address}]
`,
    { workers: 2 },
  );
});

after(async () => {
  await weir?.stop();
  await up?.close();
});

test('two workers serve one listener address, and one /metrics adds their counters up', async () => {
  const n = 40;
  for (let i = 0; i < n; i++) {
    // new connections so that the kernel spreads them over both workers' sockets
    const res = await fetch(`${weir.url('edge')}/m${i}`, { headers: { connection: 'close' } });
    assert.equal(await res.text(), 'ok');
  }
  const metrics = await (await fetch(`${weir.admin}/metrics`)).text();
  const m = /weir_downstream_requests_total\{listener="edge",route="all",status_class="2xx"\} (\d+)/.exec(metrics);
  assert.ok(m, metrics.slice(0, 2000));
  assert.equal(Number(m[1]), n);
  assert.match(metrics, /weir_downstream_request_duration_ms_bucket\{listener="edge",route="all",le="\+Inf"\} 40/);
  assert.match(metrics, new RegExp(`weir_upstream_requests_total\\{cluster="up",endpoint="${up.address}"\\} 40`));
  assert.match(metrics, /weir_upstream_request_duration_ms_count\{cluster="up",endpoint="[^"]+"\} 40/);
  assert.match(metrics, /weir_downstream_connections_active\{listener="edge"\} \d+/);
  assert.match(metrics, /weir_process_resident_memory_bytes \d+/);
  assert.match(metrics, /weir_workers 2/);
  assert.match(metrics, /weir_config_reloads_total\{result="ok"\} 1/);
  assert.match(metrics, /^# TYPE weir_downstream_request_duration_ms histogram$/m);
});

test('/ready, /config and /clusters describe the running proxy', async () => {
  const ready = await fetch(`${weir.admin}/ready`);
  assert.equal(ready.status, 200);
  assert.equal(await ready.text(), 'LIVE\n');
  const cfg = await (await fetch(`${weir.admin}/config`)).json();
  assert.equal(cfg.version, 1);
  assert.equal(cfg.config.listeners[0].name, 'edge');
  assert.equal(cfg.config.listeners[0].buffer_limit, '1MiB', 'defaults from the schema are filled in');
  const clusters = await (await fetch(`${weir.admin}/clusters`)).json();
  assert.equal(clusters.workers.length, 2);
  const ep = clusters.workers[0].clusters[0].endpoints[0];
  assert.equal(ep.address, up.address);
  assert.equal(ep.healthy, true);
  assert.equal(typeof ep.activeRequests, 'number');
  const notFound = await fetch(`${weir.admin}/nope`);
  assert.equal(notFound.status, 404);
  const wrongMethod = await fetch(`${weir.admin}/reload`);
  assert.equal(wrongMethod.status, 405);
});

test('the access log goes to the configured file, one JSON line per request', async () => {
  await fetch(`${weir.url('edge')}/to-file`);
  const file = path.join(weir.dir, 'access.log');
  let lines: any[] = [];
  for (let i = 0; i < 50 && !lines.some((l) => l.path === '/to-file'); i++) {
    await sleep(50);
    if (fs.existsSync(file)) lines = fs.readFileSync(file, 'utf8').trim().split('\n').filter(Boolean).map((l) => JSON.parse(l));
  }
  const line = lines.find((l) => l.path === '/to-file');
  assert.ok(line, 'line written');
  assert.equal(line.status, 200);
  assert.ok(!weir.lines().some((l) => l.msg === 'access'), 'nothing on stdout');
});

test('POST /drain turns /ready to 503 and closes connections after their request', async () => {
  const res = await fetch(`${weir.admin}/drain`, { method: 'POST' });
  assert.equal(res.status, 200);
  assert.equal((await fetch(`${weir.admin}/ready`)).status, 503);
  const r = await fetch(`${weir.url('edge')}/after-drain`);
  assert.equal(r.headers.get('connection'), 'close');
  assert.equal(await r.text(), 'ok');
});
