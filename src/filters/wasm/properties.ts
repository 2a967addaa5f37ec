/**
 * `proxy_get_property`: Envoy's well-known attribute paths, encoded as Envoy encodes them (strings raw, integers as
 * 8 bytes little-endian, booleans as 1 byte, maps as serialized pairs). Protobuf-valued attributes (`node`,
 * `*_metadata`, `metadata`) are answered as JSON text instead. A path nothing matches falls back to what
 * `proxy_set_property` stored under `"wasm.<path>"`.
 */
import { Buffer } from 'node:buffer';
import type { ContextState } from './context.ts';
import { encodePairs } from './pairs.ts';
import { contentLengthOf, type HeaderMap } from '../../core/headers.ts';
import { ENVOY_FLAG_BITS } from '../../core/errors.ts';
import type { WasmVm } from './vm.ts';

function int64(n: number): Uint8Array {
  const b = Buffer.alloc(8);
  b.writeBigInt64LE(BigInt(Math.trunc(n)));
  return b;
}

/** A config string (a name) as UTF-8. */
function text(s: string | null | undefined): Uint8Array | undefined {
  return s === null || s === undefined ? undefined : Buffer.from(s);
}

/** A string from the wire (a header, the request line) as the bytes that came: weir holds those as latin1. */
function wire(s: string | null | undefined): Uint8Array | undefined {
  return s === null || s === undefined ? undefined : Buffer.from(s, 'latin1');
}

/** Envoy's `HeaderMap::byteSize()`: the bytes of every name and value (header strings hold one byte per character). */
export function headerBytes(map: HeaderMap | null): number {
  if (map === null) return 0;
  let n = 0;
  for (const [k, v] of map) n += k.length + v.length;
  return n;
}

/** Envoy's bit set of the access log's flags ("UF,URX"); flags Envoy does not have add nothing. */
function envoyFlags(flags: string): number {
  let bits = 0;
  if (flags !== '-') for (const f of flags.split(',')) bits |= ENVOY_FLAG_BITS[f] ?? 0;
  return bits;
}

function splitAddress(addr: string | null | undefined): { address: string; port: number } | undefined {
  if (!addr) return undefined;
  const at = addr.lastIndexOf(':');
  if (at < 0 || addr.endsWith(']')) return { address: addr, port: 0 };
  return { address: addr, port: Number(addr.slice(at + 1)) || 0 };
}

function headersValue(map: HeaderMap | null, rest: string[]): Uint8Array | undefined {
  if (map === null) return undefined;
  if (rest.length === 0) {
    const joined = new Map<string, string>();
    for (const [k, v] of map) joined.set(k, joined.has(k) ? joined.get(k) + ',' + v : v);
    return encodePairs([...joined]);
  }
  const value = map.getJoined(rest[0].toLowerCase());
  return value === undefined ? undefined : Buffer.from(value, 'latin1');
}

function json(value: unknown, rest: string[]): Uint8Array | undefined {
  let v: unknown = value;
  for (const seg of rest) {
    if (v === null || typeof v !== 'object') return undefined;
    v = (v as Record<string, unknown>)[seg];
  }
  if (v === undefined) return undefined;
  if (typeof v === 'string') return Buffer.from(v);
  if (typeof v === 'number' && Number.isInteger(v)) return int64(v);
  if (typeof v === 'boolean') return Uint8Array.of(v ? 1 : 0);
  return Buffer.from(JSON.stringify(v));
}

/** Resolves a property path (segments already split at NUL) for the effective context; undefined means NOT_FOUND. */
export function getProperty(vm: WasmVm, ctx: ContextState | null, path: string[]): Uint8Array | undefined {
  if (ctx === null || path.length === 0) return undefined;
  const [head, ...rest] = path;
  const plugin = ctx.plugin;
  switch (head) {
    case 'plugin_name':
      return text(plugin.name);
    case 'plugin_root_id':
      return text(plugin.rootId);
    case 'plugin_vm_id':
      return text(plugin.vmId);
  }
  const cb = ctx.callbacks;
  if (cb !== null) {
    const value = streamProperty(ctx, head, rest);
    if (value !== undefined) return value;
    const state = cb.info.filterState.get('wasm.' + path.join('.'));
    if (state !== undefined) return typeof state === 'string' ? Buffer.from(state) : state;
    return undefined;
  }
  return vm.rootProperties.get('wasm.' + path.join('.'));
}

