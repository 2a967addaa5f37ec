/**
 * The one validation boundary: turns the text of a config file into either a validated config object
 * (defaults filled in from the schema) or the complete list of problems, each with its path and line.
 */
import { Ajv, type ErrorObject } from 'ajv';
import { parseDocument, visit, LineCounter, isMap, isSeq, isScalar, type Document, type Node } from 'yaml';
import { configSchema, PATTERN_EXPECTS } from './schema.ts';
import { filterDefinitions, filterDefinition } from '../filters/registry.ts';
import type { RawConfig } from './types.ts';
import { parseDuration, parseSize } from '../core/units.ts';
import { addressesOverlap } from './addresses-overlap.ts';

/** One problem found in a config file. */
export interface ConfigProblem {
  /** e.g. "listeners[0].routes[1].cluster" ("" for the root). */
  path: string;
  /** 1-based line and column in the file, when known. */
  line?: number;
  column?: number;
  message: string;
}

/**
 * The outcome of parsing: a config, or its problems. `locate` gives the line and column of a path ("listeners[0].filters[1]"), for
 * the problems found later (a filter that fails to build).
 */
export type ParseResult = { ok: true; config: RawConfig; locate: LocatePath } | { ok: false; problems: ConfigProblem[] };

/** The 1-based line and column of a config path in the parsed text ({} when not found). */
export type LocatePath = (path: string) => { line?: number; column?: number };

let compiled: ReturnType<Ajv['compile']> | undefined;
const perRouteValidators = new Map<string, ReturnType<Ajv['compile']>>();
let ajv: Ajv | undefined;

function validator(): ReturnType<Ajv['compile']> {
  if (compiled === undefined) {
    ajv = new Ajv({ allErrors: true, useDefaults: true, strict: false, allowUnionTypes: true, verbose: true });
    compiled = ajv.compile(configSchema(filterDefinitions()));
  }
  return compiled;
}

function perRouteValidator(type: string): ReturnType<Ajv['compile']> | undefined {
  const def = filterDefinition(type);
  if (def?.perRouteSchema === undefined) return undefined;
  let v = perRouteValidators.get(type);
  if (v === undefined) {
    validator();
    v = ajv!.compile({ type: 'object', additionalProperties: false, ...def.perRouteSchema, properties: { disabled: { type: 'boolean' }, ...((def.perRouteSchema.properties as object) ?? {}) } });
    perRouteValidators.set(type, v);
  }
  return v;
}

