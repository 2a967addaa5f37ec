import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { startWeir, type Weir } from '../support/weir.ts';
import { startUpstream, type Upstream } from '../support/upstream.ts';

let a: Upstream;
let b: Upstream;

const config = (cluster: string, tag: string, extra = '') => `
listeners:
  - name: edge
    address: 127.0.0.1:0
    filters:
      - name: tag
        type: headers
        response_add: { x-config: "${tag}" }
    routes:
      - match: { prefix: / }
        cluster: ${cluster}
${extra}
clusters:
  - name: a
    endpoints: [${a.address}]
  - name: b
    endpoints: [${b.address}]
`;

before(async () => {
  a = await startUpstream((_q, res) => res.end('a'));
  b = await startUpstream((_q, res) => res.end('b'));
});

after(async () => {
  await a?.close();
  await b?.close();
});

const agent = new http.Agent({ keepAlive: true, maxSockets: 8 });

function get(url: string): Promise<{ status: number; body: string; tag: string | undefined }> {
  return new Promise((resolve, reject) => {
    http
      .get(url, { agent }, (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (d) => (body += d));
        res.on('end', () => resolve({ status: res.statusCode!, body, tag: res.headers['x-config'] as string | undefined }));
      })
      .on('error', reject);
  });
}

test('POST /reload swaps the config; a bad config is rejected with its problems and the old one keeps serving', async () => {
  const weir = await startWeir(config('a', 'v1'));
  try {
    assert.equal((await get(weir.url('edge'))).body, 'a');
    const ok = await weir.reload(config('b', 'v2'));
    assert.equal(ok.status, 200);
    assert.deepEqual(await ok.json(), { ok: true, version: 2 });
    const r = await get(weir.url('edge'));
    assert.deepEqual([r.body, r.tag], ['b', 'v2']);

    const bad = await weir.reload(config('nope', 'v3').replace('type: headers', 'type: headerz'));
    assert.equal(bad.status, 400);
    const body = await bad.json();
    assert.equal(body.ok, false);
    assert.match(body.error, /listeners\[0\]\.filters\[0\]\.type: must be one of/);
    assert.match(body.error, /listeners\[0\]\.routes\[0\]\.cluster: unknown cluster "nope"/);
    assert.match(body.error, /weir\.yaml:\d+:\d+/, 'problems name the file and line');
    assert.equal((await get(weir.url('edge'))).body, 'b', 'the running config stays');
    // An alias to no anchor: the yaml library throws while resolving it, which must be a problem, not a crash.
    const alias = await weir.reload(config('a', 'v4').replace('match: { prefix: / }', 'match: *nope'));
    assert.equal(alias.status, 400);
    assert.match((await alias.json()).error, /weir\.yaml:\d+:\d+ unknown alias \*nope/);
    // A filter that fails to build in the workers: the answer names its line too.
    const build = await weir.reload(config('a', 'v5').replace('type: headers\n        response_add: { x-config: "v5" }', 'type: module\n        file: ./nope.ts'));
    assert.equal(build.status, 400);
    assert.match((await build.json()).error, /weir\.yaml:\d+:9: listeners\[0\]\.filters\[0\] \(filter "tag"\): .*nope\.ts/);
    assert.equal((await get(weir.url('edge'))).body, 'b', 'the running config stays');
    const cfg = await (await fetch(`${weir.admin}/config`)).json();
    assert.equal(cfg.version, 2);
    assert.equal(cfg.last_reload.ok, false);
    const metrics = await (await fetch(`${weir.admin}/metrics`)).text();
    assert.match(metrics, /weir_config_reloads_total\{result="failed"\} 3/);
    assert.match(metrics, /weir_config_reloads_total\{result="ok"\} 2/);
  } finally {
    await weir.stop();
  }
});

test('a reload that changes admin.address or log_level applies the rest and says those take a restart', async () => {
  const weir = await startWeir(config('a', 'v1'));
  try {
    const res = await weir.reload(`admin:\n  address: 127.0.0.2:0\nlog_level: debug\n${config('b', 'v2')}`);
    assert.equal(res.status, 200);
    const body = await res.json();
    assert.equal(body.ok, true);
    assert.equal(body.notApplied.length, 2);
    assert.match(body.notApplied[0], /^admin\.address changed from "127\.0\.0\.1:0" to "127\.0\.0\.2:0": it takes a restart/);
    assert.match(body.notApplied[1], /^log_level changed from "info" to "debug"/);
    assert.equal((await get(weir.url('edge'))).body, 'b', 'the rest of the config runs');
    const cfg = await (await fetch(`${weir.admin}/config`)).json();
    assert.equal(cfg.config.admin.address, '127.0.0.1:0', '/config shows what runs');
    await weir.waitForLine((l) => typeof l.msg === 'string' && l.msg.startsWith('Not applied by the reload: admin.address'));
  } finally {
    await weir.stop();
  }
});

test('SIGHUP reloads the config file', async () => {
  const weir = await startWeir(config('a', 'v1'));
  try {
    weir.writeConfig(config('b', 'hup'));
    weir.process.kill('SIGHUP');
    await weir.waitForLine((l) => l.msg === 'Config reloaded');
    assert.equal((await get(weir.url('edge'))).tag, 'hup');
  } finally {
    await weir.stop();
  }
});

test('watch: true reloads when the file changes', async () => {
  const weir = await startWeir('watch: true\n' + config('a', 'v1'));
  try {
    weir.writeConfig('watch: true\n' + config('b', 'watched'));
    await weir.waitForLine((l) => l.msg === 'Config reloaded');
    assert.equal((await get(weir.url('edge'))).tag, 'watched');
    // As editors and `sed -i` save: a new file renamed over the old one.
    fs.writeFileSync(`${weir.configPath}.tmp`, fs.readFileSync(weir.configPath, 'utf8').replace('"watched"', '"replaced"'));
    fs.renameSync(`${weir.configPath}.tmp`, weir.configPath);
    await weir.waitForLine((l) => l.msg === 'Config reloaded' && l.version === 3);
    assert.equal((await get(weir.url('edge'))).tag, 'replaced');
  } finally {
    await weir.stop();
  }
});

