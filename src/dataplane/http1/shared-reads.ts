/**
 * Reads of accepted sockets into one buffer that all of them share, handed to a callback, instead of a new Buffer
 * and a 'data' event per read. This is net's `onread` option, which `net.connect` takes but `net.Server` does not
 * offer for the sockets it accepts: it is set up here on the accepted socket, through the two fields net keeps it in.
 *
 * Sharing one buffer is safe because a read is handed over before the next one (of any socket) is made: whoever
 * keeps bytes of it copies them during the callback. (Node's own HTTP server shares one read buffer the same way.)
 */
import { Buffer } from 'node:buffer';
import net from 'node:net';

/** Big enough for a large head, or a 64 KiB body with its head, in one read. */
const SHARED = Buffer.allocUnsafe(64 * 1024);

/** Called with each read: `n` bytes at the start of `buf`. Returning false stops reading (as `socket.pause()` does). */
export type ReadCallback = (n: number, buf: Buffer) => boolean;

/** The keys under which net.Socket keeps its `onread` buffer and callback, found on a socket made with them. */
const keys = onreadKeys();

function onreadKeys(): { buffer: symbol; callback: symbol } | null {
  const callback = (): boolean => true;
  const probe = new net.Socket({ onread: { buffer: SHARED, callback } });
  let bufferKey: symbol | null = null;
  let callbackKey: symbol | null = null;
  for (const key of Object.getOwnPropertySymbols(probe)) {
    const value = (probe as unknown as Record<symbol, unknown>)[key];
    if (value === SHARED) bufferKey = key;
    else if (value === callback) callbackKey = key;
  }
  probe.destroy();
  return bufferKey !== null && callbackKey !== null ? { buffer: bufferKey, callback: callbackKey } : null;
}

/**
 * Makes `socket` (just accepted: nothing read from it yet) hand its reads to `onRead`, in the shared buffer, valid
 * only during the call. EOF and errors still reach the socket ('end', 'error'), and `pause()`/`resume()` stop and
 * start the reads. Returns false, changing nothing, when this Node's sockets cannot do that; then use 'data' events.
 */
export function readIntoSharedBuffer(socket: net.Socket, onRead: ReadCallback): boolean {
  const handle = (socket as unknown as { _handle: { useUserBuffer?(buf: Uint8Array): void } | null })._handle;
  const fields = socket as unknown as Record<symbol, unknown>;
  if (keys === null || handle === null || typeof handle.useUserBuffer !== 'function' || fields[keys.buffer] !== null) return false;
  fields[keys.buffer] = SHARED;
  fields[keys.callback] = onRead;
  handle.useUserBuffer(SHARED);
  return true;
}
