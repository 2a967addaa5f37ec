/**
 * The data plane's clock, read once per I/O event as nginx reads its time once per event loop iteration.
 *
 * A clock read costs about 100 ns here (performance.now or Date.now through V8), and a proxied request used to
 * make eleven (eight performance.now, three Date.now): the stream's start, the upstream attempt, its deadline, the
 * response head, the idle timers, the Date header, the pool's idle mark, the metrics. Now it makes two, one per
 * event. The callbacks that start the work of a request (a request head parsed, an upstream read) are I/O events
 * (the coalescer's `ioEnter`/`ioExit` call `enterEvent`/`leaveEvent`): the clock is read once when one begins, and
 * `monoNow` and `wallNow` return that reading until it ends. Outside such a callback (timers, promise
 * continuations, tests) they read the clock itself, so a value is never older than the synchronous run that asked.
 *
 * The filter chain times each hook with performance.now itself and moves the event's time to the end of the hook
 * (`advanceClock`), so that a slow filter does not make later timestamps of the same event look earlier than they are.
 */
import { performance } from 'node:perf_hooks';

let depth = 0;
let mono = 0;
/** The wall-clock time of the current event (ms), 0 until asked for. */
let wall = 0;

/** Monotonic milliseconds (performance.now()), as read at the start of the current event. */
export function monoNow(): number {
  return depth > 0 ? mono : performance.now();
}

/** Date.now() - performance.now(), read again once the monotonic clock moved on by WALL_REFRESH_MS. */
let wallOffset = 0;
let wallOffsetAt = Number.NEGATIVE_INFINITY;
const WALL_REFRESH_MS = 100;

/**
 * Whole milliseconds since the epoch. Within an event: the event's monotonic reading plus the wall clock's offset,
 * which is read again every 100 ms (so a step of the system clock shows within 100 ms; slewing moves it by
 * microseconds in that time); outside one, Date.now().
 */
export function wallNow(): number {
  if (depth === 0) return Date.now();
  if (wall === 0) {
    if (mono - wallOffsetAt >= WALL_REFRESH_MS || mono < wallOffsetAt) {
      wallOffset = Date.now() - performance.now();
      wallOffsetAt = mono;
    }
    wall = Math.floor(mono + wallOffset);
  }
  return wall;
}

/** Moves the current event's time to `t` (a performance.now() just read), as after a filter hook. */
export function advanceClock(t: number): void {
  if (depth > 0) {
    mono = t;
    wall = 0;
  }
}

/** An I/O event begins (the outermost call reads the clock); every call is followed by one `leaveEvent`. */
export function enterEvent(): void {
  if (depth++ === 0) {
    mono = performance.now();
    wall = 0;
  }
}

/** Ends what `enterEvent` began. */
export function leaveEvent(): void {
  if (depth > 0) depth--;
}