test('watch: true reloads on a Kubernetes ConfigMap update, which swaps the "..data" symlink to a new folder, and not when the file stays the same', async () => {
  const yaml = (cluster: string, tag: string) => 'admin:\n  address: 127.0.0.1:0\nwatch: true\n' + config(cluster, tag);
  // The layout kubelet mounts: weir.yaml -> ..data/weir.yaml, ..data -> ..<timestamp>, a folder holding the files.
  const weir = await startWeir(yaml('a', 'v1'), {
    setup(dir) {
      fs.mkdirSync(path.join(dir, '..2026_12_02_10_00_00.1'));
      fs.symlinkSync('..2026_12_02_10_00_00.1', path.join(dir, '..data'));
      fs.symlinkSync('..data/weir.yaml', path.join(dir, 'weir.yaml'));
    },
  });
  // How kubelet updates it: a new folder, "..data_tmp" pointing to it renamed over "..data", the old folder removed.
  const update = (folder: string, text: string) => {
    const old = fs.readlinkSync(path.join(weir.dir, '..data'));
    fs.mkdirSync(path.join(weir.dir, folder));
    fs.writeFileSync(path.join(weir.dir, folder, 'weir.yaml'), text);
    fs.symlinkSync(folder, path.join(weir.dir, '..data_tmp'));
    fs.renameSync(path.join(weir.dir, '..data_tmp'), path.join(weir.dir, '..data'));
    fs.rmSync(path.join(weir.dir, old), { recursive: true });
  };
  try {
    assert.ok(fs.lstatSync(weir.configPath).isSymbolicLink());
    assert.equal((await get(weir.url('edge'))).tag, 'v1');
    // Another key of the ConfigMap changed: a new folder, the same weir.yaml.
    update('..2026_12_02_10_05_00.2', yaml('a', 'v1'));
    await sleep(1000);
    update('..2026_12_02_10_10_00.3', yaml('b', 'swapped'));
    await weir.waitForLine((l) => l.msg === 'Config reloaded');
    const r = await get(weir.url('edge'));
    assert.deepEqual([r.body, r.tag], ['b', 'swapped']);
    const cfg = await (await fetch(`${weir.admin}/config`)).json();
    assert.equal(cfg.version, 2, 'the update that left weir.yaml as it was did not reload');
  } finally {
    await weir.stop();
  }
});

test('a reload adds, removes and moves listeners; an unchanged listener keeps its socket', async () => {
  const second = `  - name: side
    address: 127.0.0.1:0
    routes:
      - match: { prefix: / }
        cluster: a
`;
  const weir = await startWeir(config('a', 'v1'));
  try {
    const edge = weir.url('edge');
    // A kept-alive connection to an unchanged listener survives the reload.
    const socketsBefore = new Set<unknown>();
    const keep = await get(edge);
    assert.equal(keep.body, 'a');
    const res = await weir.reload(config('a', 'v2').replace('clusters:', second + 'clusters:'));
    assert.equal(res.status, 200);
    assert.equal(weir.url('edge'), edge, 'unchanged listener keeps its address');
    assert.equal((await get(weir.url('side'))).body, 'a', 'added listener serves');
    assert.equal((await get(edge)).tag, 'v2');
    socketsBefore.clear();
    // Remove "side": its port stops accepting.
    const sideUrl = weir.url('side');
    assert.equal((await weir.reload(config('a', 'v3'))).status, 200);
    await assert.rejects(fetch(sideUrl, { signal: AbortSignal.timeout(2000) }));
  } finally {
    await weir.stop();
  }
});

test('100 reloads during continuous load: zero failed requests', { timeout: 120_000 }, async () => {
  const weir = await startWeir(config('a', 'v0'), { workers: 2 });
  let failures = 0;
  let done = 0;
  let stop = false;
  const errors: string[] = [];
  const client = async () => {
    while (!stop) {
      try {
        const r = await get(weir.url('edge'));
        if (r.status !== 200 || (r.body !== 'a' && r.body !== 'b')) {
          failures++;
          errors.push(`${r.status} ${r.body}`);
        }
      } catch (err) {
        failures++;
        errors.push(String(err));
      }
      done++;
    }
  };
  try {
    const clients = Array.from({ length: 8 }, client);
    for (let i = 1; i <= 100; i++) {
      const res = await weir.reload(config(i % 2 ? 'b' : 'a', `v${i}`));
      assert.equal(res.status, 200, `reload ${i}`);
      await sleep(5);
    }
    stop = true;
    await Promise.all(clients);
    assert.ok(done > 100, `requests were flowing (${done})`);
    assert.equal(failures, 0, errors.slice(0, 5).join('\n'));
    const cfg = await (await fetch(`${weir.admin}/config`)).json();
    assert.equal(cfg.version, 101);
  } finally {
    stop = true;
    await weir.stop();
  }
});

test('SIGTERM drains: a request in flight finishes, then weir exits 0', async () => {
  const slow = await startUpstream((_q, res) => setTimeout(() => res.end('slow done'), 500));
  const weir = await startWeir(config('a', 'v1').replace(a.address, slow.address));
  try {
    const inflight = get(weir.url('edge'));
    await sleep(100);
    const exit = weir.stop();
    const r = await inflight;
    assert.equal(r.body, 'slow done');
    assert.equal(await exit, 0);
  } finally {
    await slow.close();
  }
});
