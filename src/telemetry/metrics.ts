/**
 * A small metrics registry: counters, gauges and histograms with labels, one registry per worker thread.
 * The admin API merges the workers' snapshots and renders them in the Prometheus text format.
 * Hot paths keep the child returned by `labels(...)` and call `inc`/`observe` on it: no lookup per request.
 */

/** A metric's kind. */
export type MetricType = 'counter' | 'gauge' | 'histogram';

/** Default latency buckets, in milliseconds. */
export const LATENCY_BUCKETS_MS = [0.5, 1, 2.5, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000];

/** A labelled counter or gauge value. */
export class Value {
  value = 0;
  /** Adds `n` (default 1). */
  inc(n = 1): void {
    this.value += n;
  }
  /** Subtracts `n` (default 1); gauges only. */
  dec(n = 1): void {
    this.value -= n;
  }
  /** Sets the value; gauges only. */
  set(n: number): void {
    this.value = n;
  }
}

/** A labelled histogram. */
export class Distribution {
  readonly buckets: number[];
  readonly counts: number[];
  sum = 0;
  count = 0;
  constructor(buckets: number[]) {
    this.buckets = buckets;
    this.counts = new Array(buckets.length).fill(0);
  }
  /** Records one observation. */
  observe(v: number): void {
    this.sum += v;
    this.count++;
    const b = this.buckets;
    for (let i = 0; i < b.length; i++) {
      if (v <= b[i]) {
        this.counts[i]++;
        return;
      }
    }
  }
}

/** One metric family with its labelled children. */
export class Family<T extends Value | Distribution> {
  readonly name: string;
  readonly help: string;
  readonly type: MetricType;
  readonly labelNames: readonly string[];
  readonly children = new Map<string, { labels: string[]; child: T }>();
  readonly #make: () => T;

  constructor(opts: { name: string; help: string; type: MetricType; labelNames: readonly string[]; make: () => T }) {
    this.name = opts.name;
    this.help = opts.help;
    this.type = opts.type;
    this.labelNames = opts.labelNames;
    this.#make = opts.make;
  }

  /** Returns the child for these label values, creating it on first use. Keep it: the lookup costs a string join. */
  labels(...values: string[]): T {
    const key = values.join('\u0000');
    let entry = this.children.get(key);
    if (entry === undefined) {
      entry = { labels: values, child: this.#make() };
      this.children.set(key, entry);
    }
    return entry.child;
  }
}

/** A serialisable copy of a registry, as sent from a worker to the admin thread. */
export interface MetricsSnapshot {
  families: {
    name: string;
    help: string;
    type: MetricType;
    labelNames: readonly string[];
    samples: { labels: string[]; value?: number; buckets?: number[]; counts?: number[]; sum?: number; count?: number }[];
  }[];
}

/** One worker's registry. Declaring the same name twice returns the first family. */
export class Metrics {
  readonly #families = new Map<string, Family<any>>();

  /** Declares (or returns) a counter family. */
  counter(name: string, help: string, labelNames: readonly string[] = []): Family<Value> {
    return this.#declare(name, help, 'counter', labelNames, () => new Value());
  }

  /** Declares (or returns) a gauge family. */
  gauge(name: string, help: string, labelNames: readonly string[] = []): Family<Value> {
    return this.#declare(name, help, 'gauge', labelNames, () => new Value());
  }

  /** Declares (or returns) a histogram family. */
  histogram(name: string, help: string, labelNames: readonly string[] = [], buckets = LATENCY_BUCKETS_MS): Family<Distribution> {
    return this.#declare(name, help, 'histogram', labelNames, () => new Distribution(buckets));
  }

  /** Looks a family up by name. */
  get(name: string): Family<any> | undefined {
    return this.#families.get(name);
  }

