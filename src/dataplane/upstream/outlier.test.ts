import assert from 'node:assert/strict';
import { EventEmitter, once } from 'node:events';
import { test } from 'node:test';
import { Metrics } from '../../telemetry/metrics.ts';
import { Endpoint, type AttemptResult } from './endpoint.ts';
import { OUTLIER_DEFAULTS, OutlierDetector, outlierMetrics, type OutlierConfig, type OutlierEvent } from './outlier.ts';
import { manualClockForTest } from './testing.ts';

function setup(n: number, config: Partial<OutlierConfig> = {}) {
  const clock = manualClockForTest(100_000);
  const eps = Array.from({ length: n }, (_, i) => new Endpoint(`10.0.0.${i + 1}:80`, { clock }));
  const events: OutlierEvent[] = [];
  const metrics = outlierMetrics(new Metrics(), 'api');
  const od = new OutlierDetector(eps, { max_ejection_percent: 100, ...config }, { clock, metrics, onChange: (e) => events.push(e) });
  return { clock, eps, od, events, metrics };
}

function report(od: OutlierDetector, ep: Endpoint, result: AttemptResult, times: number, status?: number): void {
  for (let i = 0; i < times; i++) od.onResult(ep, result, status);
}

test('OutlierDetector fills the keys the config leaves out with Envoy defaults', () => {
  const od = new OutlierDetector([], { consecutive_5xx: 3 });
  assert.deepEqual(od.config, { ...OUTLIER_DEFAULTS, consecutive_5xx: 3 });
});

test('outlier ejects an endpoint after consecutive_5xx 5xx responses in a row, not before', () => {
  const { od, eps, clock, events, metrics } = setup(2, { consecutive_5xx: 3, base_ejection_time: 30_000 });
  report(od, eps[0], '5xx', 2, 500);
  assert.equal(eps[0].available, true);
  od.onResult(eps[0], '5xx', 500);
  assert.equal(eps[0].available, false);
  assert.equal(eps[0].ejectedUntil, clock() + 30_000);
  assert.equal(eps[0].stats.ejections, 1);
  assert.deepEqual(events, [{ type: 'eject', endpoint: eps[0], reason: 'consecutive_5xx', until: clock() + 30_000, ejections: 1 }]);
  assert.equal(metrics.ejectedConsecutive5xx.value, 1);
  assert.equal(metrics.active.value, 1);
  assert.equal(eps[1].available, true);
});

test('outlier resets the consecutive count on a success', () => {
  const { od, eps } = setup(1, { consecutive_5xx: 3 });
  report(od, eps[0], '5xx', 2, 500);
  od.onResult(eps[0], 'success');
  report(od, eps[0], '5xx', 2, 500);
  assert.equal(eps[0].available, true);
});

test('outlier counts connect failures, resets and timeouts as 5xx', () => {
  const { od, eps } = setup(1, { consecutive_5xx: 3, consecutive_gateway_failure: 0 });
  od.onResult(eps[0], 'connect-failure');
  od.onResult(eps[0], 'reset');
  od.onResult(eps[0], 'timeout');
  assert.equal(eps[0].available, false);
});

test('outlier ejects on consecutive gateway failures (502/503/504 and local failures) and a 500 breaks the streak', () => {
  const { od, eps, events, metrics } = setup(2, { consecutive_5xx: 0, consecutive_gateway_failure: 3 });
  od.onResult(eps[0], '5xx', 503);
  od.onResult(eps[0], '5xx', 502);
  od.onResult(eps[0], '5xx', 500);
  od.onResult(eps[0], '5xx', 504);
  od.onResult(eps[0], 'connect-failure');
  assert.equal(eps[0].available, true);
  od.onResult(eps[0], 'timeout');
  assert.equal(eps[0].available, false);
  assert.equal(events[0].type === 'eject' && events[0].reason, 'consecutive_gateway_failure');
  assert.equal(metrics.ejectedConsecutiveGatewayFailure.value, 1);
  report(od, eps[1], '5xx', 10);
  assert.equal(eps[1].available, true, 'a 5xx without a status is not a gateway failure');
});

test('outlier ejection time is base × ejections in a row, capped at max_ejection_time', () => {
  const { od, eps, clock } = setup(1, { consecutive_5xx: 1, base_ejection_time: 10_000, max_ejection_time: 25_000, interval: 1_000_000 });
  const durations: number[] = [];
  for (let i = 0; i < 4; i++) {
    od.onResult(eps[0], '5xx');
    durations.push(eps[0].ejectedUntil - clock());
    clock.set(eps[0].ejectedUntil);
  }
  assert.deepEqual(durations, [10_000, 20_000, 25_000, 25_000]);
});

