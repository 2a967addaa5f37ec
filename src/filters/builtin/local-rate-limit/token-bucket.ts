/** A token bucket: `capacity` tokens, refilled by `tokensPerFill` every `fillIntervalMs`, at whole intervals. */
export class TokenBucket {
  readonly capacity: number;
  readonly tokensPerFill: number;
  readonly fillIntervalMs: number;
  #tokens: number;
  #lastFill: number;

  constructor(opts: { capacity: number; tokensPerFill: number; fillIntervalMs: number; now: number }) {
    this.capacity = opts.capacity;
    this.tokensPerFill = opts.tokensPerFill;
    this.fillIntervalMs = opts.fillIntervalMs;
    this.#tokens = opts.capacity;
    this.#lastFill = opts.now;
  }

  /** Takes one token if there is one; returns whether it did. */
  take(now: number): boolean {
    this.#refill(now);
    if (this.#tokens < 1) return false;
    this.#tokens--;
    return true;
  }

  /** Tokens left at `now`. */
  remaining(now: number): number {
    this.#refill(now);
    return this.#tokens;
  }

  /** Milliseconds until the next refill at `now`. */
  resetIn(now: number): number {
    this.#refill(now);
    return this.fillIntervalMs - (now - this.#lastFill);
  }

  #refill(now: number): void {
    const intervals = Math.floor((now - this.#lastFill) / this.fillIntervalMs);
    if (intervals <= 0) return;
    this.#tokens = Math.min(this.capacity, this.#tokens + intervals * this.tokensPerFill);
    this.#lastFill += intervals * this.fillIntervalMs;
  }
}
