/** The one place that maps a policy name to its implementation. */
import type { Endpoint } from '../endpoint.ts';
import type { LbOptions, LbPolicy, LoadBalancer } from './load-balancer.ts';
import { LeastRequestLoadBalancer } from './least-request.ts';
import { RandomLoadBalancer } from './random.ts';
import { RingHashLoadBalancer } from './ring-hash.ts';
import { RoundRobinLoadBalancer } from './round-robin.ts';

/**
 * Builds the load balancer a cluster's `lb` key names, over `endpoints` (copied: build a new one when the
 * membership changes). Throws an error naming the policy when it is unknown.
 */
export function createLoadBalancer(policy: LbPolicy, endpoints: readonly Endpoint[], opts: LbOptions = {}): LoadBalancer {
  switch (policy) {
    case 'round_robin':
      return new RoundRobinLoadBalancer(endpoints, opts);
    case 'least_request':
      return new LeastRequestLoadBalancer(endpoints, opts);
    case 'random':
      return new RandomLoadBalancer(endpoints, opts);
    case 'ring_hash':
      return new RingHashLoadBalancer(endpoints, opts);
    default:
      throw new Error(`Cannot create load balancer "${String(policy)}": expected round_robin, least_request, random or ring_hash`);
  }
}