function streamProperty(ctx: ContextState, head: string, rest: string[]): Uint8Array | undefined {
  const cb = ctx.callbacks!;
  const info = cb.info;
  const req = ctx.requestHeaders();
  const res = ctx.responseHeaders();
  const sub = rest[0];
  if (head === 'request') {
    const p = req?.get(':path');
    switch (sub) {
      case 'path':
        return wire(p);
      case 'url_path':
        return wire(p?.split('?')[0]);
      case 'query':
        return p === undefined ? undefined : wire(p.includes('?') ? p.slice(p.indexOf('?') + 1) : '');
      case 'host':
        return wire(req?.get(':authority'));
      case 'scheme':
        return wire(req?.get(':scheme'));
      case 'method':
        return wire(req?.get(':method'));
      case 'headers':
        return headersValue(req, rest.slice(1));
      case 'referer':
        return wire(req?.get('referer'));
      case 'useragent':
        return wire(req?.get('user-agent'));
      case 'id':
        return wire(req?.get('x-request-id') ?? info.requestId);
      case 'protocol':
        return text(info.protocol);
      case 'time':
        return int64(info.startTime * 1e6);
      case 'duration':
        return int64((Date.now() - info.startTime) * 1e6);
      case 'size': {
        // Envoy: the Content-Length when there is one (none if it is not a number), else the body bytes so far.
        const cl = req?.get('content-length');
        const n = cl === undefined ? info.bytesIn : contentLengthOf(cl);
        return n < 0 ? undefined : int64(n);
      }
      case 'total_size':
        return int64(info.bytesIn + headerBytes(req));
    }
    return undefined;
  }
  if (head === 'response') {
    switch (sub) {
      case 'code': {
        const code = ctx.logPhase && info.responseCode > 0 ? info.responseCode : Number(res?.get(':status') ?? info.responseCode);
        return code > 0 ? int64(code) : undefined;
      }
      case 'headers':
        return headersValue(res, rest.slice(1));
      case 'trailers':
        return headersValue(ctx.maps[3], rest.slice(1));
      case 'grpc_status': {
        const g = res?.get('grpc-status');
        return g === undefined ? undefined : int64(Number(g));
      }
      case 'size':
        return int64(info.bytesOut);
      case 'total_size':
        return int64(info.bytesOut + headerBytes(res) + headerBytes(ctx.maps[3]));
      case 'flags':
        return int64(envoyFlags(info.responseFlag));
      case 'code_details': {
        // The access log's details; without any, a response that came from an upstream is Envoy's "via_upstream".
        const d = info.details;
        return text(d !== '' ? d : info.responseCode > 0 && info.upstreamAddress !== null ? 'via_upstream' : undefined);
      }
    }
    return undefined;
  }
  if (head === 'source' || head === 'destination' || head === 'upstream') {
    const addr = splitAddress(head === 'source' ? info.downstreamRemoteAddress : head === 'destination' ? info.downstreamLocalAddress : info.upstreamAddress);
    if (sub === 'request_attempt_count' && head === 'upstream') return int64(info.attemptCount);
    if (addr === undefined) return undefined;
    if (sub === 'address') return text(addr.address);
    if (sub === 'port') return int64(addr.port);
    return undefined;
  }
  if (head === 'connection') {
    if (sub === 'requested_server_name') return text(info.requestedServerName);
    if (sub === 'mtls') return Uint8Array.of(0);
    if (sub === 'id') return int64(info.connectionId);
    return undefined;
  }
  const xds = head === 'xds' ? sub : head;
  const xrest = head === 'xds' ? rest.slice(1) : rest;
  switch (xds) {
    case 'route_name':
      return text(info.routeName);
    case 'cluster_name':
      return text(info.clusterName);
    case 'route_metadata':
      return json(info.routeMetadata, xrest);
    case 'listener_direction':
      return int64(1); // INBOUND
  }
  if (head === 'metadata') return json(Object.fromEntries(info.dynamicMetadata), rest);
  if (head === 'filter_state' && sub !== undefined) {
    const v = info.filterState.get(sub);
    return v === undefined ? undefined : typeof v === 'string' ? Buffer.from(v) : v;
  }
  return undefined;
}
