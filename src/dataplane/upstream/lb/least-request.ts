/** Least request by the power of two choices. */
import type { Endpoint } from '../endpoint.ts';
import { BaseLoadBalancer, weightedDraw } from './load-balancer.ts';

/**
 * Least request load balancer: draws two candidates at random, each with a probability proportional to
 * its weight, and picks the one with fewer `activeRequests` (the first drawn on a tie). Idle endpoints
 * therefore share traffic by weight, and a loaded endpoint loses to almost any other; the two draws
 * avoid the herd that "always the global minimum" causes when several workers see the same counts.
 */
export class LeastRequestLoadBalancer extends BaseLoadBalancer {
  protected choose(now: number, panic: boolean, tried: readonly Endpoint[] | null): Endpoint | null {
    const first = weightedDraw(this.endpoints, this.random, now, panic, tried);
    if (first === null) return null;
    const second = weightedDraw(this.endpoints, this.random, now, panic, tried)!;
    return second.activeRequests < first.activeRequests ? second : first;
  }
}
