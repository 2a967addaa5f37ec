/** Smooth weighted round robin (the nginx algorithm): over any run of picks, each endpoint's share follows its weight, interleaved. */
import type { Endpoint } from '../endpoint.ts';
import { BaseLoadBalancer, isCandidate, type LbOptions } from './load-balancer.ts';

/**
 * Round robin load balancer. Each pick adds every candidate's weight to its running score, takes the
 * highest score and subtracts the candidates' total weight from it, so weights 5:1:1 yield
 * a a b a c a a rather than a a a a a b c. The scores start at a random offset (from the injected
 * randomness) so that workers and reloads do not all send their first request to the same endpoint.
 */
export class RoundRobinLoadBalancer extends BaseLoadBalancer {
  readonly #score: Float64Array;

  constructor(endpoints: readonly Endpoint[], opts: LbOptions = {}) {
    super(endpoints, opts);
    this.#score = new Float64Array(this.endpoints.length);
    for (let i = 0; i < this.#score.length; i++) this.#score[i] = this.random() * this.endpoints[i].weight;
  }

  protected choose(now: number, panic: boolean, tried: readonly Endpoint[] | null): Endpoint | null {
    const eps = this.endpoints;
    const score = this.#score;
    let best = -1;
    let total = 0;
    for (let i = 0; i < eps.length; i++) {
      if (!isCandidate(eps[i], now, panic, tried)) continue;
      score[i] += eps[i].weight;
      total += eps[i].weight;
      if (best === -1 || score[i] > score[best]) best = i;
    }
    if (best === -1) return null;
    score[best] -= total;
    return eps[best];
  }
}
