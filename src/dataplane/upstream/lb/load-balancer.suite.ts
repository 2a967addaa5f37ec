/**
 * The contract every load balancing policy keeps, as one suite that `load-balancer.test.ts` runs against
 * each implementation. Per-policy behaviour (distribution shape, ring stability) lives in each policy's tests.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { Endpoint } from '../endpoint.ts';
import { Metrics } from '../../../telemetry/metrics.ts';
import { manualClockForTest, seededRandomForTest, type ManualClock } from '../testing.ts';
import { loadBalancerMetrics, type LbContext, type LbOptions, type LoadBalancer } from './load-balancer.ts';

/** Builds the load balancer under test. */
export type LoadBalancerMaker = (endpoints: Endpoint[], opts: LbOptions) => LoadBalancer;

function cluster(clock: ManualClock, ...specs: (string | [string, number])[]): Endpoint[] {
  return specs.map((s) => (typeof s === 'string' ? new Endpoint(s, { clock }) : new Endpoint(s[0], { weight: s[1], clock })));
}

function ctx(i: number, tried: readonly Endpoint[] | null = null, overrideHost?: string): LbContext {
  return { hashKey: `key-${i}`, tried, overrideHost };
}

/** Every endpoint a request would try in order: picks with the previous picks as `tried` until null. */
function fallbackOrder(lb: LoadBalancer, i: number, limit = 20): Endpoint[] {
  const tried: Endpoint[] = [];
  for (let n = 0; n < limit; n++) {
    const ep = lb.pick(ctx(i, tried));
    if (ep === null) return tried;
    tried.push(ep);
  }
  throw new Error(`Load balancer kept picking after ${limit} endpoints`);
}

function addresses(eps: readonly (Endpoint | null)[]): (string | null)[] {
  return eps.map((e) => (e === null ? null : e.address));
}

