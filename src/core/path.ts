/**
 * Request path normalisation, as Envoy's `normalize_path` and `merge_slashes` (and NGINX, which always does it):
 * so that `/public/../admin`, `/%2e%2e/admin` or `//admin` cannot get past a route or filter written for `/admin`
 * while the upstream serves `/admin`.
 */

/** What might need work: a "/." (a dot segment), a percent sign, or "//". A path without any is returned as is. */
const MAY_CHANGE = /\/\.|%|\/\//;

/** Percent-encodings of RFC 3986 unreserved characters (ALPHA DIGIT - . _ ~), which mean the character itself. */
const UNRESERVED_ENCODED = /%(2[dDeE]|3[0-9]|[46][1-9a-fA-F]|[57][0-9aA]|5[fF]|7[eE])/g;

/**
 * Normalises the path part of an origin-form request target (the query is left as it is): with `dotSegments`,
 * percent-encoded unreserved characters are decoded and dot segments removed (RFC 3986 section 5.2.4; ".." never
 * climbs above "/"); with `mergeSlashes` runs of "/" become one.
 */
export function normalizePath(target: string, dotSegments: boolean, mergeSlashes: boolean): string {
  const q = target.indexOf('?');
  const path = q < 0 ? target : target.slice(0, q);
  if (!MAY_CHANGE.test(path)) return target;
  if (!dotSegments) {
    const merged = mergeSlashes ? path.replace(/\/{2,}/g, '/') : path;
    return q < 0 ? merged : merged + target.slice(q);
  }
  const decoded = path.includes('%') ? path.replace(UNRESERVED_ENCODED, (_m, hex: string) => String.fromCharCode(parseInt(hex, 16))) : path;
  const out: string[] = [];
  const segments = decoded.split('/');
  // segments[0] is "" (the path starts with "/"); the last one decides whether the result ends with "/".
  for (let i = 1; i < segments.length; i++) {
    const seg = segments[i];
    const last = i === segments.length - 1;
    if (seg === '.' || seg === '..') {
      if (seg === '..') out.pop();
      if (last) out.push('');
      continue;
    }
    if (seg === '' && mergeSlashes && !last) continue;
    out.push(seg);
  }
  // With mergeSlashes the empty segments were skipped above, so no "//" is left to merge.
  const result = '/' + out.join('/');
  return q < 0 ? result : result + target.slice(q);
}
