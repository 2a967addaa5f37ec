import assert from 'node:assert/strict';
import { test } from 'node:test';
import { parseSeconds } from './options.ts';
import { median, renderFilterBudgets } from './report.ts';
import { parseWrkOutput } from './wrk.ts';

const sample = `Running 2s test @ http://127.0.0.1:18081/
  1 threads and 64 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency   745.50us  350.12us  12.04ms   91.20%
    Req/Sec    85.01k     3.10k   88.90k    80.00%
  Latency Distribution
     50%  652.00us
     75%  801.00us
     90%    1.02ms
     99%    1.59ms
  169180 requests in 2.00s, 25.81MB read
  Socket errors: connect 0, read 2, write 0, timeout 1
  Non-2xx or 3xx responses: 7
Requests/sec:  84584.12
Transfer/sec:     12.90MB
`;

test('parseWrkOutput() reads requests, rate, p50, p99 in µs and counts failures', () => {
  assert.deepEqual(parseWrkOutput(sample), {
    requests: 169180,
    seconds: 2,
    requestsPerSecond: 84584.12,
    p50: 652,
    p99: 1590,
    non2xx: 7,
    socketErrors: 3,
  });
});

test('parseWrkOutput() rejects output without a latency distribution', () => {
  assert.throws(() => parseWrkOutput(sample.replace(/ {5}99%.*\n/, '')), /Cannot parse wrk output/);
});

test('median() takes the middle value, or the mean of the middle two', () => {
  assert.equal(median([3, 1, 2]), 2);
  assert.equal(median([4, 1, 3, 2]), 2.5);
});

test('parseSeconds() accepts s, ms and m and rejects other units', () => {
  assert.equal(parseSeconds('10s'), 10);
  assert.equal(parseSeconds('500ms'), 0.5);
  assert.equal(parseSeconds('1m'), 60);
  assert.throws(() => parseSeconds('10h'), /Cannot parse duration "10h"/);
});

test('renderFilterBudgets() gives each filter scenario its cost over passthrough against the budgets of issues 3 and 4', () => {
  const text = renderFilterBudgets({
    rounds: 5, seconds: 5,
    medians: [
      { name: 'passthrough', cpuPerRequest: 20, userPerRequest: 11 },
      { name: 'headers', cpuPerRequest: 20.5, userPerRequest: 11.2 },
      { name: 'lua-headers', cpuPerRequest: 22.5, userPerRequest: 13 },
      { name: 'wasm-headers', cpuPerRequest: 23, userPerRequest: 13.5 },
    ],
  });
  assert.match(text, /^- passthrough: 20\.0 µs CPU per request \(user 11\.0\)$/m);
  assert.match(text, /^- headers: 20\.5 µs, \+0\.5 over passthrough \(user \+0\.2\), the chain's own cost/m);
  assert.match(text, /^- lua-headers: 22\.5 µs, \+2\.5 over passthrough .*\(issue 3 goal ≤ 2 µs\): does NOT hold$/m);
  assert.match(text, /^- wasm-headers: 23\.0 µs, \+3\.0 over passthrough .*\(issue 4 goal ≤ 3 µs\): holds$/m);
  assert.equal(renderFilterBudgets({ skipped: 'wrk is missing' }), '- NOT MEASURED (wrk is missing)');
});