/** Runs the shared load balancer contract against `make`, naming the tests after `policy`. */
export function loadBalancerSuite(policy: string, make: LoadBalancerMaker): void {
  describe(`${policy}: the load balancer contract`, () => {
    const setup = (...specs: (string | [string, number])[]) => {
      const clock = manualClockForTest(1_000);
      const eps = cluster(clock, ...specs);
      return { clock, eps, lb: make(eps, { clock, random: seededRandomForTest(7) }) };
    };

    test(`${policy}() returns null for an empty cluster`, () => {
      const { lb } = setup();
      assert.equal(lb.pick(ctx(1)), null);
      assert.equal(lb.pick({ hashKey: undefined, tried: null }), null);
    });

    test(`${policy}() picks only the cluster's endpoints`, () => {
      const { lb, eps } = setup('10.0.0.1:80', '10.0.0.2:80', '10.0.0.3:80');
      const seen = new Set<string>();
      for (let i = 0; i < 300; i++) seen.add(lb.pick(ctx(i))!.address);
      assert.deepEqual([...seen].sort(), addresses(eps));
    });

    test(`${policy}() skips unhealthy and ejected endpoints`, () => {
      const { lb, eps, clock } = setup('10.0.0.1:80', '10.0.0.2:80', '10.0.0.3:80', '10.0.0.4:80');
      eps[1].healthy = false;
      eps[2].ejectedUntil = clock() + 5_000;
      const seen = new Set<string | undefined>();
      for (let i = 0; i < 400; i++) seen.add(lb.pick(ctx(i))?.address);
      assert.deepEqual([...seen].sort(), ['10.0.0.1:80', '10.0.0.4:80']);
    });

    test(`${policy}() picks an ejected endpoint again once the clock passes its ejection`, () => {
      const { lb, eps, clock } = setup('10.0.0.1:80', '10.0.0.2:80');
      eps[1].ejectedUntil = 2_000;
      clock.set(1_999);
      for (let i = 0; i < 50; i++) assert.equal(lb.pick(ctx(i))?.address, '10.0.0.1:80');
      clock.set(2_000);
      eps[0].healthy = false;
      for (let i = 0; i < 50; i++) assert.equal(lb.pick(ctx(i))?.address, '10.0.0.2:80');
    });

    test(`${policy}() never picks a tried endpoint and yields each available endpoint once, then null`, () => {
      const { lb, eps } = setup('10.0.0.1:80', '10.0.0.2:80', '10.0.0.3:80', '10.0.0.4:80', '10.0.0.5:80');
      eps[3].healthy = false;
      for (let i = 0; i < 30; i++) {
        const order = addresses(fallbackOrder(lb, i));
        assert.equal(order.length, 4, `key-${i}: ${order.join(', ')}`);
        assert.equal(new Set(order).size, 4);
        assert.ok(!order.includes('10.0.0.4:80'));
      }
    });

    test(`${policy}() treats an empty tried list like null`, () => {
      const { lb } = setup('10.0.0.1:80');
      assert.equal(lb.pick(ctx(1, []))?.address, '10.0.0.1:80');
    });

    test(`${policy}() keeps to available endpoints when exactly half are available`, () => {
      const { lb, eps } = setup('10.0.0.1:80', '10.0.0.2:80', '10.0.0.3:80', '10.0.0.4:80');
      eps[0].healthy = false;
      eps[1].healthy = false;
      for (let i = 0; i < 30; i++) {
        assert.deepEqual(addresses(fallbackOrder(lb, i)).sort(), ['10.0.0.3:80', '10.0.0.4:80']);
      }
    });

    test(`${policy}() picks among all endpoints in panic mode (under 50% available)`, () => {
      const { lb, eps } = setup('10.0.0.1:80', '10.0.0.2:80', '10.0.0.3:80', '10.0.0.4:80');
      eps[0].healthy = false;
      eps[1].healthy = false;
      eps[2].healthy = false;
      const seen = new Set<string>();
      for (let i = 0; i < 400; i++) seen.add(lb.pick(ctx(i))!.address);
      assert.equal(seen.size, 4);
      assert.equal(fallbackOrder(lb, 1).length, 4);
    });

    test(`${policy}() still answers when every endpoint is unavailable (panic), and null with the panic threshold at 0`, () => {
      const clock = manualClockForTest(1_000);
      const eps = cluster(clock, '10.0.0.1:80', '10.0.0.2:80');
      for (const ep of eps) ep.healthy = false;
      assert.notEqual(make(eps, { clock, random: seededRandomForTest(1) }).pick(ctx(1)), null);
      assert.equal(make(eps, { clock, random: seededRandomForTest(1), panicThreshold: 0 }).pick(ctx(1)), null);
    });

    test(`${policy}() counts picks made in panic mode`, () => {
      const clock = manualClockForTest(1_000);
      const eps = cluster(clock, '10.0.0.1:80', '10.0.0.2:80', '10.0.0.3:80');
      const metrics = loadBalancerMetrics(new Metrics(), 'api');
      const lb = make(eps, { clock, random: seededRandomForTest(1), metrics });
      lb.pick(ctx(1));
      eps[1].healthy = false;
      lb.pick(ctx(2));
      assert.equal(metrics.panic.value, 0);
      eps[2].healthy = false;
      lb.pick(ctx(3));
      assert.equal(metrics.panic.value, 1);
    });

    test(`${policy}() shares traffic by weight`, () => {
      const { lb } = setup(['10.0.0.1:80', 3], ['10.0.0.2:80', 1]);
      let heavy = 0;
      const n = 4_000;
      for (let i = 0; i < n; i++) if (lb.pick(ctx(i))!.address === '10.0.0.1:80') heavy++;
      const share = heavy / n;
      assert.ok(share > 0.68 && share < 0.82, `weight 3 of 4 got ${share}`);
    });

    test(`${policy}() picks the override host when it is in the cluster and available`, () => {
      const { lb } = setup('10.0.0.1:80', '10.0.0.2:80', '10.0.0.3:80');
      for (let i = 0; i < 20; i++) assert.equal(lb.pick(ctx(i, null, '10.0.0.2:80'))?.address, '10.0.0.2:80');
    });

    test(`${policy}() ignores an override host that is absent, unavailable or tried`, () => {
      const { lb, eps } = setup('10.0.0.1:80', '10.0.0.2:80', '10.0.0.3:80');
      assert.notEqual(lb.pick(ctx(1, null, '10.9.9.9:80')), null);
      eps[1].healthy = false;
      for (let i = 0; i < 20; i++) assert.notEqual(lb.pick(ctx(i, null, '10.0.0.2:80'))?.address, '10.0.0.2:80');
      eps[1].healthy = true;
      assert.notEqual(lb.pick(ctx(1, [eps[1]], '10.0.0.2:80'))?.address, '10.0.0.2:80');
    });

    test(`${policy}() is not affected by later changes to the endpoint array it was given`, () => {
      const clock = manualClockForTest(1_000);
      const eps = cluster(clock, '10.0.0.1:80');
      const lb = make(eps, { clock, random: seededRandomForTest(3) });
      eps.push(new Endpoint('10.0.0.2:80', { clock }));
      for (let i = 0; i < 50; i++) assert.equal(lb.pick(ctx(i))?.address, '10.0.0.1:80');
    });
  });
}
