/** Test-only helpers for the upstream modules: a seeded random source and a manual clock. */

/** A deterministic random source in [0, 1) (mulberry32) for tests; the same seed yields the same sequence. */
export function seededRandomForTest(seed: number): () => number {
  let s = seed >>> 0;
  return function seededRandom(): number {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** A random source that returns `values` in turn (cycling) for tests that script each draw. */
export function scriptedRandomForTest(values: readonly number[]): () => number {
  let i = 0;
  return function scriptedRandom(): number {
    return values[i++ % values.length];
  };
}

/** A clock that only moves when the test says so. */
export interface ManualClock {
  (): number;
  /** Moves the clock forward by `ms`. */
  advance(ms: number): void;
  /** Sets the clock to `ms`. */
  set(ms: number): void;
}

/** Returns a manual clock starting at `start` (ms). */
export function manualClockForTest(start = 0): ManualClock {
  let now = start;
  const clock = (() => now) as ManualClock;
  clock.advance = (ms: number) => {
    now += ms;
  };
  clock.set = (ms: number) => {
    now = ms;
  };
  return clock;
}
