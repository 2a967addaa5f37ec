/**
 * Where a stream's two pipelines end: the router (request) and the client connection (response).
 * Classes rather than closures, so that a stream allocates two small objects instead of sixteen functions.
 */
import type { HeaderMap } from '../core/headers.ts';
import { ERRORS } from '../core/errors.ts';
import type { PipelineSink } from './chain.ts';
import type { Stream } from './stream.ts';

/** The end of the request pipeline: the router and the upstream request. */
export class RouterSink implements PipelineSink {
  readonly #s: Stream;
  constructor(stream: Stream) {
    this.#s = stream;
  }
  headers(h: HeaderMap, eos: boolean): void {
    this.#s.routeRequest(h, eos);
  }
  data(chunk: Buffer, eos: boolean): void {
    this.#s.upstream?.data(chunk, eos);
  }
  trailers(t: HeaderMap): void {
    this.#s.upstream?.trailers(t);
  }
  filterFailed(i: number, err: unknown): void {
    this.#s.filterFailed(i, err, 'request');
  }
  overflow(): void {
    this.#s.localReply(ERRORS.REQUEST_BODY_TOO_LARGE, undefined, this.#s.filters.length);
  }
  block(): void {
    this.#s.conn.pause();
  }
  stopped(): void {
    this.#s.filterStopped();
  }
  unblock(): void {
    this.#s.conn.resume();
  }
  get halted(): boolean {
    return this.#s.requestHalted;
  }
}

/** The end of the response pipeline: the downstream connection. Filters run in reverse on responses. */
export class ClientSink implements PipelineSink {
  readonly #s: Stream;
  readonly #n: number;
  constructor(stream: Stream, filterCount: number) {
    this.#s = stream;
    this.#n = filterCount;
  }
  headers(h: HeaderMap, eos: boolean): void {
    this.#s.writeResponseHead(h, eos);
  }
  data(chunk: Buffer, eos: boolean): void {
    this.#s.writeResponseBody(chunk, eos);
  }
  trailers(t: HeaderMap): void {
    this.#s.complete(t);
  }
  filterFailed(i: number, err: unknown): void {
    // Map the pipeline index back to the chain index.
    this.#s.filterFailed(this.#n - 1 - i, err, 'response');
  }
  overflow(): void {
    this.#s.localReply(ERRORS.RESPONSE_BODY_TOO_LARGE, undefined, 0);
  }
  block(): void {
    this.#s.upstream?.pauseResponse(true);
  }
  stopped(): void {
    this.#s.filterStopped();
  }
  unblock(): void {
    this.#s.upstream?.pauseResponse(false);
  }
  get halted(): boolean {
    return this.#s.done;
  }
}
