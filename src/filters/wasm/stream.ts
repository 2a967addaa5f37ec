/**
 * The per-request adapter from the filter contract to Proxy-Wasm stream callbacks, with Envoy's interpretation of
 * their results: a paused header callback holds headers and body (`stop-all`), a paused body callback keeps buffering
 * and is called again with the whole body so far (`stop-and-buffer`), local replies and continues requested during a
 * callback are applied once it returned, and on_done → on_log → on_delete run once each at the end.
 */
import type { BodyChunk, Direction, Filter, FilterCallbacks, FilterStatus } from '../contract.ts';
import type { HeaderMap } from '../../core/headers.ts';
import { ERRORS } from '../../core/errors.ts';
import { sendReply, type ContextState } from './context.ts';
import { VmFailure, type Callback, type StreamExports, type WasmVm } from './vm.ts';

/** What a stream needs from its plugin. */
export interface StreamPlugin {
  readonly failurePolicy: 'fail_closed' | 'fail_open' | 'fail_reload';
  /** Envoy ≥ 1.35 `allow_on_headers_stop_iteration`: a paused header callback is a plain `stop`, body still flows. */
  readonly allowOnHeadersStopIteration: boolean;
  /** Records a VM failure (log line, counter, reload schedule); called once per failure per stream. */
  vmFailed(vm: WasmVm, failure: VmFailure, callbacks: FilterCallbacks | null): void;
  /** Called when a stream finished without failure, to reset the reload backoff. */
  streamSucceeded(vm: WasmVm): void;
}

function headersStatus(code: number, allowStopIteration: boolean): FilterStatus {
  // 0 Continue and 2 ContinueAndEndStream continue; 1 (PAUSE), 3, 4 and anything else stop headers and body.
  if (code === 0 || code === 2) return 'continue';
  return code === 1 && allowStopIteration ? 'stop' : 'stop-all';
}

function bodyStatus(code: number, endOfStream: boolean): FilterStatus {
  if (code === 0) return 'continue';
  if (code === 1 || code === 2) return endOfStream ? 'stop' : 'stop-and-buffer';
  return 'stop';
}

/** How a callback's result is read: a header, body (more to come, or the last chunk) or trailer callback. */
type ResultKind = 'headers' | 'body' | 'last-body' | 'trailers';

/** The filter built for each request on a live VM. */
export class WasmStream implements Filter {
  readonly #vm: WasmVm;
  readonly #ctx: ContextState;
  readonly #cb: FilterCallbacks;
  readonly #plugin: StreamPlugin;
  #bypass = false;
  #failed = false;
  readonly #exports: StreamExports;
  /** The direction of the last hook that did not continue: what a fail-open after an async failure resumes. */
  #paused: Direction = 'request';

