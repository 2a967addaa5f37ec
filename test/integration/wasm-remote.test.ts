import { test } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { createHash } from 'node:crypto';
import type { AddressInfo } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import { buildCorpus } from '../wasm-corpus/build.ts';
import { startWeir } from '../support/weir.ts';
import { startUpstream } from '../support/upstream.ts';

test('a slow remote module does not hold start-up; the filter picks it up by itself when the download lands', async () => {
  const corpus = await buildCorpus();
  const bytes = fs.readFileSync(corpus.edge);
  const sha = createHash('sha256').update(bytes).digest('hex');
  let release!: () => void;
  const released = new Promise<void>((r) => (release = r));
  const modules = http.createServer(async (_req, res) => {
    await released;
    res.end(bytes);
  });
  await new Promise<void>((r) => modules.listen(0, '127.0.0.1', r));
  const port = (modules.address() as AddressInfo).port;
  const up = await startUpstream((req, res) => res.end(`x-edge=${req.headers['x-edge'] ?? '-'}`));
  const cacheDir = fs.mkdtempSync(path.join(os.tmpdir(), 'weir-wasm-cache-'));
  const weir = await startWeir(
    `
listeners:
  - name: edge
    address: 127.0.0.1:0
    filters:
      - name: remote
        type: wasm
        url: http://127.0.0.1:${port}/edge.wasm
        sha256: "${sha}"
        configuration: go
        fetch_timeout_ms: 100
    routes:
      - match: { prefix: / }
        cluster: up
clusters:
  - name: up
    endpoints: [${up.address}]
`,
    { env: { WEIR_CACHE_DIR: cacheDir } },
  );
  try {
    const before = await fetch(weir.url('edge'));
    assert.equal(before.status, 503, 'no module yet: the failure policy answers');
    release();
    await weir.waitForLine((l) => l.msg === 'Applying the running config again');
    await weir.waitForLine((l) => l.msg === 'Config reloaded');
    let text = '';
    for (let i = 0; i < 50 && text !== 'x-edge=ok'; i++) {
      const res = await fetch(weir.url('edge'));
      text = await res.text();
      if (text !== 'x-edge=ok') await sleep(50);
    }
    assert.equal(text, 'x-edge=ok', 'the downloaded module serves without a manual reload');
    assert.ok(fs.existsSync(path.join(cacheDir, 'wasm', `${sha}.wasm`)), 'cached on disk for the next start');
  } finally {
    release();
    await weir.stop();
    await up.close();
    modules.close();
  }
});
