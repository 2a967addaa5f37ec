/**
 * Host functions for the less frequent parts of the API: stream info, metadata, filter state, TLS, logging,
 * signatures, base64, time, route cache, upstream override, filter context, stats() and weir.shared.
 */
import { Buffer } from 'node:buffer';
import { performance } from 'node:perf_hooks';
import { createHash, createPublicKey, verify as cryptoVerify } from 'node:crypto';
import { isIP } from 'node:net';
import type { LogLevel, StreamInfo } from '../contract.ts';
import { T_NIL, T_NUMBER, T_STRING } from './vm.ts';
import type { HostContext } from './host.ts';

/** Where `stats()` counters, gauges and histograms go. */
export interface StatsSink {
  /** kind 0 counter, 1 gauge, 2 histogram; op 0 add, 1 set, 2 record, 9 read. */
  stat(kind: number, name: string, op: number, value: number): number;
}

const LEVELS: LogLevel[] = ['trace', 'debug', 'info', 'warn', 'error', 'critical'];
const MAX_KEYS = 1024;
const HASHES: Record<string, string> = { SHA1: 'sha1', SHA224: 'sha224', SHA256: 'sha256', SHA384: 'sha384', SHA512: 'sha512' };

/** The info, metadata, crypto, time and shared-state host functions of one script. */
export function makeInfoFunctions(ctx: HostContext): Record<string, (L: number) => number> {
  const { script, vm, x, num, fail, nil, stream } = ctx;
  return {
    info(L) {
      const s = stream();
      const info = s.cb.info;
      switch (num(L, 2)) {
        case 0:
          vm.pushString(L, info.protocol);
          return 1;
        case 1:
          vm.pushString(L, info.downstreamLocalAddress);
          return 1;
        case 2:
          vm.pushString(L, clientAddress(info));
          return 1;
        case 3:
          vm.pushString(L, info.downstreamRemoteAddress);
          return 1;
        case 4:
          vm.pushString(L, info.requestedServerName ?? '');
          return 1;
        case 5:
          vm.pushString(L, info.routeName ?? '');
          return 1;
        case 6:
          vm.pushString(L, '');
          return 1;
        case 7:
          s.drain();
          return nil(L);
        default:
          return nil(L);
      }
    },

    mdget(L) {
      const s = stream();
      const kind = num(L, 2);
      const md = kind === 0 ? s.routeMetadata() : null;
      if (md === null || md === undefined) return nil(L);
      if (x.lua_type(L, 3) === T_NIL) vm.pushValue(L, md);
      else vm.pushValue(L, (md as Record<string, unknown>)[vm.readString(L, 3)!]);
      return 1;
    },

    dmget(L) {
      const s = stream();
      if (x.lua_toboolean(L, 2)) return nil(L);
      const dm = s.cb.info.dynamicMetadata;
      if (x.lua_type(L, 3) === T_NIL) vm.pushValue(L, dm);
      else {
        const v = dm.get(vm.readString(L, 3)!);
        if (v === undefined) return nil(L);
        vm.pushValue(L, v);
      }
      return 1;
    },

    dmset(L) {
      const s = stream();
      const ns = vm.readString(L, 2)!;
      const key = vm.readString(L, 3)!;
      const value = vm.readValue(L, 4);
      const dm = s.cb.info.dynamicMetadata;
      let rec = dm.get(ns);
      if (rec === undefined) {
        rec = {};
        dm.set(ns, rec);
      }
      rec[key] = value;
      return 0;
    },

    fsget(L) {
      const s = stream();
      const v = s.cb.info.filterState.get(vm.readString(L, 2)!);
      if (v === undefined) return nil(L);
      if (x.lua_type(L, 3) === T_STRING && typeof v === 'string') {
        try {
          const field = (JSON.parse(v) as Record<string, unknown>)[vm.readString(L, 3)!];
          if (field === undefined) return nil(L);
          vm.pushValue(L, typeof field === 'object' && field !== null ? JSON.stringify(field) : field);
          return 1;
        } catch {
          return nil(L);
        }
      }
      if (typeof v === 'string') vm.pushString(L, v);
      else vm.pushBytes(L, v);
      return 1;
    },

    fsset(L) {
      stream().cb.info.filterState.set(vm.readString(L, 2)!, vm.readString(L, 3)!);
      return 0;
    },

    ssl(L) {
      const s = stream();
      const tls = s.tls();
      if (tls === null) return nil(L);
      const m = vm.readString(L, 2)!;
      if (m === 'present') {
        x.lua_pushboolean(L, 1);
        return 1;
      }
      vm.pushValue(L, tls[m]);
      return 1;
    },

    log(L) {
      const level = LEVELS[num(L, 1)] ?? 'info';
      const message = vm.readString(L, 2) ?? '';
      const s = script.current;
      if (s !== null) s.cb.log(level, message);
      else script.log(level, message);
      return 0;
    },

    importkey(L) {
      const der = vm.readBytes(L, 1) ?? Buffer.alloc(0);
      const len = x.lua_type(L, 2) === T_NUMBER ? num(L, 2) : der.length;
      const bytes = der.subarray(0, Math.max(0, Math.min(len, der.length)));
      const id = 'pk:' + createHash('sha256').update(bytes).digest('hex');
      if (!script.keys.has(id)) {
        try {
          const key = createPublicKey({ key: bytes, format: 'der', type: 'spki' });
          if (script.keys.size >= MAX_KEYS) script.keys.clear();
          script.keys.set(id, key);
        } catch {
          return nil(L);
        }
      }
      vm.pushString(L, id);
      return 1;
    },

    verify(L) {
      const hash = vm.readString(L, 1)!;
      const keyId = x.lua_type(L, 2) === T_STRING ? vm.readString(L, 2)! : '';
      const key = script.keys.get(keyId);
      if (key === undefined) throw new Error('invalid public key');
      const sig = vm.readBytes(L, 3)!;
      const sigLen = x.lua_type(L, 4) === T_NUMBER ? num(L, 4) : sig.length;
      const data = vm.readBytes(L, 5)!;
      const dataLen = x.lua_type(L, 6) === T_NUMBER ? num(L, 6) : data.length;
      const algo = HASHES[hash.toUpperCase()];
      if (algo === undefined) {
        x.lua_pushboolean(L, 0);
        vm.pushString(L, `${hash} is not supported.`);
        return 2;
      }
      let ok = false;
      try {
        ok = cryptoVerify(algo, data.subarray(0, dataLen), key, sig.subarray(0, sigLen));
      } catch {
        ok = false;
      }
      x.lua_pushboolean(L, ok ? 1 : 0);
      if (ok) x.lua_pushnil(L);
      else vm.pushString(L, 'Failed to verify digest. Error code: 0');
      return 2;
    },

    b64(L) {
      vm.pushString(L, (vm.readBytes(L, 1) ?? Buffer.alloc(0)).toString('base64'));
      return 1;
    },

    b64d(L) {
      const s = vm.readString(L, 1) ?? '';
      if (!/^[A-Za-z0-9+/]*={0,2}$/.test(s) || s.length % 4 === 1) return nil(L);
      vm.pushBytes(L, Buffer.from(s, 'base64'));
      return 1;
    },

    ts(L) {
      const kind = num(L, 1);
      if (kind === 0) vm.pushNumber(L, Date.now());
      else if (kind === 1) vm.pushString(L, String(Date.now()));
      else vm.pushString(L, String(Math.floor((performance.timeOrigin + performance.now()) * 1000)));
      return 1;
    },

    clearroute() {
      stream().cb.clearRouteCache();
      return 0;
    },

    override(L) {
      const s = stream();
      const host = vm.readString(L, 2) ?? '';
      const ip = host.startsWith('[') ? host.slice(1, host.indexOf(']')) : isIP(host) ? host : host.replace(/:\d+$/, '');
      if (isIP(ip) === 0) return fail(L, `"${host}" is not a valid IP address`);
      s.cb.setUpstreamOverrideHost(host, x.lua_toboolean(L, 3) !== 0);
      return 0;
    },

    filterctx(L) {
      vm.pushValue(L, stream().filterContext());
      return 1;
    },

    stat(L) {
      const sink = script.stats;
      const v = sink === null ? 0 : sink.stat(num(L, 1), vm.readString(L, 2)!, num(L, 3), num(L, 4));
      vm.pushNumber(L, v);
      return 1;
    },

    shared(L) {
      const bridge = script.shared;
      if (bridge === null) return fail(L, 'weir.shared is not available');
      return bridge.call(L, vm);
    },
  };
}

/** Envoy's downstreamRemoteAddress(): "ip:port" of the peer, or "ip:0" for a client named by trusted x-forwarded-for. */
function clientAddress(info: StreamInfo): string {
  const client = info.downstreamClientAddress;
  const remote = info.downstreamRemoteAddress;
  const v = isIP(client);
  if (v === 0) return client === '' ? remote : client; // already "ip:port", or nothing better than the peer
  const prefix = v === 6 ? `[${client}]:` : `${client}:`;
  return remote.startsWith(prefix) ? remote : `${prefix}0`;
}
