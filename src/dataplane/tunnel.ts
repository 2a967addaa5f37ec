/** Byte tunnel between a downstream and an upstream socket after an HTTP upgrade (WebSocket). */
import type { Socket } from 'node:net';

/**
 * Pipes both sockets into each other, starting with the bytes each side sent after its head, and calls
 * `done(bytesIn, bytesOut)` once, when either side closes. Back-pressure is the sockets' own (pipe).
 */
export function tunnel(down: Socket, up: Socket, downRest: Buffer, upRest: Buffer, done: (bytesIn: number, bytesOut: number) => void): void {
  let finished = false;
  const inStart = down.bytesRead;
  const outStart = down.bytesWritten;
  const finish = () => {
    if (finished) return;
    finished = true;
    down.destroy();
    up.destroy();
    done(down.bytesRead - inStart + downRest.length, down.bytesWritten - outStart);
  };
  if (upRest.length > 0) down.write(upRest);
  if (downRest.length > 0) up.write(downRest);
  down.pipe(up);
  up.pipe(down);
  down.on('close', finish);
  up.on('close', finish);
  down.on('error', finish);
  up.on('error', finish);
  down.resume();
  up.resume();
}
