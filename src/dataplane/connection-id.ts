/**
 * Ids of downstream connections, given on first ask (the Proxy-Wasm `connection.id`), so that a connection no filter
 * asks about costs nothing. Like Envoy's, an id is unique in the process: the worker's thread id is in its high bits.
 */
import { threadId } from 'node:worker_threads';
import type { DownstreamConnection } from './codec.ts';

const ids = new WeakMap<DownstreamConnection, number>();
let last = 0;

/** The id of `conn`: the same number for every request on it, and no other connection of the process has it. */
export function connectionId(conn: DownstreamConnection): number {
  let id = ids.get(conn);
  if (id === undefined) {
    id = threadId * 2 ** 32 + ++last;
    ids.set(conn, id);
  }
  return id;
}
