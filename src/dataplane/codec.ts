/**
 * The HTTP codec as the request lifecycle sees it: what a downstream connection and an upstream connection
 * must do. The HTTP/1.1 codec in ./http1/ implements both; another codec (HTTP/2, a native engine) would
 * implement these interfaces and leave stream.ts, upstream-request.ts, the filters and routing untouched.
 */
import type { Socket } from 'node:net';
import type { HeaderMap } from '../core/headers.ts';
import type { RequestHead, RequestSink, ResponseFraming } from './http1/server-connection.ts';
import type { ResponseSink, RequestFraming } from './http1/client-connection.ts';
import type { PoolWaiter } from './http1/pool.ts';
import type { UsualHead } from './http1/usual-head.ts';

export type { RequestHead, RequestSink, ResponseFraming, ResponseSink, RequestFraming, PoolWaiter, UsualHead };

/** One downstream connection: writes the response of its active exchange. */
export interface DownstreamConnection {
  readonly socket: Socket;
  readonly localAddress: string;
  readonly remoteAddress: string;
  /** True once the response head of the active exchange was written. */
  readonly responseStarted: boolean;
  sendContinue(): void;
  /** `headers`: a map, or an upstream's usual head, as it was read (during the read), whose lines go on as they are. */
  sendHead(status: number, headers: HeaderMap | UsualHead, framing: ResponseFraming, reason?: string): boolean;
  /**
   * Returns false when the caller should wait for `RequestSink.onDrain`. A `lent` chunk is valid only during the
   * call: the connection copies it or writes it at once (see `Coalescer.lent`).
   */
  sendBody(chunk: Buffer, lent?: boolean): boolean;
  sendEnd(trailers: HeaderMap | null): void;
  sendResponse(status: number, headers: HeaderMap, body: Buffer | null, reason?: string): void;
  closeWhenIdle(closeIdleNow: boolean): void;
  pause(): void;
  resume(): void;
  destroy(): void;
  /** Hands the socket over for a tunnel; returns the bytes that followed the request head. */
  upgrade(): Buffer;
}

/** One upstream connection, carrying one exchange at a time. */
export interface UpstreamConnection {
  readonly socket: Socket;
  startRequest(headers: HeaderMap, framing: RequestFraming, sink: ResponseSink, keepUpgrade: boolean): void;
  /** Returns false when the caller should wait for `ResponseSink.onUpstreamDrain`. */
  writeBody(chunk: Buffer): boolean;
  endRequest(trailers: HeaderMap | null): void;
  pause(): void;
  resume(): void;
  abort(): void;
  /** After a 101: the socket leaves HTTP; returns the bytes that followed the response head. */
  detach(): Buffer;
}

/** Where upstream connections come from (one pool per endpoint). */
export interface ConnectionSource {
  acquire(waiter: PoolWaiter): void;
  cancel(waiter: PoolWaiter): void;
}
