/**
 * A worker thread that dies (here: a module filter that throws from a timer, outside any hook, which no filter
 * guard can catch) is replaced with a new one running the same config, as an nginx master starts a new worker:
 * the proxy keeps serving instead of exiting.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startWeir, type Weir } from '../support/weir.ts';
import { startUpstream, type Upstream } from '../support/upstream.ts';
import { metric } from '../support/metrics.ts';

let up: Upstream;
let weir: Weir;

const files = {
  'filters/crash.ts': `
export default function createCrash() {
  return {
    onRequestHeaders(headers) {
      if (headers.get(':path') === '/crash') setImmediate(() => { throw new Error('thrown from a filter timer'); });
    },
  };
}
`,
};

before(async () => {
  up = await startUpstream((_req, res) => res.end('up'));
  weir = await startWeir(
    `
listeners:
  - name: edge
    address: 127.0.0.1:0
    filters:
      - name: crash
        type: module
        file: filters/crash.ts
    routes:
      - match: { prefix: / }
        cluster: up
clusters:
  - name: up
    endpoints: [${up.address}]
`,
    { files },
  );
});

after(async () => {
  await weir?.stop();
  await up?.close();
});

/** GETs `path` until it answers 200, for up to `ms`; returns how many tries it took. */
async function until200(path: string, ms: number): Promise<number> {
  const deadline = Date.now() + ms;
  for (let tries = 1; ; tries++) {
    try {
      const res = await fetch(`${weir.url('edge')}${path}`);
      await res.text();
      if (res.status === 200) return tries;
    } catch {
      // The worker is gone and the new one not listening yet: the connection is refused or reset.
    }
    if (Date.now() > deadline) throw new Error(`GET ${path} did not answer 200 within ${ms} ms`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

test('a worker thread that dies is replaced with one running the same config; weir goes on serving', async () => {
  assert.equal((await fetch(`${weir.url('edge')}/`)).status, 200);
  assert.match(await (await fetch(`${weir.admin}/metrics`)).text(), /^weir_worker_restarts_total 0$/m, 'the counter is there before any restart');
  for (let round = 1; round <= 2; round++) {
    await fetch(`${weir.url('edge')}/crash`).then((r) => r.text()).catch(() => undefined);
    await weir.waitForLine((l) => l.msg === 'Worker thread exited; starting a new one', 5000);
    await weir.waitForLine((l) => l.msg === 'Worker thread started again' && l.version === 1, 10000);
    await until200('/', 10000);
    assert.equal(weir.process.exitCode, null, 'weir is still running');
    assert.equal(await metric(weir.admin, 'weir_worker_restarts_total'), round);
  }
  const exits = weir.lines().filter((l) => l.msg === 'Worker thread exited; starting a new one');
  assert.equal(exits.length, 2);
  assert.equal(exits[0].worker, 0);
});