  constructor(plugin: StreamPlugin, vm: WasmVm, root: ContextState, callbacks: FilterCallbacks) {
    this.#plugin = plugin;
    this.#vm = vm;
    this.#exports = vm.streamExports;
    this.#cb = callbacks;
    this.#ctx = vm.newContext(root.plugin, root.id, callbacks);
    this.#ctx.owner = this;
    const create = this.#exports.contextCreate;
    try {
      if (create !== null) vm.invoke(this.#ctx, create, this.#ctx.id, root.id);
      else if (vm.failure !== null) throw vm.failure;
    } catch (err) {
      if (!(err instanceof VmFailure)) throw err;
      this.#record(err);
    }
  }

  onRequestHeaders(headers: HeaderMap, endOfStream: boolean): FilterStatus {
    this.#ctx.maps[0] = headers;
    // ABI 0.1.0's callback has no end_of_stream parameter: the extra argument is ignored.
    return this.#hook('request', this.#exports.requestHeaders, headers.size, endOfStream ? 1 : 0, 'headers');
  }

  onRequestBody(chunk: BodyChunk, endOfStream: boolean): FilterStatus {
    // A module without the callback continues, as the host would after calling nothing (no per-chunk work).
    if (this.#exports.requestBody === null && !this.#failed) return 'continue';
    this.#ctx.requestBody = chunk;
    const status = this.#hook('request', this.#exports.requestBody, chunk.data.length, endOfStream ? 1 : 0, endOfStream ? 'last-body' : 'body');
    if (status === 'continue') this.#ctx.requestBody = null;
    return status;
  }

  onRequestTrailers(trailers: HeaderMap): FilterStatus {
    this.#ctx.maps[1] = trailers;
    return this.#hook('request', this.#exports.requestTrailers, trailers.size, 0, 'trailers');
  }

  onResponseHeaders(headers: HeaderMap, endOfStream: boolean): FilterStatus {
    this.#ctx.maps[2] = headers;
    return this.#hook('response', this.#exports.responseHeaders, headers.size, endOfStream ? 1 : 0, 'headers');
  }

  onResponseBody(chunk: BodyChunk, endOfStream: boolean): FilterStatus {
    if (this.#exports.responseBody === null && !this.#failed) return 'continue';
    this.#ctx.responseBody = chunk;
    const status = this.#hook('response', this.#exports.responseBody, chunk.data.length, endOfStream ? 1 : 0, endOfStream ? 'last-body' : 'body');
    if (status === 'continue') this.#ctx.responseBody = null;
    return status;
  }

  onResponseTrailers(trailers: HeaderMap): FilterStatus {
    this.#ctx.maps[3] = trailers;
    return this.#hook('response', this.#exports.responseTrailers, trailers.size, 0, 'trailers');
  }

  onLog(): void {
    this.#finish();
  }

  onDestroy(): void {
    this.#finish();
    const ctx = this.#ctx;
    const onDelete = this.#exports.delete;
    if (!ctx.deleted && !this.#failed && this.#vm.failure === null && onDelete !== null) {
      try {
        this.#vm.invoke(ctx, onDelete, ctx.id);
      } catch (err) {
        if (!(err instanceof VmFailure)) throw err;
        this.#record(err);
      }
    }
    ctx.deleted = true;
    this.#vm.deleteContext(ctx);
    if (!this.#failed && this.#vm.failure === null) this.#plugin.streamSucceeded(this.#vm);
  }

  /** on_done then on_log, once, in the access-log phase. */
  #finish(): void {
    const ctx = this.#ctx;
    if (ctx.done) return;
    ctx.done = true;
    if (this.#failed || this.#bypass || this.#vm.failure !== null) return;
    ctx.logPhase = true;
    const { done, log } = this.#exports;
    try {
      // A stream's on_done result is not used (only a root context's asks to wait for proxy_done).
      if (done !== null) this.#vm.invoke(ctx, done, ctx.id);
      if (log !== null) this.#vm.invoke(ctx, log, ctx.id);
    } catch (err) {
      if (!(err instanceof VmFailure)) throw err;
      this.#record(err);
    }
  }

  /** Runs the callback `fn` (null: not exported, so it continues) with the context id, `a` and `b`. */
  #hook(direction: Direction, fn: Callback | null, a: number, b: number, kind: ResultKind): FilterStatus {
    if (this.#bypass) return 'continue';
    const vm = this.#vm;
    const ctx = this.#ctx;
    if (this.#failed || vm.failure !== null) return this.#applyPolicy();
    // Nothing ran, so nothing was deferred: the default answer is continue.
    if (fn === null) return 'continue';
    ctx.inHook = true;
    let code: number;
    try {
      code = vm.invoke(ctx, fn, ctx.id, a, b);
    } catch (err) {
      if (!(err instanceof VmFailure)) throw err;
      this.#record(err);
      return this.#applyPolicy();
    } finally {
      ctx.inHook = false;
    }
    let status = this.#status(kind, code);
    const reply = ctx.takeReply();
    const request = ctx.resumeRequest;
    const response = ctx.resumeResponse;
    ctx.resumeRequest = ctx.resumeResponse = false;
    if (reply !== null) {
      // Envoy forces "stop" after send_local_response, whatever the callback returned.
      sendReply(this.#cb, reply);
      return 'stop';
    }
    if (ctx.deferredClose) {
      ctx.deferredClose = false;
      this.#cb.reset();
      return 'stop';
    }
    // A continue asked for during a paused callback of the same direction turns the pause into continue.
    if (direction === 'request' ? request : response) status = 'continue';
    const other = direction === 'request' ? response : request;
    if (other) {
      const d: Direction = direction === 'request' ? 'response' : 'request';
      queueMicrotask(() => this.#cb.resume(d));
    }
    if (status !== 'continue') this.#paused = direction;
    return status;
  }

  #status(kind: ResultKind, code: number): FilterStatus {
    switch (kind) {
      case 'headers':
        return headersStatus(code, this.#plugin.allowOnHeadersStopIteration);
      case 'body':
        return bodyStatus(code, false);
      case 'last-body':
        return bodyStatus(code, true);
      default:
        return code === 0 ? 'continue' : 'stop';
    }
  }

  #record(failure: VmFailure): void {
    if (this.#failed) return;
    this.#failed = true;
    this.#plugin.vmFailed(this.#vm, failure, this.#cb);
  }

  /** Answers this request by the failure policy, once; later hooks of the stream then pass everything on. */
  #applyPolicy(): FilterStatus {
    this.#failed = true;
    this.#bypass = true;
    if (this.#plugin.failurePolicy === 'fail_open') return 'continue';
    const kind = ERRORS.FILTER_UNAVAILABLE;
    try {
      this.#cb.sendLocalReply(kind.status, kind.body, { details: 'wasm_fail_stream', code: 'FILTER_UNAVAILABLE' });
    } catch {
      this.#cb.reset();
    }
    return 'stop';
  }

  /** A callback outside the hooks (http call response, VM failed meanwhile) failed while this stream waited. */
  failOutside(failure: Error): void {
    if (this.#ctx.deleted) return;
    const f = failure instanceof VmFailure ? failure : new VmFailure('trap', failure.message);
    this.#record(f);
    if (this.#bypass) return;
    if (this.#applyPolicy() === 'continue') this.#cb.resume(this.#paused);
  }
}

/**
 * The stream of a module that exports no body callback: the chain then passes body chunks by, without a call that
 * could only answer continue. Not with allow_on_headers_stop_iteration, where the body reaches a paused filter and a
 * body callback answering continue resumes its headers (Envoy's Continue for a missing callback).
 */
class HeadersOnlyWasmStream extends WasmStream {}
for (const hook of ['onRequestBody', 'onResponseBody']) Object.defineProperty(HeadersOnlyWasmStream.prototype, hook, { value: undefined });

/** Builds the filter of one request on a live VM, with `root` the plugin's root context in it. */
export function wasmStream(plugin: StreamPlugin, vm: WasmVm, root: ContextState, callbacks: FilterCallbacks): Filter {
  const exported = vm.streamExports;
  const headersOnly = exported.requestBody === null && exported.responseBody === null && !plugin.allowOnHeadersStopIteration;
  return headersOnly ? new HeadersOnlyWasmStream(plugin, vm, root, callbacks) : new WasmStream(plugin, vm, root, callbacks);
}

/** The filter built for each request while the VM is down: the failure policy alone. */
export function failedStreamFilter(policy: StreamPlugin['failurePolicy'], callbacks: FilterCallbacks): Filter {
  if (policy === 'fail_open') return {};
  return {
    onRequestHeaders: function wasmUnavailable(): FilterStatus {
      const kind = ERRORS.FILTER_UNAVAILABLE;
      callbacks.sendLocalReply(kind.status, kind.body, { details: 'wasm_fail_stream', code: 'FILTER_UNAVAILABLE' });
      return 'stop';
    },
  };
}
