/**
 * The timings weir reports (access log, metrics) with the clock read once per I/O event (src/core/clock.ts): a
 * timestamp taken after a slow filter must come after the filter's work, and one taken in a later event must be
 * that event's, never an earlier one's.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startWeir, type Weir } from '../support/weir.ts';
import { startUpstream, type Upstream } from '../support/upstream.ts';

const UPSTREAM_DELAY_MS = 150;
let slow: Upstream;
let weir: Weir;

before(async () => {
  slow = await startUpstream((_req, res) => {
    setTimeout(() => {
      res.writeHead(200, { 'content-type': 'text/plain', 'content-length': '4' });
      res.end('slow');
    }, UPSTREAM_DELAY_MS);
  });
  weir = await startWeir(`
listeners:
  - name: edge
    address: 127.0.0.1:0
    routes:
      - match: { prefix: /spin }
        cluster: slow
        filters:
          - name: spin
            type: lua
            instruction_limit: 0
            source: |
              function envoy_on_request(handle)
                local n = tonumber(handle:headers():get("x-spin") or "0")
                local x = 0
                for i = 1, n do x = x + i % 7 end
                handle:headers():add("x-spun", tostring(x))
              end
      - match: { prefix: / }
        cluster: slow
clusters:
  - name: slow
    endpoints: [${slow.address}]
`);
});

after(async () => {
  await weir?.stop();
  await slow?.close();
});

test('a slow upstream shows in duration_ms and upstream_ms of the access log', async () => {
  const t0 = performance.now();
  const res = await fetch(`${weir.url('edge')}/plain`);
  assert.equal(await res.text(), 'slow');
  const elapsed = performance.now() - t0;
  const line = await weir.waitForLine((l) => l.msg === 'access' && l.path === '/plain');
  assert.ok(line.upstream_ms >= UPSTREAM_DELAY_MS - 1, `upstream_ms ${line.upstream_ms} covers the upstream's ${UPSTREAM_DELAY_MS} ms`);
  assert.ok(line.duration_ms >= line.upstream_ms, `duration_ms ${line.duration_ms} >= upstream_ms ${line.upstream_ms}`);
  assert.ok(line.duration_ms <= elapsed + 1, `duration_ms ${line.duration_ms} within what the client waited (${elapsed.toFixed(1)} ms)`);
});

test("a slow filter's time is counted as the filter's, not the upstream's", async () => {
  // Enough iterations for tens of milliseconds in the Lua VM on any machine that runs the suite.
  const res = await fetch(`${weir.url('edge')}/spin`, { headers: { 'x-spin': '3000000' } });
  assert.equal(await res.text(), 'slow');
  const line = await weir.waitForLine((l) => l.msg === 'access' && l.path === '/spin');
  assert.ok(line.filter_ms >= 20, `the loop took a while (filter_ms ${line.filter_ms})`);
  assert.ok(line.upstream_ms >= UPSTREAM_DELAY_MS - 1, `upstream_ms ${line.upstream_ms}`);
  // The upstream attempt starts after the filter ran: its time does not include the filter's.
  assert.ok(
    line.upstream_ms < UPSTREAM_DELAY_MS + line.filter_ms / 2,
    `upstream_ms ${line.upstream_ms} excludes the filter's ${line.filter_ms} ms`,
  );
  assert.ok(line.duration_ms >= line.upstream_ms + line.filter_ms - 1, `duration_ms ${line.duration_ms} covers both`);
});

test('requests in a row each get their own start time, and the Date header moves on', async () => {
  const a = await fetch(`${weir.url('edge')}/plain-a`);
  await a.text();
  await new Promise((r) => setTimeout(r, 1100));
  const b = await fetch(`${weir.url('edge')}/plain-b`);
  await b.text();
  const la = await weir.waitForLine((l) => l.msg === 'access' && l.path === '/plain-a');
  const lb = await weir.waitForLine((l) => l.msg === 'access' && l.path === '/plain-b');
  assert.ok(Date.parse(lb.time) - Date.parse(la.time) >= 1000, `log times ${la.time} and ${lb.time}`);
  assert.notEqual(a.headers.get('date'), b.headers.get('date'));
  assert.ok(lb.duration_ms < UPSTREAM_DELAY_MS + 500, `the second request's duration (${lb.duration_ms} ms) does not start at the first's`);
});