test('outlier lowers the ejection multiplier by one per interval the endpoint stays un-ejected', () => {
  const { od, eps, clock } = setup(1, { consecutive_5xx: 1, base_ejection_time: 10_000, interval: 5_000 });
  od.onResult(eps[0], '5xx');
  clock.set(eps[0].ejectedUntil);
  od.onResult(eps[0], '5xx');
  assert.equal(od.multiplierOf(eps[0]), 2);
  clock.set(eps[0].ejectedUntil);
  clock.advance(4_999);
  assert.equal(od.multiplierOf(eps[0]), 2);
  clock.advance(1);
  assert.equal(od.multiplierOf(eps[0]), 1);
  od.onResult(eps[0], '5xx');
  assert.equal(eps[0].ejectedUntil - clock(), 20_000);
});

test('outlier returns an endpoint to service when its ejection time passes, and sweep() reports it', () => {
  const { od, eps, clock, events, metrics } = setup(1, { consecutive_5xx: 1, base_ejection_time: 10_000 });
  od.onResult(eps[0], '5xx');
  clock.advance(9_999);
  od.sweep();
  assert.equal(eps[0].available, false);
  clock.advance(1);
  assert.equal(eps[0].available, true, 'the load balancers see the end of the ejection without a sweep');
  od.sweep();
  assert.equal(eps[0].ejectedUntil, 0);
  assert.deepEqual(events.at(-1), { type: 'uneject', endpoint: eps[0] });
  assert.equal(metrics.active.value, 0);
});

test('outlier ignores results reported while an endpoint is ejected', () => {
  const { od, eps, clock } = setup(1, { consecutive_5xx: 2, base_ejection_time: 1_000 });
  report(od, eps[0], '5xx', 2);
  report(od, eps[0], '5xx', 5);
  assert.equal(eps[0].stats.ejections, 1);
  clock.advance(1_000);
  od.onResult(eps[0], '5xx');
  assert.equal(eps[0].available, true, 'the count restarted at the ejection');
});

test('outlier never ejects more than max_ejection_percent of the cluster at once, and counts the refusals', () => {
  const { od, eps, metrics, clock } = setup(10, { consecutive_5xx: 1, max_ejection_percent: 20, base_ejection_time: 1_000 });
  for (const ep of eps) od.onResult(ep, '5xx');
  assert.equal(od.ejectedCount, 2);
  assert.equal(eps.filter((e) => !e.available).length, 2);
  assert.equal(metrics.overflow.value, 8);
  clock.advance(1_000);
  od.onResult(eps[9], '5xx');
  assert.equal(eps[9].available, false, 'room frees up when ejections end');
});

test('outlier always allows one ejection, even when one endpoint is more than max_ejection_percent', () => {
  const { od, eps } = setup(3, { consecutive_5xx: 1, max_ejection_percent: 10 });
  for (const ep of eps) od.onResult(ep, '5xx');
  assert.equal(od.ejectedCount, 1);
  assert.equal(eps[0].available, false);
});

test('outlier never ejects with max_ejection_percent 0', () => {
  const { od, eps } = setup(3, { consecutive_5xx: 1, max_ejection_percent: 0 });
  for (const ep of eps) od.onResult(ep, '5xx');
  assert.equal(od.ejectedCount, 0);
});

test('outlier uneject() returns an ejected endpoint to service at once', () => {
  const { od, eps, events } = setup(1, { consecutive_5xx: 1 });
  od.onResult(eps[0], '5xx');
  od.uneject(eps[0]);
  assert.equal(eps[0].available, true);
  assert.equal(eps[0].ejectedUntil, 0);
  assert.equal(events.at(-1)?.type, 'uneject');
});

test('outlier ignores endpoints of other clusters', () => {
  const { od } = setup(1, { consecutive_5xx: 1 });
  const stranger = new Endpoint('10.9.9.9:80');
  od.onResult(stranger, '5xx');
  assert.equal(stranger.ejectedUntil, 0);
});

test('outlier start() sweeps on a timer until stop()', async () => {
  const clock = manualClockForTest(0);
  const ep = new Endpoint('10.0.0.1:80', { clock });
  const bus = new EventEmitter();
  const od = new OutlierDetector([ep], { consecutive_5xx: 1, interval: 1, base_ejection_time: 1_000 }, { clock, onChange: (e) => bus.emit(e.type) });
  od.onResult(ep, '5xx');
  clock.advance(1_000);
  const unejected = once(bus, 'uneject');
  od.start();
  od.start();
  await unejected;
  od.stop();
  assert.equal(ep.ejectedUntil, 0);
});
