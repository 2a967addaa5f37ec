/** When two listener addresses name the same socket, however they are spelled. */
import net from 'node:net';
import { parseAddress } from '../core/units.ts';

/** The IPs a listener host may bind, IPv6 in one canonical spelling; a name weir does not resolve stands for itself. */
function ipsOf(host: string): string[] {
  const h = host.toLowerCase();
  // weir resolves no names here, and must not need the network to check a config. "localhost" is 127.0.0.1 or ::1
  // depending on the hosts file and the resolver's order, so it counts as both.
  if (h === 'localhost') return ['127.0.0.1', '::1'];
  // The URL parser writes every IPv6 address one way: "0:0::1" and "::1" are one address.
  return [net.isIPv6(h) ? new URL(`http://[${h}]`).hostname.slice(1, -1) : h];
}

/** Whether a socket bound to `wildcard` also takes connections to `ip`. */
function covers(wildcard: string, ip: string): boolean {
  // Node binds "::" dual-stack, so it takes IPv4 too. A name could be an address of either family.
  if (wildcard === '::') return true;
  return wildcard === '0.0.0.0' && !net.isIPv6(ip);
}

/**
 * Whether listeners on `a` and `b` would take the same connections: one port (not 0, which binds a fresh one each
 * time) and the same IP, or a wildcard covering the other's. Workers bind with SO_REUSEPORT, so the kernel accepts
 * such a pair and then spreads connections between them. False for an invalid address: the schema reports those.
 */
export function addressesOverlap(a: string, b: string): boolean {
  let x, y;
  try {
    x = parseAddress(a);
    y = parseAddress(b);
  } catch {
    return false;
  }
  if (x.port === 0 || x.port !== y.port) return false;
  const ys = ipsOf(y.host);
  return ipsOf(x.host).some((p) => ys.some((q) => p === q || covers(p, q) || covers(q, p)));
}
