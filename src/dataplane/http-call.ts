/**
 * Requests that filters send to a cluster outside the stream (Lua httpCall, Proxy-Wasm proxy_http_call):
 * the same upstream machinery as proxied requests, with the whole response buffered.
 */
import { Buffer } from 'node:buffer';
import { HeaderMap } from '../core/headers.ts';
import type { ProxyError } from '../core/errors.ts';
import type { HttpCallRequest, HttpCallOptions, HttpCallResponse } from '../filters/contract.ts';
import { UpstreamRequest, type UpstreamListener } from './upstream-request.ts';
import type { Snapshot } from './snapshot.ts';
import { headersOf } from './http1/usual-head.ts';

const MAX_RESPONSE = 16 * 1024 * 1024;

function failure(reason: string): HttpCallResponse {
  return { headers: HeaderMap.from({ ':status': '503' }), body: Buffer.from('upstream failure'), trailers: null, failure: reason };
}

function reasonOf(e: ProxyError): string {
  switch (e.kind.code) {
    case 'UPSTREAM_TIMEOUT':
      return 'timeout';
    case 'UPSTREAM_CONNECT_FAILURE':
      return 'connect';
    case 'UPSTREAM_OVERFLOW':
      return 'overflow';
    case 'NO_HEALTHY_UPSTREAM':
      return 'no-healthy-upstream';
    default:
      return 'reset';
  }
}

/**
 * Sends `request` to `clusterName`. Resolves with the response, or with a synthetic 503 whose `failure`
 * says why; rejects only for misuse (unknown cluster, missing pseudo-headers), with a message naming it.
 */
export function httpCall(
  snapshot: Snapshot,
  clusterName: string,
  request: HttpCallRequest,
  options: HttpCallOptions & { clientAddress?: string } = {},
): Promise<HttpCallResponse> {
  const cluster = snapshot.clusters.get(clusterName);
  if (cluster === undefined) return Promise.reject(new Error(`http call cluster invalid. Must be configured: "${clusterName}"`));
  const h = request.headers;
  if (!h.has(':method') || !h.has(':path') || !h.has(':authority')) {
    return Promise.reject(new Error("http call headers must include ':path', ':method', and ':authority'"));
  }
  const headers = new HeaderMap(h.list.slice());
  headers.unchecked = h.unchecked;
  if (!headers.has(':scheme')) headers.add(':scheme', 'http');
  if (options.sendXff && options.clientAddress) {
    // Appended to a value the caller gave, as Envoy's async client does (one header line, not two).
    const given = headers.getJoined('x-forwarded-for');
    if (given === undefined) headers.add('x-forwarded-for', options.clientAddress);
    else headers.set('x-forwarded-for', `${given}, ${options.clientAddress}`);
  }
  const body = request.body ?? null;
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    let size = 0;
    let head: HeaderMap | null = null;
    let trailers: HeaderMap | null = null;
    let req: UpstreamRequest;
    const listener: UpstreamListener = {
      onResponseHead: (_s, _r, hd) => {
        head = headersOf(hd);
      },
      onResponseBody: (c, lent) => {
        size += c.length;
        if (size > MAX_RESPONSE) {
          req.cancel();
          resolve(failure('reset'));
          return;
        }
        chunks.push(lent ? Buffer.from(c) : c);
      },
      onResponseTrailers: (t) => {
        trailers = t;
      },
      onResponseEnd: () => resolve({ headers: head!, body: Buffer.concat(chunks, size), trailers }),
      onUpstreamFailure: (e) => resolve(failure(reasonOf(e))),
      onUpstreamDrain: () => {},
      blockRequest: () => {},
    };
    req = new UpstreamRequest(listener, {
      cluster,
      headers,
      contentLength: body === null ? 0 : body.length,
      hashKey: headers.get(':authority'),
      overrideHost: undefined,
      retry: cluster.retry,
      timeoutMs: options.timeoutMs ?? 0,
      idleTimeoutMs: 0,
      bufferLimit: 1 << 20,
      upgrade: false,
    });
    req.start();
    if (body !== null && body.length > 0) req.data(body, true);
    else if (request.trailers) req.trailers(request.trailers);
  });
}