/** "listeners[0].filters[1]" as the JSON pointer "/listeners/0/filters/1" (the inverse of pointerToPath). */
export function pathToPointer(path: string): string {
  if (path === '') return '';
  return '/' + path.replace(/\[(\d+)\]/g, '.$1').replace(/^\./, '').split('.').map((s) => s.replace(/~/g, '~0').replace(/\//g, '~1')).join('/');
}

/** Renders a JSON pointer ("/listeners/0/name") as a config path ("listeners[0].name"). */
export function pointerToPath(pointer: string): string {
  if (pointer === '') return '';
  let out = '';
  for (const raw of pointer.slice(1).split('/')) {
    const seg = raw.replace(/~1/g, '/').replace(/~0/g, '~');
    if (/^\d+$/.test(seg)) out += `[${seg}]`;
    else out += out === '' ? seg : `.${seg}`;
  }
  return out;
}

function segments(pointer: string): string[] {
  return pointer === '' ? [] : pointer.slice(1).split('/').map((s) => s.replace(/~1/g, '/').replace(/~0/g, '~'));
}

function nodeAt(root: Node | null | undefined, segs: string[]): { node: Node | null | undefined; keyNode?: Node } {
  let node = root;
  let keyNode: Node | undefined;
  for (const seg of segs) {
    if (isMap(node)) {
      const pair = node.items.find((p) => isScalar(p.key) && String(p.key.value) === seg);
      if (pair === undefined) return { node, keyNode };
      keyNode = pair.key as Node;
      node = pair.value as Node;
    } else if (isSeq(node)) {
      node = node.items[Number(seg)] as Node;
      keyNode = undefined;
    } else return { node, keyNode };
  }
  return { node, keyNode };
}

function describe(e: ErrorObject): { extra: string; message: string } {
  switch (e.keyword) {
    case 'additionalProperties': {
      const key = (e.params as { additionalProperty: string }).additionalProperty;
      return { extra: key, message: `unknown key "${key}"` };
    }
    case 'required':
      return { extra: '', message: `missing required key "${(e.params as { missingProperty: string }).missingProperty}"` };
    case 'enum':
      return { extra: '', message: `must be one of ${(e.params as { allowedValues: unknown[] }).allowedValues.map((v) => JSON.stringify(v)).join(', ')}` };
    case 'oneOf':
      if (/\/endpoints\/\d+$/.test(e.instancePath)) return { extra: '', message: 'an endpoint must be "host:port" or { address: "host:port", weight: N }' };
      if (/\/routes\/\d+$/.test(e.instancePath)) {
        return { extra: '', message: 'a route needs exactly one action: "cluster", "weighted_clusters", "direct_response" or "redirect"' };
      }
      return { extra: '', message: e.message ?? 'must match exactly one schema' };
    case 'pattern':
    case 'type': {
      if (e.keyword === 'pattern') {
        const expects = PATTERN_EXPECTS.get((e.params as { pattern: string }).pattern) ?? (e.parentSchema as { description?: string } | undefined)?.description;
        if (expects !== undefined) return { extra: '', message: `invalid value ${JSON.stringify(e.data)}: expected ${expects}` };
      }
      return { extra: '', message: e.message ?? String(e.keyword) };
    }
    default:
      return { extra: '', message: e.message ?? String(e.keyword) };
  }
}

/**
 * Parses YAML or JSON text and validates it. Never throws for bad input: every problem is returned.
 * `source` names the file in messages.
 */
export function parseConfig(text: string): ParseResult {
  const lineCounter = new LineCounter();
  const doc = parseDocument(text, { lineCounter, prettyErrors: false, uniqueKeys: true });
  const problems: ConfigProblem[] = [];
  const at = (offset: number | undefined): { line?: number; column?: number } => {
    if (offset === undefined) return {};
    const p = lineCounter.linePos(offset);
    return { line: p.line, column: p.col };
  };
  for (const err of doc.errors) {
    problems.push({ path: '', ...at(err.pos[0]), message: err.message.split('\n')[0] });
  }
  if (problems.length > 0) return { ok: false, problems };
  let data: unknown;
  try {
    data = doc.toJS({ maxAliasCount: MAX_ALIAS_EXPANSIONS });
  } catch (err) {
    return { ok: false, problems: [aliasProblem(doc, err as Error, at)] };
  }
  if (data === null || typeof data !== 'object' || Array.isArray(data)) {
    return { ok: false, problems: [{ path: '', line: 1, column: 1, message: 'the config must be a mapping (an object) at the top level' }] };
  }
  const locate = (pointer: string, extraKey?: string): { line?: number; column?: number } => {
    const segs = segments(pointer);
    if (extraKey) segs.push(extraKey);
    const { node, keyNode } = nodeAt(doc.contents as Node, segs);
    const n = keyNode ?? node;
    return at(n?.range?.[0]);
  };
  const validate = validator();
  if (!validate(data)) {
    const seen = new Set<string>();
    for (const e of validate.errors ?? []) {
      if (e.keyword === 'if') continue;
      // A bad property name comes with its own pattern error, which says what the name should look like.
      if (e.keyword === 'propertyNames') continue;
      // oneOf on routes reports one error per branch; the summary line says it all.
      if (e.keyword === 'required' && /\/oneOf\/\d+\/required$/.test(e.schemaPath)) continue;
      // an endpoint given as a string fails the object branch of its oneOf, and vice versa
      if (e.schemaPath.includes('/endpoints/items/oneOf/')) continue;
      const { extra, message } = describe(e);
      const path = pointerToPath(e.instancePath) + (extra ? (e.instancePath === '' ? extra : `.${extra}`) : '');
      const key = `${path}\u0000${message}`;
      if (seen.has(key)) continue;
      seen.add(key);
      problems.push({ path, ...locate(e.instancePath, extra || undefined), message });
    }
  }
  const add = (pointer: string, message: string, key?: string) =>
    problems.push({ path: pointerToPath(pointer) + (key ? `.${key}` : ''), ...locate(pointer, key), message });
  for (const check of [checkReferences, checkValues]) {
    try {
      check(data as RawConfig, add);
    } catch {
      // The structure is too broken for this cross-check; the schema problems already say why.
    }
  }
  problems.sort((a, b) => (a.line ?? 0) - (b.line ?? 0));
  if (problems.length > 0) return { ok: false, problems };
  return { ok: true, config: data as RawConfig, locate: (path) => locate(pathToPointer(path)) };
}

/**
 * How many nodes aliases may expand to in all (yaml's guard against "billion laughs"): each use of an anchor counts
 * once per alias inside it, so a config may reuse a plain anchor (`retry: *retry`) this many times.
 */
const MAX_ALIAS_EXPANSIONS = 10_000;

/** What the yaml library threw while resolving aliases, as a problem at the alias it concerns. */
function aliasProblem(doc: Document, err: Error, at: (offset: number | undefined) => { line?: number; column?: number }): ConfigProblem {
  let unresolved: { source: string; offset?: number } | null = null;
  let first: number | undefined;
  visit(doc, {
    Alias(_key, node) {
      first ??= node.range?.[0];
      if (node.resolve(doc) === undefined) {
        unresolved = { source: node.source, offset: node.range?.[0] };
        return visit.BREAK;
      }
      return undefined;
    },
  });
  const found = unresolved as { source: string; offset?: number } | null;
  if (found !== null) return { path: '', ...at(found.offset), message: `unknown alias *${found.source}: no anchor &${found.source} is set before it` };
  if (/excessive alias count/i.test(err.message)) {
    return { path: '', ...at(first), message: `aliases expand to more than ${MAX_ALIAS_EXPANSIONS} nodes (a resource exhaustion guard); write the repeated parts out, or use fewer aliases` };
  }
  return { path: '', ...at(first), message: `the YAML could not be read: ${err.message.split('\n')[0]}` };
}

type Locate = (pointer: string, extraKey?: string) => { line?: number; column?: number };

/** Checks what a schema cannot: names that refer to each other, uniqueness, regexes. */
function checkReferences(cfg: RawConfig, add: (pointer: string, message: string, key?: string) => void): void {
  const clusters = new Set<string>();
  cfg.clusters.forEach((c, i) => {
    if (clusters.has(c.name)) add(`/clusters/${i}/name`, `duplicate cluster name "${c.name}"`);
    clusters.add(c.name);
    if (c.lb === 'ring_hash' && c.hash_on === undefined) {
      add(`/clusters/${i}`, 'lb "ring_hash" needs "hash_on" (header, cookie or source_ip) here or on the route', 'lb');
    }
  });
  const listenerNames = new Set<string>();
  cfg.listeners.forEach((l, li) => {
    const lp = `/listeners/${li}`;
    if (listenerNames.has(l.name)) add(`${lp}/name`, `duplicate listener name "${l.name}"`);
    listenerNames.add(l.name);
    const oi = cfg.listeners.slice(0, li).findIndex((o) => addressesOverlap(o.address, l.address));
    if (oi >= 0) {
      const o = cfg.listeners[oi];
      const other = `listener "${o.name}" (listeners[${oi}].address)`;
      const message = o.address === l.address
        ? `address "${l.address}" is already used by ${other}`
        : `address "${l.address}" overlaps "${o.address}" of ${other}: both would accept the same connections`;
      add(`${lp}/address`, message);
    }
    if (l.routes === undefined && l.virtual_hosts === undefined) add(lp, 'a listener needs "routes" or "virtual_hosts"');
    if (l.routes !== undefined && l.virtual_hosts !== undefined) add(lp, 'give either "routes" or "virtual_hosts", not both');
    const filterNames = new Map<string, string>();
    l.filters.forEach((f, fi) => {
      if (filterNames.has(f.name)) add(`${lp}/filters/${fi}/name`, `duplicate filter name "${f.name}" in listener "${l.name}"`);
      filterNames.set(f.name, f.type);
      checkFilter(f.type, f, `${lp}/filters/${fi}`, add);
    });
    const checkRoutes = (routes: RawConfig['listeners'][number]['routes'], rp: string) => {
      routes?.forEach((r, ri) => {
        const p = `${rp}/${ri}`;
        if (r.cluster !== undefined && !clusters.has(r.cluster)) add(`${p}/cluster`, `unknown cluster "${r.cluster}"`);
        r.weighted_clusters?.forEach((w, wi) => {
          if (!clusters.has(w.name)) add(`${p}/weighted_clusters/${wi}/name`, `unknown cluster "${w.name}"`);
        });
        const m = r.match;
        const kinds = ['prefix', 'path', 'regex'].filter((k) => (m as Record<string, unknown>)[k] !== undefined);
        if (kinds.length > 1) add(`${p}/match`, `give one of "prefix", "path" or "regex", not ${kinds.map((k) => `"${k}"`).join(' and ')}`);
        if (m.regex !== undefined) checkRegex(m.regex, `${p}/match/regex`, add);
        for (const [list, name] of [[m.headers, 'headers'], [m.query, 'query']] as const) {
          list?.forEach((h, hi) => {
            if (h.regex !== undefined) checkRegex(h.regex, `${p}/match/${name}/${hi}/regex`, add);
          });
        }
        if (r.regex_rewrite !== undefined) checkRegex(r.regex_rewrite.pattern, `${p}/regex_rewrite/pattern`, add);
        // prefix_rewrite replaces the matched prefix: without one it would be ignored.
        if (m.prefix === undefined) {
          if (r.prefix_rewrite !== undefined) add(`${p}/prefix_rewrite`, 'prefix_rewrite replaces the matched "match.prefix": this route has none (use regex_rewrite with "path" or "regex")');
          if (r.redirect?.prefix_rewrite !== undefined) add(`${p}/redirect/prefix_rewrite`, 'prefix_rewrite replaces the matched "match.prefix": this route has none (use redirect.path)');
        }
        const routeFilterNames = new Set<string>();
        r.filters?.forEach((f, fi) => {
          if (filterNames.has(f.name) || routeFilterNames.has(f.name)) {
            add(`${p}/filters/${fi}/name`, `filter name "${f.name}" is already used in this chain; use filter_overrides to change a listener filter`);
          }
          routeFilterNames.add(f.name);
          checkFilter(f.type, f, `${p}/filters/${fi}`, add);
        });
        for (const [name, override] of Object.entries(r.filter_overrides ?? {})) {
          const type = filterNames.get(name);
          if (type === undefined) {
            add(`${p}/filter_overrides`, `no filter named "${name}" in listener "${l.name}"`, name);
            continue;
          }
          const v = perRouteValidator(type);
          const keys = Object.keys(override);
          if (v === undefined) {
            if (keys.some((k) => k !== 'disabled')) add(`${p}/filter_overrides`, `filter type "${type}" takes no per-route config (only "disabled")`, name);
          } else if (!v(override)) {
            for (const e of v.errors ?? []) {
              const { extra, message } = describe(e);
              const ptr = `${p}/filter_overrides/${name}${e.instancePath}`;
              add(ptr, message, extra || undefined);
            }
          } else {
            const base = l.filters.find((f) => f.name === name)!;
            checkFilter(type, { ...base, ...override }, `${p}/filter_overrides/${name}`, add);
          }
        }
      });
    };
    checkRoutes(l.routes, `${lp}/routes`);
    l.virtual_hosts?.forEach((vh, vi) => checkRoutes(vh.routes, `${lp}/virtual_hosts/${vi}/routes`));
  });
}

/** Checks values a schema pattern cannot: port ranges, durations and sizes that must not be zero, weights. */
function checkValues(cfg: RawConfig, add: (pointer: string, message: string, key?: string) => void): void {
  const port = (address: string, pointer: string, allowZero: boolean) => {
    const m = /:(\d+)$/.exec(address);
    const n = m === null ? NaN : Number(m[1]);
    if (n > 65535 || (!allowZero && n === 0)) add(pointer, `invalid port in "${address}": expected ${allowZero ? 0 : 1} to 65535`);
  };
  const positive = (value: string | number | undefined, pointer: string, what: (v: string | number) => number) => {
    // Negative numbers are the schema's to report.
    if (value !== undefined && !(typeof value === 'number' && value < 0) && what(value) <= 0) {
      add(pointer, `invalid value ${JSON.stringify(value)}: must be greater than zero`);
    }
  };
  const backoff = backoffCheck(add);
  port(cfg.admin.address, '/admin/address', true);
  cfg.listeners.forEach((l, li) => {
    const lp = `/listeners/${li}`;
    port(l.address, `${lp}/address`, true);
    positive(l.buffer_limit, `${lp}/buffer_limit`, parseSize);
    positive(l.max_request_headers_size, `${lp}/max_request_headers_size`, parseSize);
    positive(l.max_uri_size, `${lp}/max_uri_size`, parseSize);
    const routes = (rs: RawConfig['listeners'][number]['routes'], rp: string) =>
      rs?.forEach((r, ri) => {
        const p = `${rp}/${ri}`;
        if (r.weighted_clusters !== undefined && r.weighted_clusters.every((w) => w.weight === 0)) {
          add(`${p}/weighted_clusters`, 'the weights add up to zero: give at least one cluster a weight above zero');
        }
        backoff(r.retry, `${p}/retry`);
        const d = r.direct_response;
        if (d !== undefined && d.body !== undefined && d.body !== '' && (d.status === 204 || d.status === 304)) {
          add(`${p}/direct_response/body`, `a ${d.status} response has no body: remove "body" or use another status`);
        }
      });
    routes(l.routes, `${lp}/routes`);
    l.virtual_hosts?.forEach((vh, vi) => routes(vh.routes, `${lp}/virtual_hosts/${vi}/routes`));
  });
  cfg.clusters.forEach((c, ci) => {
    const cp = `/clusters/${ci}`;
    c.endpoints.forEach((e, ei) => port(typeof e === 'string' ? e : e.address, `${cp}/endpoints/${ei}`, false));
    positive(c.connect_timeout, `${cp}/connect_timeout`, parseDuration);
    positive(c.dns_refresh, `${cp}/dns_refresh`, parseDuration);
    positive(c.health_check?.interval, `${cp}/health_check/interval`, parseDuration);
    positive(c.health_check?.timeout, `${cp}/health_check/timeout`, parseDuration);
    positive(c.outlier_detection?.interval, `${cp}/outlier_detection/interval`, parseDuration);
    backoff(c.retry, `${cp}/retry`);
  });
}

/** A retry policy whose first backoff is longer than its longest would wait backoff_max every time: say so. */
function backoffCheck(add: (pointer: string, message: string) => void) {
  return (r: RawConfig['clusters'][number]['retry'], pointer: string) => {
    if (r === undefined) return;
    const base = parseDuration(r.backoff_base);
    const max = parseDuration(r.backoff_max);
    if (base > max) add(`${pointer}/backoff_base`, `backoff_base ${JSON.stringify(r.backoff_base)} is longer than backoff_max ${JSON.stringify(r.backoff_max)}`);
  };
}

/** Runs a filter type's own `check` on a config (or a merged override); problems go at their key. */
function checkFilter(type: string, config: Record<string, unknown>, pointer: string, add: (pointer: string, message: string, key?: string) => void): void {
  const check = filterDefinition(type)?.check;
  if (check === undefined) return;
  for (const p of check(config)) add(pointer, p.message, p.key);
}

function checkRegex(source: string, pointer: string, add: (pointer: string, message: string) => void): void {
  try {
    new RegExp(source);
  } catch (err) {
    add(pointer, `invalid regex "${source}": ${(err as Error).message.replace(/^Invalid regular expression: /, '')}`);
  }
}

/** Problems found after parsing (a filter that failed to prepare or build), at their lines, in line order. */
export function locateProblems(problems: readonly { path: string; message: string }[], locate: LocatePath | undefined): ConfigProblem[] {
  return problems.map((p) => ({ ...p, ...locate?.(p.path) })).sort((a, b) => (a.line ?? 0) - (b.line ?? 0));
}

/** Formats problems as "file:line:col path: message" lines, as `weir validate` prints them. */
export function formatProblems(file: string, problems: readonly ConfigProblem[]): string {
  return problems
    .map((p) => `${file}${p.line !== undefined ? `:${p.line}:${p.column}` : ''} ${p.path === '' ? '' : `${p.path}: `}${p.message}`)
    .join('\n');
}
