/**
 * The per-worker cache of Lua states, keyed by a hash of the script's name, text and limits. A config reload that
 * keeps a script gets the same state (no recompilation, globals kept); a state no snapshot uses any more is retired
 * and closes when its last in-flight request ends.
 */
import { createHash } from 'node:crypto';
import type { LogLevel } from '../contract.ts';
import { LuaScript, type ScriptLimits } from './script.ts';
import type { PreparedSource } from './config.ts';

/** A cached state and the number of factories that hold it. */
export interface ScriptSlot {
  readonly key: string;
  readonly source: PreparedSource;
  readonly limits: ScriptLimits;
  /** The state new requests use; replaced when it breaks. */
  current: LuaScript;
  refs: number;
  rebuilding: boolean;
  /** Called after a replacement state is ready (metrics, stats sink). */
  onReplace: ((script: LuaScript) => void) | null;
}

const slots = new Map<string, Promise<ScriptSlot>>();
let states = 0;

/** The hash that identifies a script across snapshots. */
export function scriptKey(source: PreparedSource, limits: ScriptLimits): string {
  return createHash('sha256')
    .update(`${source.name}\u0000${limits.instructionLimit}\u0000${limits.memoryLimitBytes}\u0000`)
    .update(source.code)
    .digest('hex');
}

/** Returns the slot of this script on this worker, compiling it on first use; each call must be paired with `releaseScript`. */
export async function acquireScript(source: PreparedSource, limits: ScriptLimits, log: (level: LogLevel, message: string) => void): Promise<ScriptSlot> {
  const key = scriptKey(source, limits);
  let pending = slots.get(key);
  if (pending === undefined) {
    pending = LuaScript.create(source.name, source.code, limits, log).then((current) => {
      states++;
      return { key, source, limits, current, refs: 0, rebuilding: false, onReplace: null };
    });
    slots.set(key, pending);
    pending.catch(() => slots.delete(key));
  }
  const slot = await pending;
  slot.refs++;
  return slot;
}

/** Drops one reference; the last one retires the state. */
export function releaseScript(slot: ScriptSlot): void {
  if (--slot.refs > 0) return;
  slots.delete(slot.key);
  states--;
  slot.current.retire();
}

/** Replaces a state that cannot run any more (a Wasm trap, memory it cannot get back) with a fresh one. */
export function rebuildScript(slot: ScriptSlot): void {
  if (slot.rebuilding) return;
  slot.rebuilding = true;
  const old = slot.current;
  LuaScript.create(slot.source.name, slot.source.code, slot.limits, old.log).then(
    (fresh) => {
      fresh.shared = old.shared;
      fresh.stats = old.stats;
      slot.current = fresh;
      slot.rebuilding = false;
      old.retire();
      slot.onReplace?.(fresh);
    },
    (err: Error) => {
      slot.rebuilding = false;
      old.log('error', `Cannot rebuild Lua script "${slot.source.name}": ${err.message}`);
    },
  );
}

/** How many Lua states this worker holds. */
export function luaStateCount(): number {
  return states;
}
