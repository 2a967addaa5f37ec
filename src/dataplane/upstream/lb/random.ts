/** Weighted random choice. */
import type { Endpoint } from '../endpoint.ts';
import { BaseLoadBalancer, weightedDraw } from './load-balancer.ts';

/** Random load balancer: each pick draws a candidate with a probability proportional to its weight, using the injected randomness. */
export class RandomLoadBalancer extends BaseLoadBalancer {
  protected choose(now: number, panic: boolean, tried: readonly Endpoint[] | null): Endpoint | null {
    return weightedDraw(this.endpoints, this.random, now, panic, tried);
  }
}
