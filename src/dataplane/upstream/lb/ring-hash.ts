/** Consistent hashing on a ring of virtual nodes (Karger et al.), as Envoy's ring_hash policy. */
import type { Endpoint } from '../endpoint.ts';
import { BaseLoadBalancer, isCandidate, type LbOptions } from './load-balancer.ts';

/** The most points a ring holds (as Envoy's maximum ring size); larger rings are scaled down. */
export const MAX_RING_POINTS = 8 * 1024 * 1024;

/**
 * A 32-bit hash of a string: FNV-1a over its UTF-16 code units, then the murmur3 finaliser so that
 * similar keys ("10.0.0.1:80_1", "10.0.0.1:80_2") spread over the whole ring. Stable across processes and versions:
 * changing it moves every key.
 */
export function hashKey32(key: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < key.length; i++) {
    h ^= key.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

/**
 * Ring hash load balancer. Each endpoint owns `weight × ringPointsPerWeight` points (256 per unit of weight)
 * on a 32-bit ring, placed by hashing "address_i", so the ring depends only on the membership: the same key
 * lands on the same endpoint in every worker and after every reload. A pick hashes `ctx.hashKey` and walks
 * clockwise to the first point whose endpoint is a candidate: an unavailable or already tried endpoint is
 * skipped, so its keys (and only its keys) move to the next endpoint on the ring, and a retry gets the
 * next distinct endpoint. Without a hash key the starting point is random. A ring over
 * `MAX_RING_POINTS` is scaled down to fit, at the cost of that stability.
 */
export class RingHashLoadBalancer extends BaseLoadBalancer {
  /** Point hashes, ascending. */
  readonly #points: Uint32Array;
  /** Index into `endpoints` of the endpoint owning each point. */
  readonly #owners: Uint32Array;

  constructor(endpoints: readonly Endpoint[], opts: LbOptions = {}) {
    super(endpoints, opts);
    const eps = this.endpoints;
    let totalWeight = 0;
    for (const ep of eps) totalWeight += ep.weight;
    const perWeight = Math.min(opts.ringPointsPerWeight ?? 256, MAX_RING_POINTS / Math.max(totalWeight, 1));
    const points: { hash: number; owner: number }[] = [];
    for (let i = 0; i < eps.length; i++) {
      const n = Math.max(1, Math.round(eps[i].weight * perWeight));
      for (let j = 0; j < n; j++) points.push({ hash: hashKey32(`${eps[i].address}_${j}`), owner: i });
    }
    // Ties (rare) are broken by address so the ring does not depend on the endpoints' order.
    points.sort((a, b) => a.hash - b.hash || (eps[a.owner].address < eps[b.owner].address ? -1 : 1));
    this.#points = Uint32Array.from(points, (p) => p.hash);
    this.#owners = Uint32Array.from(points, (p) => p.owner);
  }

  /** The number of points on the ring. */
  get ringSize(): number {
    return this.#points.length;
  }

  protected choose(now: number, panic: boolean, tried: readonly Endpoint[] | null, key: string | undefined): Endpoint | null {
    const points = this.#points;
    const size = points.length;
    if (size === 0) return null;
    const h = key === undefined ? Math.floor(this.random() * 0x1_0000_0000) : hashKey32(key);
    // First point with hash >= h, wrapping to 0 past the end.
    let lo = 0;
    let hi = size;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (points[mid] < h) lo = mid + 1;
      else hi = mid;
    }
    const eps = this.endpoints;
    const owners = this.#owners;
    let lastOwner = -1;
    for (let k = 0; k < size; k++) {
      const owner = owners[(lo + k) % size];
      if (owner === lastOwner) continue;
      lastOwner = owner;
      if (isCandidate(eps[owner], now, panic, tried)) return eps[owner];
    }
    return null;
  }
}
