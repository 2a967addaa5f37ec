/**
 * The host side of one Proxy-Wasm context: a root context (one per plugin) or a stream context (one per request).
 * It holds what host calls may touch (header maps, body buffers, call responses, configuration) and the actions that
 * Envoy defers until the VM call returns (local replies, continue and close stream).
 */
import type { BodyChunk, FilterCallbacks, HttpCallResponse } from '../contract.ts';
import type { HeaderMap } from '../../core/headers.ts';

/** A local reply asked for by `proxy_send_local_response`, sent once the VM call returned. */
export interface DeferredReply {
  status: number;
  body: Buffer;
  headers: [string, string][];
  details: string;
  grpcStatus: number;
}

/** One plugin (a filter config): its root context lives in a VM. */
export interface PluginInfo {
  /** The filter's name in the config (`plugin_name`). */
  readonly name: string;
  readonly rootId: string;
  readonly vmId: string;
  readonly configuration: Uint8Array;
  /** Config path, for messages. */
  readonly path: string;
  /** Logs with the filter's name (root-context logs). */
  log(level: import('../contract.ts').LogLevel, message: string): void;
}

/** Host state of one context. */
export class ContextState {
  readonly id: number;
  /** The root context id (equal to `id` for a root context). */
  readonly rootId: number;
  readonly plugin: PluginInfo;
  /** Set for stream contexts. */
  readonly callbacks: FilterCallbacks | null;
  /** Header maps by `proxy_map_type_t` while they are reachable. */
  readonly maps: (HeaderMap | null)[] = [null, null, null, null];
  requestBody: BodyChunk | null = null;
  responseBody: BodyChunk | null = null;
  /** The response of the http call being delivered to this context. */
  callResponse: HttpCallResponse | null = null;
  /** The configuration buffers, reachable during on_vm_start and on_configure only. */
  vmConfiguration: Uint8Array | null = null;
  pluginConfiguration: Uint8Array | null = null;
  /** Set when the stream is in the access-log phase (maps read-only, missing values answer NOT_FOUND). */
  logPhase = false;
  /** True while one of this stream's hooks runs: deferred actions are then applied by the hook. */
  inHook = false;
  deferredReply: DeferredReply | null = null;
  /** Directions a continue was asked for, applied after the VM call. */
  resumeRequest = false;
  resumeResponse = false;
  deferredClose = false;
  /** Set by the stream filter: applies the failure policy when a VM call outside its hooks fails. */
  owner: { failOutside(failure: Error): void } | null = null;
  /** Set while a root context's on_done answered false: what proxy_done runs (on_delete and cleanup). */
  onProxyDone: (() => void) | null = null;
  /** The stream context's slot in its VM (-1 for a root context). */
  slot = -1;
  /** Whether on_done, on_log and on_delete ran. */
  done = false;
  deleted = false;

  constructor(opts: { id: number; rootId: number; plugin: PluginInfo; callbacks: FilterCallbacks | null }) {
    this.id = opts.id;
    this.rootId = opts.rootId;
    this.plugin = opts.plugin;
    this.callbacks = opts.callbacks;
  }

  /** True for a root (plugin) context. */
  get isRoot(): boolean {
    return this.id === this.rootId;
  }

  /** The request headers the module sees: those of its current hook, else the stream's. */
  requestHeaders(): HeaderMap | null {
    return this.maps[0] ?? this.callbacks?.requestHeaders ?? null;
  }

  /**
   * The response headers the module sees: those of its current hook, else the stream's; in the log phase the ones
   * sent, which a local reply may have replaced after this filter saw the upstream's.
   */
  responseHeaders(): HeaderMap | null {
    const sent = this.callbacks?.responseHeaders ?? null;
    return this.logPhase ? sent ?? this.maps[2] : this.maps[2] ?? sent;
  }

  /** Applies deferred actions of a stream outside its own hooks (e.g. after a root callback resumed it). */
  flushDeferred(): void {
    const cb = this.callbacks;
    if (cb === null || this.deleted) return;
    const reply = this.takeReply();
    const request = this.resumeRequest;
    const response = this.resumeResponse;
    this.resumeRequest = this.resumeResponse = false;
    if (reply !== null) return sendReply(cb, reply);
    if (this.deferredClose) {
      this.deferredClose = false;
      return cb.reset();
    }
    if (request) cb.resume('request');
    if (response) cb.resume('response');
  }

  /** Takes the deferred local reply, if any. */
  takeReply(): DeferredReply | null {
    const r = this.deferredReply;
    this.deferredReply = null;
    return r;
  }
}

/**
 * Sends a deferred local reply through the stream's callbacks, as Envoy shapes it. Once the response has started a
 * local reply is no longer possible: the stream is reset instead.
 */
export function sendReply(cb: FilterCallbacks, r: DeferredReply): void {
  const headers: Record<string, string[]> = {};
  for (const [k, v] of r.headers) (headers[k.toLowerCase()] ??= []).push(v);
  if (r.grpcStatus >= 0 && r.grpcStatus <= 16) headers['grpc-status'] = [String(r.grpcStatus)];
  try {
    cb.sendLocalReply(r.status, r.body, { headers, details: r.details.replace(/\s/g, '_') });
  } catch (err) {
    cb.log('warn', `Wasm local reply ${r.status} not sent (${(err as Error).message}); resetting the stream`);
    cb.reset();
  }
}
