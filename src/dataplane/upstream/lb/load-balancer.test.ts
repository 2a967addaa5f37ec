import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Endpoint } from '../endpoint.ts';
import { createLoadBalancer } from './create-load-balancer.ts';
import type { LbPolicy } from './load-balancer.ts';
import { loadBalancerSuite } from './load-balancer.suite.ts';

const POLICIES: LbPolicy[] = ['round_robin', 'least_request', 'random', 'ring_hash'];

for (const policy of POLICIES) {
  loadBalancerSuite(policy, (endpoints, opts) => createLoadBalancer(policy, endpoints, opts));
}

test('createLoadBalancer() rejects an unknown policy by name', () => {
  assert.throws(() => createLoadBalancer('fastest' as LbPolicy, [new Endpoint('127.0.0.1:80')]), /Cannot create load balancer "fastest"/);
});
