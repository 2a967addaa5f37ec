/** The callbacks object one filter instance gets: a thin view of its stream that knows the filter's index. */
import type { FilterCallbacks, StreamInfo, Direction, LocalReplyOptions, HttpCallRequest, HttpCallOptions, HttpCallResponse, LogLevel } from '../filters/contract.ts';
import type { HeaderMap } from '../core/headers.ts';
import type { Stream } from './stream.ts';
import { httpCall } from './http-call.ts';

/** Implements FilterCallbacks for chain filter `index` of `stream`. */
export class FilterHandle implements FilterCallbacks {
  readonly #stream: Stream;
  readonly #index: number;
  readonly #name: string;
  /** The direction of the hook that ran last, for resume() without a direction. */
  direction: Direction = 'request';

  constructor(stream: Stream, index: number, name: string) {
    this.#stream = stream;
    this.#index = index;
    this.#name = name;
  }

  get info(): StreamInfo {
    return this.#stream;
  }

  get requestHeaders(): HeaderMap | null {
    return this.#stream.requestHeaders;
  }

  get responseHeaders(): HeaderMap | null {
    return this.#stream.responseHeaders;
  }

  resume(direction?: Direction): void {
    const d = direction ?? (this.#stream.responseHeaders !== null ? 'response' : 'request');
    this.#stream.resumeAt(this.#index, d);
  }

  sendLocalReply(status: number, body?: string | Buffer, options?: LocalReplyOptions): void {
    this.#stream.sendLocalReply(status, body, options, this.#index);
  }

  reset(): void {
    this.#stream.reset();
  }

  failed(message: string): void {
    this.#stream.listener.filterError(this.#name, message, this.#stream);
  }

  httpCall(cluster: string, request: HttpCallRequest, options?: HttpCallOptions): Promise<HttpCallResponse> {
    const s = this.#stream;
    return httpCall(s.snapshot, cluster, request, { ...options, clientAddress: s.downstreamClientAddress });
  }

  clearRouteCache(): void {
    this.#stream.clearRouteCache();
  }

  setUpstreamOverrideHost(host: string, strict: boolean): void {
    this.#stream.setUpstreamOverrideHost(host, strict);
  }

  log(level: LogLevel, message: string): void {
    this.#stream.listener.filterLog(level, this.#name, message, this.#stream);
  }
}