  /** Copies every family into plain data. */
  snapshot(): MetricsSnapshot {
    const families: MetricsSnapshot['families'] = [];
    for (const f of this.#families.values()) {
      const samples: MetricsSnapshot['families'][number]['samples'] = [];
      for (const { labels, child } of f.children.values()) {
        if (child instanceof Distribution) {
          samples.push({ labels, buckets: child.buckets, counts: child.counts.slice(), sum: child.sum, count: child.count });
        } else samples.push({ labels, value: child.value });
      }
      families.push({ name: f.name, help: f.help, type: f.type, labelNames: f.labelNames, samples });
    }
    return { families };
  }

  #declare<T extends Value | Distribution>(name: string, help: string, type: MetricType, labelNames: readonly string[], make: () => T): Family<T> {
    const existing = this.#families.get(name);
    if (existing !== undefined) {
      if (existing.type !== type) throw new Error(`Cannot declare metric "${name}" as ${type}: it is already a ${existing.type}`);
      return existing;
    }
    const f = new Family<T>({ name, help, type, labelNames, make });
    this.#families.set(name, f);
    return f;
  }
}

/** Adds several snapshots (one per worker) into one: counters and histograms add up; gauges add up too. */
export function mergeSnapshots(snaps: MetricsSnapshot[]): MetricsSnapshot {
  const out = new Map<string, MetricsSnapshot['families'][number]>();
  for (const s of snaps) {
    for (const f of s.families) {
      let m = out.get(f.name);
      if (m === undefined) {
        m = { name: f.name, help: f.help, type: f.type, labelNames: f.labelNames, samples: [] };
        out.set(f.name, m);
      }
      for (const sample of f.samples) {
        const key = sample.labels.join('\u0000');
        const prev = m.samples.find((x) => x.labels.join('\u0000') === key);
        if (prev === undefined) {
          m.samples.push({ ...sample, counts: sample.counts?.slice() });
        } else if (sample.counts !== undefined && prev.counts !== undefined) {
          for (let i = 0; i < sample.counts.length; i++) prev.counts[i] += sample.counts[i];
          prev.sum! += sample.sum!;
          prev.count! += sample.count!;
        } else prev.value = (prev.value ?? 0) + (sample.value ?? 0);
      }
    }
  }
  return { families: [...out.values()] };
}

function escapeLabel(v: string): string {
  return v.replace(/\\/g, '\\\\').replace(/\n/g, '\\n').replace(/"/g, '\\"');
}

function labelText(names: readonly string[], values: readonly string[], extra?: string): string {
  const parts: string[] = [];
  for (let i = 0; i < names.length; i++) parts.push(`${names[i]}="${escapeLabel(values[i] ?? '')}"`);
  if (extra !== undefined) parts.push(extra);
  return parts.length === 0 ? '' : `{${parts.join(',')}}`;
}

/** Renders a snapshot in the Prometheus text exposition format (version 0.0.4). */
export function renderPrometheus(snap: MetricsSnapshot): string {
  const lines: string[] = [];
  for (const f of snap.families) {
    lines.push(`# HELP ${f.name} ${f.help.replace(/\n/g, ' ')}`, `# TYPE ${f.name} ${f.type}`);
    for (const s of f.samples) {
      if (s.counts !== undefined) {
        let cumulative = 0;
        for (let i = 0; i < s.counts.length; i++) {
          cumulative += s.counts[i];
          lines.push(`${f.name}_bucket${labelText(f.labelNames, s.labels, `le="${s.buckets![i]}"`)} ${cumulative}`);
        }
        lines.push(`${f.name}_bucket${labelText(f.labelNames, s.labels, 'le="+Inf"')} ${s.count}`);
        lines.push(`${f.name}_sum${labelText(f.labelNames, s.labels)} ${s.sum}`);
        lines.push(`${f.name}_count${labelText(f.labelNames, s.labels)} ${s.count}`);
      } else lines.push(`${f.name}${labelText(f.labelNames, s.labels)} ${s.value}`);
    }
  }
  return lines.join('\n') + '\n';
}
