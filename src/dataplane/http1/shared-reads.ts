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
import process from 'node:process';

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
  directReads(socket, (n) => onRead(n, SHARED), null);
  return true;
}

/** Where a stream handle leaves the result of a read for its JavaScript handler: bytes read, or a negative error (EOF). */
const { streamBaseState, kReadBytesOrError } = (process as unknown as {
  binding(name: string): { streamBaseState: Int32Array; kReadBytesOrError: number };
}).binding('stream_wrap');

/** The part of a socket's native handle that reads use. */
interface ReadingHandle {
  /** Called by the handle after each read; what it returns, if a buffer, is where the next read goes. */
  onread: (this: ReadingHandle, arrayBuffer: ArrayBuffer | undefined) => unknown;
  reading: boolean;
  readStop(): number;
}

/**
 * Hands the data reads of `socket` (one set up with a buffer of its own: net's `onread` option) from its handle
 * straight to `onRead(n)`, in place of net's read handler, which looks the socket up, refreshes its
 * `setTimeout` timer and checks that it is not destroyed on every read before calling the same callback. weir times
 * its sockets itself, and a destroyed socket's handle is closed and reads no more. `onRead` returning false stops
 * reading, as with net. `next`, asked after each read, gives the buffer for the next one, or undefined to keep the
 * one in use (net hands the handle its buffer again after every read). End of stream and errors still go to net's
 * handler, which ends or destroys the socket. Changes nothing, and returns false, if the handle is not as expected.
 */
export function directReads(socket: net.Socket, onRead: (n: number) => boolean, next: (() => Uint8Array | undefined) | null): boolean {
  const handle = (socket as unknown as { _handle: ReadingHandle | null })._handle;
  if (handle === null || typeof handle.onread !== 'function' || typeof handle.readStop !== 'function') return false;
  const netHandler = handle.onread;
  handle.onread = function onDirectRead(this: ReadingHandle, arrayBuffer: ArrayBuffer | undefined): unknown {
    const n = streamBaseState[kReadBytesOrError];
    if (n <= 0) return netHandler.call(this, arrayBuffer);
    if (!onRead(n)) {
      this.reading = false;
      const err = this.readStop();
      if (err !== 0) socket.destroy(new Error(`read stop failed: ${err}`));
    }
    return next === null ? undefined : next();
  };
  return true;
}
